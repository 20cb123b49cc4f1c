"""Run one experiment against the store: cache hits, leases, resume, artifacts.

A finished run (status ``done`` and every artifact matching its sha256) is a cache hit: nothing is
trained and the stored results come back. Otherwise the run is claimed with a lease (host, pid and the
process's start time, plus a heartbeat), so a run left ``running`` by a dead process is simply taken
over, while a live holder (another worker computing the same spec) is waited for. The procedure itself
checkpoints every finished round in ``runs/<run_id>/rounds`` (:class:`~prunelab.procedures.resume.RoundStore`),
so a killed run continues after its last intact round and ends with the numbers of an uninterrupted run.
"""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Sequence

import pandas as pd

from ..errors import PrunelabError
from ..io import atomic_write_bytes
from .plan import PlannedRun
from .spec import ExperimentSpec
from .store import Store

HEARTBEAT_S = 30.0
STALE_AFTER_S = 180.0   # a lease from another host without a heartbeat for this long is abandoned
WAIT_POLL_S = 1.0

RESULT_COLUMNS = ["run_id", "name", "label", "model", "dataset", "seed", "procedure", "variant", "round",
                  "kept", "total", "remaining_pct", "test_acc", "test_loss", "val_acc", "val_loss",
                  "early_stop_iteration", "early_stop_test_acc"]
VARIANT_ORDER = {"ticket": 0, "reinit": 1, "random_mask": 2}

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
    resumed_after: Optional[int] = None   # last round restored from checkpoints, if any


# leases ------------------------------------------------------------------------------------------------
def _proc_stat(pid: int) -> tuple[str, str]:
    """(state, start time) of a process from /proc (Linux); ("?", "?") where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return "?", "?"


def _process_start(pid: int) -> str:
    """Start time of a process (clock ticks since boot), so a reused pid is not taken for the holder."""
    return _proc_stat(pid)[1]


def my_lease() -> str:
    return f"{socket.gethostname()}|{os.getpid()}|{_process_start(os.getpid())}"


def lease_alive(row: dict) -> bool:
    """Whether the holder of a ``running`` row may still be computing it."""
    try:
        host, pid, start = (row.get("lease") or "").split("|")
        pid = int(pid)
    except ValueError:
        return False
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        state, started = _proc_stat(pid)
        if state in ("Z", "X"):   # exited, not yet reaped by its parent
            return False
        return start == "?" or started == start
    beat = row.get("heartbeat")
    if not beat:
        return False
    age = (datetime.now(timezone.utc) - datetime.fromisoformat(beat)).total_seconds()
    return age < STALE_AFTER_S


class _Heartbeat:
    """Refreshes the lease's heartbeat from a thread while a run computes (for holders on other hosts)."""

    def __init__(self, store: Store, run_id: str, lease: str, every: float = HEARTBEAT_S):
        self.store, self.run_id, self.lease, self.every = store, run_id, lease, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"heartbeat-{run_id}")

    def _loop(self):
        while not self._stop.wait(self.every):
            try:
                self.store.heartbeat(self.run_id, self.lease)
            except Exception:  # a missed beat only matters after STALE_AFTER_S; never kill the run for it
                pass
        self.store.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


# provenance --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def git_commit() -> Optional[str]:
    """The commit of the prunelab source tree when it is a git checkout (editable installs), else None."""
    src = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        if out.returncode != 0:
            return None
        commit = out.stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no", "."],
                               capture_output=True, text=True, timeout=10)
        return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
    import torch

    from .. import __version__
    return {"prunelab": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "host": socket.gethostname(), "git_commit": git_commit()}


def sha256_file(path: Path) -> str:
    from ..data.download import file_digest
    return file_digest(path, "sha256")


def artifacts_intact(store: Store, run_id: str) -> tuple[bool, str]:
    arts = store.artifacts(run_id)
    if not arts:
        return False, "no artifacts recorded"
    for a in arts:
        p = a["abspath"]
        if not p.is_file():
            return False, f"artifact {a['kind']} ({a['path']}) is missing"
        if sha256_file(p) != a["sha256"]:
            return False, f"artifact {a['kind']} ({a['path']}) fails its sha256 check"
    return True, ""


