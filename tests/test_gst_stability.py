"""GST pruning during training (spec §2.2, §2.3, §2.5; checks #10 and #11 of §7)."""
import math

import pytest
import torch

from gst_helpers import gst_case, tiny_convnet, tiny_images
from prunelab.errors import ConfigError
from prunelab.experiments.spec import ExperimentSpec
from prunelab.models import build_model
from prunelab.primitives import Mask
from prunelab.primitives.filters import filter_mask
from prunelab.primitives.noise import NoiseInjector
from prunelab.primitives.schedules import filter_schedule
from prunelab.primitives.selection import select_filters
from prunelab.procedures import run_procedure
from prunelab.analysis import instability, stability, summarize_run
from prunelab.procedures.stability import NoiseSpec, StabilityConfig
from prunelab.training import TrainConfig


def test_instability_formula_known_pair():  # §7 row 10
    assert instability(85.0, 80.0) == pytest.approx(5.0 / 85.0)
    assert round(instability(85.0, 80.0), 4) == 0.0588
    assert round(stability(85.0, 80.0), 2) == 94.12
    assert stability(0.5, 0.55) == pytest.approx(110.0)  # accuracy may rise after pruning
    with pytest.raises(ConfigError, match="acc_pre"):
        instability(0.0, 0.1)


def test_filter_schedule_row_11():  # §7 row 11
    sched = filter_schedule(512, 0.9, 6, 275, 40)
    assert [e for e, _ in sched] == [6, 46, 86, 126, 166, 206, 246]
    assert [k for _, k in sched] == [447, 381, 315, 250, 184, 118, 52]
    # a fraction whose float product lands just above an integer still gives the intended count
    assert filter_schedule(10, 0.3, 0, 0, 1) == [(0, 7)]


def test_vgg11_preset_plan_matches_schedule():
    vgg = build_model("vgg11_bn", num_classes=10, input_shape=(3, 32, 32), seed=0)
    plan = gst_case("stability/f2_vgg11_cifar10", "F2_VGG_4").layer_plan(vgg)
    conv8 = [(e, c["features.25.weight"]) for e, c in plan.items() if "features.25.weight" in c]
    assert conv8 == list(zip([6, 46, 86, 126, 166, 206, 246], [447, 381, 315, 250, 184, 118, 52]))
    conv5 = [c["features.15.weight"] for c in plan.values() if "features.15.weight" in c]
    assert conv5[-1] == math.ceil(0.7 * 512)
    assert gst_case("stability/f2_vgg11_cifar10", "F2_VGG_1").retrain_period == 4
    assert gst_case("stability/f3_vgg11_rates", "F3_R_60").target == "random"
    scaled = gst_case("stability/f2_vgg11_cifar10", "F2_VGG_2", schedule_scale=0.05).layer_plan(vgg)
    assert max(scaled) == 14 and all(e >= 0 for e in scaled)


def test_unknown_score_name_allowed_values():
    with pytest.raises(ValueError, match="ebn"):
        StabilityConfig(score="nope")


def test_select_filters_targets_and_index_ties():
    shapes = {"c.weight": (4, 2, 3, 3)}
    mask = Mask({"c.weight": torch.ones(4, 1, 1, 1, dtype=torch.bool)}, shapes)
    scores = {"c.weight": torch.tensor([3.0, 1.0, 1.0, 2.0]).view(4, 1, 1, 1)}
    small = select_filters(scores, mask, {"c.weight": 3}, "small")["c.weight"].flatten().tolist()
    assert small == [True, False, True, True]          # tie 1.0/1.0: the lower index goes first
    large = select_filters(scores, mask, {"c.weight": 2}, "large")["c.weight"].flatten().tolist()
    assert large == [False, True, True, False]
    flat = {"c.weight": torch.ones(4, 1, 1, 1)}
    assert select_filters(flat, mask, {"c.weight": 2}, "small")["c.weight"].flatten().tolist() == \
        [False, False, True, True]
    g = torch.Generator().manual_seed(0)
    already = Mask({"c.weight": torch.tensor([True, False, True, True]).view(4, 1, 1, 1)}, shapes)
    rnd = select_filters(scores, already, {"c.weight": 1}, "random", generator=g)["c.weight"].flatten()
    assert int(rnd.sum()) == 1 and not bool(rnd[1])   # never revives a pruned filter


