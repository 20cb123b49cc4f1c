"""DLT procedures: IMP with criteria and weight actions, criterion and learned supermasks, spec wiring."""
import pytest
import torch
from conftest import tiny_mlp

from prunelab.experiments.spec import ExperimentSpec
from prunelab.procedures import IMPConfig, run_imp, run_procedure
from prunelab.procedures.supermask import CriterionSupermaskConfig, LearnedSupermaskConfig
from prunelab.training import TrainConfig
import prunelab.procedures.supermask as sm_mod

CFG = TrainConfig(optimizer="adam", lr=1e-2, batch_size=60, epochs=1, eval_splits=("test",))
SCOPE = ["fc1.weight", "fc2.weight", "out.weight"]


@pytest.mark.parametrize("kept", ["signed_constant", "reshuffle"])
def test_imp_kept_action_starts_rounds_from_transformed_init(blobs, kept, monkeypatch):
    import prunelab.procedures.base as base_mod
    starts = []
    real = base_mod.train

    def spy(model, data, cfg, **kw):
        starts.append({n: p.detach().clone() for n, p in model.named_parameters()})
        return real(model, data, cfg, **kw)

    monkeypatch.setattr(base_mod, "train", spy)
    res = run_imp(tiny_mlp, blobs, CFG, IMPConfig(rounds=2, rate=0.5, scope=SCOPE, score="large_final",
                                                  kept_action=kept), seed=0)
    masks = res.masks()
    w0 = starts[0]["fc1.weight"]
    w1, m1 = starts[1]["fc1.weight"], masks[1]["fc1.weight"]
    assert torch.all(w1[~m1] == 0)
    if kept == "signed_constant":
        alpha = w0.std(unbiased=False)
        assert torch.allclose(w1[m1], alpha * torch.sign(w0[m1]))
    else:
        assert torch.equal(w1[m1].sort().values, w0[m1].sort().values)
    assert torch.equal(starts[1]["fc1.bias"], starts[0]["fc1.bias"])   # biases never touched


def test_imp_freeze_init_keeps_pruned_weights_at_init(blobs, monkeypatch):
    import prunelab.procedures.base as base_mod
    seen = []
    real = base_mod.train

    def spy(model, data, cfg, **kw):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        r = real(model, data, cfg, **kw)
        seen.append((before, {n: p.detach().clone() for n, p in model.named_parameters()}, kw.get("mask")))
        return r

    monkeypatch.setattr(base_mod, "train", spy)
    res = run_imp(tiny_mlp, blobs, CFG.model_copy(update={"weight_decay": 0.01}),
                  IMPConfig(rounds=1, rate=0.5, scope=SCOPE, pruned_action="freeze_init"), seed=0)
    init = seen[0][0]
    before, after, train_mask = seen[1]
    assert train_mask is None     # pruned weights are not zeroed but frozen
    m = res.masks()[1]["fc1.weight"]
    assert torch.equal(after["fc1.weight"][~m], init["fc1.weight"][~m])
    assert not torch.equal(after["fc1.weight"][m], init["fc1.weight"][m])


def test_imp_weight_actions_need_rewind_to_init():
    with pytest.raises(ValueError, match="rewind='init'"):
        IMPConfig(rounds=1, rewind="lr", kept_action="reinit")


def test_criterion_supermask_sweeps_powers(blobs):
    cfg = CriterionSupermaskConfig(score="large_final_same_sign", rate=0.5, powers=2, scope=SCOPE)
    res = run_procedure(tiny_mlp, blobs, CFG, cfg, seed=0)
    t = res.table()
    assert list(t["variant"]) == ["dense"] + ["supermask_init", "supermask_signed_constant"] * 3
    sup = t[t.variant == "supermask_init"]
    assert list(sup["round"]) == [0, 1, 2]
    assert list(sup["remaining_pct"].round(2)) == [100.0, 50.0, 25.0]
    single = run_procedure(tiny_mlp, blobs, CFG, CriterionSupermaskConfig(
        score="large_final_same_sign_single", scope=SCOPE, weights=("init",)), seed=0).table()
    assert len(single) == 2 and single["remaining_pct"].iloc[1] < 100


