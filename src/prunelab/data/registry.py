"""Dataset registry and ``load_dataset``: files -> arrays -> splits -> an in-memory ``Dataset``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from prunelab.errors import ConfigError, unknown_name
from prunelab.data.augment import Augmentation
from prunelab.data.dataset import Dataset, Split
from prunelab.data.files import LAYOUTS, RawData, default_root, ensure_files, read_raw
from prunelab.data.mnist1d import generate_mnist1d
from prunelab.data.splits import _check_count, draw_indices, split_indices

__all__ = ["DatasetInfo", "DATASETS", "NORMALIZE_MODES", "list_datasets", "dataset_info", "load_dataset"]

NORMALIZE_MODES = ("standard", "divide255")

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
CIFAR100_CLASSES = tuple("""
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can castle
caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant
flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree
motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate
poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider
squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle
wardrobe whale willow_tree wolf woman worm
""".split())

CIFAR_AUG = Augmentation(crop_padding=4, flip=True)
# Tiny-ImageNet is normalised with the usual ImageNet-1k per-channel mean/std (it is a subset of ImageNet),
# not with statistics of its own; its classes are the 200 wnids, sorted (= label order), read from wnids.txt.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about one dataset. ``standard_augmentation`` is what ``augment=True`` means
    (None: the dataset has no standard augmentation); ``default_augment`` whether ``augment=None`` uses it."""

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    standard_augmentation: Augmentation | None
    default_augment: bool
    is_image: bool
    read: Callable[[Path, bool, bool], RawData]


def _file_reader(name: str, num_classes: int) -> Callable[[Path, bool, bool], RawData]:
    def read(root: Path, download: bool, progress: bool) -> RawData:
        directory = ensure_files(LAYOUTS[name], root, download=download, progress=progress)
        return read_raw(name, directory, num_classes, progress=progress)

    return read


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist", 10, (1, 28, 28), (0.1307,), (0.3081,), tuple(str(d) for d in range(10)),
        None, False, True, _file_reader("mnist", 10),
    ),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", 10, (1, 28, 28), (0.2860,), (0.3530,), FASHION_CLASSES,
        None, False, True, _file_reader("fashion_mnist", 10),
    ),
    "cifar10": DatasetInfo(
        "cifar10", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), CIFAR10_CLASSES,
        CIFAR_AUG, True, True, _file_reader("cifar10", 10),
    ),
    "cifar100": DatasetInfo(
        "cifar100", 100, (3, 32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), CIFAR100_CLASSES,
        CIFAR_AUG, True, True, _file_reader("cifar100", 100),
    ),
    # 64x64 crop with 4 px zero padding + flip, the CIFAR recipe (Augmentation keeps the input size).
    "tiny_imagenet": DatasetInfo(
        "tiny_imagenet", 200, (3, 64, 64), IMAGENET_MEAN, IMAGENET_STD, (),
        CIFAR_AUG, True, True, _file_reader("tiny_imagenet", 200),
    ),
    # Signals are already standardised by the generator (zero mean, unit std), so "standard" is identity.
    "mnist1d": DatasetInfo(
        "mnist1d", 10, (40,), (0.0,), (1.0,), tuple(str(d) for d in range(10)),
        None, False, False, lambda root, download, progress: generate_mnist1d(cache_dir=root / "mnist1d"),
    ),
}


def _owned(a: np.ndarray) -> np.ndarray:
    """Contiguous and writable (np.frombuffer over bytes is read-only, which torch warns about)."""
    return np.ascontiguousarray(a) if a.flags.writeable else np.array(a, order="C")


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    return DATASETS[name]


def _normalization(info: DatasetInfo, normalize) -> tuple[str, tuple[float, ...], tuple[float, ...]]:
    if isinstance(normalize, str):
        if normalize == "standard":
            return "standard", info.mean, info.std
        if normalize == "divide255":
            if not info.is_image:
                raise ConfigError(f"normalize='divide255' applies to 8-bit images; {info.name!r} holds float "
                                  f"signals. Allowed for it: 'standard' or an explicit (mean, std)")
            return "divide255", (0.0,), (1.0,)
        raise unknown_name("normalize mode", normalize, NORMALIZE_MODES)
    try:
        mean, std = normalize
        mean = tuple(float(v) for v in np.atleast_1d(mean))
        std = tuple(float(v) for v in np.atleast_1d(std))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"normalize={normalize!r} is not understood; allowed: 'standard', 'divide255' or (mean, std) "
            f"with per-channel values on the 0-1 scale"
        ) from exc
    return "custom", mean, std


