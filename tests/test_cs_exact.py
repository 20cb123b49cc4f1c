"""CS options of issue 14: exact target sparsity (thresholded binarization) and the fixed-β = 1 ablation."""
import pydantic
import pytest
import torch

from conftest import tiny_mlp
from prunelab.errors import ConfigError
from prunelab.experiments.spec import ExperimentSpec
from prunelab.primitives.soft_mask import ContinuousSparsificationMask
from prunelab.procedures import ContinuousConfig, run_procedure
from prunelab.training import TrainConfig

CFG = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=40, epochs=3, eval_splits=("val", "test"))


def independent_top_k(cs: ContinuousSparsificationMask, keep: int) -> dict[str, torch.Tensor]:
    """Reference: a full descending argsort of the concatenated scores (scope order, row-major), ties
    resolved so that the higher flat index is kept (the lower one pruned first)."""
    flat = torch.cat([cs.score(n).detach().reshape(-1).double() for n in cs.names]).tolist()
    # a plain Python sort on the key (score desc, index desc)
    order = sorted(range(len(flat)), key=lambda i: (-flat[i], -i))
    kept = torch.zeros(len(flat), dtype=torch.bool)
    kept[order[:keep]] = True
    out, i = {}, 0
    for n in cs.names:
        k = cs.score(n).numel()
        out[n] = kept[i:i + k].view(cs.score(n).shape)
        i += k
    return out


@pytest.mark.parametrize("target", [0.3, 0.85])
def test_thresholded_cs_hits_the_target_exactly_and_keeps_the_top_scores(blobs, target):
    cfg = ContinuousConfig(s0=0.0, penalty=1e-3, beta_final=50.0, rounds=2, rewind_epoch=1,
                           target_sparsity=target)
    res = run_procedure(tiny_mlp, blobs, CFG, cfg, seed=1)
    cs = res.model
    n = sum(cs.score(name).numel() for name in cs.names)
    assert n == 1504
    expect_kept = n - round(target * n)
    rows = res.rows
    assert [r.variant for r in rows] == ["search", "search", "ticket"]
    for r in rows:   # every binarization: each round's counts and the ticket's
        assert r.total == n and abs(r.kept - (1 - target) * n) <= 1 and r.kept == expect_kept
        assert r.extra["target_sparsity"] == target
    # the natural s > 0 mask differs from the target at both targets (else the test proves nothing)
    assert rows[-1].extra["kept_s_positive"] != expect_kept
    # the ticket keeps exactly the highest learned scores (scores are frozen while the ticket trains)
    ref = independent_top_k(cs, expect_kept)
    ticket = rows[-1].mask
    for name in cs.names:
        assert torch.equal(ticket[name], ref[name]), name
        assert torch.equal(cs.hard_mask()[name].cpu(), ref[name]), name
    kept_scores = torch.cat([cs.score(m).detach()[ref[m]] for m in cs.names])
    dropped_scores = torch.cat([cs.score(m).detach()[~ref[m]] for m in cs.names])
    assert kept_scores.min() >= dropped_scores.max()
    assert cs.density() == pytest.approx(expect_kept / n, abs=0)
    # the hard forward uses that mask: the effective weights are zero exactly off the ticket
    cs.hard = True
    eff = cs.effective_weights()
    for name in cs.names:
        w = cs.base_weight(name).detach()
        assert torch.equal(eff[name].detach() == 0, ~ref[name] | (w == 0)), name
    final = res.states["final"]
    assert all(torch.equal(final["scores." + name.replace(".", "__")], cs.score(name).detach())
               for name in cs.names)


