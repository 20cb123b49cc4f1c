"""Analysis: the statistics of results (t-based CIs over seeds, Pearson/Kendall correlations, Welch t-tests)
and GST's per-event and per-run stability measures (defined below, in procedures.gst_metrics).

Flatness measures of a model (Hessian spectrum, gradient covariance) are :mod:`prunelab.training.flatness`;
plots are :mod:`prunelab.report`.
"""
from .correlation import config_summary, correlate, pairwise_welch, welch
from .stats import mean_std_ci, t_halfwidth
from ..procedures.gst_metrics import instability, stability, summarize_run

__all__ = ["config_summary", "correlate", "instability", "mean_std_ci", "pairwise_welch", "stability",
           "summarize_run", "t_halfwidth", "welch"]
