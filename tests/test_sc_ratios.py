"""Smart ratio, ERK and uniform layerwise keep counts (spec §4.4, §4.9)."""
import math

import pytest
import torch
from torch import nn

from prunelab.errors import ConfigError, UnknownNameError
from prunelab.models import build_model
from prunelab.primitives.ratios import (erk_counts, ratio_counts, ratio_mask, round_to_total, smart_ratio_counts,
                                        uniform_counts)

# spec §4.4: kept count / layer size in %, layers in modules() order, the Linear last
VGG19 = {
    0.98: [100, 100, 83.84, 26.35, 14.61, 8.70, 5.41, 3.45, 2.23, 1.45, 0.93, 0.59, 0.36, 0.20, 0.11, 0.05, 30],
    0.95: [100, 100, 100, 100, 66.86, 21.80, 13.55, 8.65, 5.59, 3.62, 2.33, 1.47, 0.89, 0.51, 0.27, 0.12, 30],
    0.90: [100] * 6 + [31.77, 17.30, 11.19, 7.25, 4.66, 2.94, 1.79, 1.03, 0.54, 0.24, 30],
}
RESNET32_98 = [15.74, 14.93, 14.05, 13.19, 12.37, 11.58, 10.80, 10.06, 9.33, 8.65, 7.98, 7.34, 6.73, 6.10, 5.59,
               5.06, 4.55, 4.07, 3.62, 3.19, 2.79, 2.42, 2.08, 1.76, 1.45, 1.20, 0.96, 0.74, 0.56, 0.40, 0.27,
               0.16, 0.08, 30]


@pytest.fixture(scope="module")
def nets():
    with torch.device("meta"):   # shapes only: no 20M-weight init
        return {n: build_model(n) for n in ("vgg19_bn", "resnet32_sc", "resnet32")}


def _sizes(model):
    return {n: p.numel() for n, p in model.named_parameters()
            if p.dim() > 1}


def _pct(model, counts):
    sizes = _sizes(model)
    assert list(counts) == list(sizes)
    return [100.0 * counts[n] / sizes[n] for n in counts]


def test_registry_models_have_the_shapes_the_vectors_assume(nets):
    vgg, rsc, r32 = _sizes(nets["vgg19_bn"]), _sizes(nets["resnet32_sc"]), _sizes(nets["resnet32"])
    assert (len(vgg), sum(vgg.values())) == (17, 20_024_000)
    assert (len(rsc), sum(rsc.values())) == (34, 1_855_584)
    # the registry's plain resnet32 is He et al.'s 16/32/64 option-A net, NOT SC's doubled ResNet-32
    assert (len(r32), sum(r32.values())) == (32, 461_872)


@pytest.mark.parametrize("sparsity", [0.98, 0.95, 0.90])
def test_smart_ratio_vgg19_matches_spec_vectors(nets, sparsity):
    got = _pct(nets["vgg19_bn"], smart_ratio_counts(nets["vgg19_bn"], sparsity, rounding="official"))
    assert got == pytest.approx(VGG19[sparsity], abs=0.005 + 1e-9)


def test_smart_ratio_resnet32_matches_spec_vectors(nets):
    net = nets["resnet32_sc"]
    c98 = smart_ratio_counts(net, 0.98, rounding="official")
    assert _pct(net, c98) == pytest.approx(RESNET32_98, abs=0.005 + 1e-9)
    assert sum(c98.values()) == 37_094
    assert sum(smart_ratio_counts(nets["vgg19_bn"], 0.98, rounding="official").values()) == 400_474
    p90 = _pct(net, smart_ratio_counts(net, 0.90, rounding="official"))
    assert round(p90[0], 2) == 79.75 and round(p90[-2], 2) == 0.40 and p90[-1] == 30.0
    assert all(a > b for a, b in zip(p90[:-2], p90[1:-1]))   # decreasing smoothly over the convs
    p95 = _pct(net, smart_ratio_counts(net, 0.95, rounding="official"))
    assert p90[0] > p95[0] > _pct(net, c98)[0]


@pytest.mark.parametrize("name", ["vgg19_bn", "resnet32_sc"])
@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.95, 0.98, 0.995])
def test_exact_rounding_hits_the_global_target(nets, name, sparsity):
    net = nets[name]
    total = sum(_sizes(net).values())
    target = total - round(sparsity * total)
    official = smart_ratio_counts(net, sparsity, rounding="official")
    for counts in (smart_ratio_counts(net, sparsity), erk_counts(net, sparsity), uniform_counts(net, sparsity)):
        assert abs(sum(counts.values()) - target) <= 1
        assert all(0 <= counts[n] <= s for n, s in _sizes(net).items())
    exact = smart_ratio_counts(net, sparsity)
    assert all(0 <= exact[n] - official[n] <= 1 for n in exact)   # only the truncation losses are put back


