"""SNIP, GraSP and SynFlow against independent autograd computations (spec §1.5, §1.6, §4.9)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from prunelab import prune
from prunelab.data import Dataset, Split
from prunelab.errors import ConfigError
from prunelab.primitives import Mask, compute_scores
from prunelab.primitives.init_scores import class_balanced_batch
from prunelab.training import snapshot


class SmallNet(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.b1 = nn.BatchNorm2d(6)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)
        self.input_shape = (3, 6, 6)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.c2(x))
        return self.fc(x.mean((2, 3)))


def _net(seed=0):
    torch.manual_seed(seed)
    return SmallNet().double()


def _batch(n=12, seed=1, classes=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 6, 6, generator=g, dtype=torch.float64), torch.arange(n) % classes


WEIGHTS = ["c1.weight", "c2.weight", "fc.weight"]


def test_snip_equals_mask_variable_gradient():
    net = _net()
    x, y = _batch()
    ours = compute_scores("snip", net, Mask.ones(net), data=(x, y))
    # SNIP's definition: |∂L/∂m| at m = 1 for w ⊙ m, with the mask as the variable
    ref_net = _net()
    ref_net.train()
    params = dict(ref_net.named_parameters())
    ms = {n: torch.ones_like(params[n], requires_grad=True) for n in WEIGHTS}
    over = {**{k: v.detach() for k, v in params.items()}, **{n: params[n].detach() * ms[n] for n in WEIGHTS}}
    loss = F.cross_entropy(functional_call(ref_net, over, (x,)), y)
    grads = torch.autograd.grad(loss, [ms[n] for n in WEIGHTS])
    ref = {n: g.abs() for n, g in zip(WEIGHTS, grads)}
    total = sum(v.sum() for v in ref.values())
    for n in WEIGHTS:
        torch.testing.assert_close(ours[n], ref[n] / total, rtol=1e-9, atol=1e-12)


def _grasp_reference(net, x, y, T=200.0):
    net.train()
    params = {k: v.detach() for k, v in net.named_parameters()}
    h = x.shape[0] // 2
    halves = [(x[:h], y[:h]), (x[h:], y[h:])]

    def loss_fn(xb, yb):
        def f(*ws):
            return F.cross_entropy(functional_call(net, {**params, **dict(zip(WEIGHTS, ws))}, (xb,)) / T, yb)
        return f

    ws = tuple(params[n] for n in WEIGHTS)
    g = [torch.zeros_like(w) for w in ws]
    for xb, yb in halves:
        wr = tuple(w.clone().requires_grad_(True) for w in ws)
        for acc, gr in zip(g, torch.autograd.grad(loss_fn(xb, yb)(*wr), wr)):
            acc += gr
    hg = [torch.zeros_like(w) for w in ws]
    for xb, yb in halves:
        _, hv = torch.autograd.functional.hvp(loss_fn(xb, yb), ws, tuple(g))
        for acc, v in zip(hg, hv):
            acc += v
    S = {n: -(w * v) for n, w, v in zip(WEIGHTS, ws, hg)}
    norm = sum(s.sum() for s in S.values()).abs()
    return {n: -s / norm for n, s in S.items()}


def test_grasp_equals_hessian_vector_product_reference():
    x, y = _batch()
    ours = compute_scores("grasp", _net(), Mask.ones(_net()), data=(x, y), reinit_linear=False)
    ref = _grasp_reference(_net(), x, y)
    for n in WEIGHTS:
        torch.testing.assert_close(ours[n], ref[n], rtol=1e-7, atol=1e-10)
    assert any(bool((ours[n] != 0).any()) for n in WEIGHTS)


def test_grasp_reinitialises_linear_layers_for_scoring_only():
    x, y = _batch()
    net = _net()
    before = snapshot(net)
    ours = compute_scores("grasp", net, Mask.ones(net), data=(x, y), seed=5)
    for k, v in snapshot(net).items():
        assert torch.equal(v, before[k]), k          # the real network (incl. its Linear) is untouched
    ref_net = _net()
    w = torch.empty(ref_net.fc.weight.shape)
    nn.init.xavier_normal_(w, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref_net.fc.weight.copy_(w)
    ref = _grasp_reference(ref_net, x, y)
    for n in WEIGHTS:
        torch.testing.assert_close(ours[n], ref[n], rtol=1e-7, atol=1e-10)
    plain = compute_scores("grasp", _net(), Mask.ones(_net()), data=(x, y), reinit_linear=False)
    assert not torch.allclose(plain["c1.weight"], ours["c1.weight"])


def test_synflow_equals_path_norm_products():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 4, bias=False), nn.ReLU(),
                        nn.Linear(4, 3, bias=False))
    ours = compute_scores("synflow", net, Mask.ones(net), input_shape=(6,))
    A1, A2, A3 = (m.weight.detach().double().abs() for m in (net[0], net[2], net[4]))
    one = lambda k: torch.ones(k, dtype=torch.float64)  # noqa: E731
    # R = 1ᵀ A3 A2 A1 1 once every weight is positive (ReLUs are the identity there)
    ref = {"0.weight": A1 * torch.outer(one(3) @ A3 @ A2, one(6)),
           "2.weight": A2 * torch.outer(one(3) @ A3, A1 @ one(6)),
           "4.weight": A3 * torch.outer(one(3), A2 @ A1 @ one(6))}
    top = max(float(v.max()) for v in ref.values())
    for n in ref:
        torch.testing.assert_close(ours[n].double(), ref[n] / top, rtol=1e-5, atol=1e-7)
    assert torch.equal(net[0].weight, net[0].weight.abs()) is False   # signs of the model untouched


def test_iterative_synflow_reaches_the_target_through_prune():
    net = _net().float()
    before = snapshot(net)
    m = prune(net, sparsity=0.8, score="synflow", iterations=10, target_sparsity=0.8, apply=False)
    total = m.total()
    assert m.kept() == total - round(0.8 * total)
    for k, v in snapshot(net).items():
        assert torch.equal(v, before[k]), k
    one = prune(net, sparsity=0.8, score="synflow", apply=False)
    assert one.kept() == m.kept() and one != m   # iterating changes the mask
    with pytest.raises(ConfigError, match="target_sparsity"):
        compute_scores("synflow", net, Mask.ones(net), iterations=5)


def _dataset(n=80, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randint(0, 256, (n, 3, 6, 6), generator=g, dtype=torch.uint8)
    s = Split(x, y)
    return Dataset("tiny", train=s, val=None, test=s, num_classes=classes, input_shape=(3, 6, 6),
                   mean=(0.5,) * 3, std=(0.25,) * 3)


def test_class_balanced_batch_and_prune_with_snip():
    ds = _dataset()
    x, y = class_balanced_batch(ds, 3, generator=torch.Generator().manual_seed(0))
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3] and x.dtype == torch.float32
    with pytest.raises(ConfigError, match="samples_per_class=50"):
        class_balanced_batch(ds, 50)
    net = SmallNet()
    before = snapshot(net)
    m = prune(net, sparsity=0.7, score="snip", data=ds, samples_per_class=3, apply=False, seed=1)
    assert m.kept() == m.total() - round(0.7 * m.total())
    for k, v in snapshot(net).items():   # BN running stats included
        assert torch.equal(v, before[k]), k
    assert m == prune(net, sparsity=0.7, score="snip", data=ds, samples_per_class=3, apply=False, seed=1)
    lw = prune(net, sparsity=0.7, score="grasp", data=ds, samples_per_class=3, allocation="layerwise",
               apply=False)
    assert all(abs(lw.sparsity(n) - 0.7) < 0.02 for n in lw)
    with pytest.raises(ConfigError, match="needs data"):
        prune(net, sparsity=0.5, score="snip")
