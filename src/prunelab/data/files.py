"""Where each dataset's files live, where to fetch them from, and how to decode them into arrays.

A data root holds one folder per dataset (``<root>/mnist/``, ``<root>/cifar10/``, ...), either with the
files directly inside or with the official extracted folder (``cifar-10-batches-bin``, ...) below it.
Files already present are read as they are: local copies (such as a re-compressed MNIST) need not match
the official download checksums. Only what this module downloads itself is checksum-verified.
"""

from __future__ import annotations

import os
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from prunelab.errors import ChecksumError, DataNotFoundError
from prunelab.data.download import download_url, extract_archive
from prunelab.data.formats import DataFormatError, read_cifar_bin, read_idx

__all__ = [
    "Resource", "FileLayout", "LAYOUTS", "RawData", "default_root", "find_file", "locate", "ensure_files",
    "read_idx_pair", "read_raw",
]

ENV_ROOT = "PRUNELAB_DATA"


@dataclass(frozen=True)
class Resource:
    """One downloadable file: tried from each URL in turn, verified against ``md5``."""

    filename: str
    urls: tuple[str, ...]
    md5: str
    provides: tuple[str, ...]  # required files it yields (an archive yields several)
    archive: bool = False  # extract after download (.zip or tar), then delete the archive


@dataclass(frozen=True)
class FileLayout:
    dataset: str
    subdirs: tuple[str, ...]  # searched in order, relative to the root
    files: tuple[str, ...]  # required names (may hold a subfolder); for IDX files a ``.gz`` twin is accepted too
    gz_ok: bool
    resources: tuple[Resource, ...]
    homepage: str


