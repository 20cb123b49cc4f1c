"""Model registry: shapes, exact parameter counts (independent formulas), init statistics, RNG hygiene."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import nn

from prunelab.errors import ConfigError, UnknownNameError
from prunelab.models import build_model, list_models, model_options, register_model
from prunelab.models import registry
from prunelab.models.resnet import ZeroPadShortcut

CIFAR = (3, 32, 32)
MNIST = (1, 28, 28)
EXPECTED_MODELS = [
    "conv2", "conv4", "conv6", "lenet300_100", "resnet18", "resnet20", "resnet20_cs", "resnet32",
    "resnet32_sc", "resnet56", "vgg11_bn", "vgg16_bn", "vgg19_bn",
]  # fmt: skip


@functools.lru_cache(maxsize=None)
def built(name: str, num_classes: int = 10, input_shape: tuple = CIFAR, **options) -> nn.Module:
    """Each (model, shape) is built once per session: the VGGs dominate the file's runtime."""
    return build_model(name, num_classes, input_shape, seed=0, **options).eval()


def weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- independent parameter-count formulas ----------------------------------------------------------------


def vgg_params(cfg: list, num_classes: int, in_ch: int = 3) -> int:
    total, c = 0, in_ch
    for v in cfg:
        if v != "M":
            total += c * v * 9 + v + 2 * v  # conv weight + conv bias + BN gamma/beta
            c = v
    return total + c * num_classes + num_classes


def resnet_params(widths, blocks, num_classes, *, in_ch=3, shortcut="A") -> int:
    total = 9 * in_ch * widths[0] + 2 * widths[0]
    c = widths[0]
    for i, w in enumerate(widths):
        for j in range(blocks):
            total += 9 * c * w + 2 * w + 9 * w * w + 2 * w
            stride = 2 if i > 0 and j == 0 else 1
            if stride != 1 or c != w:
                total += {"A": 0, "B": c * w + 2 * w, "B_nobn": c * w}[shortcut]
            c = w
    return total + c * num_classes + num_classes


CFG_A = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
CFG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
CFG_E = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


# --- registry ----------------------------------------------------------------------------------------------


def test_list_models_sorted_and_complete():
    names = list_models()
    assert names == sorted(names)
    assert set(EXPECTED_MODELS) <= set(names)


@pytest.mark.parametrize("name", EXPECTED_MODELS)
@pytest.mark.parametrize("shape,classes", [(CIFAR, 10), (MNIST, 7)])
def test_every_model_builds_and_runs(name, shape, classes):
    model = built(name, classes, shape)
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, classes)
    assert torch.isfinite(out).all()
    assert model.input_shape == shape and model.num_classes == classes and model.model_name == name
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears[-1].out_features == classes  # output layer = last Linear (scope presets rely on it)


@pytest.mark.parametrize("name", EXPECTED_MODELS)
def test_module_registration_follows_forward_order(name):
    model = built(name)
    called: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda mod, i, o: called.append(mod))
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))
    ]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *CIFAR))
    finally:
        for h in hooks:
            h.remove()
    registered = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    assert [id(m) for m in called] == [id(m) for m in registered]


def test_unknown_name_lists_models_and_suggests():
    with pytest.raises(UnknownNameError) as info:
        build_model("vgg11bn", 10, CIFAR)
    msg = str(info.value)
    assert "'vgg11bn'" in msg and "Did you mean 'vgg11_bn'" in msg
    for name in EXPECTED_MODELS:
        assert name in msg
    assert isinstance(info.value, ConfigError) and isinstance(info.value, KeyError)


