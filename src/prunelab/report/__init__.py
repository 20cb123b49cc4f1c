"""Reports: seed statistics, accuracy-vs-sparsity plots with confidence bands, tables, a static HTML page.

Input is the experiments layer's per-(run, variant, round) DataFrame (see :func:`summarize`); the statistics
come from :mod:`prunelab.analysis`. :func:`plot_stability` draws GST's per-run scatter figures.
"""
from .page import write_report
from .plots import plot_accuracy_vs_remaining, plot_summary
from .scatter import plot_stability
from .stats import summarize
from .tables import round_table, table_html, table_markdown

__all__ = ["plot_accuracy_vs_remaining", "plot_stability", "plot_summary", "round_table", "summarize",
           "table_html", "table_markdown", "write_report"]