def test_smart_ratio_vgg_vs_resnet_rule_and_linear_ratio(nets):
    net = nets["vgg19_bn"]
    sizes = _sizes(net)
    as_resnet = smart_ratio_counts(net, 0.98, arch="resnet", rounding="official")
    as_vgg = smart_ratio_counts(net, 0.98, arch="vgg", rounding="official")
    assert as_vgg == smart_ratio_counts(net, 0.98, rounding="official")   # auto picks vgg for a VGG
    assert as_resnet != as_vgg
    fc = "classifier.weight"
    q = smart_ratio_counts(net, 0.98, linear_keep_ratio=0.1, rounding="official")[fc]
    assert q == int(0.1 * sizes[fc]) and as_vgg[fc] == int(0.3 * sizes[fc])


def test_smart_ratio_ablations(nets):
    net = nets["resnet32_sc"]
    sizes = _sizes(net)
    names = list(sizes)[:-1]

    def dens(variant):
        c = smart_ratio_counts(net, 0.95, variant=variant, rounding="official")
        return [c[n] / sizes[n] for n in names]

    asc, lin, cub, quad, uni = (dens(v) for v in ("ascend", "linear_decay", "cubic", "quadratic", "uniform"))
    assert all(a < b for a, b in zip(asc, asc[1:]))   # ascending
    assert all(a > b for a, b in zip(cub, cub[1:]))
    # steeper decay keeps more in the first layer: cubic > quadratic > linear
    assert cub[0] > quad[0] > lin[0]
    assert max(uni) - min(uni) < 3 / min(sizes[n] for n in names)   # one ratio up to truncation


def test_overflow_is_carried_to_the_next_layer():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 2, 3)     # 18 weights
            self.b = nn.Conv2d(2, 20, 3)    # 360
            self.c = nn.Conv2d(20, 40, 3)   # 7200
            self.fc = nn.Linear(40, 10)     # 400
    net = Net()
    sparsity = 0.5
    c = smart_ratio_counts(net, sparsity, arch="resnet", rounding="official")
    # the raw ratios (L=4: 20, 12, 6) scaled to the budget exceed 1 for the two small convs
    assert c["a.weight"] == 18 and c["b.weight"] == 360 and c["fc.weight"] == 120
    goal = int(7978 * 0.5) - int(400 * 0.3)
    assert abs(sum(c.values()) - (goal + 120)) <= 3   # the excess of a and b landed in c
    assert abs(sum(smart_ratio_counts(net, sparsity, arch="resnet").values()) - (7978 - 3989)) <= 1


def test_erk_densities_follow_the_rule():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 4, 1)
            self.c2 = nn.Conv2d(4, 64, 3)
            self.fc1 = nn.Linear(64 * 4, 300)
            self.fc2 = nn.Linear(300, 10)
    net = Net()
    counts = erk_counts(net, 0.9)
    shapes = {n: tuple(p.shape) for n, p in net.named_parameters() if p.dim() > 1}
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / math.prod(s) for n, s in shapes.items()}
    dense = [n for n in counts if counts[n] == sizes[n]]
    assert "c1.weight" in dense     # 12 weights with a huge ER density: made dense
    free = [n for n in counts if n not in dense]
    eps = [counts[n] / sizes[n] / raw[n] for n in free]
    assert max(eps) == pytest.approx(min(eps), rel=0.02)   # one ε for every non-dense layer
    assert sum(counts.values()) == sum(sizes.values()) - round(0.9 * sum(sizes.values()))


def test_round_to_total_and_errors():
    assert round_to_total({"a": 1.6, "b": 2.5, "c": 0.9}, {"a": 5, "b": 5, "c": 5}, 5) == {"a": 2, "b": 2, "c": 1}
    with pytest.raises(ConfigError, match="cannot round"):
        round_to_total({"a": 1.0}, {"a": 5}, 4)
    with pytest.raises(UnknownNameError, match="allowed: erk, smart, uniform"):
        ratio_counts(nn.Linear(3, 3), 0.5, "smrt")
    with pytest.raises(UnknownNameError, match="linear_decay"):
        smart_ratio_counts(nn.Conv2d(1, 1, 1), 0.5, variant="quad")
    with pytest.raises(ConfigError, match="sparsity 1.5"):
        erk_counts(nn.Linear(3, 3), 1.5)


def test_ratio_mask_random_and_magnitude_fill():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 4))
    counts = {"0.weight": 50, "2.weight": 9}
    m1 = ratio_mask(net, counts, generator=torch.Generator().manual_seed(1))
    m2 = ratio_mask(net, counts, generator=torch.Generator().manual_seed(2))
    assert m1.layer_counts() == {"0.weight": (50, 216), "2.weight": (9, 32)}
    assert m1 != m2
    w = {n: torch.randn(p.shape) for n, p in net.named_parameters()}
    hm = ratio_mask(net, counts, fill="magnitude", weights=w)
    for n, k in counts.items():
        top = w[n].abs().flatten().topk(k).indices
        assert set(hm[n].flatten().nonzero().flatten().tolist()) == set(top.tolist())
    with pytest.raises(UnknownNameError, match="magnitude, random"):
        ratio_mask(net, counts, fill="largest")
