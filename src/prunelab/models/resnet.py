"""CIFAR ResNets built from BasicBlocks (spec §1.1, §4.4, §5.3).

One class covers every variant; they differ in stage widths, blocks per stage, shortcut kind and init:

| name         | widths            | blocks | shortcut on shape change     | init                            |
|--------------|-------------------|--------|------------------------------|---------------------------------|
| resnet18     | 64/128/256/512    | 2      | "B": 1x1 conv + BN           | PyTorch default (kuangliu, GST) |
| resnet20/32/56 | 16/32/64        | 3/5/9  | "A": subsample + zero-pad    | "he" (GST resnet2056)           |
| resnet32_sc  | 32/64/128         | 5      | "B"                          | "sc" (SC models/resnet.py)      |
| resnet20_cs  | 16/32/64          | 3      | "B_nobn": 1x1 conv, no BN    | "xavier" (CS models/networks.py)|

Module names follow kuangliu/GST (`conv1`, `bn1`, `layer2.0.conv1`, `layer2.0.shortcut.0`, ..., `fc`) and
are registered in forward order (stem, then per block conv1, bn1, conv2, bn2, shortcut; the output Linear
`fc` last), which is the `modules()` order SC's smart ratio relies on. All convs are bias-free. The head is
a global average pool, equal to the fixed-size pools of the reference code on 32x32 input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._common import (
    check_choice,
    check_input_shape,
    check_num_classes,
    check_width,
    reset_batchnorm_,
    scaled,
)
from .registry import register_model

SHORTCUTS = ("A", "B", "B_nobn")
RESNET_INITS = ("default", "he", "sc", "xavier")


class ZeroPadShortcut(nn.Module):
    """He et al. option A: take every `stride`-th pixel and zero-pad the new channels (no parameters).

    The extra channels are split evenly before and after the input channels (odd excess: one more after),
    which for doubled widths is the usual planes//4 on each side.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option-A shortcut cannot shrink channels ({in_channels} -> {out_channels})")
        self.stride = stride
        self.pad_before = (out_channels - in_channels) // 2
        self.pad_after = out_channels - in_channels - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_before}, {self.pad_after})"


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
    if kind == "B":
        return nn.Sequential(conv, nn.BatchNorm2d(out_channels))
    return nn.Sequential(conv)  # "B_nobn" (CS): plain projection, still at `shortcut.0`


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(
        self,
        stage_widths: Sequence[int],
        blocks_per_stage: int,
        num_classes: int,
        input_shape: Sequence[int],
        *,
        shortcut: str,
        width: float = 1.0,
        init: str = "he",
    ):
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        self.input_shape = check_input_shape(input_shape, image=True)
        check_choice("shortcut", shortcut, SHORTCUTS)
        check_choice("init", init, RESNET_INITS)
        width = check_width(width)
        widths = [scaled(w, width) for w in stage_widths]

        self.conv1 = nn.Conv2d(self.input_shape[0], widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        channels = widths[0]
        for i, out in enumerate(widths):
            blocks = []
            for j in range(blocks_per_stage):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(channels, out, stride, shortcut))
                channels = out
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_stages = len(widths)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        _INITS[init](self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        for i in range(self.num_stages):
            out = getattr(self, f"layer{i + 1}")(out)
        return self.fc(torch.flatten(self.pool(out), 1))


def _init_default(model: nn.Module) -> None:
    """Leave PyTorch's default init (kaiming-uniform a=sqrt(5) weights, BN 1/0), as kuangliu does."""


def _init_he(model: nn.Module) -> None:
    """akamaster `_weights_init` (GST resnet2056): kaiming-normal fan_in on conv and Linear weights;
    the Linear bias keeps the PyTorch default."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    reset_batchnorm_(model)


def _init_sc(model: nn.Module) -> None:
    """SC models/resnet.py: convs kaiming-normal fan_out, BN 1/0, Linear N(0, 0.01) with zero bias."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    reset_batchnorm_(model)


def _init_xavier(model: nn.Module) -> None:
    """CS models/networks.py: Xavier-normal convs (incl. shortcuts) and Linear, Linear bias 0, BN 1/0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    reset_batchnorm_(model)


_INITS = {"default": _init_default, "he": _init_he, "sc": _init_sc, "xavier": _init_xavier}


@register_model("resnet18")
def resnet18(
    num_classes: int, input_shape: Sequence[int], *, width: float = 1.0, shortcut: str = "B", init: str = "default"
) -> nn.Module:
    """ResNet-18 for CIFAR (kuangliu, used by GST; spec §1.1): 3x3 stem 64, stages 64/128/256/512 x 2
    BasicBlocks, 1x1 conv+BN projections, global avg-pool, Linear(512, C). PyTorch default init.
    11,173,962 parameters for 10 classes."""
    return ResNet((64, 128, 256, 512), 2, num_classes, input_shape, shortcut=shortcut, width=width, init=init)


def _he_doc(depth: int) -> str:
    return (
        f"ResNet-{depth} of He et al. for CIFAR (GST resnet2056 = akamaster; spec §1.1, §2.8): widths "
        f"16/32/64, {(depth - 2) // 6} BasicBlocks per stage, option-A zero-pad shortcuts (`shortcut='B'` "
        "for 1x1 conv+BN projections). Init 'he': kaiming-normal (fan_in, relu) conv and Linear weights."
    )


@register_model("resnet20")
def resnet20(
    num_classes: int, input_shape: Sequence[int], *, width: float = 1.0, shortcut: str = "A", init: str = "he"
) -> nn.Module:
    return ResNet((16, 32, 64), 3, num_classes, input_shape, shortcut=shortcut, width=width, init=init)


@register_model("resnet32")
def resnet32(
    num_classes: int, input_shape: Sequence[int], *, width: float = 1.0, shortcut: str = "A", init: str = "he"
) -> nn.Module:
    return ResNet((16, 32, 64), 5, num_classes, input_shape, shortcut=shortcut, width=width, init=init)


@register_model("resnet56")
def resnet56(
    num_classes: int, input_shape: Sequence[int], *, width: float = 1.0, shortcut: str = "A", init: str = "he"
) -> nn.Module:
    return ResNet((16, 32, 64), 9, num_classes, input_shape, shortcut=shortcut, width=width, init=init)


resnet20.__doc__ = _he_doc(20)
resnet32.__doc__ = _he_doc(32)
resnet56.__doc__ = _he_doc(56)


@register_model("resnet32_sc")
def resnet32_sc(
    num_classes: int, input_shape: Sequence[int], *, width: float = 1.0, shortcut: str = "B", init: str = "sc"
) -> nn.Module:
    """SC's doubled ResNet-32 (spec §1.1, §4.4): widths 32/64/128, 5 BasicBlocks per stage, 1x1 conv+BN
    shortcut when the shape changes. Init 'sc': convs kaiming-normal fan_out, Linear N(0, 0.01), bias 0.
    34 conv/linear layers, 1,855,584 weights for 10 classes (the smart-ratio test vector).
    (SC switches to Bottleneck blocks for depth >= 54; not needed at depth 32.)"""
    return ResNet((32, 64, 128), 5, num_classes, input_shape, shortcut=shortcut, width=width, init=init)


@register_model("resnet20_cs")
def resnet20_cs(
    num_classes: int, input_shape: Sequence[int], *, width: float = 1.0, shortcut: str = "B_nobn",
    init: str = "xavier"
) -> nn.Module:
    """CS's "ResNet" (spec §1.1, §5.3): widths 16/32/64, 3 BasicBlocks per stage, shortcut = plain 1x1
    stride-2 conv without BN. Init 'xavier': Xavier-normal convs and Linear, Linear bias 0, BN 1/0.
    CS masks only the 3x3 convs (stem included); the shortcut convs and `fc` stay dense."""
    return ResNet((16, 32, 64), 3, num_classes, input_shape, shortcut=shortcut, width=width, init=init)