def test_summarize_run_from_history():
    history = [{"iteration": 10, "epoch": 1.0, "test_acc": 0.50, "train_running_acc": 0.4},
               {"iteration": 20, "epoch": 2.0, "test_acc": 0.40, "train_running_acc": 0.6},
               {"iteration": 30, "epoch": 3.0, "test_acc": 0.70, "train_running_acc": 0.9},
               {"iteration": 40, "epoch": 4.0, "test_acc": 0.65, "train_running_acc": 0.95}]
    events = [{"iteration": 10, "acc_pre": 0.55}, {"iteration": 20, "acc_pre": 0.50}]
    out = summarize_run(history, events)
    assert out["mean_stability"] == pytest.approx((stability(0.55, 0.50) + stability(0.50, 0.40)) / 2)
    assert out["best_test_acc"] == 0.70 and out["gen_gap"] == pytest.approx(0.2)
    assert summarize_run(history, [])["mean_stability"] == 100.0


def _cfg(**kw):
    return TrainConfig(optimizer="adam", lr=3e-3, batch_size=32, epochs=kw.pop("epochs", 4),
                       eval_splits=("test",), **kw)


def test_run_prunes_on_schedule_and_silences_channels():
    data = tiny_images()
    cfg = StabilityConfig(layers={"conv2": {"fraction": 0.5, "start": 0, "end": 2},
                                  "conv3": {"fraction": 0.75, "start": 1, "end": 2}},
                          retrain_period=1, target="small", score="l2")
    res = run_procedure(tiny_convnet, data, _cfg(), cfg, seed=0, keep_history=True)
    r = res.rows[0]
    # the trained model's pruned channels: filter, BN γ and β all exactly zero
    conv, bn = res.model.features[8], res.model.features[9]
    dead_conv3 = int(((conv.weight.flatten(1).abs().sum(1) == 0) & (bn.weight == 0) & (bn.bias == 0)).sum())
    ev = r.extra["events"]
    assert [e["epoch"] for e in ev] == [0, 1, 2]
    assert [e["kept"] for e in ev] == [{"features.4.weight": 14}, {"features.4.weight": 11,
                                       "features.8.weight": 10}, {"features.4.weight": 8, "features.8.weight": 4}]
    hist = {h["iteration"]: h["test_acc"] for h in r.history}
    for e in ev:
        assert e["acc_post"] == hist[e["iteration"]]
        assert e["stability"] == pytest.approx(stability(e["acc_pre"], e["acc_post"]))
    assert r.extra["mean_stability"] == pytest.approx(sum(e["stability"] for e in ev) / 3)
    assert r.extra["best_test_acc"] == max(h["test_acc"] for h in r.history if h["iteration"] >= ev[-1]["iteration"])
    assert r.mask["features.4.weight"].sum() == 8 and r.mask["features.8.weight"].sum() == 4
    assert r.variant == "prune_S" and "gen_gap" in r.extra
    assert dead_conv3 == 12


def test_scratch_run_prunes_before_training():
    data = tiny_images()
    cfg = StabilityConfig(layers={"conv3": {"fraction": 0.5, "start": 1, "end": 2}}, scratch=True)
    r = run_procedure(tiny_convnet, data, _cfg(epochs=2), cfg, seed=0).rows[0]
    assert r.extra["mean_stability"] == 100.0 and r.extra["events"] == []
    assert r.extra["scratch_kept"] == {"features.8.weight": 8} and r.variant == "scratch"


