"""Tiny image data and conv nets shared by the GST tests (fast on one thread)."""
from typing import Mapping

import torch
from torch import nn

from prunelab.data import Dataset, Split


def tiny_images(n_train=96, n_test=48, size=16, classes=3, seed=0):
    """Class-dependent mean colours plus noise: uint8 images a small conv net learns in a few steps."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randint(40, 215, (classes, 3, 1, 1), generator=g).float()

    def split(n):
        y = torch.randint(0, classes, (n,), generator=g)
        x = centres[y] + 40 * torch.randn(n, 3, size, size, generator=g)
        return Split(x.clamp(0, 255).to(torch.uint8), y)

    return Dataset("tiny-images", train=split(n_train), val=None, test=split(n_test), num_classes=classes,
                   input_shape=(3, size, size), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


class TinyConvNet(nn.Module):
    """conv-bn-relu x3 then a Linear: four named convs like VGG's features, small enough for unit tests."""

    def __init__(self, classes=3, width=8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveMaxPool2d(1))
        self.classifier = nn.Linear(2 * width, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def tiny_convnet(seed):
    torch.manual_seed(seed)
    return TinyConvNet()


def channel_outputs(model: nn.Module, x: torch.Tensor, modules: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Outputs of the named modules for input ``x``."""
    got: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: got.__setitem__(n, o.detach().clone()))
             for n, m in modules.items()]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return got


def gst_case(recipe: str, config: str, **update):
    """The StabilityConfig of row ``config`` of a GST recipe (the configurations are recipe data)."""
    from prunelab.experiments import load_plan
    from prunelab.procedures.stability import StabilityConfig
    for run in load_plan(recipe):
        if run.spec.procedure.config == config:
            return StabilityConfig.model_validate({**run.spec.procedure.model_dump(), **update})
    raise KeyError(f"{config} is not a case of {recipe}")
