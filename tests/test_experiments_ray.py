"""The Ray executor on a local Ray instance: a sweep of Ray tasks writing into one store."""
import ray

from prunelab.experiments import RayExecutor, Store, expand, results_frame, run_experiment

from test_experiments_helpers import data_root, tiny_raw  # noqa: F401  (fixture)


def test_ray_sweep_writes_every_run_and_row_once(tmp_path, data_root):
    raw = tiny_raw(data_root)
    raw["procedure"]["rounds"] = 2
    raw["sweep"] = {"axes": {"seed": [0, 1, 2]}}
    runs = expand(raw)
    root = tmp_path / "results"
    # seed 0 is already in the store (computed here); the Ray tasks find it cached and compute the others
    local0 = run_experiment([runs[0]], root, progress=False, log=None)
    local1 = run_experiment([runs[1]], tmp_path / "local", progress=False, log=None)

    logs = []
    executor = RayExecutor(init_kwargs={"num_cpus": 2})
    df = run_experiment(runs, root, executor=executor, progress=False, log=logs.append)
    assert not ray.is_initialized()                 # the instance it started is stopped again
    assert any("cache hit" in m and runs[0].run_id in m for m in logs), logs
    assert sum("done in" in m for m in logs) == 2, logs

    store = Store(root)
    assert {r["run_id"]: r["status"] for r in store.runs()} == {r.run_id: "done" for r in runs}
    assert len(df) == 3 * 5 and not df.duplicated(["run_id", "variant", "round"]).any()
    assert df.equals(results_frame(store))
    # a Ray worker computes exactly what this process computes
    assert df[df.run_id == runs[0].run_id].reset_index(drop=True).equals(local0)
    assert df[df.run_id == runs[1].run_id].reset_index(drop=True).equals(local1)
