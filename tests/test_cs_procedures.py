"""CS ticket search and its baselines on tiny models: rewinding, s0 ordering, GMP schedule, L0, slimming, DSD."""
import pytest
import torch
from torch import nn

from conftest import tiny_mlp
from prunelab.data import Dataset, Split
from prunelab.experiments.plan import load_plan
from prunelab.experiments.recipes import list_recipes
from prunelab.primitives.soft_mask import ContinuousSparsificationMask
from prunelab.procedures import ContinuousConfig, DSDConfig, GMPConfig, L0Config, SlimmingConfig, run_procedure
from prunelab.procedures.continuous import FollowSchedule, TemperatureSchedule, mask_optimizer
from prunelab.primitives.schedules import cubic_sparsity, gmp_steps
from prunelab.procedures.gradual import GradualPruner
from prunelab.procedures.slimming import slim, slimming_pairs
from prunelab.seeding import derive_seed
from prunelab.training import TrainConfig, snapshot, train

CFG = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=40, epochs=3, eval_splits=("val", "test"))


class BNMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 16)
        self.bn = nn.BatchNorm1d(16)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        return self.out(torch.relu(self.bn(self.fc1(x))))


def bn_mlp(seed):
    torch.manual_seed(seed)
    return BNMLP()


def test_ticket_is_rewound_to_the_epoch_k_checkpoint_bit_for_bit(blobs):
    cfg = ContinuousConfig(s0=0.0, penalty=1e-3, beta_final=50.0, rounds=2, rewind_epoch=1, reset="code")
    res = run_procedure(bn_mlp, blobs, CFG, cfg, seed=3)
    # independent reference: round 0 again, with train()'s own checkpoint at the start of epoch 1
    model = bn_mlp(3)
    cs = ContinuousSparsificationMask(model, None, s0=0.0)
    opt = mask_optimizer(CFG, cs.score_parameters())
    per_epoch = CFG.iterations_per_epoch(len(blobs.train))
    ref = train(cs, blobs, CFG, seed=derive_seed(3, "cs-round", 0), params=cs.weight_parameters(),
                penalty=lambda m: 1e-3 * m.l1(), extra_optimizers=[opt], checkpoint_at=[per_epoch],
                callbacks=[TemperatureSchedule(cs, 50.0, "epoch", per_epoch, 3 * per_epoch),
                           FollowSchedule(opt, CFG, CFG.lr, len(blobs.train))]).checkpoints[per_epoch]
    ref = {k[len("model."):]: v for k, v in ref.items() if k.startswith("model.")}
    start = res.states["ticket_start"]
    assert set(start) == set(ref) and "bn.running_mean" in start and "bn.num_batches_tracked" in start
    for k in ref:
        assert torch.equal(start[k], ref[k]), k
    assert int(start["bn.num_batches_tracked"]) == per_epoch
    init = snapshot(bn_mlp(3))
    assert not torch.equal(start["fc1.weight"], init["fc1.weight"])
    assert not torch.equal(start["bn.running_var"], init["bn.running_var"])
    rows = res.table()
    assert list(rows["variant"]) == ["search", "search", "ticket"]
    assert list(rows["epochs_spent"]) == [3.0, 6.0, 9.0]
    # the ticket's mask is the final search mask, and the scores stayed frozen during retraining
    assert res.rows[-1].mask == res.rows[-2].mask


def test_each_round_ends_at_exactly_beta_final(blobs):
    res = run_procedure(tiny_mlp, blobs, CFG, ContinuousConfig(beta_final=200.0, rounds=2, final="none"))
    for temps in res.info["temperatures"]:
        assert len(temps) == 3 and temps[0] == 1.0 and temps[-1] == 200.0


def test_higher_s0_gives_denser_ticket(blobs):
    kept = []
    for s0 in (-0.05, 0.0, 0.05):
        cfg = ContinuousConfig(s0=s0, penalty=1e-3, beta_final=100.0, rounds=2, reset="paper", final="none")
        res = run_procedure(tiny_mlp, blobs, CFG, cfg, seed=0)
        kept.append(res.rows[-1].kept)
    assert kept[0] < kept[1] < kept[2], kept
    assert kept[0] < 0.9 * res.rows[-1].total


def test_cubic_schedule_hand_values():
    # s_i = 0, s_f = 0.8, t0 = 0, Δt = 10, n = 4: 0.8 − 0.8·(1 − t/40)³
    got = [cubic_sparsity(t, 0, 4, 10, 0.0, 0.8) for t in (0, 10, 20, 30, 40, 50)]
    assert got == pytest.approx([0.0, 0.4625, 0.7, 0.7875, 0.8, 0.8])
    assert gmp_steps(5, 29, 6) == [5, 11, 17, 23, 29]


