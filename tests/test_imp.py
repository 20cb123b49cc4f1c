import json
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from prunelab import IMPConfig, Mask, TrainConfig, run_imp, run_oneshot
from prunelab.primitives import prune_count
from prunelab.training import Checkpoints

from conftest import tiny_mlp

CFG = TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, epochs=3)


def test_imp_bookkeeping_and_rewind_to_init(blobs):
    imp = IMPConfig(rounds=3, rate={"fc": 0.5, "output": 0.2}, controls=("reinit", "random_mask"))
    res = run_imp(tiny_mlp, blobs, CFG, imp, seed=0)
    tickets = [r for r in res.rows if r.variant == "ticket"]
    assert [r.round for r in tickets] == [0, 1, 2, 3]
    # per-layer counts follow the rates exactly: fc1 12*32=384, fc2 32*32=1024, out 32*3=96
    counts = {"fc1.weight": 384, "fc2.weight": 1024, "out.weight": 96}
    for t in tickets[1:]:
        for n, rate in (("fc1.weight", .5), ("fc2.weight", .5), ("out.weight", .2)):
            counts[n] -= prune_count(counts[n], rate)
        assert {n: t.mask.kept(n) for n in counts} == counts
    # masks are nested: a pruned weight stays pruned
    for a, b in zip(tickets[1:], tickets[2:]):
        assert (b.mask - a.mask).kept() == 0
    # controls: same per-layer counts, trained, and present in the table
    for variant in ("reinit", "random_mask"):
        ctrl = [r for r in res.rows if r.variant == variant]
        assert [r.round for r in ctrl] == [1, 2, 3]
        for c, t in zip(ctrl, tickets[1:]):
            assert c.mask.layer_counts() == t.mask.layer_counts()
    rm = [r for r in res.rows if r.variant == "random_mask"][-1]
    assert rm.mask.overlap(tickets[-1].mask) < 0.9
    df = res.table()
    assert set(df.variant) == {"ticket", "reinit", "random_mask"}
    assert {"remaining_pct", "test_acc", "early_stop_iteration", "early_stop_test_acc"} <= set(df.columns)
    assert df[df.variant == "ticket"].remaining_pct.iloc[0] == 100.0


def test_survivors_start_from_initial_values(blobs, monkeypatch):
    """Rewinding to init: at the start of round 1 the kept weights equal θ0 and pruned ones are 0."""
    import prunelab.procedures.base as base_mod
    starts = []
    real_train = base_mod.train

    def spy(model, data, cfg, **kw):
        starts.append(({k: v.clone() for k, v in model.state_dict().items()}, kw.get("mask"),
                       kw.get("start_iteration", 0)))
        return real_train(model, data, cfg, **kw)

    monkeypatch.setattr(base_mod, "train", spy)
    run_imp(tiny_mlp, blobs, CFG, IMPConfig(rounds=1, rate=0.5), seed=0)
    theta0 = tiny_mlp(0).state_dict()
    state1, mask1, _ = starts[1]
    for n in mask1:
        kept = mask1.expanded(n)
        assert torch.equal(state1[n][kept], theta0[n][kept])
    assert torch.equal(state1["fc1.bias"], theta0["fc1.bias"])  # unpruned biases rewind too


def test_rewind_iteration_and_lr_rewinding(blobs, monkeypatch):
    import prunelab.procedures.base as base_mod
    starts = []
    real_train = base_mod.train

    def spy(model, data, cfg, **kw):
        starts.append(({k: v.clone() for k, v in model.state_dict().items()}, kw))
        return real_train(model, data, cfg, **kw)

    monkeypatch.setattr(base_mod, "train", spy)
    res = run_imp(tiny_mlp, blobs, CFG, IMPConfig(rounds=1, rate=0.5, rewind="iteration", rewind_iteration=5))
    assert starts[1][1]["start_iteration"] == 5
    from prunelab import train
    theta5 = real_train(tiny_mlp(0), blobs, CFG, seed=0, checkpoint_at=(5,)).checkpoints[5]
    mask1 = starts[1][1]["mask"]
    for n in mask1:
        kept = mask1.expanded(n)
        assert torch.equal(starts[1][0][n][kept], theta5[n][kept])
    assert len(res.rows) == 2
    starts.clear()
    run_imp(tiny_mlp, blobs, CFG, IMPConfig(rounds=1, rate=0.5, rewind="lr"))
    # LR rewinding keeps the trained values of the survivors and replays the schedule from 0
    assert starts[1][1].get("start_iteration", 0) == 0
    state_after_dense = starts[1][0]
    assert not torch.equal(state_after_dense["fc1.weight"], tiny_mlp(0).state_dict()["fc1.weight"])


