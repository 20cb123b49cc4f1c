"""Statistics of GST (spec §2.4 "Analysis conventions"): correlations across runs, per-config means with
95 % confidence intervals, Welch t-tests between configs."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .stats import mean_std_ci


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ConfigError(f"need two 1-D sequences of equal length, got shapes {x.shape} and {y.shape}")
    ok = ~(np.isnan(x) | np.isnan(y))
    return x[ok], y[ok]


def correlate(x, y) -> dict:
    """Pearson r and Kendall τ (tau-b) with two-sided p-values over paired values (NaN pairs dropped)."""
    from scipy.stats import kendalltau, pearsonr
    x, y = _pair(x, y)
    out = {"n": int(x.size), "pearson_r": math.nan, "pearson_p": math.nan, "kendall_tau": math.nan,
           "kendall_p": math.nan}
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return out  # a correlation needs at least three points and variation on both axes
    r = pearsonr(x, y)
    t = kendalltau(x, y)
    out.update(pearson_r=float(r.statistic), pearson_p=float(r.pvalue), kendall_tau=float(t.statistic),
               kendall_p=float(t.pvalue))
    return out


def welch(a, b) -> dict:
    """Welch's t-test (unequal variances) between two groups of per-run values."""
    from scipy.stats import ttest_ind
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size < 2 or b.size < 2:
        return {"t": math.nan, "p": math.nan, "n_a": int(a.size), "n_b": int(b.size)}
    r = ttest_ind(a, b, equal_var=False)
    return {"t": float(r.statistic), "p": float(r.pvalue), "n_a": int(a.size), "n_b": int(b.size)}


def config_summary(df: pd.DataFrame, metrics, by: str = "config") -> pd.DataFrame:
    """Per ``by`` group: n and, per metric, mean, sample std and the t-based 95 % CI half-width."""
    missing = [c for c in (by, *metrics) if c not in df.columns]
    if missing:
        raise ConfigError(f"columns {missing} are missing; present: {sorted(map(str, df.columns))}")
    rows = []
    for key, g in df.groupby(by, sort=False):
        row = {by: key, "n": len(g)}
        for m in metrics:
            s = mean_std_ci(g[m])
            row.update({f"{m}_{k}": s[k] for k in ("mean", "std", "ci95")})
        rows.append(row)
    return pd.DataFrame(rows)


def pairwise_welch(df: pd.DataFrame, metric: str, pairs, by: str = "config") -> pd.DataFrame:
    """Welch t-tests of ``metric`` between the named groups: ``pairs`` = [(group_a, group_b), ...]."""
    rows = []
    for a, b in pairs:
        res = welch(df.loc[df[by] == a, metric], df.loc[df[by] == b, metric])
        rows.append({"a": a, "b": b, "metric": metric,
                     "mean_a": float(df.loc[df[by] == a, metric].mean()),
                     "mean_b": float(df.loc[df[by] == b, metric].mean()), **res})
    return pd.DataFrame(rows)