@pytest.mark.parametrize("allocation", ["layerwise", "global"])
def test_gmp_sparsity_at_each_step_equals_cubic_formula(blobs, allocation):
    model = tiny_mlp(0)
    cfg = GMPConfig(final_sparsity=0.9, initial_sparsity=0.1, end_epoch=2, allocation=allocation)
    steps = gmp_steps(2, 14, 3)
    pruner = GradualPruner(model, cfg, steps)
    train(model, blobs, CFG, mask_schedule=pruner)
    assert [t for t, _, _ in pruner.log] == steps
    for t, target, achieved in pruner.log:
        s = 0.9 + (0.1 - 0.9) * (1 - (t - 2) / 12) ** 3
        assert target == pytest.approx(s, rel=1e-12)
        if allocation == "global":
            assert achieved == pytest.approx(round(s * 1504) / 1504, abs=1e-12)   # 384 + 1024 + 96 weights
    if allocation == "layerwise":
        for n, w in model.named_parameters():
            if n.endswith("weight"):
                assert int((w == 0).sum()) == round(0.9 * w.numel()), n
    params = dict(model.named_parameters())
    assert all(torch.all(params[n][~pruner.mask.expanded(n)] == 0) for n in pruner.mask)


def test_run_gmp_reaches_final_sparsity(blobs):
    res = run_procedure(tiny_mlp, blobs, CFG, GMPConfig(final_sparsity=0.75, end_epoch=2, frequency=2))
    r = res.rows[0]
    assert r.total - r.kept == round(0.75 * 384) + round(0.75 * 1024) + round(0.75 * 96)


def test_l0_training_gives_deterministic_gates_and_the_penalty_prunes(blobs):
    cfg = CFG.model_copy(update={"epochs": 4})
    weak_run = run_procedure(tiny_mlp, blobs, cfg, L0Config(penalty=0.01, gate_lr=0.5, init_drop=0.2))
    weak = weak_run.rows[0]
    strong = run_procedure(tiny_mlp, blobs, cfg, L0Config(penalty=1.0, gate_lr=0.5, init_drop=0.2)).rows[0]
    assert strong.kept < weak.kept and strong.extra["expected_l0_fraction"] < weak.extra["expected_l0_fraction"]
    gates = weak_run.model
    la = gates.log_alpha("fc2.weight").detach()
    assert weak.mask.kept("fc2.weight") == int(((torch.sigmoid(la) * 1.2 - 0.1) > 0).sum())
    gates.eval()
    acc = [gates(blobs.test.x).argmax(1).eq(blobs.test.y).float().mean().item() for _ in range(2)]
    assert acc[0] == acc[1] == pytest.approx(weak.final["test_acc"]) and acc[0] > 0.9


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 3, padding=1)
        self.b1 = nn.BatchNorm2d(6)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1)
        self.b2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(x)))
        return self.fc(x.mean((2, 3)))


def conv_bn(seed):
    torch.manual_seed(seed)
    return ConvBN()


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)

    def split(n):
        y = torch.randint(0, 2, (n,), generator=g)
        return Split(torch.randn(n, 1, 6, 6, generator=g) + y.view(-1, 1, 1, 1).float(), y)

    return Dataset("img", train=split(96), val=None, test=split(48), num_classes=2, input_shape=(1, 6, 6),
                   mean=(0.0,), std=(1.0,), is_image=False)


def test_slimming_masks_globally_smallest_channels(images):
    model = conv_bn(0)
    assert slimming_pairs(model) == [("c1", "b1"), ("c2", "b2")]
    with torch.no_grad():
        model.b1.weight.copy_(torch.tensor([0.5, -0.01, 0.3, 0.02, 0.9, -0.4]))
        model.b2.weight.copy_(torch.tensor([0.05, 0.6, -0.03, 0.7, 0.8, 0.01, 0.2, 0.25]))
    mask = slim(model, 0.5)   # 7 of 14 channels: |γ| 0.01 0.01 0.02 0.03 0.05 0.2 0.25
    assert mask["b1.weight"].tolist() == [True, False, True, False, True, True]
    assert mask["b2.weight"].tolist() == [False, True, False, True, True, False, False, False]
    assert mask["c2.weight"].shape == (8, 1, 1, 1) and mask.kept("c2.weight") == 3 * 6 * 9
    mask.apply(model)
    model.eval()
    feats = model.b2(model.c2(torch.relu(model.b1(model.c1(torch.randn(4, 1, 6, 6))))))
    assert torch.all(feats[:, ~mask["b2.weight"]] == 0)


def test_run_slimming_rows(images):
    cfg = TrainConfig(lr=0.05, batch_size=32, epochs=2, eval_splits=("test",))
    res = run_procedure(conv_bn, images, cfg, SlimmingConfig(penalty=1e-3, channel_sparsity=0.5))
    dense, slimmed = res.rows
    assert (dense.variant, slimmed.variant) == ("dense", "slimmed")
    assert slimmed.extra["channel_sparsity"] == pytest.approx(0.5)
    assert slimmed.kept < dense.kept == dense.total


def test_dsd_reenters_at_zero_with_lower_lr(blobs):
    res = run_procedure(tiny_mlp, blobs, CFG, DSDConfig(sparsity=0.5, redense_lr_scale=0.1), keep_history=True)
    dense, sparse, redense = res.rows
    assert sparse.kept == dense.total - (192 + 512 + 48)
    assert redense.kept == redense.total
    assert all(h["lr"] == pytest.approx(0.01) for h in redense.history)


def test_cs_recipes_expand_and_validate():
    names = [n for n, _, _ in list_recipes() if n.startswith("cs/")]
    assert any(n.endswith("-small") for n in names) and len(names) >= 2
    kinds = set()
    for n in names:
        for run in load_plan(n):
            kinds.add(run.spec.procedure.kind)
    assert {"cs", "gmp", "l0", "imp", "slimming", "dsd"} <= kinds
