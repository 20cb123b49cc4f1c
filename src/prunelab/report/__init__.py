"""Reports: seed statistics, accuracy-vs-sparsity plots with confidence bands, tables, a static HTML page.

Input is the experiments layer's per-(run, variant, round) DataFrame (see :func:`summarize`).
"""
from .page import write_report
from .plots import plot_accuracy_vs_remaining, plot_summary
from .stats import summarize, t_halfwidth
from .tables import round_table, table_html, table_markdown

__all__ = ["plot_accuracy_vs_remaining", "plot_summary", "round_table", "summarize", "t_halfwidth",
           "table_html", "table_markdown", "write_report"]
