"""Weight actions: what values surviving weights start from, and control masks."""
from __future__ import annotations

import torch

from .masks import Mask


def random_mask_like(mask: Mask, generator: torch.Generator | None = None) -> Mask:
    """A mask with the same kept count in every layer, at uniformly random positions."""
    out = {}
    for n, m in mask.items():
        k = int(m.sum())
        order = torch.randperm(m.numel(), generator=generator)
        flat = torch.zeros(m.numel(), dtype=torch.bool)
        flat[order[:k]] = True
        out[n] = flat.view(m.shape).to(m.device)
    return Mask(out, mask.shapes)
