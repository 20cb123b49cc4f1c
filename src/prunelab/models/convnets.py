"""Conv-2 / Conv-4 / Conv-6 of Frankle & Carbin as built by the DLT code (spec §1.1, §3.7).

3x3 "same" convolutions with bias and ReLU, 2x2 max-pool after every pair, then FC 256 -> 256 -> C.
The flatten size is computed from `input_shape`, so the nets also build for 1x28x28 MNIST.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._common import check_choice, check_input_shape, check_num_classes, pooled_size
from .mlp import GLOROT_INITS, init_glorot_
from .registry import register_model

# Conv widths per pair; each pair is followed by a max-pool.
CONV_PLANS: dict[str, tuple[int, ...]] = {
    "conv2": (64,),
    "conv4": (64, 128),
    "conv6": (64, 128, 256),
}


class ConvNet(nn.Module):
    def __init__(
        self,
        plan: Sequence[int],
        num_classes: int,
        input_shape: Sequence[int],
        *,
        init: str = "glorot_truncated",
        name: str = "convnet",
    ):
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        self.input_shape = check_input_shape(input_shape, image=True)
        check_choice("init", init, GLOROT_INITS)
        channels, height, width = self.input_shape
        layers: list[nn.Module] = []
        for out in plan:
            for _ in range(2):
                layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.ReLU()]
                channels = out
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        h = pooled_size(height, len(plan), name, self.input_shape)
        w = pooled_size(width, len(plan), name, self.input_shape)
        self.fc1 = nn.Linear(channels * h * w, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, num_classes)
        init_glorot_(self, truncated=init == "glorot_truncated")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Flattening NCHW differs from Keras' NHWC order; only the layout of fc1's columns differs.
        x = torch.flatten(self.features(x), 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def _doc(name: str, weights: str) -> str:
    return (
        f"{name} (DLT network_builders; LTH). {weights} weights on 3x32x32 / 10 classes.\n\n"
        "Init (spec §3.7): Glorot-normal kernels and zero biases; `init='glorot_truncated'` (default, the "
        "TF1 Keras draw of the DLT code) or `'glorot_normal'` (untruncated, LTH paper wording)."
    )


@register_model("conv2")
def conv2(num_classes: int, input_shape: Sequence[int], *, init: str = "glorot_truncated") -> nn.Module:
    return ConvNet(CONV_PLANS["conv2"], num_classes, input_shape, init=init, name="conv2")


@register_model("conv4")
def conv4(num_classes: int, input_shape: Sequence[int], *, init: str = "glorot_truncated") -> nn.Module:
    return ConvNet(CONV_PLANS["conv4"], num_classes, input_shape, init=init, name="conv4")


@register_model("conv6")
def conv6(num_classes: int, input_shape: Sequence[int], *, init: str = "glorot_truncated") -> nn.Module:
    return ConvNet(CONV_PLANS["conv6"], num_classes, input_shape, init=init, name="conv6")


conv2.__doc__ = _doc("Conv-2", "4,300,992")
conv4.__doc__ = _doc("Conv-4", "2,425,024")
conv6.__doc__ = _doc("Conv-6", "2,261,184")
