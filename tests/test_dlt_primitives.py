"""DLT mask criteria, kept/pruned-weight actions, frozen weights and learned supermasks on tiny tensors."""
import pytest
import torch
from torch import nn

from prunelab.errors import ConfigError, UnknownNameError
from prunelab.primitives import Mask, compute_scores
from prunelab.primitives.criteria import percentile_rank, single_mask
from prunelab.primitives.learned_mask import BernoulliSupermask
from prunelab.primitives.weight_actions import (FrozenWeights, apply_kept_action, kept_action_tensor,
                                                pruned_action)
from prunelab.pruning import prune

WI = torch.tensor([[0.5, -0.2, 0.1], [-0.4, 0.3, -0.6]])
WF = torch.tensor([[0.7, 0.1, -0.3], [-0.2, 0.9, 0.05]])


class One(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.fc.weight.copy_(WF)
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(x)


def _score(name):
    m = One()
    return compute_scores(name, m, Mask.ones(m, ["fc.weight"]), init_state={"fc.weight": WI})["fc.weight"]


@pytest.mark.parametrize("name,expected", [
    ("large_final", WF.abs()),
    ("small_final", -WF.abs()),
    ("large_init", WI.abs()),
    ("small_init", -WI.abs()),
    ("magnitude_increase", torch.tensor([[0.2, -0.1, 0.2], [-0.2, 0.6, -0.55]])),
    ("movement", torch.tensor([[0.2, 0.3, 0.4], [0.2, 0.6, 0.65]])),
    # signs: same, diff, diff, same, same, diff
    ("large_final_same_sign", torch.tensor([[0.7, 0.0, 0.0], [0.2, 0.9, 0.0]])),
    ("large_final_diff_sign", torch.tensor([[0.0, 0.1, 0.3], [0.0, 0.0, 0.05]])),
    ("magnitude_increase_same_sign", torch.tensor([[0.2, 0.0, 0.0], [-0.2, 0.6, 0.0]])),
    ("magnitude_increase_diff_sign", torch.tensor([[0.0, -0.1, 0.2], [0.0, 0.0, -0.55]])),
])
def test_criteria_scores(name, expected):
    assert torch.allclose(_score(name), expected, atol=1e-6)


def test_percentile_rank_and_large_init_large_final():
    # |wi| = .5 .2 .1 .4 .3 .6 -> ranks 5 2 1 4 3 6 (/6); |wf| = .7 .1 .3 .2 .9 .05 -> 5 2 4 3 6 1
    active = torch.ones(6, dtype=torch.bool)
    assert torch.allclose(percentile_rank(WI.abs().reshape(-1), active) * 6,
                          torch.tensor([5., 2, 1, 4, 3, 6], dtype=torch.float64))
    s = _score("large_init_large_final").reshape(-1) * 6
    assert torch.allclose(s, torch.tensor([5., 2, 1, 3, 3, 1], dtype=torch.float64))
    # keep 1: only weight 0 is above the 4/6 percentile at both times (what a percentile bisection finds)
    m = One()
    new = prune(m, mask=Mask.ones(m, ["fc.weight"]), rate=5 / 6, allocation="layerwise",
                score="large_init_large_final", init_state={"fc.weight": WI}, apply=False)
    assert new["fc.weight"].reshape(-1).tolist() == [True, False, False, False, False, False]
    # small_init_small_final: ranks of -|.|: wi 2 5 6 3 4 1, wf 2 5 3 4 1 6 -> min 2 5 3 3 1 1
    s = _score("small_init_small_final").reshape(-1) * 6
    assert torch.allclose(s, torch.tensor([2., 5, 3, 3, 1, 1], dtype=torch.float64))


def test_percentile_rank_ignores_pruned_entries():
    x = torch.tensor([3.0, 1.0, 2.0, 0.5])
    active = torch.tensor([True, True, False, True])
    r = percentile_rank(x, active)
    assert torch.allclose(r[active], torch.tensor([1.0, 2 / 3, 1 / 3], dtype=torch.float64))


def test_criteria_need_init_state():
    m = One()
    with pytest.raises(ConfigError, match="init_state"):
        compute_scores("movement", m, Mask.ones(m, ["fc.weight"]))


def test_single_masks():
    m = One()
    mask = Mask.ones(m, ["fc.weight"])
    same = single_mask("large_final_same_sign_single", m, mask, init_state={"fc.weight": WI})
    assert same["fc.weight"].tolist() == [[True, False, False], [True, True, False]]
    diff = single_mask("magnitude_increase_diff_sign_single", m, mask, init_state={"fc.weight": WI})
    assert diff["fc.weight"].tolist() == [[False, True, True], [False, False, True]]
    with pytest.raises(UnknownNameError):
        single_mask("nope", m, mask, init_state={"fc.weight": WI})


def test_layerwise_prune_with_criterion_keeps_biases():
    m = One()
    new = prune(m, rate=0.5, allocation="layerwise", score="large_final_same_sign",
                init_state={"fc.weight": WI, "fc.bias": torch.zeros(2)}, scope=["fc.weight"], apply=False)
    assert new.names() == ["fc.weight"]
    assert new["fc.weight"].tolist() == [[True, False, False], [True, True, False]]


# kept-weight actions --------------------------------------------------------------------------------
W = torch.tensor([1.0, -2.0, 3.0, -4.0])
K = torch.tensor([True, False, True, True])


class FixedPerm:
    """Swap in a known permutation so the expected values are hand-computable."""

    def __init__(self, monkeypatch, perm):
        import prunelab.primitives.weight_actions as wa
        monkeypatch.setattr(wa, "_perm", lambda n, g, d: torch.tensor(perm[n]))


def test_kept_actions_by_hand(monkeypatch):
    # permutation of 4 entries: reverse; of 3 kept entries: rotate (positions 0,2,3 <- 2,3,0)
    FixedPerm(monkeypatch, {4: [3, 2, 1, 0], 3: [1, 2, 0]})
    alpha = W.std(unbiased=False)  # sqrt(7.5)
    cases = {
        "none": [1.0, -2.0, 3.0, -4.0],
        "reinit": [-4.0, -2.0, -2.0, 1.0],          # reversed layer at kept positions; pruned keeps w
        "reshuffle": [3.0, -2.0, -4.0, 1.0],
        "signed_reinit": [4.0, -2.0, 2.0, -1.0],
        "signed_reshuffle": [3.0, -2.0, 4.0, -1.0],
        "signed_constant": [float(alpha), -2.0, float(alpha), -float(alpha)],
        "constant": [-float(alpha), -2.0, -float(alpha), float(alpha)],  # reversed signs [-,+,-,+]
    }
    for action, expected in cases.items():
        out = kept_action_tensor(action, W, K)
        assert torch.allclose(out, torch.tensor(expected)), action
    out = kept_action_tensor("signed_constant", W, K, rescale=True)
    assert torch.allclose(out[K], torch.tensor([1.0, 1.0, -1.0]) * alpha * 4 / 3)
    with pytest.raises(UnknownNameError):
        kept_action_tensor("shuffle", W, K)


def test_kept_actions_random_are_permutations():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(50)
    k = torch.rand(50, generator=g) < 0.3
    out = kept_action_tensor("reshuffle", w, k, generator=g)
    assert torch.equal(out[~k], w[~k]) and torch.equal(out[k].sort().values, w[k].sort().values)
    out = kept_action_tensor("signed_reinit", w, k, generator=g)
    assert torch.equal(torch.sign(out), torch.sign(w))
    mask = Mask({"a": k})
    assert torch.equal(apply_kept_action("none", {"a": w}, mask)["a"], w)


# pruned-weight actions -------------------------------------------------------------------------------
def test_pruned_actions_by_hand(monkeypatch):
    wi = {"w": torch.tensor([0.5, -0.2, 0.1, -0.4])}
    wf = {"w": torch.tensor([0.1, -0.6, 0.0, -0.4])}   # toward zero: T F T F ; increased: F T F F
    mask = Mask({"w": torch.tensor([True, False, False, False])})
    assert pruned_action("zero", wi, wf, mask).frozen is None
    assert pruned_action("freeze_init", wi, wf, mask).frozen["w"].tolist() == pytest.approx([0.5, -0.2, 0.1, -0.4])
    v1 = pruned_action("freeze_init_zero_mask", wi, wf, mask)
    assert v1.frozen["w"].tolist() == pytest.approx([0.0, -0.2, 0.0, -0.4]) and v1.kept_init is None
    v2 = pruned_action("freeze_init_zero_all", wi, wf, mask)
    assert v2.kept_init["w"].tolist() == pytest.approx([0.0, -0.2, 0.0, -0.4])
    rev = pruned_action("freeze_init_zero_rev", wi, wf, mask)
    assert rev.frozen["w"].tolist() == pytest.approx([0.5, 0.0, 0.1, -0.4])
    # one pruned weight (index 2) moved toward zero -> one random pruned position zeroed; pick the last
    import prunelab.primitives.weight_actions as wa
    monkeypatch.setattr(wa, "_perm", lambda n, g, d: torch.arange(n - 1, -1, -1))
    sh = pruned_action("freeze_init_zero_reshuffle", wi, wf, mask)
    assert sh.frozen["w"].tolist() == pytest.approx([0.5, -0.2, 0.1, 0.0])
    with pytest.raises(UnknownNameError):
        pruned_action("freeze", wi, wf, mask)


def test_frozen_weights_bit_identical_through_adam_with_weight_decay():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    mask = Mask.ones(model, ["0.weight", "2.weight"])
    g = torch.Generator().manual_seed(1)
    mask = Mask({n: torch.rand(m.shape, generator=g) < 0.5 for n, m in mask.items()}, mask.shapes)
    params = dict(model.named_parameters())
    frozen = {n: params[n].detach().clone() for n in mask}
    opt = torch.optim.Adam(model.parameters(), lr=0.05, weight_decay=0.1)
    fw = FrozenWeights(model, mask, frozen).attach(opt)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for n in mask:
        p = params[n].detach()
        pruned = ~mask[n]
        assert torch.equal(p[pruned], frozen[n][pruned])           # bit-identical
        assert not torch.equal(p[mask[n]], frozen[n][mask[n]])    # kept weights did train
    fw.detach()


# learned supermask ------------------------------------------------------------------------------------
def test_supermask_never_updates_weights_and_trains_scores():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sm = BernoulliSupermask(model, ["0.weight", "2.weight"], generator=torch.Generator().manual_seed(0))
    assert all(not p.requires_grad for p in model.parameters())
    trainable = [n for n, p in sm.named_parameters() if p.requires_grad]
    assert sorted(trainable) == ["scores.0__weight", "scores.2__weight"]
    opt = torch.optim.SGD([p for p in sm.parameters() if p.requires_grad], lr=10.0, momentum=0.9,
                          weight_decay=0.01)
    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    s0 = sm.score("0.weight").detach().clone()
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(sm(x), y).backward()
        opt.step()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(sm.base_weight("0.weight"), before["0.weight"])
    assert not torch.equal(sm.score("0.weight"), s0)


def test_supermask_sampling_straight_through_and_rescaling():
    model = nn.Linear(1000, 1, bias=False)
    sm = BernoulliSupermask(model, ["weight"], score_init=0.0, generator=torch.Generator().manual_seed(0))
    m1, m2 = sm.soft_mask("weight"), sm.soft_mask("weight")
    assert not torch.equal(m1, m2)                   # fresh sample every forward
    assert 0.4 < float(m1.detach().mean()) < 0.6             # keep probability sigmoid(0) = 0.5
    m1.sum().backward()                              # d/ds sigmoid(s) at 0 = 0.25 for every score
    assert torch.allclose(sm.score("weight").grad, torch.full((1, 1000), 0.25))
    dwr = BernoulliSupermask(nn.Linear(10, 1, bias=False), ["weight"], mode="round", score_init=1.0,
                             dynamic_rescale=True)
    with torch.no_grad():
        dwr.score("weight")[0, :4] = -1.0            # 6 of 10 kept
    w = dwr.effective_weights()["weight"]
    base = dwr.base_weight("weight")
    assert torch.allclose(w[0, 4:], base[0, 4:] * 10 / 6) and torch.all(w[0, :4] == 0)
    sc = BernoulliSupermask(nn.Linear(10, 3, bias=False), ["weight"], signed_constant=True)
    b = sc.base_weight("weight")
    assert torch.allclose(b.abs(), sc.model.weight.std(unbiased=False).expand_as(b))
    with pytest.raises(ConfigError, match="mode"):
        BernoulliSupermask(nn.Linear(2, 2), mode="deterministic")


@pytest.mark.parametrize("small", [False, True])
def test_percentile_bisection_matches_min_rank_rule(small):
    """The official bisection over a shared percentile keeps the same set as ranking by the minimum of
    the two percentile ranks (what prune() uses), whenever the bisection reaches the count."""
    import numpy as np
    from prunelab.primitives.criteria import percentile_bisection
    g = torch.Generator().manual_seed(0)
    hits = 0
    for trial in range(20):
        wi, wf = torch.randn(40, 30, generator=g), torch.randn(40, 30, generator=g)
        active = torch.rand(40, 30, generator=g) > 0.3
        keep = int(torch.randint(1, int(active.sum()), (1,), generator=g))
        a, b = (-wi.abs(), -wf.abs()) if small else (wi.abs(), wf.abs())
        sel, p = percentile_bisection(a, b, active, keep)
        # independent check of the literal rule with numpy's percentile at the p found
        va, vb = a[active].double().numpy(), b[active].double().numpy()
        ref = (va > np.percentile(va, p)) & (vb > np.percentile(vb, p))
        assert np.array_equal(sel[active].numpy(), ref) and not bool(sel[~active].any())
        if int(sel.sum()) != keep:
            continue
        hits += 1
        score = torch.minimum(percentile_rank(a, active), percentile_rank(b, active))
        score = torch.where(active, score, torch.full_like(score, -1.0))
        top = torch.zeros(1200, dtype=torch.bool)
        top[score.flatten().topk(keep).indices] = True
        assert torch.equal(top.view(40, 30), sel)
    assert hits >= 10   # the count is usually reachable with distinct values


def test_randomize_signs_flips_exactly_the_drawn_signs_and_keeps_the_mask():
    from prunelab.procedures.supermask import randomize_signs
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    names = ["0.weight", "2.weight"]
    sm = BernoulliSupermask(model, names, score_init=0.0)
    with torch.no_grad():   # "trained" scores: some positive, some negative
        for n in names:
            sm.score(n).copy_(torch.randn(sm.score(n).shape))
    bases = {n: sm.base_weight(n).clone() for n in names}
    params = {k: v.clone() for k, v in model.state_dict().items()}
    scores = {n: sm.score(n).detach().clone() for n in names}
    hard = sm.hard_mask()
    flips = randomize_signs(sm, torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(123)   # the draw, recomputed: one rand tensor per weight, in order
    for n in names:
        expected = torch.rand(bases[n].shape, generator=g) < 0.5
        assert torch.equal(flips[n], expected)
        assert 0 < int(expected.sum()) < expected.numel()
        after = sm.base_weight(n)
        assert torch.equal(after[expected], -bases[n][expected])
        assert torch.equal(after[~expected], bases[n][~expected])
        assert torch.equal(after.abs(), bases[n].abs())
        assert torch.equal(sm.score(n), scores[n])
    assert sm.hard_mask() == hard
    for k, v in model.state_dict().items():   # the wrapped model's own parameters are never written
        assert torch.equal(v, params[k]), k
