"""Statistics over replicates: mean, sample std and the t-based 95 % confidence interval of the mean."""
from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95


def t_halfwidth(values) -> float:
    """Half-width of the two-sided 95 % CI of the mean: t_{0.975, n-1} * s / sqrt(n); NaN for n < 2."""
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = x.size
    if n < 2:
        return math.nan
    return float(t.ppf(0.5 + CONFIDENCE / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))


def mean_std_ci(values) -> dict:
    """``mean``, ``std`` (sample, ddof=1), ``ci95`` (:func:`t_halfwidth`) and ``n`` of the non-NaN values;
    NaN where there are too few values (none for the mean, fewer than two for std and CI)."""
    x = values.to_numpy(dtype=float) if hasattr(values, "to_numpy") else np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    return {"mean": float(x.mean()) if x.size else math.nan,
            "std": float(x.std(ddof=1)) if x.size > 1 else math.nan,
            "ci95": t_halfwidth(x), "n": int(x.size)}
