"""Sanity checks with iterative pruning (issue 15): the LT family finds its masks by IMP; data checks act on
every pruning-phase training, ticket checks on the final ticket only."""
import math
from dataclasses import dataclass, field

import pytest
import torch

from prunelab.primitives.ratios import ratio_counts
from prunelab.primitives.sanity import random_labels
from prunelab.procedures import run_procedure
from prunelab.procedures import sanity as sanity_mod
from prunelab.procedures.base import RunContext
from prunelab.procedures.sanity import SanityConfig
from prunelab.training import snapshot


from test_sc_procedures import CFG, Net, _data  # the same tiny conv net and data as the one-shot tests


def model_fn(seed):
    torch.manual_seed(seed)
    return Net()


@dataclass
class Recording(RunContext):
    """Records, per training: its data, mask, start iteration, and the weights it started and ended with."""

    log: list = field(default_factory=list)

    def train(self, model, cfg=None, *, data=None, **kw):
        rec = {"data": self.data if data is None else data, "mask": kw["mask"].clone() if kw.get("mask") is not None else None,
               "start": kw.get("start_iteration", 0), "state_in": snapshot(model)}
        res = super().train(model, cfg, data=data, **kw)
        rec["state_out"] = snapshot(model)
        self.log.append(rec)
        return res


def _sc_keep(total, rate, rounds):
    kept = total
    for _ in range(rounds):
        kept -= int(rate * kept)
    return kept


def test_iterative_checks_apply_to_pruning_phase_and_final_ticket_only(monkeypatch):
    calls = []   # (ticket check, number of trainings done when it was applied, mask it got)
    real_check = sanity_mod.apply_ticket_check

    def spy(check, state, mask, **kw):
        calls.append((check, len(ctx.log), mask.clone()))
        return real_check(check, state, mask, **kw)

    monkeypatch.setattr(sanity_mod, "apply_ticket_check", spy)
    rounds, rate, k = 3, 0.3, 1
    cfg = SanityConfig(methods=("lt", "lt_rewind", "lr_rewind", "random", "hybrid"), pruning="iterative",
                       imp_rounds=rounds, imp_rate=rate, rewind_iteration=k, data_checks=("random_labels",),
                       ticket_checks=("rearrange",))
    data = _data()
    ctx = Recording(model_fn, data, CFG, seed=0)
    res = cfg.run(ctx)
    rows = {r.variant: r for r in res.rows if not r.variant.startswith("imp/")}
    imp_rows = [r for r in res.rows if r.variant.startswith("imp/")]
    # dense x2, (rounds-1) pruning-phase trainings x 3 methods x 2 data checks, 3+3+3+2+3 tickets
    assert len(res.rows) == len(ctx.log) == cfg.trainings() == 2 + 2 * 6 + 14
    assert len(imp_rows) == 12 and {r.round for r in imp_rows} == {1, 2}
    n_prune = 2 + 12   # the pruning phase comes first: dense runs, then the IMP rounds
    assert all(r.variant.startswith(("dense", "imp/")) for r in res.rows[:n_prune])

    true_y, rand_y = data.train.y, random_labels(data).train.y
    for i, (r, rec) in enumerate(zip(res.rows, ctx.log)):
        y = rec["data"].train.y
        if i < n_prune and r.extra["data_check"] == "random_labels":
            assert torch.equal(y, rand_y), r.variant          # every pruning-phase training: random labels
        else:
            assert rec["data"] is data and torch.equal(y, true_y), r.variant   # tickets: the true data
        assert rec["mask"] is None if i < 2 else r.mask == rec["mask"]
    for r in res.rows[n_prune:]:
        assert r.round == rounds and r.extra["imp_rounds"] == rounds
        assert r.extra["sparsity"] == pytest.approx(1 - (1 - rate) ** rounds)

    # the ticket check: once per method (data check 'none'), all after the last pruning-phase training,
    # and on the final IMP mask
    checked = [c for c in calls if c[0] != "none"]
    assert len(checked) == 5 and all(c[1] >= n_prune for c in checked)
    for m in ("lt", "lt_rewind", "lr_rewind"):
        assert any(c[2] == rows[m].mask for c in checked)
        re, base = rows[f"{m}/rearrange"].mask, rows[m].mask
        assert re != base and all(re.kept(n) == base.kept(n) for n in base)
    # no pruning-phase training used a rearranged mask: each round's mask lies inside the previous one
    for m in ("lt", "lt_rewind", "lr_rewind"):
        for d in ("", "/random_labels"):
            seq = [r.mask for r in imp_rows if r.variant == f"imp/{m}{d}"]
            seq.append(rows[f"{m}{d}"].mask)
            assert len(seq) == rounds
            for a, b in zip(seq, seq[1:]):
                assert all(bool((b[n] <= a[n]).all()) for n in a) and b.kept() < a.kept()

    # final sparsity: 1 - (1 - rate)^rounds with SC's per-round int() rounding (Linear kept dense)
    total = rows["lt"].total
    expect = _sc_keep(total, rate, rounds)
    for v in ("lt", "lt_rewind", "lr_rewind", "lt/random_labels", "lr_rewind/rearrange"):
        assert rows[v].kept == expect, v
        assert rows[v].mask.kept("fc.weight") == rows[v].mask.total("fc.weight")
    assert abs((1 - expect / total) - (1 - (1 - rate) ** rounds)) <= rounds / total
    assert [r.kept for r in imp_rows if r.variant == "imp/lt"] == [_sc_keep(total, rate, j) for j in (1, 2)]
    # random / hybrid tickets at the IMP sparsity (smart ratios)
    s = cfg.imp_sparsity()
    want = sum(ratio_counts(Net(), s, "smart").values())
    assert rows["random"].kept == rows["hybrid"].kept == want
    assert rows["random"].extra["sparsity"] == rows["hybrid"].extra["sparsity"] == pytest.approx(s)

    # rewinding per method, in the pruning phase and for the ticket
    recs = dict(zip([r.variant + f"@{r.round}" for r in res.rows], ctx.log))
    init = recs["dense@0"]["state_in"]
    for key, rec in recs.items():
        if key.startswith(("imp/lt_rewind", "lt_rewind")) and "reinit" not in key:
            assert rec["start"] == k, key
        elif not key.startswith("dense"):
            assert rec["start"] == 0, key
    for key in ("imp/lt@2", f"lt@{rounds}"):
        st, mk = recs[key]["state_in"], recs[key]["mask"]
        assert torch.equal(st["c2.weight"], init["c2.weight"] * mk["c2.weight"])   # rewound to θ0
    # LR rewinding: round 2 starts from round 1's trained weights, the ticket from round 2's
    for prev, key in (("imp/lr_rewind@1", "imp/lr_rewind@2"), ("imp/lr_rewind@2", f"lr_rewind@{rounds}"),
                      ("imp/lr_rewind/random_labels@2", f"lr_rewind/random_labels@{rounds}")):
        st, mk = recs[key]["state_in"], recs[key]["mask"]
        assert torch.equal(st["c2.weight"], recs[prev]["state_out"]["c2.weight"] * mk["c2.weight"]), key
    # hybrid stays LR rewinding from the dense run, with smart-ratio counts
    assert torch.equal(recs[f"hybrid@{rounds}"]["state_in"]["c1.weight"],
                       recs["dense@0"]["state_out"]["c1.weight"] * rows["hybrid"].mask["c1.weight"])


