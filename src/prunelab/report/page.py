"""The static HTML report: plots, per-round table and how the numbers were computed, in one directory."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from ..io import atomic_write_bytes
from .plots import METRIC_TITLES, plot_summary
from .stats import DEFAULT_METRICS, normalise, summarize
from .tables import round_table, table_html, table_markdown

# Plots written when the metric has data, with their file stems.
PLOTS = (("test_acc", "accuracy"), ("early_stop_test_acc", "early_stop_accuracy"))

_CSS = """
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #1a1a1a; background: #fff;
       margin: 24px 32px; max-width: 1300px; }
h1 { font-size: 1.6em; margin: 0 0 8px; }
h2 { font-size: 1.2em; margin: 24px 0 8px; }
p, li { line-height: 1.45; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; flex: 1 1 520px; max-width: 100%; }
figure img { width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
table.results { border-collapse: collapse; font-size: 0.9em; }
table.results th, table.results td { padding: 3px 10px; border-bottom: 1px solid #e3e3e3; text-align: left; }
table.results th { background: #f0f3f7; border-bottom: 2px solid #9aa7b8; }
table.results tbody + tbody { border-top: 2px solid #9aa7b8; }
table.results .num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f4f4f4; padding: 0 3px; }
"""

# Records, for tests and for anyone checking the page headlessly, whether every image decoded and any
# script or resource error; also the on-screen boxes of the marked regions.
_SCRIPT = """
(function () {
  var root = document.documentElement;
  window.addEventListener("error", function (e) {
    var what = e.target && e.target.src ? "failed to load " + e.target.src : String(e.message || e.type);
    root.setAttribute("data-error", what);
  }, true);
  window.addEventListener("load", function () {
    var imgs = Array.prototype.slice.call(document.images);
    var ok = imgs.every(function (im) { return im.complete && im.naturalWidth > 0; });
    root.setAttribute("data-images-loaded", ok ? "yes" : "no");
    var boxes = {};
    document.querySelectorAll("[data-region]").forEach(function (el) {
      var r = el.getBoundingClientRect();
      boxes[el.getAttribute("data-region")] = [r.left, r.top, r.width, r.height];
    });
    root.setAttribute("data-layout", JSON.stringify(boxes));
  });
})();
"""


def _runs_overview(data: pd.DataFrame) -> str:
    esc = html.escape
    items = []
    for label, g in data.groupby("label", sort=False):
        parts = [f"<b>{esc(label)}</b>"]
        for col in ("model", "dataset", "procedure"):
            if col in g and g[col].notna().any():
                parts.append(f"{col} {esc(', '.join(sorted(map(str, g[col].dropna().unique()))))}")
        if "seed" in g and g["seed"].notna().any():
            parts.append(f"seeds {esc(', '.join(str(s) for s in sorted(g['seed'].dropna().unique())))}")
        parts.append(f"variants {esc(', '.join(dict.fromkeys(g['variant'])))}")
        parts.append(f"rounds {int(g['round'].min())}–{int(g['round'].max())}")
        items.append("<li>" + "; ".join(parts) + "</li>")
    return "<ul>\n" + "\n".join(items) + "\n</ul>"


def write_report(df: pd.DataFrame, out_dir, title: str = "prunelab report") -> Path:
    """Write a static report of per-round results to ``out_dir`` and return the path of its index.html.

    Files: index.html (no external scripts, styles or network; it references only the plots beside it),
    accuracy.png/.svg and, when early-stopping accuracies exist, early_stop_accuracy.png/.svg,
    summary.csv (full-precision statistics from :func:`summarize`) and summary.md (the per-round table).
    Every file is written atomically, so a reader never sees a half-written report.
    """
    data = normalise(df)
    summary = summarize(data, metrics=DEFAULT_METRICS)
    if not summary["test_acc_mean"].notna().any():
        raise ConfigError("the results have no test_acc values; nothing to report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    figures = []
    for metric, stem in PLOTS:
        if summary[f"{metric}_mean"].notna().any():
            png, svg = plot_summary(summary, out / stem, metric)
            figures.append((metric, png.name, svg.name))

    table = round_table(summary)
    atomic_write_bytes(out / "summary.csv", summary.to_csv(index=False).encode())
    atomic_write_bytes(out / "summary.md", (f"# {title}\n\n" + table_markdown(table)).encode())

    esc = html.escape
    fig_html = []
    for i, (metric, png, svg) in enumerate(figures):
        region = ' data-region="plot"' if i == 0 else ""
        fig_html.append(
            f'<figure><img src="{esc(png)}"{region} alt="{esc(METRIC_TITLES.get(metric, metric))} vs. '
            f'weights remaining" width="880" height="572">'
            f'<figcaption>{esc(METRIC_TITLES.get(metric, metric))}. '
            f'<a href="{esc(svg)}">SVG</a> · <a href="{esc(png)}">PNG</a></figcaption></figure>')
    max_n = int(summary["n_seeds"].max())
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src 'self' file:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{esc(title)}</title>
<style>{_CSS}</style>
<script>{_SCRIPT}</script>
</head>
<body>
<h1>{esc(title)}</h1>
<p>Accuracy against the percentage of prunable weights remaining after each pruning round. Each point is
the mean over seeds (up to {max_n} here) of one (label, variant, round); the shaded band in the plots and the
± in the table are the 95 % confidence interval of that mean, t<sub>0.975,&nbsp;n−1</sub>·s/√n with s the
sample standard deviation over the n seeds (no interval when n = 1). Accuracies are in %, the x axis is
logarithmic with the dense network on the left.</p>
{_runs_overview(data)}
<h2>Accuracy vs. weights remaining</h2>
<div class="plots">
{chr(10).join(fig_html)}
</div>
<h2>Per-round results</h2>
{table_html(table)}
<p>Downloads: <a href="summary.csv">summary.csv</a> (all statistics, full precision) ·
<a href="summary.md">summary.md</a> (this table in Markdown).</p>
</body>
</html>
"""
    index = out / "index.html"
    atomic_write_bytes(index, page.encode("utf-8"))
    return index
