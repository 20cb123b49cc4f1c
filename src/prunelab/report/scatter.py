"""Scatter plots of GST's figures: per-run mean stability against accuracy, generalization gap, curvature."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis import config_summary, correlate
from ..errors import ConfigError
from .plots import save_figure

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


def plot_stability(df: pd.DataFrame, path, y: str = "best_test_acc", x: str = "mean_stability",
                   by: str = "config", ylabel: str | None = None, title: str | None = None,
                   percent_y: bool = True) -> tuple[Path, Path]:
    """One point per run, coloured by ``by``, with each group's mean ± 95 % CI as a cross, and the Pearson
    r / Kendall τ over all runs in the title. Writes PNG and SVG; returns their paths."""
    from matplotlib.figure import Figure

    missing = [c for c in (x, y, by) if c not in df.columns]
    if missing:
        raise ConfigError(f"columns {missing} are missing; present: {sorted(map(str, df.columns))}")
    data = df[df[x].notna() & df[y].notna()]
    if data.empty:
        raise ConfigError(f"no runs have both {x!r} and {y!r}")
    scale = 100.0 if percent_y else 1.0
    fig = Figure(figsize=(7.5, 5), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    summ = config_summary(data, (x, y), by)
    for i, (key, g) in enumerate(data.groupby(by, sort=False)):
        c = f"C{i % 10}" if i < 10 else "black"
        ax.scatter(g[x], scale * g[y], color=c, marker=_MARKERS[i % len(_MARKERS)], s=22, alpha=0.6,
                   label=f"{key} (n={len(g)})")
        s = summ[summ[by] == key].iloc[0]
        ax.errorbar(s[f"{x}_mean"], scale * s[f"{y}_mean"], xerr=np.nan_to_num(s[f"{x}_ci95"]),
                    yerr=scale * np.nan_to_num(s[f"{y}_ci95"]), color=c, capsize=3, linewidth=1.5)
    cor = correlate(data[x], data[y])
    ax.set_xlabel("Mean stability (%)" if x == "mean_stability" else x)
    ax.set_ylabel(ylabel or (f"{y} (%)" if percent_y else y))
    head = title or f"{y} vs {x}"
    ax.set_title(f"{head}\nPearson r={cor['pearson_r']:.2f} (p={cor['pearson_p']:.2g}), "
                 f"Kendall τ={cor['kendall_tau']:.2f} (p={cor['kendall_p']:.2g}), n={cor['n']}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path)