def test_one_round_equals_oneshot():
    kw = dict(methods=("lt", "lr_rewind", "snip", "random", "hybrid"), data_checks=("random_labels",),
              ticket_checks=("shuffle",), checked_methods=("lt", "lr_rewind"), samples_per_class=4)
    one = run_procedure(model_fn, _data(), CFG, SanityConfig(sparsities=(0.5,), **kw), seed=1)
    it_cfg = SanityConfig(pruning="iterative", imp_rounds=1, imp_rate=0.5, **kw)
    it = run_procedure(model_fn, _data(), CFG, it_cfg, seed=1)
    assert it_cfg.trainings() == len(it.rows) == len(one.rows)
    for a, b in zip(one.rows, it.rows):
        assert a.variant == b.variant and a.mask == b.mask, a.variant
        assert a.final["test_acc"] == b.final["test_acc"], a.variant
        assert b.round == (0 if a.variant.startswith("dense") else 1)


def test_conv_linear_scope_rounds_and_validation():
    cfg = SanityConfig(methods=("lt",), pruning="iterative", imp_rounds=2, imp_rate=0.5, lt_scope="conv_linear")
    res = run_procedure(model_fn, _data(), CFG, cfg, seed=0)
    assert [r.variant for r in res.rows] == ["dense", "imp/lt", "lt"] and cfg.trainings() == 3
    k1 = res.rows[1].kept
    assert res.rows[2].kept == k1 - math.floor(0.5 * k1)
    assert res.rows[2].mask.kept("fc.weight") < res.rows[2].mask.total("fc.weight")   # Linear pruned too

    with pytest.raises(ValueError, match="need pruning='iterative'"):
        SanityConfig(imp_rounds=3)
    with pytest.raises(ValueError, match="leave sparsities"):
        SanityConfig(pruning="iterative", imp_rounds=3, sparsities=(0.5,))
    with pytest.raises(ValueError):
        SanityConfig(pruning="iterative", imp_rate=1.0)
    c = SanityConfig(pruning="iterative", imp_rounds=10)
    assert SanityConfig.model_validate(c.model_dump()) == c          # a dump with defaults validates again
    assert c.targets() == (pytest.approx(1 - 0.8 ** 10),)
    # defaults leave the spec (and so the run id) as before
    assert SanityConfig().model_dump(exclude_defaults=True) == {}
    with pytest.raises(Exception, match="convs keep only"):
        run_procedure(model_fn, _data(), CFG, SanityConfig(methods=("lt",), pruning="iterative", imp_rounds=3,
                                                          imp_rate=0.9), seed=0)
