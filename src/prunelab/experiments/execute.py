"""Compute one run into the store: cache hits, waiting for or taking over leases, resume, artifacts.

A finished run (status ``done`` and every artifact matching its sha256) is a cache hit: nothing is
trained and the stored results come back. Otherwise the run is claimed with a lease
(:mod:`~prunelab.experiments.leases`); a live holder is waited for, a dead one's run is taken over. The
procedure runs with checkpoints in ``runs/<run_id>/checkpoints``
(:class:`~prunelab.training.checkpoint.Checkpoints`: every training writes partial checkpoints while it
runs and a final record when it ends), so a killed run continues where it stopped, mid-training included,
and ends with the numbers of an uninterrupted run. The checkpoints are removed once the run is stored.
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import PrunelabError
from ..io import atomic_write_bytes, sha256_file
from .leases import _Heartbeat, lease_alive, my_lease
from .provenance import artifacts_intact, provenance
from .spec import ExperimentSpec
from .store import Store

WAIT_POLL_S = 1.0   # how often a run held by another live process is checked again

Log = Optional[Callable[[str], None]]


class RunFailedError(PrunelabError):
    """One or more runs raised; their error text is in the store (``prunelab status``)."""


@dataclass
class RunOutcome:
    run_id: str
    label: str
    status: str            # "done" (computed now), "cached", "failed"
    seconds: float = 0.0
    error: Optional[str] = None
    resumed_after: Optional[int] = None   # finished trainings restored from checkpoints, if it resumed


def _say(log: Log, msg: str) -> None:
    if log is not None:
        log(msg)


def _round_rows(rounds) -> tuple[list[dict], list[dict]]:
    rows, hist = [], []
    for r in rounds:
        rows.append(r.row())
        hist += [{"variant": r.variant, "round": r.round, **h} for h in r.history]
    return rows, hist


def _compute(spec: ExperimentSpec, store: Store, run_id: str, progress: bool, log: Log) -> Optional[int]:
    """Run the spec's procedure with checkpoints in ``runs/<id>/checkpoints``; returns how many trainings
    were restored from there (None on a fresh start)."""
    from ..data import load_dataset
    from ..io import save_tensors
    from ..models import build_model
    from ..procedures import run_procedure
    from ..training import Checkpoints

    run_dir = store.run_dir(run_id)
    atomic_write_bytes(run_dir / "spec.yaml", spec.to_yaml().encode())
    ds = spec.dataset
    data = load_dataset(ds.name, ds.root, device="cpu", progress=progress, **ds.load_kwargs())

    def model_fn(seed: int):
        return build_model(spec.model.name, num_classes=data.num_classes, input_shape=data.input_shape,
                           seed=seed, **spec.model.options)

    ck = spec.checkpoint
    checkpoints = Checkpoints(run_dir / "checkpoints", every_epochs=ck.every_epochs, every_seconds=ck.every_seconds,
                              every_iterations=ck.every_iterations)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=spec.trainings(), desc=f"run {run_id} trainings", leave=False)

    def on_row(r):
        rows, hist = _round_rows([r])
        store.put_rounds(run_id, rows, hist)
        if bar is not None:
            bar.update(1)

    train_cfg = spec.train.model_copy(update={"progress": progress})
    finetune = spec.finetune.model_copy(update={"progress": progress}) if spec.finetune else None
    try:
        res = run_procedure(model_fn, data, train_cfg, spec.procedure, seed=spec.seed, finetune=finetune,
                            keep_history=True, on_row=on_row, checkpoints=checkpoints)
    finally:
        if bar is not None:
            bar.close()
    restored = [r for r in checkpoints.resumed if r[1] == "final"]
    partial = [r for r in checkpoints.resumed if r[1] == "partial"]
    if checkpoints.resumed:
        where = f"; training {partial[0][0]} continued from iteration {partial[0][2]}" if partial else ""
        _say(log, f"  resumed: {len(restored)} finished training(s) restored from {checkpoints.dir}{where}")
    last = max(r.round for r in res.rows)
    for r in res.rows:
        if r.round == last:
            path = run_dir / "masks" / f"{r.variant}.safetensors"
            r.mask.save(path, {"run_id": run_id, "variant": r.variant, "round": r.round})
            store.put_artifact(run_id, f"mask/{r.variant}", path, sha256_file(path))
    for name, state in res.states.items():
        path = run_dir / "state" / f"{name}.safetensors"
        save_tensors(path, state, {"run_id": run_id, "state": name})
        store.put_artifact(run_id, f"state/{name}", path, sha256_file(path))
    checkpoints.clear()   # every row and artifact is in the store now
    return len(restored) if checkpoints.resumed else None


def execute_run(spec: ExperimentSpec, results_root: str | os.PathLike, *, label: Optional[str] = None,
                progress: bool = False, log: Log = print, threads: Optional[int] = None,
                reraise: bool = False) -> RunOutcome:
    """Compute one run into the store at ``results_root`` (or find it finished there)."""
    store = Store(results_root)
    run_id = spec.run_id()
    label = label or spec.name
    t0 = time.monotonic()
    store.add_run(run_id, spec.name, label, spec.model_dump_json())
    lease = my_lease()
    waited = False
    while True:
        row = store.get_run(run_id)
        if row["status"] == "done":
            ok, why = artifacts_intact(store, run_id)
            if ok:
                _say(log, f"cache hit: run {run_id} ({label}) finished {row['ended']}; nothing to compute")
                return RunOutcome(run_id, label, "cached", time.monotonic() - t0)
            _say(log, f"run {run_id} ({label}): {why}; recomputing")
        holder = store.claim(run_id, lease, lease_alive, provenance())
        if holder is None:
            break
        if not waited:
            _say(log, f"run {run_id} ({label}) is being computed by {holder['lease']}; waiting for it")
            waited = True
        time.sleep(WAIT_POLL_S)

    import torch
    old_threads = torch.get_num_threads()
    n = spec.threads or threads
    if n:
        torch.set_num_threads(n)
    _say(log, f"run {run_id} ({label}): computing")
    try:
        with _Heartbeat(store, run_id, lease):
            resumed = _compute(spec, store, run_id, progress, log)
    except BaseException as e:
        err = "".join(traceback.format_exception_only(type(e), e)).strip()
        if not isinstance(e, Exception):
            err = f"interrupted ({type(e).__name__})"
        else:  # the one-line message goes to the store and the CLI; the whole traceback next to the run
            log_path = store.run_dir(run_id) / "error.log"
            atomic_write_bytes(log_path, "".join(traceback.format_exception(e)).encode())
            err = f"{err} (traceback: {log_path})"
        store.finish(run_id, "failed", error=err[-4000:], lease=lease)
        if reraise or not isinstance(e, Exception):
            raise
        _say(log, f"run {run_id} ({label}): FAILED: {err}")
        return RunOutcome(run_id, label, "failed", time.monotonic() - t0, error=err)
    finally:
        if n:
            torch.set_num_threads(old_threads)
    store.finish(run_id, "done", lease=lease)
    (store.run_dir(run_id) / "error.log").unlink(missing_ok=True)  # a failed earlier attempt's
    secs = time.monotonic() - t0
    _say(log, f"run {run_id} ({label}): done in {secs:.1f} s")
    return RunOutcome(run_id, label, "done", secs, resumed_after=resumed)
