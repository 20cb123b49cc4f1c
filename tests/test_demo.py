"""The demo runs through the results store: same numbers as calling IMP directly, cached on a rerun."""
import pandas as pd
import pytest

from prunelab.data import load_dataset
from prunelab.demo import demo_spec, run_demo
from prunelab.experiments import Store, load_plan
from prunelab.models import build_model
from prunelab.procedures import run_procedure


def test_demo_rows_equal_a_direct_imp_run_and_a_rerun_is_cached(tmp_path):
    kw = dict(seeds=(0,), rounds=1, epochs=0.3)
    df = run_demo(tmp_path, progress=False, **kw)
    spec = load_plan(demo_spec(**kw))[0].spec
    data = load_dataset("mnist1d", None, val_size=500, val_seed=0)
    direct = run_procedure(lambda s: build_model("lenet300_100", num_classes=data.num_classes,
                                                 input_shape=data.input_shape, seed=s),
                           data, spec.train, spec.procedure, seed=0).table()
    got = df.set_index(["variant", "round"])["test_acc"].sort_index()
    want = direct.set_index(["variant", "round"])["test_acc"].sort_index()
    assert got.to_dict() == pytest.approx(want.to_dict(), abs=0)
    assert len(got) == 4   # dense round 0 + ticket, reinit, random mask at round 1
    ended = [r["ended"] for r in Store(tmp_path / "store").runs()]
    again = run_demo(tmp_path, progress=False, **kw)   # answered from the store: nothing retrained
    assert [r["ended"] for r in Store(tmp_path / "store").runs()] == ended
    pd.testing.assert_frame_equal(again, df)
    assert (tmp_path / "rounds.csv").is_file() and (tmp_path / "index.html").is_file()