@dataclass(frozen=True)
class RawData:
    """Decoded arrays of one dataset, before any split: x uint8 NCHW (float32 for MNIST-1D), y int64.
    ``classes``: class names read from the files (Tiny-ImageNet's wnids); None: the registry's static list."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...] | None = None


IDX_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)


def _idx_resources(mirrors: tuple[str, ...], md5s: tuple[str, ...]) -> tuple[Resource, ...]:
    return tuple(
        Resource(f"{name}.gz", tuple(m + f"{name}.gz" for m in mirrors), md5, (name,))
        for name, md5 in zip(IDX_FILES, md5s)
    )


TINY_IMAGENET_FILES = ("wnids.txt", "val/val_annotations.txt")

# Official md5 digests of the distributed files (as published by the dataset authors / torchvision).
LAYOUTS: dict[str, FileLayout] = {
    "mnist": FileLayout(
        "mnist", ("mnist", "mnist/raw", "MNIST/raw"), IDX_FILES, True,
        _idx_resources(
            ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
            ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
             "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion_mnist": FileLayout(
        "fashion_mnist", ("fashion_mnist", "fashion_mnist/raw", "FashionMNIST/raw"), IDX_FILES, True,
        _idx_resources(
            ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
             "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
            ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
             "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
        ),
        "https://github.com/zalandoresearch/fashion-mnist",
    ),
    "cifar10": FileLayout(
        "cifar10", ("cifar10", "cifar10/cifar-10-batches-bin", "cifar-10-batches-bin"),
        tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",), False,
        (Resource(
            "cifar-10-binary.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
            "c32a1d4ab5d03f1284b67883e8d87530",
            tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",), archive=True,
        ),),
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": FileLayout(
        "cifar100", ("cifar100", "cifar100/cifar-100-binary", "cifar-100-binary"), ("train.bin", "test.bin"), False,
        (Resource(
            "cifar-100-binary.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",),
            "03b5dce01913d631647c71ecec9e9cb8", ("train.bin", "test.bin"), archive=True,
        ),),
        "https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    # Tiny-ImageNet: the images are read by prunelab.data.tiny_imagenet; these two files mark a complete
    # extraction. The md5 was not found in the documentation/web-page search corpora, so it is unverified
    # against an official publication; it is the digest that independent public loaders (torchvision-style
    # TinyImageNet classes, Avalanche) pin for this URL, one of which records a matching 248,100,043-byte download.
    "tiny_imagenet": FileLayout(
        "tiny_imagenet", ("tiny_imagenet/tiny-imagenet-200", "tiny_imagenet", "tiny-imagenet-200"),
        TINY_IMAGENET_FILES, False,
        (Resource(
            "tiny-imagenet-200.zip", ("http://cs231n.stanford.edu/tiny-imagenet-200.zip",),
            "90528d7ca1a48142e341f4ef8d21d0de", TINY_IMAGENET_FILES, archive=True,
        ),),
        "https://www.kaggle.com/c/tiny-imagenet",
    ),
}


def default_root() -> Path:
    """``$PRUNELAB_DATA`` if set, else ``~/.cache/prunelab/data``."""
    env = os.environ.get(ENV_ROOT)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "prunelab" / "data"


def find_file(directory: Path, name: str, gz_ok: bool) -> Path | None:
    """The file ``name`` in ``directory``, or its ``.gz`` twin when allowed; the raw file wins (faster)."""
    for candidate in (name, name + ".gz") if gz_ok else (name,):
        p = directory / candidate
        if p.is_file():
            return p
    return None


def _missing(layout: FileLayout, directory: Path) -> list[str]:
    return [n for n in layout.files if find_file(directory, n, layout.gz_ok) is None]


def locate(layout: FileLayout, root: Path) -> Path | None:
    """First searched directory under ``root`` that holds every required file."""
    for sub in layout.subdirs:
        d = root / sub
        if d.is_dir() and not _missing(layout, d):
            return d
    return None


def _not_found_message(layout: FileLayout, root: Path, reason: str, *, offer_download: bool = False) -> str:
    searched = ", ".join(str(root / s) for s in layout.subdirs)
    names = ", ".join(n + (" (or .gz)" if layout.gz_ok else "") for n in layout.files)
    sources = "; ".join(f"{r.urls[0]} (md5 {r.md5})" for r in layout.resources)
    how = "extract it into" if any(r.archive for r in layout.resources) else "put them in"
    return (
        f"dataset {layout.dataset!r} not found: searched {searched} for the files {names}. {reason} "
        f"Get them from {sources} and {how} {root / layout.dataset} (see {layout.homepage})"
        + (", or call with download=True." if offer_download else ".")
    )


def _fetch(resource: Resource, target: Path, urlopen: Callable | None, progress: bool) -> None:
    """Try each mirror; a checksum failure on one mirror still lets the next one be tried."""
    errors: list[BaseException] = []
    for url in resource.urls:
        dest = target / resource.filename
        try:
            download_url(url, dest, md5=resource.md5, urlopen=urlopen, progress=progress)
        except ChecksumError as exc:
            errors.append(exc)
            continue
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(OSError(f"{url}: {exc}"))
            continue
        if resource.archive:
            try:
                extract_archive(dest, target)  # zip or tar, by suffix; both refuse path traversal
            finally:
                dest.unlink(missing_ok=True)
        return
    checksum_errors = [e for e in errors if isinstance(e, ChecksumError)]
    if checksum_errors:
        raise checksum_errors[0]
    raise OSError("; ".join(str(e) for e in errors))


def ensure_files(
    layout: FileLayout,
    root: str | Path,
    *,
    download: bool = True,
    progress: bool = True,
    urlopen: Callable | None = None,
) -> Path:
    """Directory holding all of ``layout``'s files, downloading the missing ones into ``<root>/<dataset>``.

    Raises DataNotFoundError when the files are absent and cannot be fetched (``download=False``,
    offline, unwritable root), ChecksumError when a download does not match its official digest.
    """
    root = Path(root).expanduser()
    found = locate(layout, root)
    if found is not None:
        return found
    if not download:
        raise DataNotFoundError(_not_found_message(
            layout, root, "download=False, so nothing was fetched.", offer_download=True))
    target = root / layout.dataset
    try:
        target.mkdir(parents=True, exist_ok=True)
        missing = set(_missing(layout, target))
        for res in layout.resources:
            if missing.intersection(res.provides):
                _fetch(res, target, urlopen, progress)
    except ChecksumError:
        raise
    except (OSError, DataFormatError) as exc:
        raise DataNotFoundError(_not_found_message(layout, root, f"Download failed: {exc}.")) from exc
    found = locate(layout, root)
    if found is None:
        still = ", ".join(_missing(layout, target))
        raise DataNotFoundError(
            _not_found_message(layout, root, f"The download did not provide: {still}.")
        )
    return found


def read_idx_pair(images_path: Path, labels_path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(images_path), read_idx(labels_path)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DataFormatError(f"{images_path}: expected uint8 images of shape (N, H, W), got {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataFormatError(
            f"{labels_path}: expected {len(x)} labels to match {images_path.name}, got shape {y.shape}"
        )
    return x[:, None], _checked_labels(y, num_classes, labels_path)


def _checked_labels(y: np.ndarray, num_classes: int, where: Path | str) -> np.ndarray:
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataFormatError(f"{where}: labels must lie in 0..{num_classes - 1}, found {y.min()}..{y.max()}")
    return y


def _read_idx_dataset(layout: FileLayout, d: Path, num_classes: int) -> RawData:
    paths = [find_file(d, n, layout.gz_ok) for n in layout.files]
    x_tr, y_tr = read_idx_pair(paths[0], paths[1], num_classes)
    x_te, y_te = read_idx_pair(paths[2], paths[3], num_classes)
    return RawData(x_tr, y_tr, x_te, y_te)


def _read_cifar_files(paths: list[Path], label_bytes: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    parts = [read_cifar_bin(p, label_bytes=label_bytes) for p in paths]
    x = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
    y = parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts])
    return x, _checked_labels(y, num_classes, ", ".join(p.name for p in paths))


def read_raw(name: str, directory: Path, num_classes: int, *, progress: bool = False) -> RawData:
    """Decode the official files of ``name`` found in ``directory`` (as returned by ``ensure_files``)."""
    layout = LAYOUTS[name]
    if name == "tiny_imagenet":
        from prunelab.data.tiny_imagenet import read_tiny_imagenet  # imports this module

        raw = read_tiny_imagenet(directory, progress=progress)
        if len(raw.classes) != num_classes:
            raise DataFormatError(f"{directory / 'wnids.txt'}: expected {num_classes} wnids, found {len(raw.classes)}")
        return raw
    if name in ("mnist", "fashion_mnist"):
        return _read_idx_dataset(layout, directory, num_classes)
    label_bytes = 1 if name == "cifar10" else 2  # CIFAR-100: coarse byte, then fine byte
    paths = [directory / n for n in layout.files]
    x_tr, y_tr = _read_cifar_files(paths[:-1], label_bytes, num_classes)
    x_te, y_te = _read_cifar_files(paths[-1:], label_bytes, num_classes)
    return RawData(x_tr, y_tr, x_te, y_te)
