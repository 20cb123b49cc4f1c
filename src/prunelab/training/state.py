"""Model state snapshots (weights *and* buffers such as BN running statistics) for rewinding."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ..io import load_tensors, save_tensors


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer (BN running mean/var, num_batches_tracked)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def restore(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` into ``model`` in place (keeps parameter identity, device and memory format)."""
    model.load_state_dict(state, strict=True)


def save_state(path, state: Mapping[str, torch.Tensor], metadata: Mapping | None = None) -> None:
    save_tensors(path, state, metadata)


def load_state(path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    return load_tensors(path, device)
