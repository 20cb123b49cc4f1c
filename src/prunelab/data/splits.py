"""Seeded index draws for validation splits and training subsets, optionally class-balanced.

All draws use ``numpy.random.RandomState(seed)`` (the papers' code draws its validation split with a
numpy seed), so a split depends only on the labels, the size and the seed.
"""

from __future__ import annotations

import numpy as np

from prunelab.errors import ConfigError

__all__ = ["draw_indices", "split_indices"]


def _check_count(what: str, n, total: int, *, allow_all: bool) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ConfigError(f"{what} must be an integer, got {n!r}")
    hi = total if allow_all else total - 1
    if not 0 <= n <= hi:
        raise ConfigError(f"{what}={n} is outside the allowed range 0..{hi} (the split has {total} samples)")
    return int(n)


def draw_indices(labels: np.ndarray, n: int, seed: int, *, balanced: bool, num_classes: int) -> np.ndarray:
    """``n`` distinct positions of ``labels``, sorted ascending.

    Unbalanced: the first ``n`` of ``RandomState(seed).permutation(N)``. Balanced: ``n / num_classes`` per
    class, each class taking its members in that same permutation order (so both modes share one draw).
    """
    labels = np.asarray(labels)
    perm = np.random.RandomState(seed).permutation(len(labels))
    if not balanced:
        return np.sort(perm[:n])
    if n % num_classes:
        raise ConfigError(
            f"a class-balanced draw of {n} samples needs a multiple of the {num_classes} classes; "
            f"allowed: multiples of {num_classes} such as {n - n % num_classes} or {n - n % num_classes + num_classes}"
        )
    per_class = n // num_classes
    counts = np.bincount(labels, minlength=num_classes)
    if (counts < per_class).any():
        short = int(np.argmin(counts))
        raise ConfigError(
            f"a class-balanced draw of {n} samples needs {per_class} per class, but class {short} has only "
            f"{counts[short]}; allowed: at most {num_classes * int(counts.min())}"
        )
    lp = labels[perm]
    order = np.argsort(lp, kind="stable")  # grouped by class, permutation order within a class
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(len(lp)) - starts[lp[order]]
    return np.sort(perm[order[rank < per_class]])


def split_indices(
    labels: np.ndarray, val_size: int, seed: int, *, balanced: bool, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train positions, validation positions), disjoint, both sorted; ``val_size`` may be 0."""
    total = len(labels)
    val_size = _check_count("val_size", val_size, total, allow_all=False)
    val = draw_indices(labels, val_size, seed, balanced=balanced, num_classes=num_classes)
    keep = np.ones(total, dtype=bool)
    keep[val] = False
    return np.flatnonzero(keep), val
