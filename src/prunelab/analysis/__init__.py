"""Analysis: the statistics of results (t-based CIs over seeds, Pearson/Kendall correlations, Welch t-tests).

Flatness measures of a model (Hessian spectrum, gradient covariance) are :mod:`prunelab.training.flatness`;
plots are :mod:`prunelab.report`.
"""
from .correlation import config_summary, correlate, pairwise_welch, welch
from .stats import mean_std_ci, t_halfwidth

__all__ = ["config_summary", "correlate", "mean_std_ci", "pairwise_welch", "t_halfwidth", "welch"]
