"""ℓ0 as the CS authors' rebuttal ran it (L0Config.fixed_mask): hard-concrete gates trained as in plain ℓ0,
then a binary mask taken from the gates and fixed, then the plain network fine-tuned under that mask."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import prunelab.training.loop as loop_mod
from conftest import make_blobs, tiny_mlp
from prunelab.experiments import ExperimentSpec
from prunelab.primitives.enforce import MaskEnforcer
from prunelab.primitives.masks import Mask
from prunelab.procedures import L0Config, RunContext, run_procedure
from prunelab.procedures.l0_training import VARIANT_NAMES
from prunelab.seeding import generator
from prunelab.training import TrainConfig

TESTS = Path(__file__).parent
CFG = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=40, epochs=3, eval_splits=("val", "test"))
FT = CFG.model_copy(update={"lr": 0.02, "epochs": 2})
GATES = dict(penalty=0.003, gate_optimizer="adam", gate_lr=0.3, init_drop=0.2)   # prunes ~80 %
NAMES = ("fc1.weight", "fc2.weight", "out.weight")
BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1


def log_alpha(state, name):
    return state["scores." + name.replace(".", "__")]


def threshold_mask(state) -> dict:
    """Louizos et al.'s test-time gate min(1, max(0, σ(log α)(ζ − γ) + γ)) is non-zero."""
    return {n: torch.clamp(torch.sigmoid(log_alpha(state, n)) * (ZETA - GAMMA) + GAMMA, 0, 1) > 0 for n in NAMES}


def sample_mask(state, seed) -> dict:
    """One hard-concrete sample per gate, u from generator(seed, "l0-fixed-mask") tensor by tensor."""
    g = generator(seed, "l0-fixed-mask")
    out = {}
    for n in NAMES:
        la = log_alpha(state, n)
        u = torch.rand(la.shape, generator=g).clamp(1e-6, 1 - 1e-6)
        s = torch.sigmoid((torch.log(u) - torch.log(1 - u) + la) / BETA)
        out[n] = torch.clamp(s * (ZETA - GAMMA) + GAMMA, 0, 1) > 0
    return out


class SpyContext(RunContext):
    """Adds a callback to the fine-tuning stage (the ``ctx.train`` call given a mask) that checks, after
    every optimizer step, that the enforced mask is the one training started with and every pruned weight
    of the network is exactly zero."""

    def train(self, model, cfg=None, **kw):
        if kw.get("mask") is not None:
            self.ft_model, self.ft_mask0 = model, kw["mask"].clone()
            self.steps = []
            kw["callbacks"] = [*kw.get("callbacks", ()), self.check]
        return super().train(model, cfg, **kw)

    def check(self, it, model):
        assert model is self.ft_model
        (enforcer,) = [e for e in self.enforcers if e.model is model]
        assert enforcer.mask == self.ft_mask0 and enforcer.mask.names() == list(NAMES)
        params = dict(model.named_parameters())
        for n in NAMES:
            assert not params[n].detach()[~self.ft_mask0[n]].any(), (it, n)
        self.steps.append({n: params[n].detach().clone() for n in NAMES})


def run_spied(monkeypatch, blobs, mode, seed=5):
    enforcers = []

    class RecordingEnforcer(MaskEnforcer):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            enforcers.append(self)

        def set_mask(self, mask):
            raise AssertionError("the fixed mask was changed during fine-tuning")

    monkeypatch.setattr(loop_mod, "MaskEnforcer", RecordingEnforcer)
    ctx = SpyContext(tiny_mlp, blobs, CFG, seed=seed, finetune=FT, keep_history=True)
    ctx.enforcers = enforcers
    res = L0Config(**GATES, fixed_mask=mode).run(ctx)
    return ctx, res


@pytest.mark.parametrize("mode", ["threshold", "sample"])
def test_fixed_mask_is_taken_from_the_gates_and_never_changes_while_fine_tuning(monkeypatch, blobs, mode):
    seed = 5
    ctx, res = run_spied(monkeypatch, blobs, mode, seed)
    plain, fixed = res.rows
    assert [(r.variant, r.round) for r in res.rows] == [("l0", 0), ("l0_fixed", 1)]
    assert set(VARIANT_NAMES) == {"l0", "l0_fixed"}
    # the stored mask is the one an independent computation takes from the trained gates' log α
    gated = res.states["gated"]
    expect = threshold_mask(gated) if mode == "threshold" else sample_mask(gated, seed)
    assert fixed.mask == Mask(expect)
    assert ctx.ft_mask0 == fixed.mask
    assert plain.mask == Mask(threshold_mask(gated))     # the plain row still counts the test-time gates
    assert 0 < fixed.kept < fixed.total
    agree = sum(int((expect[n] == threshold_mask(gated)[n]).sum()) for n in NAMES) / fixed.total
    assert fixed.extra["test_time_mask_agreement"] == pytest.approx(agree)
    if mode == "threshold":
        assert fixed.kept == plain.kept and agree == 1.0
    else:
        assert agree < 1.0       # one sample is not the test-time mask (seed 5 prunes differently)
    # checked at every step of the fine-tuning, which ran the finetune config to its end
    assert len(ctx.steps) == FT.total_iterations(len(blobs.train))
    assert fixed.history and all(h["lr"] == pytest.approx(FT.lr) for h in fixed.history)
    for n in NAMES:   # the kept weights did train
        assert not torch.equal(ctx.steps[0][n], ctx.steps[-1][n])
    # the fine-tuned network is the plain network: no gates, every pruned weight exactly zero
    net = res.model
    assert type(net).__name__ == "TinyMLP"
    params = dict(net.named_parameters())
    for n in NAMES:
        assert not params[n].detach()[~fixed.mask[n]].any()
        assert not res.states["final"][n][~fixed.mask[n]].any()
        assert torch.equal(res.states["final"][n], ctx.steps[-1][n])
    net.eval()
    with torch.no_grad():
        acc = net(blobs.test.x).argmax(1).eq(blobs.test.y).float().mean().item()
    assert acc == pytest.approx(fixed.final["test_acc"])
    assert fixed.extra["fixed_mask"] == mode and "start_test_acc" in fixed.extra