def test_learned_supermask_averages_the_stated_number_of_samples(blobs, monkeypatch):
    calls = []
    real = sm_mod.evaluate

    def spy(model, data, split, **kw):
        r = real(model, data, split, **kw)
        calls.append(r[f"{split}_acc"])
        return r

    monkeypatch.setattr(sm_mod, "evaluate", spy)
    model = tiny_mlp(0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    res = run_procedure(lambda s: model, blobs, CFG.model_copy(update={"optimizer": "sgd", "lr": 10.0}),
                                LearnedSupermaskConfig(eval_samples=7, scope=SCOPE), seed=0)
    row = res.rows[0].final
    assert len(calls) == 7 and row["test_acc_samples"] == calls
    assert row["test_acc"] == pytest.approx(sum(calls) / 7)
    assert len(set(calls)) > 1            # every evaluation samples new masks
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])   # weights never updated


def test_specs_accept_the_new_kinds():
    base = {"name": "x", "model": {"name": "lenet300_100"}, "dataset": {"name": "mnist1d"},
            "train": {"optimizer": "sgd", "lr": 100.0, "batch_size": 250, "epochs": 1}}
    s = ExperimentSpec(**base, procedure={"kind": "supermask", "dynamic_rescale": True})
    assert s.procedure.kind == "supermask" and s.trainings() == 1
    s = ExperimentSpec(**base, procedure={"kind": "criterion_supermask", "powers": 3})
    assert s.procedure.powers == 3
    s = ExperimentSpec(**base, procedure={"kind": "imp", "rounds": 2, "score": "movement",
                                          "kept_action": "signed_reinit", "pruned_action": "freeze_init_zero_all"})
    assert s.procedure.pruned_action == "freeze_init_zero_all"
    with pytest.raises(ValueError):
        ExperimentSpec(**base, procedure={"kind": "imp", "kept_action": "shuffle"})


from test_experiments_helpers import data_root, tiny_raw  # noqa: E402,F401  (fixture)


@pytest.mark.parametrize("procedure", [
    {"kind": "supermask", "eval_samples": 3},
    {"kind": "criterion_supermask", "powers": 2, "rate": 0.5},
    {"kind": "imp", "rounds": 1, "rate": 0.5, "score": "magnitude_increase", "kept_action": "signed_reinit",
     "pruned_action": "freeze_init_zero_mask"},
])
def test_runner_dispatches_the_new_procedures(tmp_path, data_root, procedure):
    from prunelab.experiments import expand, run_experiment
    raw = tiny_raw(data_root, procedure=procedure)
    raw["train"] = dict(raw["train"], epochs=1)
    df = run_experiment(expand(raw), tmp_path / "store", progress=False, log=None)
    assert len(df) and df["test_acc"].notna().all()
    again = run_experiment(expand(raw), tmp_path / "store", progress=False, log=None)
    assert again.equals(df)   # second run is a cache hit


def test_learned_supermask_sign_randomized_evaluation(blobs):
    cfg = CFG.model_copy(update={"optimizer": "sgd", "lr": 10.0})
    plain = run_procedure(tiny_mlp, blobs, cfg, LearnedSupermaskConfig(scope=SCOPE), seed=0)
    flipped = run_procedure(tiny_mlp, blobs, cfg, LearnedSupermaskConfig(scope=SCOPE, sign_randomize=True), seed=0)
    row, base = flipped.rows[0], plain.rows[0]
    extra = row.row()
    assert len(extra["sign_randomized_test_acc_samples"]) == 10
    assert extra["sign_randomized_test_acc"] == pytest.approx(sum(extra["sign_randomized_test_acc_samples"]) / 10)
    assert "sign_randomized_test_loss" in extra
    # the usual evaluation, the mask and the stored (unflipped) weights are as without the option
    assert row.final == base.final and row.mask == base.mask
    for k, v in plain.states["final"].items():
        assert torch.equal(flipped.states["final"][k], v), k
    assert extra["sign_randomized_test_acc"] != base.final["test_acc"]
