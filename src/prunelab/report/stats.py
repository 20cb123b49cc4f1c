"""Per-(label, variant, round) summaries over seeds: mean, sample std and a t-based 95 % CI of the mean
(the statistics themselves are :mod:`prunelab.analysis.stats`)."""
from __future__ import annotations

import pandas as pd

from ..analysis.stats import mean_std_ci
from ..errors import ConfigError

GROUP_KEYS = ("label", "variant", "round")
DEFAULT_METRICS = ("test_acc", "early_stop_test_acc")


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Check the input contract and fill the derivable columns (label, remaining_pct)."""
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"expected a pandas DataFrame of per-round results, got {type(df).__name__}")
    if len(df) == 0:
        raise ConfigError("the results DataFrame has no rows; run an experiment first")
    missing = [c for c in ("variant", "round") if c not in df.columns]
    if missing:
        raise ConfigError(f"results DataFrame lacks column(s) {missing}; required: variant, round, and "
                          f"remaining_pct or kept+total; present: {sorted(map(str, df.columns))}")
    data = df.copy()
    if "remaining_pct" not in data.columns or data["remaining_pct"].isna().any():
        if not {"kept", "total"} <= set(data.columns):
            raise ConfigError("results DataFrame needs remaining_pct, or kept and total to derive it; "
                              f"present: {sorted(map(str, df.columns))}")
        derived = 100.0 * data["kept"].astype(float) / data["total"].astype(float)
        data["remaining_pct"] = data["remaining_pct"].fillna(derived) if "remaining_pct" in data else derived
    # Without an explicit group label the run name (then the model) is the most useful human name.
    label = pd.Series([None] * len(data), index=data.index, dtype=object)
    for col in ("label", "name", "model"):
        if col in data.columns:
            label = label.fillna(data[col])
    data["label"] = label.fillna("all").astype(str)
    data["variant"] = data["variant"].fillna("ticket").astype(str)
    if data["round"].isna().any():
        raise ConfigError("column 'round' has missing values; every row must name its pruning round")
    data["round"] = data["round"].astype(int)
    _check_unique_seeds(data)
    return data


def _check_unique_seeds(data: pd.DataFrame) -> None:
    # A seed counted twice would shrink the CI for no reason; it means rows were stored twice upstream.
    if "seed" not in data.columns:
        return
    seeded = data[data["seed"].notna()]
    dup = seeded[seeded.duplicated(list(GROUP_KEYS) + ["seed"], keep=False)]
    if len(dup):
        first = dup.iloc[0]
        seed = first["seed"].item() if hasattr(first["seed"], "item") else first["seed"]
        ids = dup[(dup[list(GROUP_KEYS) + ["seed"]] == first[list(GROUP_KEYS) + ["seed"]]).all(axis=1)]
        runs = sorted(map(str, ids["run_id"])) if "run_id" in ids else []
        raise ConfigError(f"seed {seed!r} appears {len(ids)} times for label {first['label']!r}, "
                          f"variant {first['variant']!r}, round {first['round']}"
                          + (f" (run_ids {runs})" if runs else "")
                          + "; each seed may appear once per (label, variant, round)")


def _appearance_order(values: pd.Series) -> list:
    return list(dict.fromkeys(values.tolist()))


def summarize(df: pd.DataFrame, metrics=DEFAULT_METRICS) -> pd.DataFrame:
    """One row per (label, variant, round) with the seed statistics of each metric.

    Columns: label, variant, round, remaining_pct (mean over seeds), n_seeds (rows in the group), and for
    every metric ``m``: ``m_mean``, ``m_std`` (sample, ddof=1), ``m_ci95`` (half-width, NaN when fewer than
    two values) and ``m_n`` (non-missing values used). Metrics absent from ``df`` come out as NaN with n=0.
    Labels and variants keep their order of first appearance; rounds ascend.
    """
    data = normalise(df)
    labels, variants = _appearance_order(data["label"]), _appearance_order(data["variant"])
    rows = []
    for (label, variant, rnd), g in data.groupby(list(GROUP_KEYS), sort=False):
        row = {"label": label, "variant": variant, "round": int(rnd),
               "remaining_pct": float(g["remaining_pct"].mean()), "n_seeds": len(g)}
        for m in metrics:
            row.update({f"{m}_{k}": v for k, v in mean_std_ci(g[m] if m in g else ()).items()})
        rows.append(row)
    out = pd.DataFrame(rows)
    out["_l"] = out["label"].map(labels.index)
    out["_v"] = out["variant"].map(variants.index)
    return out.sort_values(["_l", "_v", "round"]).drop(columns=["_l", "_v"]).reset_index(drop=True)