def test_schedule_past_training_is_rejected():
    cfg = StabilityConfig(layers={"conv3": {"fraction": 0.5, "start": 1, "end": 9}}, retrain_period=4)
    with pytest.raises(ConfigError, match="past the last epoch"):
        run_procedure(tiny_convnet, tiny_images(), _cfg(epochs=3), cfg)


def _targets(model, idx):
    fm = filter_mask(model, ["conv2"])
    cur = fm["features.4.weight"].clone()
    cur[idx] = False
    new = Mask({"features.4.weight": cur}, fm.shapes)
    return fm - new, new


def test_zeroing_noise_lasts_n_plus_one_passes_then_reenters():
    model = tiny_convnet(0)
    removed, current = _targets(model, [1, 3])
    inj = NoiseInjector(model, NoiseSpec(kind="zeroing", passes=1))
    inj.target(removed, current)
    w = model.features[4].weight
    x = torch.randn(2, 3, 16, 16)
    for _ in range(2):
        with torch.no_grad():
            w.add_(1.0)  # stands in for an optimizer step between passes
        model(x)
        assert torch.equal(w[[1, 3]], torch.zeros_like(w[[1, 3]]))
    with torch.no_grad():
        w.add_(1.0)
    model(x)  # the window is over: the filters train again from (near) zero
    assert torch.equal(w[[1, 3]], torch.ones_like(w[[1, 3]]))
    inj.remove()


def test_gaussian_noise_is_a_random_walk_with_sigma_of_first_untargeted_filter():
    model = tiny_convnet(0)
    removed, current = _targets(model, [0, 2])
    inj = NoiseInjector(model, NoiseSpec(kind="gaussian", passes=1), seed=3)
    w = model.features[4].weight
    before = w.detach().clone()
    sigma = float(before[1].std())  # filter 0 is targeted: the first untargeted one is 1
    inj.target(removed, current)
    x = torch.randn(2, 3, 16, 16)
    steps = []
    for _ in range(3):
        prev = w.detach().clone()
        model(x)
        steps.append(w.detach() - prev)
    assert torch.equal(w[[1, 3]], before[[1, 3]])
    assert steps[0][[0, 2]].abs().sum() > 0 and steps[1][[0, 2]].abs().sum() > 0
    assert torch.equal(steps[2], torch.zeros_like(steps[2]))  # N + 1 = 2 passes only
    assert float(steps[0][[0, 2]].std()) == pytest.approx(sigma, rel=0.35)
    inj.remove()


def test_cumulative_zeroing_restores_exact_saved_values():
    model = tiny_convnet(0)
    conv, bn = model.features[4], model.features[5]
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
    removed, current = _targets(model, [2, 5])
    saved = {k: v.detach()[[2, 5]].clone() for k, v in
             {"w": conv.weight, "b": conv.bias, "g": bn.weight, "be": bn.bias, "rm": bn.running_mean,
              "rv": bn.running_var}.items()}
    inj = NoiseInjector(model, NoiseSpec(kind="cumulative_restore", passes=2))
    inj.target(removed, current)
    model.train()
    x = torch.randn(4, 3, 16, 16)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(2):
        model(x).logsumexp(1).mean().backward()
        assert torch.equal(conv.weight[[2, 5]], torch.zeros_like(saved["w"]))
        assert torch.equal(bn.weight[[2, 5]], torch.zeros(2)) and torch.equal(bn.bias[[2, 5]], torch.zeros(2))
        opt.step()
        opt.zero_grad()
    assert not torch.equal(bn.running_mean[[2, 5]], saved["rm"])  # the window changed the statistics
    model(x)  # first pass after the window: restored before it runs
    for key, t in {"w": conv.weight, "b": conv.bias, "g": bn.weight, "be": bn.bias}.items():
        assert torch.equal(t.detach()[[2, 5]], saved[key]), key
    inj.remove()
    inj2 = NoiseInjector(model, NoiseSpec(kind="cumulative_restore", passes=1))
    with torch.no_grad():
        bn.running_mean.normal_()
    rm = bn.running_mean[[2, 5]].clone()
    rv = bn.running_var[[2, 5]].clone()
    inj2.target(removed, current)
    model.train()
    model(x)   # zeroed pass: BN statistics of the channels move
    model.eval()
    model(x)   # restored (eval pass does not update statistics)
    assert torch.equal(bn.running_mean[[2, 5]], rm) and torch.equal(bn.running_var[[2, 5]], rv)
    inj2.remove()