# running -----------------------------------------------------------------------------------------------
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
    from ..data import load_dataset
    from ..models import build_model
    from ..procedures import run_imp
    from ..procedures.resume import RoundStore

    run_dir = store.run_dir(run_id)
    atomic_write_bytes(run_dir / "spec.yaml", spec.to_yaml().encode())
    ds = spec.dataset
    data = load_dataset(ds.name, ds.root, device="cpu", progress=progress, **ds.load_kwargs())

    def model_fn(seed: int):
        return build_model(spec.model.name, num_classes=data.num_classes, input_shape=data.input_shape,
                           seed=seed, **spec.model.options)

    rounds = RoundStore(run_dir / "rounds")
    resumed = rounds.latest()
    if resumed is not None:
        _say(log, f"  resuming after round {resumed} (checkpoints in {rounds.dir})")
    bar = None
    if progress:
        from tqdm.auto import tqdm
        n_controls = len(getattr(spec.procedure, "controls", ()))
        done = 0 if resumed is None else 1 + resumed * (1 + n_controls)
        bar = tqdm(total=spec.trainings(), initial=min(done, spec.trainings()), desc=f"run {run_id} trainings",
                   leave=False)

    def on_round(r):
        rows, hist = _round_rows([r])
        store.put_rounds(run_id, rows, hist)
        if bar is not None:
            bar.update(1)

    train_cfg = spec.train.model_copy(update={"progress": progress})
    finetune = spec.finetune.model_copy(update={"progress": progress}) if spec.finetune else None
    try:
        if hasattr(spec.procedure, "imp_config"):
            res = run_imp(model_fn, data, train_cfg, spec.procedure.imp_config(), seed=spec.seed,
                          finetune=finetune, keep_history=True, on_round=on_round, resume=rounds)
        else:   # other procedures get the round store and may resume from it, or run whole
            res = spec.procedure.run(model_fn, data, train_cfg, seed=spec.seed, keep_history=True,
                                     on_round=on_round, finetune=finetune, resume=rounds)
    finally:
        if bar is not None:
            bar.close()
    # rounds restored from checkpoints were not emitted now; write every row so the store is complete
    rows, hist = _round_rows(res.rounds)
    store.put_rounds(run_id, rows, hist)
    last = max(r.round for r in res.rounds)
    for r in res.rounds:
        if r.round == last:
            path = run_dir / "masks" / f"{r.variant}.safetensors"
            r.mask.save(path, {"run_id": run_id, "variant": r.variant, "round": r.round})
            store.put_artifact(run_id, f"mask/{r.variant}", path, sha256_file(path))
    state = rounds.dir / f"round_{last:03d}" / "state_model.safetensors"
    if state.is_file():
        store.put_artifact(run_id, "state/ticket_final", state, sha256_file(state))
    return resumed


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


# results -------------------------------------------------------------------------------------------------
def results_frame(store: Store | str | os.PathLike, run_ids: Optional[Sequence[str]] = None,
                  status: Optional[Sequence[str]] = ("done",), *, extra: bool = False) -> pd.DataFrame:
    """One row per (run, variant, round) with :data:`RESULT_COLUMNS` (the contract with prunelab.report).

    ``extra=True`` appends the procedure's own scalar numbers (GST's ``mean_stability``, flatness measures,
    CS's ``epochs_spent``, ...) as further columns, in order of first appearance; lists and dicts stay out.
    """
    import json

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


def run_plan(runs: Sequence[PlannedRun], results_root: str | os.PathLike, *, executor=None,
             progress: bool = True, log: Log = print) -> list[RunOutcome]:
    """Queue every run in the store, answer finished ones from the cache, hand the rest to ``executor``
    (default: this process). Returns one outcome per run, in order."""
    from .executors import LocalExecutor

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
    from .plan import load_plan

    root = Path(results_root) if results_root is not None else default_results_root()
    runs = list(spec) if isinstance(spec, (list, tuple)) else load_plan(spec)
    outcomes = run_plan(runs, root, executor=executor, progress=progress, log=log)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise RunFailedError("; ".join(f"run {o.run_id} ({o.label}) failed: {o.error}" for o in failed))
    return results_frame(Store(root), [r.run_id for r in runs])


def default_results_root() -> Path:
    return Path(os.environ.get("PRUNELAB_RESULTS") or "prunelab-results")
