"""Continuous sparsification mask, temperature schedule, hard-concrete gates: hand-computed values."""
import math

import pytest
import torch

from conftest import tiny_mlp
from prunelab.errors import ConfigError
from prunelab.primitives import ContinuousSparsificationMask, HardConcreteGates
from prunelab.primitives.learned_mask import BernoulliSupermask
from prunelab.primitives.l0 import deterministic_gate
from prunelab.primitives.schedules import temperature
from prunelab.procedures.continuous import TemperatureSchedule, mask_optimizer
from prunelab.training import TrainConfig


def test_temperature_hand_values_and_exact_end():
    # β_T = 16 over 5 epochs: 16^(e/4) = 1, 2, 4, 8, 16
    vals = [temperature(e, 5, 16.0) for e in range(5)]
    assert vals[0] == 1.0 and vals[-1] == 16.0
    assert vals == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0], rel=1e-12)
    # β_T = 200 over the official 85 epochs: exactly 200 in the last one, 200^(1/84) after one epoch
    assert temperature(84, 85, 200.0) == 200.0
    assert temperature(1, 85, 200.0) == pytest.approx(math.exp(math.log(200.0) / 84), rel=1e-12)
    assert temperature(0, 1, 7.0) == 7.0   # a one-epoch round is all at the final temperature


def test_temperature_schedule_per_epoch_and_per_iteration():
    cs = ContinuousSparsificationMask(tiny_mlp(0), s0=0.0)
    # 3 epochs of 4 iterations: the per-epoch value is constant within an epoch
    sched = TemperatureSchedule(cs, 9.0, "epoch", 4, 12)
    seen = [cs.beta]
    for it in range(1, 12):
        sched(it, None)
        seen.append(cs.beta)
    assert seen == [1.0] * 4 + [pytest.approx(3.0)] * 4 + [9.0] * 4
    assert sched.per_epoch[-1] == 9.0 and len(sched.per_epoch) == 3
    sched = TemperatureSchedule(cs, 9.0, "iteration", 4, 12)
    for it in range(1, 12):
        sched(it, None)
    assert cs.beta == 9.0   # the last iteration (11 of 0..11) runs at exactly β_T
    sched(5, None)
    assert cs.beta == pytest.approx(9.0 ** (5 / 11))


@pytest.mark.parametrize("s0,c", [(0.0, 2.0), (-0.1, 1.0 + math.exp(0.1)), (0.5, 1.0 + math.exp(-0.5))])
def test_soft_mask_is_one_at_init_with_scale(s0, c):
    model = tiny_mlp(0)
    x = torch.randn(5, 12)
    ref = model(x)
    cs = ContinuousSparsificationMask(model, s0=s0, scale=True)
    assert cs.c == pytest.approx(c, rel=1e-15)
    for n in cs.names:
        assert torch.allclose(cs.soft_mask(n), torch.ones_like(cs.soft_mask(n)), atol=1e-6, rtol=0)
    assert torch.allclose(cs(x), ref, atol=1e-5)
    # the L1 penalty counts every mask entry once at initialisation
    assert float(cs.l1().detach()) == pytest.approx(sum(cs.score(n).numel() for n in cs.names), rel=1e-6)


def test_soft_mask_without_scale_and_hard_phase_hand_values():
    cs = ContinuousSparsificationMask(tiny_mlp(0), s0=0.0, scale=False)
    assert torch.all(cs.soft_mask("fc1.weight") == 0.5)
    n = "out.weight"
    with torch.no_grad():
        cs.score(n).copy_(torch.tensor([-0.3, 0.0, 0.2] * 32).view(3, 32))
    cs.beta = 2.0
    expected = [1 / (1 + math.exp(0.6)), 0.5, 1 / (1 + math.exp(-0.4))]
    got = cs.soft_mask(n)[0, :3].tolist()
    assert got == pytest.approx(expected, rel=1e-6)
    cs.hard = True
    assert cs.soft_mask(n)[0, :3].tolist() == [0.0, 0.0, 1.0]   # 1[s > 0]: s = 0 is pruned
    hm = cs.hard_mask()
    assert hm.kept(n) == 32 and hm.total(n) == 96


