"""GST's measurements (spec §2.2): the instability of one pruning event and a run's summary.

They define the numbers the stability procedure writes into its row, so they live below it; the analysis
layer re-exports them (``from prunelab.analysis import stability``) next to the statistics across runs.
"""
from __future__ import annotations

import math

from ..errors import ConfigError


def instability(acc_pre: float, acc_post: float) -> float:
    """(acc_pre − acc_post) / acc_pre: the relative drop of test accuracy caused by one pruning event."""
    if acc_pre <= 0:
        raise ConfigError(f"acc_pre must be > 0 to measure instability, got {acc_pre}")
    return (acc_pre - acc_post) / acc_pre


def stability(acc_pre: float, acc_post: float) -> float:
    """Stability in percent: 100·(1 − instability)."""
    return 100.0 * (1.0 - instability(acc_pre, acc_post))


def summarize_run(history: list[dict], events: list[dict], scratch: bool = False) -> dict:
    """Per-run numbers of §2.2 from the epoch history (post-pruning test accuracy per epoch) and the
    events (with ``iteration`` and ``acc_pre``): mean stability over pruning epochs (100 without any),
    best test accuracy over epochs from the last pruning epoch on, and the generalization gap there."""
    by_it = {r["iteration"]: r for r in history if "test_acc" in r}
    stabs = []
    for ev in events:
        post = by_it[ev["iteration"]]["test_acc"]
        ev["acc_post"] = post
        ev["instability"] = instability(ev["acc_pre"], post)
        ev["stability"] = stability(ev["acc_pre"], post)
        stabs.append(ev["stability"])
    last = max((ev["iteration"] for ev in events), default=0)
    rows = [r for r in history if "test_acc" in r and r["iteration"] >= last]
    best = max(rows, key=lambda r: r["test_acc"]) if rows else {}
    out = {"mean_stability": float(sum(stabs) / len(stabs)) if stabs and not scratch else 100.0,
           "n_events": len(events), "best_test_acc": best.get("test_acc", math.nan),
           "best_epoch": best.get("epoch", math.nan)}
    if "train_running_acc" in best:
        out["gen_gap"] = best["train_running_acc"] - best["test_acc"]
    return out


