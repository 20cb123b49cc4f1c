"""Where runs compute: in this process, in local worker processes, or as Ray tasks.

Every executor gets planned runs and a results root and returns one :class:`RunOutcome` per run; each
worker opens its own connection to the store and writes its own rows (the store retries while another
writer holds the lock). Runs are independent: one failing does not stop the others.
"""
from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import ConfigError
from .plan import PlannedRun
from .execute import Log, RunOutcome, execute_run
from .spec import ExperimentSpec

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class RunTask:
    """What a worker needs, as plain data (the spec as JSON: no pickled objects cross processes)."""

    spec_json: str
    label: str
    results_root: str
    threads: Optional[int]


def run_task(task: RunTask) -> RunOutcome:
    """Worker entry point (a process pool or a Ray task): compute one run, quietly."""
    spec = ExperimentSpec.model_validate_json(task.spec_json)
    return execute_run(spec, task.results_root, label=task.label, progress=False, log=None,
                       threads=task.threads)


def _tasks(runs: Sequence[PlannedRun], root: Path, threads: Optional[int]) -> list[RunTask]:
    return [RunTask(r.spec.model_dump_json(), r.label, str(root), r.spec.threads or threads) for r in runs]


def _report(log: Log, o: RunOutcome) -> None:
    if log is None:
        return
    if o.status == "cached":
        log(f"cache hit: run {o.run_id} ({o.label}) is done; nothing to compute")
    elif o.status == "done":
        log(f"run {o.run_id} ({o.label}): done in {o.seconds:.1f} s")
    else:
        log(f"run {o.run_id} ({o.label}): FAILED: {o.error}")


def _bar(total: int, progress: bool):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="runs", disable=not progress or total < 2)


class LocalExecutor:
    """Runs one after another in this process, with progress bars for rounds and epochs."""

    def __init__(self, threads: Optional[int] = None):
        self.threads = threads

    def run(self, runs: Sequence[PlannedRun], root: Path, *, progress: bool = True, log: Log = print,
            on_done: Optional[Callable[[RunOutcome], None]] = None) -> list[RunOutcome]:
        out = []
        bar = _bar(len(runs), progress)
        for r in runs:
            o = execute_run(r.spec, root, label=r.label, progress=progress, log=log, threads=self.threads)
            out.append(o)
            bar.update(1)
            if on_done:
                on_done(o)
        bar.close()
        return out


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))   # what this process may use (containers, taskset)
    except AttributeError:                    # not on every platform
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int:
    return max(1, usable_cores() // jobs)


class ProcessExecutor:
    """``jobs`` worker processes (spawned: no forked torch thread pools), ``cores // jobs`` threads each."""

    def __init__(self, jobs: int, threads: Optional[int] = None):
        if jobs < 1:
            raise ConfigError(f"jobs {jobs} is outside the allowed range [1, inf)")
        self.jobs = jobs
        self.threads = threads or threads_per_job(jobs)

    def run(self, runs: Sequence[PlannedRun], root: Path, *, progress: bool = True, log: Log = print,
            on_done: Optional[Callable[[RunOutcome], None]] = None) -> list[RunOutcome]:
        import multiprocessing as mp

        tasks = _tasks(runs, root, self.threads)
        results: dict[int, RunOutcome] = {}
        bar = _bar(len(tasks), progress)
        with ProcessPoolExecutor(max_workers=min(self.jobs, len(tasks)) or 1,
                                 mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(run_task, t): i for i, t in enumerate(tasks)}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    i = futures[f]
                    # the worker process died (OOM kill, segfault)
                    results[i] = _collect(f.result, runs[i], "worker died", log, bar, on_done)
        bar.close()
        return [results[i] for i in range(len(tasks))]


def _collect(get, run, failure: str, log, bar, on_done) -> "RunOutcome":
    """The outcome of one finished task; a task whose worker died counts as a failed run."""
    try:
        o = get()
    except Exception as e:
        o = RunOutcome(run.run_id, run.label, "failed", error=f"{failure}: {e!r}")
    _report(log, o)
    bar.update(1)
    if on_done:
        on_done(o)
    return o


class RayExecutor:
    """Each run is a Ray task requesting its CPU threads and, for CUDA devices, one GPU.

    ``address`` None starts a local Ray instance (stopped again afterwards); otherwise it connects to an
    existing cluster ("auto", "ray://host:10001", ...). On a multi-node cluster the results root must be
    on a file system every node sees at the same path (the workers write the store and the artifacts).
    """

    def __init__(self, address: Optional[str] = None, threads: Optional[int] = None,
                 init_kwargs: Optional[dict] = None):
        self.address = address
        self.threads = threads
        self.init_kwargs = dict(init_kwargs or {})

    def run(self, runs: Sequence[PlannedRun], root: Path, *, progress: bool = True, log: Log = print,
            on_done: Optional[Callable[[RunOutcome], None]] = None) -> list[RunOutcome]:
        try:
            import ray
        except ImportError:
            raise ConfigError("the Ray executor needs ray: pip install 'prunelab[ray]' "
                              "(or choose --executor local)") from None
        started = False
        if not ray.is_initialized():
            kw = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR",
                  **self.init_kwargs}
            if self.address:
                kw.pop("include_dashboard")
            ray.init(address=self.address, **kw)
            started = True
        try:
            remote = ray.remote(run_task)
            tasks = _tasks(runs, Path(root).resolve(), self.threads or 1)
            refs = {}
            for i, (r, t) in enumerate(zip(runs, tasks)):
                gpu = 1 if str(r.spec.train.device).startswith("cuda") else 0
                refs[remote.options(num_cpus=t.threads, num_gpus=gpu, max_retries=0).remote(t)] = i
            results: dict[int, RunOutcome] = {}
            bar = _bar(len(tasks), progress)
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    i = refs[ref]
                    results[i] = _collect(lambda: ray.get(ref), runs[i], "ray task failed", log, bar, on_done)
            bar.close()
            return [results[i] for i in range(len(tasks))]
        finally:
            if started:
                ray.shutdown()


def make_executor(kind: str = "local", *, jobs: int = 1, address: Optional[str] = None,
                  threads: Optional[int] = None):
    if kind == "local":
        return LocalExecutor(threads) if jobs == 1 else ProcessExecutor(jobs, threads)
    if kind == "ray":
        return RayExecutor(address, threads)
    from ..errors import unknown_name
    raise unknown_name("executor", kind, EXECUTORS)
