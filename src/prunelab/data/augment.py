"""Batched image augmentation as tensor ops: random crop with zero padding and horizontal flip.

Both work on a whole (B, C, H, W) batch at once, in any dtype (the pipeline runs them on uint8, before
normalisation, so the zero padding is a black pixel exactly as in the usual PIL/torchvision pipeline).
Random numbers come only from the given CPU ``torch.Generator`` (``None``: torch's global CPU generator)
and are drawn in a fixed order — crop row offsets, crop column offsets, flip coins, each of length B — so
a batch is a deterministic function of the generator state, whatever device the images are on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from prunelab.errors import ConfigError

__all__ = ["Augmentation", "random_crop", "random_hflip", "random_crop_flip"]


@dataclass(frozen=True)
class Augmentation:
    """``crop_padding`` > 0: pad by that many zero pixels per side, then crop back to H x W at a random
    offset. ``flip``: mirror left-right with probability 1/2 per sample."""

    crop_padding: int = 0
    flip: bool = False

    def __post_init__(self):
        if isinstance(self.crop_padding, bool) or not isinstance(self.crop_padding, int) or self.crop_padding < 0:
            raise ConfigError(f"crop_padding must be an integer >= 0, got {self.crop_padding!r}")
        if not isinstance(self.flip, bool):
            raise ConfigError(f"flip must be True or False, got {self.flip!r}")

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or self.flip


def _check_images(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ConfigError(f"augmentation needs image batches of shape (B, C, H, W), got shape {tuple(x.shape)}")


def random_crop_flip(
    x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Crop (zero padding ``padding``) and/or flip every sample of ``x`` independently, in one gather.

    Sample b of the result is ``pad(x[b])[:, dy:dy+H, dx:dx+W]`` with (dy, dx) uniform in [0, 2*padding],
    then mirrored along W when its coin came up. The flip is folded into the column index, so crop+flip
    costs one padded copy and one gather.
    """
    _check_images(x)
    if padding < 0:
        raise ConfigError(f"padding must be >= 0, got {padding}")
    b, c, h, w = x.shape
    if b == 0 or (padding == 0 and not flip):
        return x
    if padding == 0:
        coin = torch.randint(0, 2, (b,), generator=generator).bool().to(x.device)
        return torch.where(coin.view(b, 1, 1, 1), x.flip(3), x)
    dev = x.device
    offs = torch.randint(0, 2 * padding + 1, (2, b), generator=generator)
    cols = torch.arange(w)
    if flip:
        coin = torch.randint(0, 2, (b,), generator=generator).bool()
        col_idx = offs[1, :, None] + torch.where(coin[:, None], cols.flip(0), cols)
    else:
        col_idx = offs[1, :, None] + cols
    row_idx = offs[0, :, None] + torch.arange(h)
    wp = w + 2 * padding
    flat = (row_idx[:, :, None] * wp + col_idx[:, None, :]).view(b, 1, h * w).to(dev)
    padded = F.pad(x, (padding, padding, padding, padding)).view(b, c, -1)
    return torch.gather(padded, 2, flat.expand(b, c, h * w)).view(b, c, h, w)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return random_crop_flip(x, padding, False, generator)


def random_hflip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    return random_crop_flip(x, 0, True, generator)
