"""Datasets held in memory as tensors, with batched augmentation and official-format readers.

>>> ds = load_dataset("cifar10", root="/data", val_size=5000, balanced_val=True)
>>> for x, y in ds.batches("train", 128, shuffle=True, generator=torch.Generator().manual_seed(0)): ...

MNIST-1D batches are flat (N, 40) float32; image batches are (N, C, H, W) float32.
"""

from prunelab.data.augment import Augmentation, random_crop, random_crop_flip, random_hflip
from prunelab.data.dataset import Dataset, Split, subsample
from prunelab.data.download import download_url, extract_archive, extract_tar, extract_zip
from prunelab.data.files import LAYOUTS, default_root, ensure_files
from prunelab.data.formats import DataFormatError, read_cifar_bin, read_idx
from prunelab.data.registry import DATASETS, DatasetInfo, dataset_info, list_datasets, load_dataset
from prunelab.io import file_digest

__all__ = [
    "Augmentation", "DATASETS", "DataFormatError", "Dataset", "DatasetInfo", "LAYOUTS", "Split",
    "dataset_info", "default_root", "download_url", "ensure_files", "extract_archive", "extract_tar",
    "extract_zip", "file_digest",
    "list_datasets", "load_dataset", "random_crop", "random_crop_flip", "random_hflip", "read_cifar_bin",
    "read_idx", "subsample",
]