@pytest.mark.parametrize("kind", ["zeroing", "gaussian", "cumulative_restore"])
def test_noise_runs_end_to_end_without_removing(kind):
    cfg = StabilityConfig(layers={"conv3": {"fraction": 0.5, "start": 0, "end": 1}}, retrain_period=1,
                          noise={"kind": kind, "passes": 2})
    r = run_procedure(tiny_convnet, tiny_images(), _cfg(epochs=3), cfg, seed=1).rows[0]
    assert r.extra["n_events"] == 2 and r.variant == f"{kind}2_prune_L"
    assert 0 < r.extra["mean_stability"] <= 200


def test_spec_kind_stability_runs():
    spec = ExperimentSpec.model_validate({
        "name": "gst", "model": {"name": "vgg11_bn", "options": {"width": 0.125}},
        "dataset": {"name": "cifar10"}, "train": {"optimizer": "adam", "lr": 1e-3, "epochs": 325},
        "procedure": {**gst_case("stability/f2_vgg11_cifar10", "F2_VGG_1").model_dump()}})
    assert spec.procedure.retrain_period == 4 and spec.procedure.target == "small"
    small = ExperimentSpec.model_validate({**spec.to_dict(), "procedure": {
        **spec.procedure.model_dump(), "layers": {"conv3": {"fraction": 0.5, "start": 0, "end": 1}}}})
    assert small.run_id() != spec.run_id()
    r = run_procedure(tiny_convnet, tiny_images(), _cfg(epochs=2), small.procedure, seed=0).rows[0]
    assert r.variant == "F2_VGG_1" and [e["epoch"] for e in r.extra["events"]] == [0]
    assert r.mask["features.8.weight"].sum() == 8


def test_fraction_scale_shrinks_every_final_fraction():
    vgg = build_model("vgg11_bn", num_classes=10, input_shape=(3, 32, 32), seed=0)
    half = gst_case("stability/f2_vgg11_cifar10", "F2_VGG_4", fraction_scale=0.5)
    # conv8 (512 filters): 0.9 * 0.5 = 0.45 removed -> ceil(0.55 * 512) = 282 kept; conv5: ceil(0.85 * 512) = 436
    assert half.final_counts(vgg) == {**{n: 436 for n in ("features.15.weight", "features.18.weight",
                                                          "features.22.weight")}, "features.25.weight": 282}
    plan = half.layer_plan(vgg)
    assert plan[max(plan)]["features.25.weight"] == 282
    assert gst_case("stability/f2_vgg11_cifar10", "F2_VGG_0", fraction_scale=0.5).layer_plan(vgg) == {}
    with pytest.raises(ValueError, match="fraction_scale=1.2 makes the pruned fraction"):
        gst_case("stability/f2_vgg11_cifar10", "F2_VGG_4", fraction_scale=1.2)   # conv8: 0.9 * 1.2 >= 1


def test_unpruned_config_reports_a_dense_row():
    # GST's no-pruning rows (F2_VGG_0, F2_RN_0) have an empty mask; their row is 100 % remaining, not an error
    spec = ExperimentSpec.model_validate({
        "name": "gst", "model": {"name": "vgg11_bn", "options": {"width": 0.125}},
        "dataset": {"name": "cifar10"}, "train": {"optimizer": "adam", "lr": 1e-3, "epochs": 2},
        "procedure": {"kind": "stability", "config": "F2_VGG_0"}})
    r = run_procedure(tiny_convnet, tiny_images(), _cfg(epochs=2), spec.procedure, seed=0).rows[0]
    row = r.row()
    assert (row["kept"], row["total"], row["remaining_pct"]) == (0, 0, 100.0)
    assert r.extra["events"] == []