def test_oneshot_reaches_target_sparsity(blobs):
    ft = TrainConfig(optimizer="adam", lr=1e-3, batch_size=32, epochs=1)
    res = run_oneshot(tiny_mlp, blobs, CFG, 0.8, rewind="finetune", finetune=ft, allocation="global")
    last = res.rows[-1]
    assert last.kept == last.total - round(0.8 * last.total)
    assert last.final["test_acc"] > 0.5


def test_imp_config_errors():
    with pytest.raises(ValueError, match="1.5"):
        IMPConfig(sparsity=1.5)
    with pytest.raises(ValueError, match="rewind_iteration"):
        IMPConfig(rewind="init", rewind_iteration=10)
    with pytest.raises(ValueError, match="controls"):
        IMPConfig(controls=("shuffle",))


class Crash(Exception):
    pass


def test_resume_after_crash_gives_identical_results(blobs, tmp_path):
    imp = IMPConfig(rounds=3, rate=0.4, controls=("random_mask",))
    clean = run_imp(tiny_mlp, blobs, CFG, imp, seed=4)

    def crash_in_round_2(r):
        if r.round == 2 and r.variant == "random_mask":
            raise Crash

    with pytest.raises(Crash):
        run_imp(tiny_mlp, blobs, CFG, imp, seed=4, checkpoints=tmp_path, on_row=crash_in_round_2)
    ck = Checkpoints(tmp_path)
    resumed = run_imp(tiny_mlp, blobs, CFG, imp, seed=4, checkpoints=ck)
    # trainings 0-4 (dense; ticket and control of rounds 1 and 2) came from disk, 5-6 were computed
    assert [(s, kind) for s, kind, _ in ck.resumed] == [(i, "final") for i in range(5)]
    assert resumed.table().equals(clean.table())
    for a, b in zip(resumed.rows, clean.rows):
        assert a.mask == b.mask


def _crash_at_step(n: int, run) -> None:
    """Call ``run`` and make it raise Crash at its n-th optimizer step (a crash mid-training)."""
    steps = []

    def crash(opt, args, kwargs):
        steps.append(1)
        if len(steps) == n:
            raise Crash

    handle = register_optimizer_step_post_hook(crash)
    try:
        with pytest.raises(Crash):
            run()
    finally:
        handle.remove()


def test_crash_mid_training_resumes_from_the_partial_checkpoint(blobs, tmp_path):
    imp = IMPConfig(rounds=2, rate=0.4, controls=("reinit",))
    clean = run_imp(tiny_mlp, blobs, CFG, imp, seed=5)
    _crash_at_step(29, lambda: run_imp(tiny_mlp, blobs, CFG, imp, seed=5,   # 24 steps per training:
                                       checkpoints=Checkpoints(tmp_path, every_iterations=3)))  # round 1, step 5
    ck = Checkpoints(tmp_path, every_iterations=3)
    resumed = run_imp(tiny_mlp, blobs, CFG, imp, seed=5, checkpoints=ck)
    assert ck.resumed == [(0, "final", 24), (1, "partial", 3)]
    assert resumed.table().equals(clean.table())
    assert [r.mask for r in resumed.rows] == [r.mask for r in clean.rows]


