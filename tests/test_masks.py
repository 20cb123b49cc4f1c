import json

import pytest
import torch
from torch import nn

from prunelab import ConfigError, Mask, resolve_scope
from prunelab.primitives import layer_groups, output_layer_name


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 1),
                         nn.Flatten(), nn.LazyLinear(2) if False else nn.Linear(6 * 4, 2))


def test_scopes_presets_and_names():
    m = cnn()
    assert resolve_scope(m) == ["0.weight", "3.weight", "5.weight"]
    assert resolve_scope(m, "conv") == ["0.weight", "3.weight"]
    assert resolve_scope(m, "conv3x3") == ["0.weight"]
    assert resolve_scope(m, "exclude_output") == ["0.weight", "3.weight"]
    assert resolve_scope(m, "linear") == ["5.weight"]
    assert resolve_scope(m, include_bias=True) == ["0.weight", "0.bias", "3.weight", "3.bias", "5.weight",
                                                   "5.bias"]
    assert "1.weight" in resolve_scope(m, include_bn=True)
    assert resolve_scope(m, ["5.weight", "0.weight"]) == ["0.weight", "5.weight"]
    assert output_layer_name(m) == "5"
    assert layer_groups(m, resolve_scope(m)) == {"0.weight": "conv", "3.weight": "conv", "5.weight": "output"}


def test_scope_errors_name_value():
    with pytest.raises(ConfigError, match="convs.*allowed.*conv3x3"):
        resolve_scope(cnn(), "convs")
    with pytest.raises(ConfigError, match="nope.weight"):
        resolve_scope(cnn(), ["nope.weight"])


def test_counts_sparsity_and_apply():
    m = mlp()
    mask = Mask.ones(m)
    assert mask.total() == 6 * 5 + 5 * 4 + 4 * 3 and mask.sparsity() == 0.0
    w = torch.ones(5, 6, dtype=torch.bool)
    w[0, :] = False  # 6 of 30 pruned
    mask2 = Mask({"0.weight": w, "2.weight": mask["2.weight"], "4.weight": mask["4.weight"]})
    assert mask2.kept("0.weight") == 24 and mask2.kept() == 24 + 20 + 12
    assert mask2.sparsity("0.weight") == pytest.approx(0.2)
    assert mask2.sparsity() == pytest.approx(6 / 62)
    mask2.apply(m)
    assert torch.count_nonzero(m[0].weight[0]) == 0 and torch.count_nonzero(m[0].weight[1:]) == 24
    assert Mask.from_weights(m) == mask2


def test_filter_granularity_counts_and_broadcast():
    m = cnn()
    fm = Mask.ones(m, "conv", granularity="filter")
    assert fm["0.weight"].shape == (4, 1, 1, 1)
    f = fm["0.weight"].clone()
    f[1] = False
    fm = Mask({"0.weight": f, "3.weight": fm["3.weight"]}, fm.shapes)
    assert fm.kept("0.weight") == 3 * 27 and fm.total("0.weight") == 4 * 27
    fm.apply(m)
    assert torch.all(m[0].weight[1] == 0) and torch.all(m[0].weight[0] != 0)
    # mixed-granularity set operations work at full shape
    full = Mask.ones(m, "conv")
    both = fm & full
    assert both.kept() == fm.kept()


def test_set_operations():
    a = Mask({"w": torch.tensor([True, True, False, False])})
    b = Mask({"w": torch.tensor([True, False, True, False])})
    assert (a & b)["w"].tolist() == [True, False, False, False]
    assert (a | b)["w"].tolist() == [True, True, True, False]
    assert (a - b)["w"].tolist() == [False, True, False, False]
    assert (~a)["w"].tolist() == [False, False, True, True]
    assert a.overlap(b) == 0.5
    with pytest.raises(ConfigError):
        a & Mask({"v": torch.tensor([True])})


def test_save_load_roundtrip_bit_exact_and_no_pickle(tmp_path):
    m = cnn()
    g = torch.Generator().manual_seed(3)
    mask = Mask({n: torch.rand(t.shape, generator=g) > 0.5 for n, t in Mask.ones(m).items()})
    fmask = Mask.ones(m, "conv", granularity="filter")
    p = tmp_path / "mask.safetensors"
    mask.save(p, {"round": 3})
    loaded = Mask.load(p)
    assert loaded == mask and loaded.names() == mask.names()
    for n in mask:
        assert torch.equal(loaded[n], mask[n]) and loaded[n].dtype == torch.bool
    fmask.save(p)
    assert Mask.load(p).shapes == fmask.shapes and Mask.load(p)["0.weight"].shape == (4, 1, 1, 1)
    # the file is a safetensors file: 8-byte header length then JSON, never a pickle
    raw = p.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    assert "__metadata__" in header and not raw.startswith(b"\x80")


def test_shape_mismatch_errors():
    with pytest.raises(ConfigError, match=r"shape \(3,\).*\(2, 2\)"):
        Mask({"w": torch.ones(3, dtype=torch.bool)}, {"w": (2, 2)})
    m = mlp()
    bad = Mask({"0.weight": torch.ones(6, 5, dtype=torch.bool)})
    with pytest.raises(ConfigError, match="0.weight"):
        bad.apply(m)
    with pytest.raises(ConfigError, match="missing.weight"):
        Mask({"missing.weight": torch.ones(2, dtype=torch.bool)}).check(m)


def test_summary_table():
    m = mlp()
    s = Mask.ones(m).summary()
    assert "0.weight" in s and "total" in s and "62" in s and "0.00%" in s