def test_every_gst_recipe_case_is_a_named_valid_config():
    from prunelab.experiments import list_recipes, load_plan
    names = set()
    for recipe, path, _ in list_recipes():
        if recipe.startswith("stability/"):
            for run in load_plan(path):
                assert run.spec.procedure.config, f"{recipe}: every GST case names its row of spec §2.4"
                names.add(run.spec.procedure.config)
    assert {"F2_VGG_5", "F3_L_300", "F4_1", "F5_6", "FD2_3", "FB2_VGG_3", "TC1_3", "FC3_1", "TF1_3"} <= names


def test_tf1_preset_events_at_2500_and_3250():
    """TF1 (ResNet-18 / CIFAR-100): the last conv (512 filters) loses 70 % in two events, 2500 and 3250."""
    cfg = gst_case("stability/tf1_resnet18_cifar100", "TF1_1")
    assert cfg.target == "large" and cfg.score == "l1" and not cfg.scratch
    (name, layer), = cfg.layers.items()
    assert name == "layer4.1.conv2"
    sched = filter_schedule(512, layer.fraction, layer.start, layer.end, cfg.retrain_period)
    assert sched == [(2500, 333), (3250, 154)]          # ceil(0.3*512)=154; halfway ceil(154+358/2)=333
    assert gst_case("stability/tf1_resnet18_cifar100", "TF1_3").scratch
    assert gst_case("stability/tf1_resnet18_cifar100", "TF1_0").layers == {}


def test_cumulative_restore_resaves_every_targeted_filter_at_each_event():
    # GST (models.py `_noisy_conv_forward`): on the first pass after each event it saves w, BN γ, β, running
    # mean/var of *all* filters targeted so far (~mask), so a filter targeted at an earlier event comes back
    # with its values at the latest event (after it re-entered and trained), not those of its first event
    model = tiny_convnet(0)
    conv, bn = model.features[4], model.features[5]
    tensors = {"w": conv.weight, "g": bn.weight, "be": bn.bias, "rm": bn.running_mean, "rv": bn.running_var}

    def put(idx, value):
        with torch.no_grad():
            for k, t in tensors.items():
                t[idx] = value + (0.5 if k == "rv" else 0.0)   # keep the variance positive

    def check(idx, value):
        for k, t in tensors.items():
            want = torch.full_like(t.detach()[idx], value + (0.5 if k == "rv" else 0.0))
            assert torch.equal(t.detach()[idx], want), k

    put(2, 1.0)
    put(5, 4.0)
    inj = NoiseInjector(model, NoiseSpec(kind="cumulative_restore", passes=1))
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    removed, current = _targets(model, [2])        # event 1: filter 2
    inj.target(removed, current)
    model(x)                                       # zeroed
    assert torch.equal(conv.weight[2], torch.zeros_like(conv.weight[2]))
    model(x)                                       # restored: the values at event 1
    check(2, 1.0)
    put(2, 2.0)                                    # filter 2 re-entered and trained: new values
    prev = current
    _, current = _targets(model, [2, 5])           # event 2: filter 5 newly, filter 2 targeted before
    newly = prev - current
    assert newly["features.4.weight"].reshape(-1).nonzero().flatten().tolist() == [5]
    inj.target(newly, current)
    model(x)                                       # both zeroed (cumulative)
    assert torch.equal(conv.weight[2], torch.zeros_like(conv.weight[2]))
    assert torch.equal(bn.weight[[2, 5]], torch.zeros(2)) and torch.equal(bn.bias[[2, 5]], torch.zeros(2))
    model(x)                                       # restored
    check(2, 2.0)                                  # the latest saved values, not event 1's 1.0
    check(5, 4.0)
    inj.remove()
