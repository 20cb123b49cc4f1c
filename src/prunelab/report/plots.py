"""Accuracy vs. weights remaining: the papers' main figure, with a 95 % CI band over seeds."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..io import atomic_write_bytes
from .stats import summarize

METRIC_TITLES = {
    "test_acc": "Test accuracy at the end of training",
    "early_stop_test_acc": "Test accuracy at the early-stopping iteration",
    "val_acc": "Validation accuracy at the end of training",
}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINESTYLES = ("-", "--", ":", "-.")


def plot_accuracy_vs_remaining(df: pd.DataFrame, path, metric: str = "test_acc",
                               title: str | None = None) -> tuple[Path, Path]:
    """Plot ``metric`` (a 0-1 accuracy) in % against weights remaining; write ``path`` as PNG and SVG.

    ``df`` is the per-(run, variant, round) results table. The x axis is logarithmic and inverted so the
    dense network is on the left, as in Frankle & Carbin. One line per (label, variant): the mean over
    seeds with markers, and a shaded band for the 95 % t confidence interval of that mean.
    Returns the PNG and SVG paths (``path`` with its .png/.svg suffix replaced).
    """
    return plot_summary(summarize(df, metrics=(metric,)), path, metric, title)


def _output_paths(path) -> tuple[Path, Path]:
    path = Path(path)
    base = path.with_suffix("") if path.suffix.lower() in (".png", ".svg") else path
    return base.with_name(base.name + ".png"), base.with_name(base.name + ".svg")


def _log_ticks(values: np.ndarray, max_ticks: int = 9) -> list[float]:
    # Tick at the sparsities actually visited (the papers' convention), thinned to be evenly spread in log.
    vals = sorted({float(f"{v:.3g}") for v in values if v > 0}, reverse=True)
    if len(vals) <= max_ticks:
        return vals
    span = math.log(vals[0] / vals[-1])
    kept = [vals[0]]
    for v in vals[1:-1]:
        if math.log(kept[-1] / v) >= span / (max_ticks - 1) and math.log(v / vals[-1]) >= span / (2 * max_ticks):
            kept.append(v)
    return kept + [vals[-1]]


def plot_summary(summary: pd.DataFrame, path, metric: str = "test_acc",
                 title: str | None = None) -> tuple[Path, Path]:
    """Like :func:`plot_accuracy_vs_remaining` but from the output of :func:`summarize`."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    mean_col, ci_col, n_col = f"{metric}_mean", f"{metric}_ci95", f"{metric}_n"
    if mean_col not in summary.columns:
        raise ConfigError(f"metric {metric!r} is not in the summary; available: "
                          f"{sorted(c[:-5] for c in summary.columns if c.endswith('_mean'))}")
    data = summary[summary[mean_col].notna() & (summary["remaining_pct"] > 0)]
    if data.empty:
        raise ConfigError(f"metric {metric!r} has no values to plot (all missing)")

    fig = Figure(figsize=(8, 5.2), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    labels, variants = list(dict.fromkeys(data["label"])), list(dict.fromkeys(data["variant"]))
    # Colour tells labels apart and line style the variant (a control shares its ticket's colour); with a
    # single label, colour goes to the variants instead.
    colour_of = (lambda lab, var: labels.index(lab)) if len(labels) > 1 else (lambda lab, var: variants.index(var))
    for (label, variant), g in data.groupby(["label", "variant"], sort=False):
        g = g.sort_values("remaining_pct", ascending=False)
        x = g["remaining_pct"].to_numpy(float)
        y = 100 * g[mean_col].to_numpy(float)
        # A single seed has no interval; draw a zero-width band rather than leave a gap in the shading.
        h = 100 * np.nan_to_num(g[ci_col].to_numpy(float), nan=0.0)
        v = variants.index(variant)
        color = f"C{colour_of(label, variant) % 10}"
        nmin, nmax = int(g[n_col].min()), int(g[n_col].max())
        n = f"n={nmin}" if nmin == nmax else f"n={nmin}-{nmax}"
        ax.fill_between(x, y - h, y + h, color=color, alpha=0.18, linewidth=0)
        ax.plot(x, y, color=color, marker=_MARKERS[v % len(_MARKERS)], markersize=5,
                linestyle=_LINESTYLES[v % len(_LINESTYLES)], linewidth=1.6, label=f"{label} · {variant} ({n})")

    ax.set_xscale("log")
    ticks = _log_ticks(data["remaining_pct"].to_numpy(float))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    lo, hi = min(ticks), max(ticks)
    ax.set_xlim(hi * 1.12, lo / 1.12)  # reversed limits: dense network on the left
    ax.set_xlabel("Weights remaining (%)")
    ax.set_ylabel("Accuracy (%)")
    ax.set_title(title or METRIC_TITLES.get(metric, metric))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="best", title="mean ± 95 % CI over seeds", title_fontsize=8)

    return save_figure(fig, path)


def save_figure(fig, path) -> tuple[Path, Path]:
    """Write a matplotlib figure as PNG and SVG (``path`` with its .png/.svg suffix replaced), atomically;
    returns both paths."""
    from matplotlib import rc_context

    png, svg = _output_paths(path)
    for out, fmt in ((png, "png"), (svg, "svg")):
        buf = io.BytesIO()
        # Fixed metadata and SVG id salt keep the files byte-identical across runs, so reports diff cleanly.
        meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
        with rc_context({"svg.hashsalt": "prunelab"}):
            fig.savefig(buf, format=fmt, metadata=meta)
        atomic_write_bytes(out, buf.getvalue())
    return png, svg


def save_png(fig, path, dpi: int = 120) -> Path:
    """Lay out a pyplot figure, write it as one PNG atomically and close it; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return atomic_write_bytes(Path(path), buf.getvalue())
