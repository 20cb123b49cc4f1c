"""MNIST-1D, generated in memory by the ``mnist1d`` package (no download, no files).

Samples are 1-D signals of length 40 returned flat, shape (N, 40) float32: 4,000 train / 1,000 test with
the package's default arguments (seed 42), equal to the reference ``mnist1d_data.pkl``.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

import numpy as np

from prunelab.data.files import RawData
from prunelab.io import save_tensors

__all__ = ["generate_mnist1d"]


@functools.lru_cache(maxsize=2)
def _generate(seed: int) -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    # make_dataset reseeds Python's and NumPy's global generators; callers must not see that.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    out = (
        np.asarray(data["x"], dtype=np.float32), np.asarray(data["y"], dtype=np.int64),
        np.asarray(data["x_test"], dtype=np.float32), np.asarray(data["y_test"], dtype=np.int64),
    )
    for a in out:
        a.setflags(write=False)  # cached: shared between calls
    return out


_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _cached(seed: int, cache_dir: Path | None) -> tuple[np.ndarray, ...]:
    """Generation takes seconds; keep the result beside the other datasets (safetensors, no pickle)."""
    import torch
    from safetensors.numpy import load_file

    path = cache_dir / f"mnist1d_seed{seed}.safetensors" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            d = load_file(str(path))
            return tuple(d[k] for k in _KEYS)
        except Exception:  # a damaged cache is regenerated, never trusted
            pass
    out = _generate(seed)
    if path is not None:
        try:
            save_tensors(path, {k: torch.from_numpy(np.array(v)) for k, v in zip(_KEYS, out)})  # atomic
        except OSError:  # a read-only data root only costs the regeneration next time
            pass
    return out


def generate_mnist1d(seed: int = 42, cache_dir: Path | None = None) -> RawData:
    """The standard MNIST-1D split (seed 42 is the package default and the published data set),
    cached in ``cache_dir`` when given."""
    return RawData(*(np.array(a, copy=True) for a in _cached(int(seed), cache_dir)))
