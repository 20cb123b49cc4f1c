"""CIFAR VGGs with batch norm (spec §1.1: GST VGG11-BN, SC VGG19-BN).

Layout: torchvision cfg A/D/E, each conv = Conv2d(3x3, pad 1, bias) -> BatchNorm2d -> ReLU, a 2x2 max-pool
at every "M". The cfg's last "M" is replaced by a global pool (`final_pool`), so the features always end
as a 512-dim vector (times `width`) followed by a single Linear(512, C):
  * final_pool="max": on 32x32 input the map is 2x2 there, so this equals GST's final MaxPool2d(2).
  * final_pool="avg": equals SC's AvgPool2d(2) on CIFAR (and its AvgPool2d(4) on 64x64 Tiny-ImageNet).
Because the pool is global, 1x28x28 MNIST works too (28 -> 14 -> 7 -> 3 -> 1 before it).
The pool sits at the end of `features`, so `features[i]` indices match torchvision/GST.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._common import (
    check_choice,
    check_input_shape,
    check_num_classes,
    check_width,
    pooled_size,
    reset_batchnorm_,
    scaled,
    zero_bias_,
)
from .registry import register_model

VGG_CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
FINAL_POOLS = ("max", "avg")
VGG_INITS = ("gst", "sc")


class VGG(nn.Module):
    def __init__(
        self,
        cfg: Sequence[int | str],
        num_classes: int,
        input_shape: Sequence[int],
        *,
        width: float = 1.0,
        final_pool: str = "max",
        init: str = "gst",
        name: str = "vgg",
    ):
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        self.input_shape = check_input_shape(input_shape, image=True)
        width = check_width(width)
        check_choice("final_pool", final_pool, FINAL_POOLS)
        check_choice("init", init, VGG_INITS)
        if cfg[-1] != "M":
            raise ValueError("a VGG cfg must end with 'M' (it becomes the global pool)")
        n_inner_pools = sum(v == "M" for v in cfg) - 1
        pooled_size(min(self.input_shape[1:]), n_inner_pools, name, self.input_shape)

        channels = self.input_shape[0]
        layers: list[nn.Module] = []
        for v in cfg[:-1]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                out = scaled(int(v), width)
                layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
                channels = out
        layers.append(nn.AdaptiveMaxPool2d(1) if final_pool == "max" else nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)
        _INITS[init](self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _init_gst(model: nn.Module) -> None:
    """GST (torchvision `_initialize_weights`, then the classifier replaced by a fresh Linear)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            zero_bias_(m)
        elif isinstance(m, nn.Linear):
            m.reset_parameters()  # PyTorch default init, as the replaced classifier gets
    reset_batchnorm_(model)


def _init_sc(model: nn.Module) -> None:
    """SC models/vgg.py: convs N(0, sqrt(2 / (k*k*in))), Linear N(0, 0.01), all biases 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            zero_bias_(m)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            zero_bias_(m)
    reset_batchnorm_(model)


_INITS = {"gst": _init_gst, "sc": _init_sc}


@register_model("vgg11_bn")
def vgg11_bn(
    num_classes: int,
    input_shape: Sequence[int],
    *,
    width: float = 1.0,
    final_pool: str = "max",
    init: str = "gst",
) -> nn.Module:
    """VGG11-BN of GST (spec §1.1, §2.4): cfg A, final max-pool, Linear(512, C).

    Init "gst": convs kaiming-normal (fan_out, relu) with zero bias, BN weight 1 / bias 0, Linear with the
    PyTorch default init. `init="sc"` switches to SC's scheme (see vgg19_bn).
    """
    return VGG(VGG_CFGS["A"], num_classes, input_shape, width=width, final_pool=final_pool, init=init,
               name="vgg11_bn")


@register_model("vgg16_bn")
def vgg16_bn(
    num_classes: int,
    input_shape: Sequence[int],
    *,
    width: float = 1.0,
    final_pool: str = "max",
    init: str = "gst",
) -> nn.Module:
    """VGG16-BN (cfg D). No paper in the spec fixes its details (CS's VGG-16 code is not official), so it
    follows the GST/torchvision conventions of vgg11_bn: final max-pool, init "gst"."""
    return VGG(VGG_CFGS["D"], num_classes, input_shape, width=width, final_pool=final_pool, init=init,
               name="vgg16_bn")


@register_model("vgg19_bn")
def vgg19_bn(
    num_classes: int,
    input_shape: Sequence[int],
    *,
    width: float = 1.0,
    final_pool: str = "avg",
    init: str = "sc",
) -> nn.Module:
    """VGG19-BN of SC (spec §1.1, §4.4): cfg E (16 convs with bias), global avg-pool, Linear(512, C).

    Init "sc" (SC models/vgg.py): convs N(0, sqrt(2/fan_in)) with zero bias, BN 1/0, Linear N(0, 0.01)
    with zero bias. 20,024,000 conv+linear weights for 10 classes (the smart-ratio test vector).
    """
    return VGG(VGG_CFGS["E"], num_classes, input_shape, width=width, final_pool=final_pool, init=init,
               name="vgg19_bn")
