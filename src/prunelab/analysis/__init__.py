"""Analysis: flatness measures (Hessian spectrum, gradient covariance) and the statistics of GST."""
from .correlation import config_summary, correlate, pairwise_welch, welch
from .flatness import (flatness_measures, grad_cov_trace, hessian_eigs, hvp, model_hessian_eigs,
                       perturbation_curves)

__all__ = ["config_summary", "correlate", "flatness_measures", "grad_cov_trace", "hessian_eigs", "hvp",
           "model_hessian_eigs", "pairwise_welch", "perturbation_curves", "welch"]
