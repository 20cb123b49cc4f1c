"""Ticket metrics over a sweep of pruned networks (spec §5.5).

Each candidate is a row with a sparsity (``remaining_pct`` or ``sparsity``) and an accuracy column.

- :func:`highest_sparsity_within`: the sparsest candidate whose accuracy is at least
  ``(1 − tolerance) · dense`` (relative tolerance; 0.02 is the CS rebuttal's "within 2 % of dense");
- :func:`sparsest_matching`: the same with tolerance 0 (a *matching* ticket: accuracy ≥ dense);
- :func:`best_ticket`: the most accurate candidate (sparser wins a tie).
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional, Union

import pandas as pd

from ..errors import ConfigError

Rows = Union[pd.DataFrame, Iterable[Mapping]]


def _frame(rows: Rows, acc: str) -> pd.DataFrame:
    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if "sparsity" not in df.columns:
        if "remaining_pct" not in df.columns:
            raise ConfigError(f"ticket rows need a 'sparsity' or 'remaining_pct' column; got {list(df.columns)}")
        df["sparsity"] = 1.0 - df["remaining_pct"] / 100.0
    if acc not in df.columns:
        raise ConfigError(f"ticket rows have no accuracy column {acc!r}; columns: {list(df.columns)}")
    return df


def highest_sparsity_within(rows: Rows, dense_acc: float, tolerance: float = 0.02, *,
                            acc: str = "test_acc") -> Optional[dict]:
    """The row of highest sparsity with ``acc >= (1 - tolerance) * dense_acc``; None if none qualifies."""
    if not 0 <= tolerance < 1:
        raise ConfigError(f"tolerance {tolerance!r} is outside [0, 1) (relative accuracy drop)")
    df = _frame(rows, acc)
    ok = df[df[acc] >= (1.0 - tolerance) * dense_acc]
    if ok.empty:
        return None
    return ok.sort_values(["sparsity", acc], ascending=[False, False]).iloc[0].to_dict()


def sparsest_matching(rows: Rows, dense_acc: float, *, acc: str = "test_acc") -> Optional[dict]:
    return highest_sparsity_within(rows, dense_acc, 0.0, acc=acc)


def best_ticket(rows: Rows, *, acc: str = "test_acc") -> Optional[dict]:
    df = _frame(rows, acc)
    if df.empty:
        return None
    return df.sort_values([acc, "sparsity"], ascending=[False, False]).iloc[0].to_dict()
