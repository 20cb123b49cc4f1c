"""The results table: one row per (run, variant, round) read back from a store (the contract with report)."""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import pandas as pd

from .store import Store

RESULT_COLUMNS = ["run_id", "name", "label", "model", "dataset", "seed", "procedure", "variant", "round",
                  "kept", "total", "remaining_pct", "test_acc", "test_loss", "val_acc", "val_loss",
                  "early_stop_iteration", "early_stop_test_acc"]
VARIANT_ORDER = {"ticket": 0, "reinit": 1, "random_mask": 2}


def results_frame(store: Store | str | os.PathLike, run_ids: Optional[Sequence[str]] = None,
                  status: Optional[Sequence[str]] = ("done",), *, extra: bool = False) -> pd.DataFrame:
    """One row per (run, variant, round) with :data:`RESULT_COLUMNS` (the contract with prunelab.report).

    ``extra=True`` appends the procedure's own scalar numbers (GST's ``mean_stability``, flatness measures,
    CS's ``epochs_spent``, ...) as further columns, in order of first appearance; lists and dicts stay out.
    """
    store = store if isinstance(store, Store) else Store(store)
    runs = {r["run_id"]: r for r in store.runs(status)}
    if run_ids is not None:
        wanted = set(run_ids)
        runs = {k: v for k, v in runs.items() if k in wanted}
    records = []
    metric_rows = store.metric_rows(list(runs)) if runs else []
    for m in metric_rows:
        run = runs[m["run_id"]]
        spec = json.loads(run["spec_json"])
        records.append({**m, "name": run["name"], "label": run["label"], "model": spec["model"]["name"],
                        "dataset": spec["dataset"]["name"], "seed": spec.get("seed", 0),
                        "procedure": spec["procedure"]["kind"]})
    columns = list(RESULT_COLUMNS)
    if extra:
        known = set(columns)
        for r in records:
            for k, v in r.items():
                if k not in known and (v is None or isinstance(v, (bool, int, float, str))):
                    known.add(k)
                    columns.append(k)
    df = pd.DataFrame.from_records(records, columns=columns) if records else \
        pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
    if len(df):
        rank = df["variant"].map(lambda v: VARIANT_ORDER.get(v, len(VARIANT_ORDER)))
        df = (df.assign(_rank=rank).sort_values(["name", "label", "seed", "run_id", "round", "_rank", "variant"])
                .drop(columns="_rank").reset_index(drop=True))
    return df
