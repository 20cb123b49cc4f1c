"""export_pruned: physical removal of pruned filters gives a smaller model with the masked model's outputs."""
import copy

import pytest
import torch
from torch import nn

from prunelab.export import IndexShortcut, export_pruned, format_report
from prunelab.models import build_model
from prunelab.primitives.filters import FilterMasking, filter_mask
from prunelab.primitives.masks import Mask

SHAPE = (3, 16, 16)


def make(name, **kw):
    model = build_model(name, 10, kw.pop("shape", SHAPE), seed=0, **kw)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial BN: a channel that is not silenced would show
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))
    return model.eval()


def random_mask(model, frac, seed=0, only=None):
    fm = filter_mask(model, ["*"])
    g = torch.Generator().manual_seed(seed)
    masks = {}
    for n in fm:
        m = fm[n].clone()
        if only is None or n[: -len(".weight")] in only:
            c = m.shape[0]
            m[torch.randperm(c, generator=g)[: int(frac * c)]] = False
        masks[n] = m
    return Mask(masks, fm.shapes)


def pruned(mask, conv):
    return set((~mask[f"{conv}.weight"].reshape(-1)).nonzero().flatten().tolist())


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def assert_same_outputs(model, mask, exported, shape=SHAPE):
    masked = copy.deepcopy(model)
    FilterMasking(masked, mask)
    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(2))
    masked.eval()
    exported.eval()
    with torch.no_grad():
        want, got = masked(x), exported(x)
    assert want.shape == got.shape
    assert torch.allclose(want, got, atol=1e-5), (want - got).abs().max()


@pytest.mark.parametrize("frac", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("name,kw", [("vgg11_bn", {"width": 0.125, "shape": (3, 32, 32)}),
                                     ("conv2", {"shape": (3, 8, 8)}), ("conv4", {"shape": (3, 8, 8)})])
def test_plain_chains_exact_and_smaller(name, kw, frac):
    shape = kw.get("shape", SHAPE)
    model = make(name, **kw)
    mask = random_mask(model, frac)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    exported = export_pruned(model, mask, check=False)
    assert_same_outputs(model, mask, exported, shape)
    assert n_params(exported) < n_params(model)
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())  # input model untouched
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    rep = exported.export_report
    for conv in convs:  # in a plain chain every pruned filter is removed
        assert rep[conv].removed_out == sorted(pruned(mask, conv))
        assert rep[conv].out_after == rep[conv].out_before - len(pruned(mask, conv))
        assert exported.get_submodule(conv).out_channels == rep[conv].out_after
    # the consumer after the last conv is a Linear: it lost h*w columns per removed channel
    lin = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][0]
    assert rep[lin].in_after < rep[lin].in_before


def streams_of(name):
    if name == "resnet20":
        return [["conv1"] + [f"layer1.{i}.conv2" for i in range(3)]] + \
               [[f"layer{s}.{i}.conv2" for i in range(3)] for s in (2, 3)]
    return [["conv1", "layer1.0.conv2", "layer1.1.conv2"]] + [[f"layer{s}.{i}.conv2" for i in range(2)]
                                                               for s in (2, 3, 4)]


