"""In-memory datasets: every split held as tensors on one device, batches assembled by tensor indexing.

Images stay uint8 in storage (4x smaller than float32) and are converted, augmented and normalised one
batch at a time, which on a CPU is far faster than a per-sample ``Dataset`` + ``DataLoader``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from prunelab.errors import ConfigError, unknown_name
from prunelab.data.augment import Augmentation, random_crop_flip
from prunelab.data.splits import _check_count, draw_indices

__all__ = ["Split", "Dataset", "subsample", "SPLIT_NAMES"]

SPLIT_NAMES = ("train", "val", "test")


@dataclass(eq=False)
class Split:
    """One split: ``x`` (N, C, H, W) uint8 images (or (N, L) float32 signals), ``y`` (N,) int64 labels."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self):
        if self.x.shape[0] != self.y.shape[0]:
            raise ConfigError(f"x has {self.x.shape[0]} samples but y has {self.y.shape[0]}; they must match")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def device(self) -> torch.device:
        return self.x.device

    def subset(self, indices) -> "Split":
        """A new Split holding the samples at ``indices`` (sequence, numpy array or tensor), in that order."""
        idx = indices if torch.is_tensor(indices) else torch.from_numpy(np.asarray(indices, dtype=np.int64))
        idx = idx.to(device=self.x.device, dtype=torch.long)
        return Split(self.x.index_select(0, idx), self.y.index_select(0, idx))

    def to(self, device) -> "Split":
        return Split(self.x.to(device), self.y.to(device))

    def class_counts(self, num_classes: int | None = None) -> list[int]:
        return torch.bincount(self.y.cpu(), minlength=num_classes or 0).tolist()


def subsample(split: Split, n: int, seed: int, balanced: bool = True, num_classes: int | None = None) -> Split:
    """A seeded subset of ``n`` samples of ``split`` (class-balanced: n / num_classes per class),
    kept in the split's original order. Uses the same draw as the validation split."""
    n = _check_count("n", n, len(split), allow_all=True)
    labels = split.y.cpu().numpy()
    k = num_classes if num_classes is not None else int(labels.max()) + 1 if len(labels) else 1
    return split.subset(draw_indices(labels, n, seed, balanced=balanced, num_classes=k))


class Dataset:
    """A dataset with ``train``, ``val`` (None without a validation split) and ``test`` splits.

    ``mean`` / ``std`` are the per-channel normalisation on the 0-1 scale: a batch is
    ``(x / 255 - mean) / std`` for images and ``(x - mean) / std`` for MNIST-1D signals.
    """

    def __init__(
        self,
        name: str,
        *,
        train: Split,
        val: Split | None,
        test: Split,
        num_classes: int,
        input_shape: tuple[int, ...],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augmentation: Augmentation = Augmentation(),
        classes: tuple[str, ...] = (),
        is_image: bool = True,
        normalize: str = "standard",
    ):
        self.name = name
        self.train, self.val, self.test = train, val, test
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.augmentation = augmentation
        self.classes = tuple(classes)
        self.is_image = is_image
        self.normalize = normalize
        self._set_affine()

    def _set_affine(self) -> None:
        # (x * scale + shift) == (x / 255 - mean) / std, one fused pass instead of three.
        c = self.input_shape[0] if self.is_image else 1
        if len(self.mean) not in (1, c) or len(self.std) not in (1, c):
            raise ConfigError(
                f"mean/std need 1 or {c} values for {self.name!r}, got {len(self.mean)} and {len(self.std)}"
            )
        if any(not s > 0 for s in self.std):
            raise ConfigError(f"std values must be > 0, got {self.std}")
        div = 255.0 if self.is_image else 1.0
        mean = torch.tensor(self.mean, dtype=torch.float64)
        std = torch.tensor(self.std, dtype=torch.float64)
        shape = (1, -1, 1, 1) if self.is_image else (1, -1)
        self._identity = (not self.is_image) and bool((mean == 0).all() and (std == 1).all())
        self._scale = (1.0 / (div * std)).float().view(shape).to(self.device)
        self._shift = (-mean / std).float().view(shape).to(self.device)

    # -- access -----------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.train.device

    def split(self, which: str | Split) -> Split:
        if isinstance(which, Split):
            return which
        if which not in SPLIT_NAMES:
            raise unknown_name("split", which, SPLIT_NAMES)
        s = getattr(self, which)
        if s is None:
            raise ConfigError(f"dataset {self.name!r} has no 'val' split; load it with val_size > 0")
        return s

    def to(self, device) -> "Dataset":
        """Move every split to ``device`` (in place, like ``nn.Module.to``); returns self."""
        self.train, self.test = self.train.to(device), self.test.to(device)
        self.val = self.val.to(device) if self.val is not None else None
        self._scale, self._shift = self._scale.to(device), self._shift.to(device)
        return self

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}={len(s)}" for n in SPLIT_NAMES if (s := getattr(self, n)) is not None)
        return (
            f"Dataset({self.name!r}, {sizes}, input_shape={self.input_shape}, classes={self.num_classes}, "
            f"normalize={self.normalize!r}, augmentation={self.augmentation}, device={self.device})"
        )

    # -- batching ---------------------------------------------------------------------------------------
    def num_batches(self, split: str | Split, batch_size: int, drop_last: bool = False) -> int:
        n = len(self.split(split))
        _check_batch_size(batch_size)
        return n // batch_size if drop_last else -(-n // batch_size)

    def prepare(self, x: torch.Tensor, *, augment: bool = False, generator: torch.Generator | None = None,
                channels_last: bool = False) -> torch.Tensor:
        """Raw stored samples -> model input: optional augmentation, then float32 and normalisation."""
        if augment and self.augmentation.enabled:
            a = self.augmentation
            x = random_crop_flip(x, a.crop_padding, a.flip, generator)
        if channels_last:
            if x.dim() != 4:
                raise ConfigError(f"channels_last needs 4-D image batches; {self.name!r} gives shape {tuple(x.shape)}")
            x = x.to(dtype=torch.float32, memory_format=torch.channels_last)
        else:
            x = x.to(dtype=torch.float32, copy=not self.is_image)
        if self._identity:
            return x
        return x.mul_(self._scale).add_(self._shift)

    def batches(
        self,
        split: str | Split = "train",
        batch_size: int = 128,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        augment: bool | None = None,
        drop_last: bool = False,
        channels_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x, y)`` batches on the dataset's device: x float32 normalised, y int64.

        ``augment=None`` applies the dataset's augmentation to the train split only; True/False force it
        on/off for any split. ``shuffle`` permutes once per call (one call = one epoch). All randomness
        (order, crop offsets, flips) is drawn from ``generator`` on the CPU, then moved to the device.
        """
        s = self.split(split)
        _check_batch_size(batch_size)
        if augment is None:
            augment = split == "train" or s is self.train
        n = len(s)
        stop = n - n % batch_size if drop_last else n
        order = torch.randperm(n, generator=generator).to(s.device) if shuffle else None
        for start in range(0, stop, batch_size):
            if order is None:
                xb, yb = s.x[start:start + batch_size], s.y[start:start + batch_size]
            else:
                idx = order[start:start + batch_size]
                xb, yb = s.x.index_select(0, idx), s.y.index_select(0, idx)
            yield self.prepare(xb, augment=augment, generator=generator, channels_last=channels_last), yb


def _check_batch_size(batch_size) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")

