"""Runs against the store: cache hits, SIGKILL and resume, damaged artifacts, concurrent processes."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

import prunelab.procedures.base as base_mod
from prunelab.experiments import RESULT_COLUMNS, RunFailedError, Store, expand, results_frame, run_experiment
from prunelab.experiments.leases import lease_alive

from test_experiments_helpers import child_env, data_root, tiny_raw  # noqa: F401  (fixture)


@pytest.fixture
def trainings(monkeypatch):
    """Records the ``desc`` of every training the procedure starts (``round 2``, ``random_mask 3``)."""
    calls = []
    real = base_mod.train

    def spy(model, data, cfg, **kw):
        calls.append(kw.get("desc"))
        return real(model, data, cfg, **kw)

    monkeypatch.setattr(base_mod, "train", spy)
    return calls


def test_same_spec_twice_is_a_cache_hit_with_identical_results(tmp_path, data_root, trainings):
    spec = expand(tiny_raw(data_root))[0].spec
    logs = []
    first = run_experiment(spec, tmp_path, progress=False, log=logs.append)
    assert list(first.columns) == RESULT_COLUMNS
    # round 0 dense + 3 rounds x (ticket, random_mask)
    assert len(first) == 7 and first["run_id"].unique().tolist() == [spec.run_id()]
    assert first["remaining_pct"].tolist() == pytest.approx([100, 50, 50, 25, 25, 12.5, 12.5], abs=0.01)
    assert len(trainings) == 7
    started = Store(tmp_path).get_run(spec.run_id())["started"]

    trainings.clear()
    logs.clear()
    again = run_experiment(spec, tmp_path, progress=False, log=logs.append)
    assert trainings == []                                    # no training at all
    assert any(re.match(rf"cache hit: run {spec.run_id()} .*nothing to compute", m) for m in logs), logs
    assert again.equals(first)
    assert Store(tmp_path).get_run(spec.run_id())["started"] == started

    row = Store(tmp_path).get_run(spec.run_id())
    assert row["status"] == "done" and row["torch_version"] and row["python_version"] and row["host"]
    kinds = [a["kind"] for a in Store(tmp_path).artifacts(spec.run_id())]
    assert kinds == ["mask/random_mask", "mask/ticket", "state/final"]


CHILD = """
import sys, time, pathlib, torch
torch.set_num_threads(1)
import prunelab.procedures.base as base_mod
from prunelab.experiments import ExperimentSpec, execute_run
spec = ExperimentSpec.model_validate_json(pathlib.Path(sys.argv[1]).read_text())
marker = pathlib.Path(sys.argv[3])
real = base_mod.train
def train(model, data, cfg, **kw):
    if kw.get("desc") == "round 2":        # inside round 2: tell the parent, then wait to be killed
        marker.write_text("in round 2")
        time.sleep(120)
    return real(model, data, cfg, **kw)