def unequal_stream_mask(model, streams, frac, seed):
    """Every stream: a common pruned set in all its producers, plus different extra channels per producer;
    block conv1s and projection convs pruned at random."""
    g = torch.Generator().manual_seed(seed)
    mask = random_mask(model, frac, seed, only=[n for n, m in model.named_modules() if n.endswith("conv1")
                                                or n.endswith("shortcut.0")])
    masks = {n: mask[n].clone() for n in mask}
    common = {}
    for s in streams:
        c = masks[f"{s[0]}.weight"].shape[0]
        perm = torch.randperm(c, generator=g).tolist()
        k = max(1, int(frac * c) // 2)
        common[tuple(s)] = set(perm[:k])
        rest = perm[k:]
        for j, conv in enumerate(s):
            m = torch.ones(c, 1, 1, 1, dtype=torch.bool)
            e = max(1, min(k, len(rest) // len(s)))
            extra = rest[j * e:(j + 1) * e]  # disjoint between producers
            m[list(common[tuple(s)] | set(extra))] = False
            masks[f"{conv}.weight"] = m
    return Mask(masks, mask.shapes), common


@pytest.mark.parametrize("frac", [0.3, 0.6])
@pytest.mark.parametrize("name,kw", [("resnet20", {"width": 0.5}), ("resnet18", {"width": 0.125})])
def test_resnet_unequal_residual_masks(name, kw, frac):
    model = make(name, **kw)
    streams = streams_of(name)
    mask, common = unequal_stream_mask(model, streams, frac, seed=3)
    exported = export_pruned(model, mask)
    assert_same_outputs(model, mask, exported)
    assert n_params(exported) < n_params(model)
    rep = exported.export_report
    for s in streams:  # only the channels every producer of the stream prunes are removed
        for conv in s:
            assert rep[conv].removed_out == sorted(common[tuple(s)])
            assert rep[conv].zero_kept == sorted(pruned(mask, conv) - common[tuple(s)])
            assert rep[conv].zero_kept  # the masks really differ: some pruned channels stay as zeros
    for n, m in model.named_modules():  # block conv1: a plain pair with conv2, all pruned filters removed
        if n.endswith(".conv1"):
            assert rep[n].removed_out == sorted(pruned(mask, n))
            assert rep[f"{n[:-1]}2"].removed_in == sorted(pruned(mask, n))
    shortcuts = [m for n, m in exported.named_modules() if isinstance(m, IndexShortcut)]
    assert shortcuts  # identity / option-A shortcuts re-expressed with explicit zero channels
    if name == "resnet20":
        assert not any(type(m).__name__ == "ZeroPadShortcut" for m in exported.modules())


def test_resnet_masked_model_with_filtermasking_attached():
    model = make("resnet20", width=0.5)
    mask, _ = unequal_stream_mask(model, streams_of("resnet20"), 0.5, seed=4)
    fm = FilterMasking(model, mask)  # hooks on the model itself: export must not copy them
    exported = export_pruned(model, mask)
    fm.remove()
    assert_same_outputs(model, mask, exported)


@pytest.mark.parametrize("name,kw,conv", [("vgg11_bn", {"width": 0.125, "shape": (3, 32, 32)}, "features.4"),
                                          ("resnet20", {"width": 0.5}, "layer2.1.conv1"),
                                          ("resnet20", {"width": 0.5}, "conv1")])
@pytest.mark.parametrize("keep", [1, 0])
def test_fully_pruned_but_one_layer(name, kw, conv, keep):
    shape = kw.get("shape", SHAPE)
    model = make(name, **kw)
    mask = filter_mask(model, [conv])
    m = mask[f"{conv}.weight"]
    m[keep:] = False  # keep one filter, or none (then one zero channel stays for a valid shape)
    exported = export_pruned(model, mask)
    assert_same_outputs(model, mask, exported, shape)
    rep = exported.export_report[conv]
    if conv == "conv1":  # a resnet stem is coupled to layer1's conv2s, which keep everything: zeros stay
        assert rep.removed_out == [] and rep.out_after == rep.out_before
        assert rep.zero_kept == sorted(pruned(mask, conv))
        return
    assert rep.out_after == 1
    assert len(rep.removed_out) == rep.out_before - 1
    assert len(rep.zero_kept) == (0 if keep else 1)
    assert n_params(exported) < n_params(model)


def test_stem_alone_is_not_removed_from_a_residual_stream():
    model = make("resnet20", width=0.5)
    mask = filter_mask(model, ["conv1"])
    mask["conv1.weight"][:4] = False
    exported = export_pruned(model, mask)
    assert_same_outputs(model, mask, exported)
    rep = exported.export_report["conv1"]
    assert rep.removed_out == [] and rep.zero_kept == [0, 1, 2, 3]
    assert n_params(exported) == n_params(model)


def test_report_table_lists_removals():
    model = make("vgg11_bn", width=0.125, shape=(3, 32, 32))
    mask = random_mask(model, 0.5)
    exported = export_pruned(model, mask)
    table = format_report(exported.export_report)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["layer", "out", "in"]
    assert any(line.startswith("features.0 ") and "8->4" in line for line in lines)
    assert any(line.startswith("classifier") for line in lines)


def test_no_filter_mask_is_identity():
    model = make("resnet18", width=0.125)
    exported = export_pruned(model, filter_mask(model, ["*"]))
    assert n_params(exported) == n_params(model)
    assert all(not c.removed_out and not c.removed_in for c in exported.export_report.values())
    assert not any(isinstance(m, IndexShortcut) for m in exported.modules())