@pytest.mark.parametrize(
    "name,kwargs,needle",
    [
        ("resnet20", {"width": 0}, "0"),
        ("vgg11_bn", {"width": -0.5}, "-0.5"),
        ("resnet20", {"width": float("nan")}, "nan"),
        ("resnet20", {"shortcut": "C"}, "'C'"),
        ("vgg19_bn", {"final_pool": "median"}, "'median'"),
        ("conv2", {"init": "he_uniform"}, "'he_uniform'"),
        ("lenet300_100", {"width": 2.0}, "'width'"),  # option the model does not have
        ("resnet20", {"num_classes": 0}, "0"),
        ("conv4", {"input_shape": (3, 32)}, "(3, 32)"),
        ("vgg19_bn", {"input_shape": (3, 8, 8)}, "(3, 8, 8)"),  # pools would shrink the map to 0
        ("conv6", {"input_shape": (3, 4, 4)}, "(3, 4, 4)"),
        ("resnet20", {"seed": -1}, "-1"),
        ("resnet20", {"seed": 2**64}, str(2**64)),
    ],
)
def test_bad_options_raise_config_error_naming_value(name, kwargs, needle):
    kwargs = dict(kwargs)
    num_classes = kwargs.pop("num_classes", 10)
    input_shape = kwargs.pop("input_shape", CIFAR)
    with pytest.raises(ConfigError) as info:
        build_model(name, num_classes, input_shape, **kwargs)
    assert needle in str(info.value)


def test_unknown_option_lists_allowed():
    with pytest.raises(ConfigError) as info:
        build_model("resnet20", 10, CIFAR, depth=32)
    msg = str(info.value)
    assert "'depth'" in msg and "width" in msg and "shortcut" in msg and "init" in msg


def test_model_options_reports_defaults():
    assert model_options("resnet20") == {"width": 1.0, "shortcut": "A", "init": "he"}
    assert model_options("vgg19_bn") == {"width": 1.0, "final_pool": "avg", "init": "sc"}
    assert model_options("lenet300_100") == {"init": "glorot_truncated"}


def test_register_model_custom_and_duplicate(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_model("tiny_test_net")
    def tiny(num_classes, input_shape, *, hidden: int = 4):
        flat = math.prod(input_shape)
        return nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.Linear(hidden, num_classes))

    model = build_model("tiny_test_net", 3, (2, 2), hidden=5)
    assert model(torch.zeros(4, 2, 2)).shape == (4, 3)
    assert model.input_shape == (2, 2) and model.num_classes == 3
    assert "tiny_test_net" in list_models()

    def other(num_classes, input_shape):
        return nn.Linear(1, 1)

    with pytest.raises(ConfigError, match="tiny_test_net"):
        register_model("tiny_test_net")(other)


# --- seeding ------------------------------------------------------------------------------------------------


def test_seed_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    a = build_model("resnet20", 10, CIFAR, seed=7, width=0.5)
    b = build_model("resnet20", 10, CIFAR, seed=7, width=0.5)
    c = build_model("resnet20", 10, CIFAR, seed=8, width=0.5)
    assert torch.equal(torch.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["conv1.weight"], sc["conv1.weight"])


def test_without_seed_the_global_rng_decides():
    torch.manual_seed(99)
    a = build_model("lenet300_100", 10, MNIST)
    torch.manual_seed(99)
    b = build_model("lenet300_100", 10, MNIST)
    assert torch.equal(a.fc1.weight, b.fc1.weight)


def test_device_argument():
    model = build_model("lenet300_100", 7, MNIST, seed=0, device=torch.device("cpu"))
    assert all(p.device.type == "cpu" for p in model.parameters())
    ref = built("lenet300_100", 7, MNIST)  # same seed, built without device: identical weights
    assert model.fc1.weight.equal(ref.fc1.weight)


# --- exact counts ----------------------------------------------------------------------------------------


def test_lenet_counts():
    model = built("lenet300_100", 10, MNIST)
    assert sum(w.numel() for w in weights(model)) == 266_200
    assert sum(m.bias.numel() for m in model.modules() if isinstance(m, nn.Linear)) == 410
    assert [tuple(w.shape) for w in weights(model)] == [(300, 784), (100, 300), (10, 100)]