def _augmentation(info: DatasetInfo, augment) -> Augmentation:
    if augment is None:
        return info.standard_augmentation if info.default_augment else Augmentation()
    if augment is False:
        return Augmentation()
    if augment is True:
        if info.standard_augmentation is None:
            raise ConfigError(
                f"dataset {info.name!r} has no standard augmentation, so augment=True is ambiguous; pass "
                f"augment=Augmentation(crop_padding=..., flip=...) or a dict with those keys, or augment=False"
            )
        return info.standard_augmentation
    if isinstance(augment, Mapping):
        extra = set(augment) - {"crop_padding", "flip"}
        if extra:
            raise ConfigError(f"unknown augmentation keys {sorted(extra)}; allowed: crop_padding, flip")
        augment = Augmentation(**augment)
    if not isinstance(augment, Augmentation):
        raise ConfigError(f"augment={augment!r} is not understood; allowed: None, True, False, an Augmentation "
                          f"or a dict with keys crop_padding, flip")
    if augment.enabled and not info.is_image:
        raise ConfigError(f"dataset {info.name!r} holds 1-D signals; crop/flip augmentation needs images")
    return augment


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    val_size: int = 0,
    val_seed: int = 0,
    balanced_val: bool = False,
    train_size: int | None = None,
    train_seed: int | None = None,
    balanced_train: bool = True,
    test_size: int | None = None,
    test_seed: int = 0,
    normalize="standard",
    augment=None,
    device="cpu",
    download: bool = True,
    progress: bool = True,
) -> Dataset:
    """Load ``name`` (see ``list_datasets()``) into memory on ``device``.

    Files are looked up under ``root`` (default ``$PRUNELAB_DATA`` or ``~/.cache/prunelab/data``) as
    ``<root>/<name>/`` and downloaded there with checksum verification when missing and ``download``.
    ``val_size`` samples are moved from train to a validation split drawn with
    ``RandomState(val_seed)`` (``balanced_val``: the same count from every class). ``train_size`` then
    keeps a seeded subset of the remaining train split (seed ``train_seed``, default ``val_seed``;
    class-balanced unless ``balanced_train=False``). ``test_size`` keeps a seeded class-balanced subset of
    the test split (seed ``test_seed``; default: the whole test set, which every reproduction should use
    unless it states otherwise). ``normalize``: "standard" (the dataset's usual
    per-channel mean/std), "divide255" (pixels / 255 only), or an explicit ``(mean, std)`` on the 0-1
    scale. ``augment``: None = dataset default (CIFAR crop 32 pad 4 + flip, Tiny-ImageNet crop 64 pad 4 +
    flip; none for MNIST-type),
    True = the dataset's standard augmentation, False = none, or an ``Augmentation`` / dict.
    """
    info = dataset_info(name)
    mode, mean, std = _normalization(info, normalize)
    aug = _augmentation(info, augment)
    raw = info.read(Path(root).expanduser() if root is not None else default_root(), download, progress)

    tr_idx, va_idx = split_indices(raw.y_train, val_size, val_seed, balanced=balanced_val,
                                   num_classes=info.num_classes)
    if train_size is not None:
        n = _check_count("train_size", train_size, len(tr_idx), allow_all=True)
        if n == 0:
            raise ConfigError(f"train_size must be >= 1 (allowed 1..{len(tr_idx)}), got 0")
        seed = val_seed if train_seed is None else train_seed
        keep = draw_indices(raw.y_train[tr_idx], n, seed, balanced=balanced_train, num_classes=info.num_classes)
        tr_idx = tr_idx[keep]

    te_idx = None
    if test_size is not None:
        n = _check_count("test_size", test_size, len(raw.y_test), allow_all=True)
        if n == 0:
            raise ConfigError(f"test_size must be >= 1 (allowed 1..{len(raw.y_test)}), got 0")
        te_idx = draw_indices(raw.y_test, n, test_seed, balanced=True, num_classes=info.num_classes)

    def make(x: np.ndarray, y: np.ndarray, idx: np.ndarray | None) -> Split:
        if idx is not None:
            x, y = x[idx], y[idx]  # fancy indexing copies: the tensors own their memory
        return Split(torch.from_numpy(_owned(x)).to(device), torch.from_numpy(_owned(y)).to(device))

    full_train = len(tr_idx) == len(raw.y_train)
    return Dataset(
        name,
        train=make(raw.x_train, raw.y_train, None if full_train else tr_idx),
        val=make(raw.x_train, raw.y_train, va_idx) if len(va_idx) else None,
        test=make(raw.x_test, raw.y_test, te_idx),
        num_classes=info.num_classes,
        input_shape=info.input_shape,
        mean=mean,
        std=std,
        augmentation=aug,
        classes=raw.classes if raw.classes is not None else info.classes,
        is_image=info.is_image,
        normalize=mode,
    )