def test_exact_mask_ties_are_broken_by_index_and_follow_score_updates():
    cs = ContinuousSparsificationMask(tiny_mlp(0), s0=0.0, target_sparsity=0.5)
    # every score tied at s0 = 0: the lower flat index is pruned first, so the last half is kept
    mask = cs.hard_mask()
    flat = torch.cat([mask[n].reshape(-1) for n in cs.names])
    assert int(flat.sum()) == 752 and not flat[:752].any() and flat[752:].all()
    assert torch.equal(flat, torch.cat([v.reshape(-1) for v in independent_top_k(cs, 752).values()]))
    cs.hard = True
    first = cs.names[0]
    assert torch.equal(cs.soft_mask(first) != 0, mask[first])
    # a score changed in place invalidates the cached threshold mask
    with torch.no_grad():
        cs.score(first).view(-1)[0] = 5.0
    assert bool(cs.soft_mask(first).view(-1)[0] != 0) and bool(cs.hard_mask()[first].view(-1)[0])
    assert cs.hard_mask().kept() == 752


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5, float("nan")])
def test_target_sparsity_is_validated(bad):
    with pytest.raises(pydantic.ValidationError, match="strictly between 0 and 1"):
        ContinuousConfig(target_sparsity=bad)
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        ContinuousSparsificationMask(tiny_mlp(0), target_sparsity=bad)


def test_defaults_leave_the_spec_and_its_run_id_unchanged():
    base = {"name": "cs", "model": {"name": "lenet300_100"}, "dataset": {"name": "mnist1d"},
            "train": {"lr": 0.1, "batch_size": 100, "epochs": 2}, "procedure": {"kind": "cs", "s0": -0.05}}

    def spec(**proc):
        return ExperimentSpec.model_validate({**base, "procedure": {**base["procedure"], **proc}})

    plain = spec()
    assert spec(target_sparsity=None, beta_schedule="anneal").run_id() == plain.run_id()
    assert set(plain.to_dict()["procedure"]) == {"kind", "s0"}
    assert spec(target_sparsity=0.9).run_id() != plain.run_id()
    assert spec(beta_schedule="fixed").run_id() != plain.run_id()


def record_betas(monkeypatch) -> list[float]:
    """β of every training forward pass of the soft (search) phase, i.e. of every search step."""
    seen = []
    forward = ContinuousSparsificationMask.forward

    def recording(self, *args, **kwargs):
        if self.training and not self.hard and torch.is_grad_enabled():
            seen.append(self.beta)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(ContinuousSparsificationMask, "forward", recording)
    return seen


@pytest.mark.parametrize("unit", ["epoch", "iteration"])
def test_fixed_beta_stays_one_at_every_step_while_the_default_anneals(blobs, monkeypatch, unit):
    steps = CFG.total_iterations(len(blobs.train))
    seen = record_betas(monkeypatch)
    fixed = ContinuousConfig(penalty=1e-3, beta_final=200.0, rounds=2, temperature_unit=unit,
                             beta_schedule="fixed", final="none")
    res = run_procedure(tiny_mlp, blobs, CFG, fixed, seed=0)
    assert len(seen) == 2 * steps
    assert all(b == 1.0 for b in seen), sorted(set(seen))
    assert res.info["temperatures"] == [[1.0] * 3, [1.0] * 3]
    assert [r.extra["beta"] for r in res.rows] == [1.0, 1.0]
    seen.clear()
    annealed = run_procedure(tiny_mlp, blobs, CFG, fixed.model_copy(update={"beta_schedule": "anneal"}), seed=0)
    assert len(seen) == 2 * steps
    assert seen[0] == 1.0 and max(seen) == 200.0 and len(set(seen)) > 2
    assert seen == sorted(seen[:steps]) + sorted(seen[steps:])   # climbs within each round, restarts at 1
    assert annealed.info["temperatures"][0][0] == 1.0 < annealed.info["temperatures"][0][-1]
    # a different temperature gives a different search (the option is not a no-op)
    assert not torch.equal(res.model.score(res.model.names[0]), annealed.model.score(annealed.model.names[0]))


def test_fixed_beta_paper_reset_multiplies_by_the_temperature_reached(blobs, monkeypatch):
    factors = []
    reset = ContinuousSparsificationMask.reset_scores

    def spy(self, factor):
        factors.append(factor)
        return reset(self, factor)

    monkeypatch.setattr(ContinuousSparsificationMask, "reset_scores", spy)
    cfg = ContinuousConfig(penalty=1e-3, rounds=3, reset="paper", beta_schedule="fixed", final="none")
    run_procedure(tiny_mlp, blobs, CFG, cfg, seed=0)
    run_procedure(tiny_mlp, blobs, CFG, cfg.model_copy(update={"beta_schedule": "anneal"}), seed=0)
    assert factors == [1.0, 1.0, 200.0, 200.0]