@pytest.mark.parametrize("name,count", [("conv2", 4_300_992), ("conv4", 2_425_024), ("conv6", 2_261_184)])
def test_dlt_convnet_weight_counts(name, count):
    model = built(name)
    assert sum(w.numel() for w in weights(model)) == count
    # biases everywhere (Keras default), one per output unit
    n_out = sum(m.weight.shape[0] for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert n_params(model) == count + n_out


def test_convnet_flatten_follows_input_shape():
    # 28 -> 14 -> 7 -> 3 after three pools: fc1 sees 256 * 3 * 3
    assert built("conv6", 7, MNIST).fc1.in_features == 256 * 9
    assert built("conv2", 7, MNIST).fc1.in_features == 64 * 14 * 14


@pytest.mark.parametrize(
    "name,widths,blocks,shortcut",
    [
        ("resnet20", (16, 32, 64), 3, "A"),
        ("resnet32", (16, 32, 64), 5, "A"),
        ("resnet56", (16, 32, 64), 9, "A"),
        ("resnet32_sc", (32, 64, 128), 5, "B"),
        ("resnet20_cs", (16, 32, 64), 3, "B_nobn"),
        ("resnet18", (64, 128, 256, 512), 2, "B"),
    ],
)
def test_resnet_param_counts(name, widths, blocks, shortcut):
    assert n_params(built(name)) == resnet_params(widths, blocks, 10, shortcut=shortcut)
    assert n_params(built(name, 7, MNIST)) == resnet_params(widths, blocks, 7, in_ch=1, shortcut=shortcut)


def test_resnet_reference_counts():
    assert n_params(built("resnet18")) == 11_173_962
    assert n_params(built("resnet20")) == 269_722  # "0.27M"
    assert n_params(built("resnet56")) == 853_018  # "0.85M"
    sc = weights(built("resnet32_sc"))
    assert len(sc) == 34 and sum(w.numel() for w in sc) == 1_855_584  # SC smart-ratio test vector
    # SC's modules() order: the stage-2 1x1 shortcut comes right after the first block's second conv
    assert [tuple(w.shape[-2:]) for w in sc[11:14]] == [(3, 3), (3, 3), (1, 1)]


def test_resnet_variants_and_width():
    b = build_model("resnet20", 10, CIFAR, shortcut="B", seed=0)
    assert n_params(b) == resnet_params((16, 32, 64), 3, 10, shortcut="B")
    half = build_model("resnet56", 10, CIFAR, width=0.5, seed=0)
    assert n_params(half) == resnet_params((8, 16, 32), 9, 10, shortcut="A")
    assert half.fc.in_features == 32
    cs = built("resnet20_cs")
    proj = cs.layer2[0].shortcut
    assert len(proj) == 1 and isinstance(proj[0], nn.Conv2d) and proj[0].stride == (2, 2)


@pytest.mark.parametrize("name,cfg", [("vgg11_bn", CFG_A), ("vgg16_bn", CFG_D), ("vgg19_bn", CFG_E)])
def test_vgg_param_counts(name, cfg):
    assert n_params(built(name)) == vgg_params(cfg, 10)
    assert n_params(built(name, 7, MNIST)) == vgg_params(cfg, 7, in_ch=1)


def test_vgg_layout():
    assert sum(w.numel() for w in weights(built("vgg19_bn"))) == 20_024_000  # SC smart-ratio test vector
    f = built("vgg11_bn").features
    # GST addresses its pruned BNs as features[-3, -6, -10, -13] (conv5..conv8 of cfg A)
    for i in (-3, -6, -10, -13):
        assert isinstance(f[i], nn.BatchNorm2d) and isinstance(f[i - 1], nn.Conv2d)
    assert isinstance(f[-1], nn.AdaptiveMaxPool2d)
    assert isinstance(built("vgg19_bn").features[-1], nn.AdaptiveAvgPool2d)
    quarter = build_model("vgg11_bn", 10, CIFAR, width=0.25, seed=0)
    assert quarter.classifier.in_features == 128
    assert n_params(quarter) == vgg_params([v if v == "M" else v // 4 for v in CFG_A], 10)


# --- option-A shortcut --------------------------------------------------------------------------------------


def test_option_a_shortcut_subsamples_and_zero_pads():
    sc = ZeroPadShortcut(16, 32, stride=2)
    assert list(sc.parameters()) == [] and list(sc.buffers()) == []
    x = torch.randn(2, 16, 8, 8)
    y = sc(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, :8]) == 0 and torch.count_nonzero(y[:, 24:]) == 0
    odd = ZeroPadShortcut(5, 10, stride=2)(torch.ones(1, 5, 4, 4))
    assert odd.shape == (1, 10, 2, 2) and odd.sum(dim=(0, 2, 3)).tolist() == [0, 0] + [4] * 5 + [0, 0, 0]


def test_resnet20_option_a_has_only_3x3_convs():
    model = built("resnet20")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 and all(c.kernel_size == (3, 3) for c in convs)
    assert isinstance(model.layer2[0].shortcut, ZeroPadShortcut)
    assert isinstance(model.layer1[0].shortcut, nn.Identity)


# --- initialisation ----------------------------------------------------------------------------------------


def rel_err(t: torch.Tensor, target: float) -> float:
    return abs(t.float().std().item() - target) / target


def test_init_gst_vgg11():
    model = built("vgg11_bn")
    conv = model.features[-4]
    assert conv.weight.shape == (512, 512, 3, 3)
    assert rel_err(conv.weight, math.sqrt(2 / (512 * 9))) < 0.05  # kaiming fan_out
    assert torch.count_nonzero(conv.bias) == 0
    bn = model.features[-3]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    bound = 1 / math.sqrt(512)  # PyTorch default Linear init: U(-1/sqrt(in), 1/sqrt(in)) for the bias too
    assert model.classifier.weight.abs().max() <= bound and model.classifier.bias.abs().max() <= bound
    assert torch.count_nonzero(model.classifier.bias) > 0


def test_init_sc_vgg19_and_resnet32():
    vgg = built("vgg19_bn")
    first_512 = vgg.features[27]  # first conv of stage 4: 256 -> 512, fan_in 256 * 9
    assert first_512.weight.shape == (512, 256, 3, 3)
    assert rel_err(first_512.weight, math.sqrt(2 / (256 * 9))) < 0.05
    assert rel_err(vgg.classifier.weight, 0.01) < 0.05 and torch.count_nonzero(vgg.classifier.bias) == 0
    rn = built("resnet32_sc")
    conv = rn.layer3[0].conv1  # 64 -> 128: fan_out 128 * 9 differs from fan_in 64 * 9
    assert rel_err(conv.weight, math.sqrt(2 / (128 * 9))) < 0.05
    assert rel_err(rn.fc.weight, 0.01) < 0.1 and torch.count_nonzero(rn.fc.bias) == 0


def test_init_he_resnet56_and_xavier_cs():
    rn = built("resnet56")
    conv = rn.layer3[4].conv2
    assert rel_err(conv.weight, math.sqrt(2 / (64 * 9))) < 0.05
    cs = built("resnet20_cs")
    conv = cs.layer3[0].conv1  # 32 -> 64: xavier std sqrt(2 / (9 * (32 + 64)))
    assert rel_err(conv.weight, math.sqrt(2 / (9 * 96))) < 0.05
    assert torch.count_nonzero(cs.fc.bias) == 0


def test_init_glorot_truncated_vs_plain():
    fc1 = built("conv2").fc1.weight  # 16384 -> 256
    std = math.sqrt(2 / (16384 + 256))
    assert rel_err(fc1, std) < 0.01
    assert fc1.abs().max().item() <= 2 * std / 0.87962566103423978 + 1e-7  # cut at 2 raw std
    plain = build_model("conv2", 10, CIFAR, seed=0, init="glorot_normal").fc1.weight
    assert rel_err(plain, std) < 0.01
    assert plain.abs().max().item() > 2 * std / 0.87962566103423978  # untruncated tails exist
    assert all(torch.count_nonzero(m.bias) == 0 for m in built("conv2").modules() if hasattr(m, "bias")
               and isinstance(m, (nn.Conv2d, nn.Linear)))


def test_init_resnet18_is_pytorch_default():
    conv = built("resnet18").layer4[1].conv2  # default kaiming_uniform(a=sqrt(5)): std = 1/sqrt(3 fan_in)
    assert rel_err(conv.weight, 1 / math.sqrt(3 * 512 * 9)) < 0.05


# --- autograd ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,opts", [("resnet20", {"width": 0.25}), ("vgg11_bn", {"width": 0.125}),
                                       ("resnet20_cs", {"width": 0.25})])
def test_hessian_vector_product_runs(name, opts):
    model = build_model(name, 10, CIFAR, seed=0, **opts)
    x, y = torch.randn(4, *CIFAR), torch.tensor([0, 1, 2, 3])
    params = [p for p in model.parameters() if p.requires_grad]
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    vs = [torch.randn_like(p) for p in params]
    hv = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vs)), params)
    assert all(torch.isfinite(h).all() for h in hv)
    assert any(h.abs().sum() > 0 for h in hv)