def test_damaged_checkpoint_is_recomputed_never_used(blobs, tmp_path):
    imp = IMPConfig(rounds=2, rate=0.4)
    clean = run_imp(tiny_mlp, blobs, CFG, imp, seed=1, checkpoints=tmp_path)
    final = json.loads((tmp_path / "stage_0001" / "final.json").read_text())
    tensors = tmp_path / "stage_0001" / final["tensors"]
    tensors.write_bytes(tensors.read_bytes()[:-10])  # truncated: fails its sha256, training 1 is redone
    ck = Checkpoints(tmp_path)
    again = run_imp(tiny_mlp, blobs, CFG, imp, seed=1, checkpoints=ck)
    assert [s for s, _, _ in ck.resumed] == [0, 2]
    assert again.table().equals(clean.table())
    assert not list(tmp_path.rglob("partial*"))   # a finished training keeps only its final record


# score_at="early_stop" (Zhou et al.'s --final_weights_ind) -------------------------------------------------
ES_CFG = TrainConfig(optimizer="adam", lr=0.1, batch_size=32, epochs=4, eval_every=2, eval_splits=("val", "test"))


def test_score_at_early_stop_scores_the_min_val_loss_weights(blobs):
    from prunelab.pruning import prune
    from prunelab.seeding import derive_seed
    from prunelab.training import snapshot, train

    imp = IMPConfig(rounds=1, rate=0.5, score="magnitude_increase", score_at="early_stop")
    res = run_imp(tiny_mlp, blobs, ES_CFG, imp, seed=3)
    dense = res.rows[0]
    es_it = dense.early_stop["iteration"]
    assert 0 < es_it < dense.final["iteration"]      # the setting is one where early stopping matters

    # independently: replay the dense training (a pure function of init, mask, cfg and seed) up to es_it
    model = tiny_mlp(3)
    init = snapshot(model)
    ones = Mask.ones(model)
    replay = train(model, blobs, ES_CFG, mask=ones, seed=3, checkpoint_at=[es_it])
    assert replay.early_stop("val")["iteration"] == es_it
    final_mask = prune(model, mask=ones, rate=0.5, score="magnitude_increase", apply=False, init_state=init,
                       allocation="layerwise", seed=derive_seed(3, "prune", 1))
    from prunelab.training import restore
    restore(model, replay.checkpoints[es_it])
    by_hand = prune(model, mask=ones, rate=0.5, score="magnitude_increase", apply=False, init_state=init,
                    allocation="layerwise", seed=derive_seed(3, "prune", 1))
    assert res.masks()[1] == by_hand
    assert by_hand != final_mask                     # ... and it is not the final weights' mask
    # the default still scores the final weights, and the dense training is untouched by the callback
    plain = run_imp(tiny_mlp, blobs, ES_CFG, IMPConfig(rounds=1, rate=0.5, score="magnitude_increase"), seed=3)
    assert plain.masks()[1] == final_mask
    assert plain.rows[0].final == dense.final


def test_score_at_early_stop_needs_a_val_split(blobs):
    from prunelab.errors import ConfigError
    imp = IMPConfig(rounds=1, rate=0.5, score_at="early_stop")
    with pytest.raises(ConfigError, match=r"score_at='early_stop'.*eval_splits is \('test',\)"):
        run_imp(tiny_mlp, blobs, ES_CFG.model_copy(update={"eval_splits": ("test",)}), imp, seed=0)
    with pytest.raises(ValueError, match="score_at"):
        IMPConfig(score_at="best")


def test_score_at_early_stop_snapshot_survives_resume(blobs, tmp_path):
    imp = IMPConfig(rounds=2, rate=0.4, score_at="early_stop")
    clean = run_imp(tiny_mlp, blobs, ES_CFG, imp, seed=5)
    _crash_at_step(39, lambda: run_imp(tiny_mlp, blobs, ES_CFG, imp, seed=5,   # 32 steps per training:
                                       checkpoints=Checkpoints(tmp_path, every_iterations=3)))  # round 1, step 7
    ck = Checkpoints(tmp_path, every_iterations=3)
    resumed = run_imp(tiny_mlp, blobs, ES_CFG, imp, seed=5, checkpoints=ck)
    assert [(s, kind) for s, kind, _ in ck.resumed] == [(0, "final"), (1, "partial")]
    assert resumed.table().equals(clean.table())
    assert [r.mask for r in resumed.rows] == [r.mask for r in clean.rows]