def test_penalty_gradient_and_joint_training_parameters():
    model = tiny_mlp(0)
    cs = ContinuousSparsificationMask(model, s0=0.0)
    cs.beta = 3.0
    loss = cs(torch.randn(4, 12)).sum() + 1e-2 * cs.l1()
    loss.backward()
    assert all(p.grad is not None for p in cs.score_parameters())
    assert all(p.requires_grad and p.grad is not None for p in cs.weight_parameters())
    # d/ds of σ(βs)·c at s = 0 is β σ(0)(1 − σ(0)) c = 3 · 0.25 · 2 = 1.5 per entry (penalty part only)
    cs.zero_grad()
    cs.l1().backward()
    assert torch.allclose(cs.score("fc1.weight").grad, torch.full((32, 12), 1.5))
    opt = mask_optimizer(TrainConfig(epochs=1, weight_decay=1e-4, nesterov=True), cs.score_parameters())
    assert opt.param_groups[0]["weight_decay"] == 0.0 and opt.param_groups[0]["nesterov"]


@pytest.mark.parametrize("factor,expected", [(200.0, [-60.0, 0.1, 0.1]), (1.0, [-0.3, 0.1, 0.05])])
def test_score_reset_rules(factor, expected):
    cs = ContinuousSparsificationMask(tiny_mlp(0), s0=0.1)
    with torch.no_grad():
        cs.score("out.weight")[0, :3] = torch.tensor([-0.3, 0.2, 0.05])
    cs.reset_scores(factor)
    assert cs.score("out.weight")[0, :3].tolist() == pytest.approx(expected, rel=1e-6)


def test_bernoulli_supermask_still_freezes_its_weights():
    model = tiny_mlp(0)
    sm = BernoulliSupermask(model)
    assert not any(p.requires_grad for p in model.parameters())
    assert sm.base_weight("fc1.weight") is not model.fc1.weight


def test_hard_concrete_deterministic_gate_hand_values():
    la = torch.tensor([0.0, -3.0, 3.0, 1.0])
    s = [0.5, 1 / (1 + math.exp(3.0)), 1 / (1 + math.exp(-3.0)), 1 / (1 + math.exp(-1.0))]
    expected = [min(1.0, max(0.0, v * 1.2 - 0.1)) for v in s]   # σ(log α)(ζ − γ) + γ, clipped
    assert deterministic_gate(la).tolist() == pytest.approx(expected, rel=1e-6)
    assert expected[1] == 0.0 and expected[2] == 1.0


def test_hard_concrete_gates_eval_train_and_penalty():
    model = tiny_mlp(0)
    gates = HardConcreteGates(model, init_drop=0.5, init_std=0.0)
    assert torch.all(gates.log_alpha("fc1.weight") == 0.0)
    gates.eval()
    assert torch.all(gates.soft_mask("fc1.weight") == 0.5)    # σ(0)·1.2 − 0.1
    x = torch.randn(3, 12)
    half = tiny_mlp(0)
    with torch.no_grad():
        for n in gates.names:
            half.get_parameter(n).mul_(0.5)
    assert torch.allclose(gates(x), half(x), atol=1e-6)
    # expected L0 per gate: σ(log α − β log(−γ/ζ)) = σ((2/3) ln 11) at log α = 0
    per = 1 / (1 + math.exp(-(2 / 3) * math.log(11.0)))
    total = sum(gates.score(n).numel() for n in gates.names)
    assert float(gates.expected_l0().detach()) == pytest.approx(per * total, rel=1e-5)
    # training mode: the sampled gate with the same uniforms, computed step by step
    gates.train()
    torch.manual_seed(3)
    z = gates.soft_mask("out.weight")
    torch.manual_seed(3)
    u = torch.rand(3, 32).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid((torch.log(u) - torch.log(1 - u)) / (2 / 3))
    assert torch.allclose(z, (s * 1.2 - 0.1).clamp(0, 1), atol=1e-6)
    assert gates.hard_mask().kept() == total
    with pytest.raises(ConfigError, match="init_drop"):
        HardConcreteGates(tiny_mlp(0), init_drop=1.0)
