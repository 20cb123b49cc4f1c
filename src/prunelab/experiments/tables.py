"""Human-readable tables of a results DataFrame (mean ± std over seeds) and of the runs in a store."""
from __future__ import annotations

import pandas as pd

from .results import VARIANT_ORDER

METRICS = ("test_acc", "early_stop_test_acc", "val_acc", "test_loss", "val_loss")


def _cell(mean: float, std: float, pct: bool) -> str:
    if mean != mean:  # NaN: the metric was not measured
        return ""
    scale = 100.0 if pct else 1.0
    if std != std:    # one seed
        return f"{scale * mean:.2f}"
    return f"{scale * mean:.2f} ± {scale * std:.2f}"


def summary_table(df: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """One row per (name, label, round), one column per variant: ``metric`` mean ± std over seeds
    (accuracies in %), with the remaining-weights percentage and the number of seeds."""
    if metric not in df.columns:
        from ..errors import ConfigError
        raise ConfigError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
    if df.empty:
        return pd.DataFrame()
    pct = metric.endswith("_acc")
    keys = ["name", "label", "round"]
    agg = (df.groupby(keys + ["variant"], sort=False)
             .agg(remaining=("remaining_pct", "mean"), mean=(metric, "mean"), std=(metric, "std"),
                  seeds=("seed", "nunique"))
             .reset_index())
    agg["cell"] = [_cell(m, s, pct) for m, s in zip(agg["mean"], agg["std"])]
    wide = agg.pivot_table(index=keys, columns="variant", values="cell", aggfunc="first", sort=False)
    variants = sorted(wide.columns, key=lambda v: (VARIANT_ORDER.get(v, len(VARIANT_ORDER)), v))
    wide = wide[variants].fillna("")
    meta = agg.groupby(keys, sort=False).agg(remaining=("remaining", "first"), seeds=("seeds", "max"))
    out = meta.join(wide).reset_index()
    out["remaining"] = out["remaining"].map(lambda v: f"{v:.2f}")
    out = out.rename(columns={"remaining": "remaining %"})
    unit = " %" if pct else ""
    out.columns.name = f"{metric}{unit}, mean ± std over seeds"
    return out.sort_values(["name", "label", "round"], kind="stable").reset_index(drop=True)


def status_table(runs: list[dict], rounds_done: dict[str, int], alive) -> pd.DataFrame:
    rows = []
    for r in runs:
        status = r["status"]
        if status == "running" and not alive(r):
            status = "running (stale: holder gone; rerun resumes it)"
        rows.append({"run_id": r["run_id"], "name": r["name"], "label": r["label"], "status": status,
                     "ticket rounds": rounds_done.get(r["run_id"], 0), "started": (r["started"] or "")[:19],
                     "ended": (r["ended"] or "")[:19], "host": r["host"] or "",
                     "error": (r["error"] or "").splitlines()[-1][:60] if r["error"] else ""})
    return pd.DataFrame(rows)