def test_plain_is_the_default_with_one_row_and_the_same_run_id(blobs):
    assert L0Config().fixed_mask == "none" and L0Config().trainings() == 1
    assert L0Config(fixed_mask="sample").trainings() == 2
    res = run_procedure(tiny_mlp, blobs, CFG.model_copy(update={"epochs": 1}), L0Config(**GATES))
    assert [(r.variant, r.round) for r in res.rows] == [("l0", 0)]
    assert type(res.model).__name__ == "HardConcreteGates" and "gated" not in res.states

    def spec(**proc):
        return ExperimentSpec.model_validate({
            "name": "l0", "model": {"name": "lenet300_100"}, "dataset": {"name": "mnist1d"},
            "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 100, "epochs": 2},
            "procedure": {"kind": "l0", "penalty": 0.01, **proc}})

    assert "fixed_mask" not in spec().canonical()["procedure"]
    assert spec(fixed_mask="none").run_id() == spec().run_id()
    assert spec(fixed_mask="threshold").run_id() != spec().run_id() != spec(fixed_mask="sample").run_id()
    with pytest.raises(ValueError):
        L0Config(fixed_mask="expected")


def test_without_a_finetune_config_the_main_training_config_fine_tunes(blobs):
    cfg = CFG.model_copy(update={"epochs": 1})
    res = run_procedure(tiny_mlp, blobs, cfg, L0Config(**GATES, fixed_mask="threshold"), keep_history=True)
    assert res.rows[1].history[-1]["iteration"] == cfg.total_iterations(len(blobs.train))
    assert res.rows[1].history[-1]["lr"] == pytest.approx(cfg.lr)


SCRIPT = r"""
import json, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from conftest import make_blobs, tiny_mlp
from golden.cases import golden_rows
from kill_harness import arm
from prunelab.procedures import L0Config, run_procedure
from prunelab.training import Checkpoints, TrainConfig

ckdir, out, kill = sys.argv[1], sys.argv[2], int(sys.argv[3])
arm(2 if kill else 0, stage=1)   # SIGKILL after the 2nd partial checkpoint of the fine-tuning (stage 1)
ck = Checkpoints(ckdir, every_iterations=2)
res = run_procedure(tiny_mlp, make_blobs(), TrainConfig(**{cfg!r}), L0Config(**{gates!r}, fixed_mask="sample"),
                    seed=5, finetune=TrainConfig(**{ft!r}), keep_history=True, checkpoints=ck)
with open(out, "w") as f:
    json.dump({{"rows": golden_rows(res.rows), "resumed": ck.resumed}}, f)
"""


def _run(ckdir, out, kill):
    code = SCRIPT.format(tests=str(TESTS), cfg=CFG.model_dump(mode="json"), ft=FT.model_dump(mode="json"),
                         gates=GATES)
    return subprocess.run([sys.executable, "-c", code, str(ckdir), str(out), str(int(kill))],
                          capture_output=True, text=True, timeout=300)


def test_killed_while_fine_tuning_resumes_with_identical_numbers(tmp_path):
    from golden.cases import golden_rows
    from test_golden import same
    out = tmp_path / "rows.json"
    killed = _run(tmp_path / "ck", out, True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not out.exists()
    done = _run(tmp_path / "ck", out, False)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(out.read_text())
    stages = sorted((s, kind) for s, kind, _ in got["resumed"])
    assert stages == [(0, "final"), (1, "partial")], got["resumed"]   # gates restored, fine-tuning continued
    assert [it for s, kind, it in got["resumed"] if s == 1][0] > 0
    ref = run_procedure(tiny_mlp, make_blobs(), CFG, L0Config(**GATES, fixed_mask="sample"), seed=5,
                        finetune=FT, keep_history=True)
    same(got["rows"], golden_rows(ref.rows), "l0_fixed")
