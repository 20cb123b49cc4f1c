"""Tiny-ImageNet-200 read from its official extracted layout, with a safetensors cache of the decoded arrays.

Layout (``tiny-imagenet-200/`` from ``tiny-imagenet-200.zip``)::

    wnids.txt                          the 200 WordNet ids, one per line
    words.txt                          wnid -> description for all of ImageNet (not needed here)
    train/<wnid>/images/<wnid>_<k>.JPEG    500 per class
    val/images/val_<k>.JPEG            10,000 images
    val/val_annotations.txt            tab-separated: file name, wnid, bbox x0 y0 x1 y1
    test/images/                       unlabelled, so not used

Labels: class index = position of the wnid in ``sorted(wnids.txt)``; ``classes`` are those wnids. The
labelled ``val`` images are the test split (the official test set has no labels). Images are 64x64; the few
greyscale JPEGs are converted to RGB. Order: classes in label order, then images by their number ``k``;
val images by their number.

Decoding ~110,000 JPEGs takes a while, so the arrays are cached beside the data as
``prunelab_cache_uint8.safetensors`` (atomic write via ``prunelab.io.save_tensors``; never pickle). The
cache records a fingerprint of ``wnids.txt``, ``val_annotations.txt`` and the train file names; a cache
that is damaged, or whose fingerprint no longer matches the files, is regenerated.
JPEGs are decoded with Pillow, which is not a direct dependency: matplotlib (a dependency) requires it.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from prunelab.data.files import RawData
from prunelab.data.formats import DataFormatError

__all__ = ["read_tiny_imagenet", "CACHE_NAME", "IMAGE_SHAPE"]

CACHE_NAME = "prunelab_cache_uint8.safetensors"
CACHE_VERSION = 1
IMAGE_SHAPE = (3, 64, 64)
_KEYS = ("x_train", "y_train", "x_test", "y_test")
_NUMBER = re.compile(r"(\d+)")


def _natural(name: str) -> tuple:
    """Sort key that orders ``val_2`` before ``val_10``."""
    return tuple(int(t) if t.isdigit() else t for t in _NUMBER.split(name))


def _read_wnids(directory: Path) -> list[str]:
    path = directory / "wnids.txt"
    wnids = [w.strip() for w in path.read_text().splitlines() if w.strip()]
    if not wnids or len(set(wnids)) != len(wnids):
        raise DataFormatError(f"{path}: expected distinct WordNet ids, one per line")
    return sorted(wnids)


def _read_val_annotations(directory: Path, index: dict[str, int]) -> list[tuple[str, int]]:
    path = directory / "val" / "val_annotations.txt"
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index or "/" in fields[0] or "\\" in fields[0]:
            raise DataFormatError(
                f"{path}:{n}: expected 'file<TAB>wnid<TAB>bbox...' with a wnid from wnids.txt, got {line!r}")
        out.append((fields[0], index[fields[1]]))
    if not out:
        raise DataFormatError(f"{path}: no annotations")
    return sorted(out, key=lambda t: _natural(t[0]))


def _train_files(directory: Path, wnids: list[str]) -> list[tuple[Path, int]]:
    out = []
    for label, wnid in enumerate(wnids):
        d = directory / "train" / wnid / "images"
        files = sorted((p for p in d.glob("*") if p.suffix.lower() in (".jpeg", ".jpg")),
                       key=lambda p: _natural(p.name)) if d.is_dir() else []
        if not files:
            raise DataFormatError(f"{d}: no training images for class {wnid} (incomplete extraction?)")
        out.extend((p, label) for p in files)
    return out


def _fingerprint(directory: Path, wnids: list[str], train: list[tuple[Path, int]]) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}\n".encode())
    h.update("\n".join(wnids).encode())
    h.update((directory / "val" / "val_annotations.txt").read_bytes())
    for p, label in train:
        h.update(f"{label}:{p.name}\n".encode())
    return h.hexdigest()


def _decode(paths: list[Path], progress: bool, desc: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # Pillow: installed as a matplotlib dependency
    from tqdm import tqdm

    x = np.empty((len(paths),) + IMAGE_SHAPE, dtype=np.uint8)
    for i, p in enumerate(tqdm(paths, desc=desc, unit="img", disable=not progress, leave=False)):
        try:
            with Image.open(p) as im:
                a = np.asarray(im.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise DataFormatError(f"{p}: not a readable image ({exc})") from exc
        if a.shape != IMAGE_SHAPE[1:] + (3,):
            raise DataFormatError(f"{p}: expected a 64x64 image, got {a.shape[1]}x{a.shape[0]}")
        x[i] = a.transpose(2, 0, 1)
    return x


def _load_cache(path: Path, fingerprint: str) -> tuple[np.ndarray, ...] | None:
    from prunelab.io import load_tensors

    if not path.is_file():
        return None
    try:
        tensors, meta = load_tensors(path)
        if meta.get("fingerprint") != fingerprint:
            return None
        arrays = tuple(tensors[k].numpy() for k in _KEYS)
    except Exception:  # a damaged cache is regenerated, never trusted
        return None
    x_tr, y_tr, x_te, y_te = arrays
    ok = (x_tr.dtype == np.uint8 and x_te.dtype == np.uint8 and x_tr.shape[1:] == IMAGE_SHAPE
          and x_te.shape[1:] == IMAGE_SHAPE and y_tr.shape == (len(x_tr),) and y_te.shape == (len(x_te),))
    return arrays if ok else None


def read_tiny_imagenet(directory: Path, progress: bool = True) -> RawData:
    """Decode the extracted ``tiny-imagenet-200`` folder ``directory`` (cached; see the module docstring)."""
    import torch

    from prunelab.io import save_tensors

    directory = Path(directory)
    wnids = _read_wnids(directory)
    index = {w: i for i, w in enumerate(wnids)}
    train = _train_files(directory, wnids)
    val = _read_val_annotations(directory, index)
    fingerprint = _fingerprint(directory, wnids, train)
    cache = directory / CACHE_NAME
    arrays = _load_cache(cache, fingerprint)
    if arrays is None:
        val_paths = [directory / "val" / "images" / name for name, _ in val]
        missing = [p.name for p in val_paths if not p.is_file()]
        if missing:
            raise DataFormatError(f"{directory / 'val' / 'images'}: {len(missing)} annotated images are missing, "
                                  f"e.g. {missing[0]} (incomplete extraction?)")
        arrays = (
            _decode([p for p, _ in train], progress, "tiny_imagenet train"),
            np.array([label for _, label in train], dtype=np.int64),
            _decode(val_paths, progress, "tiny_imagenet val"),
            np.array([label for _, label in val], dtype=np.int64),
        )
        try:
            save_tensors(cache, {k: torch.from_numpy(a) for k, a in zip(_KEYS, arrays)},
                         metadata={"fingerprint": fingerprint, "wnids": json.dumps(wnids)})
        except OSError:  # a read-only data root only costs the decoding next time
            pass
    return RawData(*arrays, classes=tuple(wnids))
