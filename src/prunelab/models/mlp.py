"""LeNet-300-100, the fully connected network of the lottery-ticket papers (spec §1.1, §3.7)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ._common import check_choice, check_input_shape, check_num_classes, glorot_normal_, zero_bias_
from .registry import register_model

GLOROT_INITS = ("glorot_truncated", "glorot_normal")


class LeNet300100(nn.Module):
    """flatten -> in -> 300 -> 100 -> C with ReLU and biases (784 inputs: 266,200 weights + 410 biases)."""

    def __init__(self, num_classes: int, input_shape: Sequence[int], init: str = "glorot_truncated"):
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        self.input_shape = check_input_shape(input_shape, image=False)
        check_choice("init", init, GLOROT_INITS)
        self.fc1 = nn.Linear(math.prod(self.input_shape), 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        init_glorot_(self, truncated=init == "glorot_truncated")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def init_glorot_(model: nn.Module, *, truncated: bool) -> None:
    """Glorot-normal kernels and zero biases for every Conv2d/Linear (DLT code, spec §3.7)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            glorot_normal_(m.weight, truncated=truncated)
            zero_bias_(m)


@register_model("lenet300_100")
def lenet300_100(num_classes: int, input_shape: Sequence[int], *, init: str = "glorot_truncated") -> nn.Module:
    """LeNet-300-100 (DLT network_builders `build_fc_lottery`; LTH).

    Init (spec §3.7): Glorot-normal kernels, zero biases. `init="glorot_truncated"` (default) is what the
    DLT TF1/Keras code draws (normal truncated at 2 std, rescaled to the Glorot std);
    `init="glorot_normal"` is the untruncated Gaussian Glorot of the LTH paper's wording.
    """
    return LeNet300100(num_classes, input_shape, init=init)
