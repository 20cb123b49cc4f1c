"""Per-round tables of the summary, as a display DataFrame, Markdown and an HTML fragment."""
from __future__ import annotations

import html
import math

import pandas as pd

METRIC_HEADERS = {
    "test_acc": "Test acc. (%)",
    "early_stop_test_acc": "Early-stop test acc. (%)",
    "val_acc": "Val. acc. (%)",
}


def _mean_ci(mean: float, ci: float) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    if ci is None or math.isnan(ci):
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * ci:.2f}"


def round_table(summary: pd.DataFrame, metrics=None) -> pd.DataFrame:
    """Display table from :func:`summarize`: rows ordered by round, then label and variant as summarized.

    Accuracies are in % as "mean ± 95 % CI half-width" (no ± with a single seed, "–" when missing).
    ``metrics`` defaults to every metric in the summary with at least one value.
    """
    if metrics is None:
        metrics = [c[:-5] for c in summary.columns
                   if c.endswith("_mean") and summary[c].notna().any()]
    order = summary.reset_index(drop=True).reset_index().sort_values(["round", "index"], kind="stable")
    table = pd.DataFrame({
        "Round": order["round"].astype(int).to_numpy(),
        "Weights remaining (%)": [f"{v:.3g}" for v in order["remaining_pct"]],
        "Label": order["label"].to_numpy(),
        "Variant": order["variant"].to_numpy(),
        "Seeds": order["n_seeds"].astype(int).to_numpy(),
    })
    for m in metrics:
        table[METRIC_HEADERS.get(m, m)] = [_mean_ci(a, b) for a, b in zip(order[f"{m}_mean"], order[f"{m}_ci95"])]
    return table


def _numeric_columns(table: pd.DataFrame) -> set:
    # Right-align numbers, including the preformatted "mean ± ci" percentage strings.
    return {c for c in table.columns if pd.api.types.is_numeric_dtype(table[c]) or str(c).endswith("(%)")}


def table_markdown(table: pd.DataFrame) -> str:
    """GitHub-flavoured Markdown; written here because pandas' to_markdown needs the optional tabulate."""
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if c in _numeric_columns(table) else "---" for c in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def table_html(table: pd.DataFrame, group_by: str = "Round") -> str:
    """An escaped <table> fragment with one <tbody> per value of ``group_by`` so rounds read as blocks."""
    esc = lambda v: html.escape(str(v), quote=True)  # noqa: E731
    numeric = _numeric_columns(table)
    cls = lambda c: ' class="num"' if c in numeric else ""  # noqa: E731
    out = ['<table class="results" data-region="table">',
           "<thead><tr>" + "".join(f'<th scope="col"{cls(c)}>{esc(c)}</th>' for c in table.columns) + "</tr></thead>"]
    groups = table.groupby(group_by, sort=False) if group_by in table.columns else [(None, table)]
    for _, block in groups:
        out.append("<tbody>")
        for row in block.itertuples(index=False):
            out.append("<tr>" + "".join(f"<td{cls(c)}>{esc(v)}</td>" for c, v in zip(table.columns, row)) + "</tr>")
        out.append("</tbody>")
    out.append("</table>")
    return "\n".join(out)