base_mod.train = train
execute_run(spec, sys.argv[2], log=None)
"""


def test_sigkill_during_round_2_then_rerun_gives_the_uninterrupted_numbers(tmp_path, data_root, trainings):
    spec = expand(tiny_raw(data_root))[0].spec
    clean = run_experiment(spec, tmp_path / "clean", progress=False, log=None)
    clean_hist = Store(tmp_path / "clean").history_rows(spec.run_id())

    root = tmp_path / "killed"
    (tmp_path / "spec.json").write_text(spec.model_dump_json())
    marker = tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "spec.json"), str(root), str(marker)],
                             env=child_env(data_root))
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None, "the child ended before round 2"
        assert time.monotonic() < deadline, "the child never reached round 2"
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    store = Store(root)
    row = store.get_run(spec.run_id())
    assert row["status"] == "running" and not lease_alive(row)   # stale: its holder is gone
    ck = store.run_dir(spec.run_id()) / "checkpoints"
    assert sorted(p.parent.name for p in ck.glob("*/final.json")) == ["stage_0000", "stage_0001", "stage_0002"]

    logs = []
    resumed = run_experiment(spec, root, progress=False, log=logs.append)
    assert any("resumed: 3 finished training(s) restored" in m for m in logs), logs   # rounds 0-1 from disk
    assert resumed.equals(clean)
    assert not ck.exists()   # a stored run keeps no checkpoints
    assert store.history_rows(spec.run_id()) == clean_hist
    assert store.get_run(spec.run_id())["status"] == "done"


def test_damaged_artifacts_are_detected_and_recomputed(tmp_path, data_root, trainings):
    spec = expand(tiny_raw(data_root, seed=3))[0].spec
    first = run_experiment(spec, tmp_path, progress=False, log=None)
    store = Store(tmp_path)
    arts = {a["kind"]: a for a in store.artifacts(spec.run_id())}

    mask = arts["mask/ticket"]["abspath"]
    mask.write_bytes(mask.read_bytes()[:-7])                  # truncated
    trainings.clear()
    logs = []
    again = run_experiment(spec, tmp_path, progress=False, log=logs.append)
    assert any("mask/ticket" in m and "fails its sha256 check; recomputing" in m for m in logs), logs
    assert len(trainings) == 7                                # a stored run keeps no checkpoints: all again
    assert again.equals(first)
    assert store.artifacts(spec.run_id())[1]["sha256"] == arts["mask/ticket"]["sha256"]

    state = arts["state/final"]["abspath"]                    # the network the run ended with
    state.write_bytes(state.read_bytes()[:100])
    again = run_experiment(spec, tmp_path, progress=False, log=None)
    assert again.equals(first)
    assert store.artifacts(spec.run_id())[2]["sha256"] == arts["state/final"]["sha256"]


def test_a_live_holder_is_waited_for_then_a_dead_one_taken_over(tmp_path, data_root, monkeypatch):
    import socket
    import threading

    from prunelab.experiments import execute, leases
    monkeypatch.setattr(execute, "WAIT_POLL_S", 0.05)
    spec = expand(tiny_raw(data_root, seed=5))[0].spec
    store = Store(tmp_path)
    store.add_run(spec.run_id(), spec.name, "x", spec.model_dump_json())
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    lease = f"{socket.gethostname()}|{holder.pid}|{leases._process_start(holder.pid)}"
    assert store.claim(spec.run_id(), lease, lease_alive, {}) is None
    threading.Thread(target=holder.wait, daemon=True).start()   # reap it when it ends
    logs = []
    t0 = time.monotonic()
    out = execute.execute_run(spec, tmp_path, log=logs.append)
    assert out.status == "done" and time.monotonic() - t0 > 0.5
    assert any(f"is being computed by {lease}; waiting" in m for m in logs), logs
    assert store.get_run(spec.run_id())["lease"] == leases.my_lease()


def test_a_failing_run_is_recorded_and_does_not_stop_the_others(tmp_path, data_root):
    raw = tiny_raw(data_root)
    raw["procedure"] = {"kind": "imp", "rounds": 1, "rate": {"output": 0.1}}   # no rate for the hidden layers
    raw["sweep"] = {"axes": {"procedure.rate": [{"output": 0.1}, 0.5]}}
    runs = expand(raw)
    with pytest.raises(RunFailedError, match="no rate given for 'fc1.weight'"):
        run_experiment(runs, tmp_path, progress=False, log=None)
    store = Store(tmp_path)
    status = {r["run_id"]: r for r in store.runs()}
    bad, good = runs[0].run_id, runs[1].run_id
    assert status[bad]["status"] == "failed" and "no rate given" in status[bad]["error"]
    assert status[good]["status"] == "done"
    assert set(results_frame(store)["run_id"]) == {good}


def test_two_processes_running_overlapping_sweeps_into_one_store(tmp_path, data_root):
    raw = tiny_raw(data_root)
    raw["procedure"]["rounds"] = 2
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    root = tmp_path / "results"
    cmd = [sys.executable, "-m", "prunelab.cli", "run", str(spec_file), "--results", str(root), "--quiet"]
    procs = [subprocess.Popen(cmd + ["--set", f"sweep={{axes: {{seed: {seeds}}}}}"], env=child_env(data_root),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for seeds in ("[0, 1]", "[1, 2]")]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    store = Store(root)
    runs = store.runs()
    assert len(runs) == 3 and {r["status"] for r in runs} == {"done"}
    df = results_frame(store)
    assert len(df) == 3 * 5                                   # 3 runs x (dense + 2 rounds x 2 variants)
    assert not df.duplicated(["run_id", "variant", "round"]).any()
    assert sorted(df["seed"].unique()) == [0, 1, 2]
    shared = expand(raw, [("seed", 1)])[0].run_id
    # the run both processes asked for was computed once: the other waited for it or found it done
    computing = sum(o.count(f"run {shared} (tiny): computing") for o in outs)
    assert computing == 1, outs


def test_results_frame_extra_columns_hold_the_procedures_own_numbers(tmp_path):
    store = Store(tmp_path / "results")
    spec = {"model": {"name": "resnet18"}, "dataset": {"name": "cifar10"}, "procedure": {"kind": "stability"},
            "seed": 3}
    store.add_run("r1", "gst", "config=F2_RN_1", json.dumps(spec))
    store.put_rounds("r1", [{"variant": "F2_RN_1", "round": 0, "kept": 5, "total": 10, "remaining_pct": 50.0,
                             "test_acc": 0.4, "mean_stability": 97.5, "n_events": 6, "events": [{"epoch": 0}]}])
    store.finish("r1", "done")
    plain = results_frame(store)
    assert list(plain.columns) == RESULT_COLUMNS
    df = results_frame(store, extra=True)
    assert list(df.columns) == RESULT_COLUMNS + ["mean_stability", "n_events"]   # the list-valued 'events' stays out
    assert (df.loc[0, "mean_stability"], df.loc[0, "n_events"], df.loc[0, "seed"]) == (97.5, 6, 3)
