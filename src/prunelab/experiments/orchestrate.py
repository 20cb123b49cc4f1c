"""Sweeps: queue planned runs in the store, answer finished ones from the cache, hand the rest to an
executor (:mod:`~prunelab.experiments.executors`) and return the results table."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from .execute import Log, RunFailedError, RunOutcome, _say
from .executors import LocalExecutor
from .plan import PlannedRun, load_plan
from .provenance import artifacts_intact
from .results import results_frame
from .spec import ExperimentSpec
from .store import Store


def run_plan(runs: Sequence[PlannedRun], results_root: str | os.PathLike, *, executor=None,
             progress: bool = True, log: Log = print) -> list[RunOutcome]:
    """Queue every run in the store, answer finished ones from the cache, hand the rest to ``executor``
    (default: this process). Returns one outcome per run, in order."""
    store = Store(results_root)
    outcomes: dict[int, RunOutcome] = {}
    todo = []
    for i, r in enumerate(runs):
        store.add_run(r.run_id, r.spec.name, r.label, r.spec.model_dump_json())
        row = store.get_run(r.run_id)
        if row["status"] == "done" and artifacts_intact(store, r.run_id)[0]:
            _say(log, f"cache hit: run {r.run_id} ({r.label}) finished {row['ended']}; nothing to compute")
            outcomes[i] = RunOutcome(r.run_id, r.label, "cached")
        else:
            todo.append(i)
    store.close()
    if todo:
        done = (executor or LocalExecutor()).run([runs[i] for i in todo], Path(results_root),
                                                 progress=progress, log=log)
        outcomes.update(zip(todo, done))
    return [outcomes[i] for i in range(len(runs))]


def run_experiment(spec: ExperimentSpec | Sequence[PlannedRun] | str | os.PathLike,
                   results_root: Optional[str | os.PathLike] = None, *, executor=None,
                   progress: bool = True, log: Log = print) -> pd.DataFrame:
    """Run a spec (an ExperimentSpec, a spec file or planned runs of a sweep) and return its results.

    ``results_root`` defaults to $PRUNELAB_RESULTS or ``./prunelab-results``. Finished runs are cache
    hits; interrupted ones resume. Raises :class:`RunFailedError` when a run fails (the others still run).
    """
    root = Path(results_root) if results_root is not None else default_results_root()
    runs = list(spec) if isinstance(spec, (list, tuple)) else load_plan(spec)
    outcomes = run_plan(runs, root, executor=executor, progress=progress, log=log)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise RunFailedError("; ".join(f"run {o.run_id} ({o.label}) failed: {o.error}" for o in failed))
    return results_frame(Store(root), [r.run_id for r in runs])


def default_results_root() -> Path:
    return Path(os.environ.get("PRUNELAB_RESULTS") or "prunelab-results")
