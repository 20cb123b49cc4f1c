"""Write a CIFAR-10 data root small enough to carry to the device machine (64 MiB in all).

    python scripts/device/cifar10_subset.py --src ../shared/data --out data --train 10000

The official binary layout (five data_batch files and test_batch.bin, 3,073 bytes per record), holding a
class-balanced subset of the training images drawn with ``prunelab.data`` (the same draw as
``dataset.train_size`` with seed 0) and the whole test set, so `prunelab run` reads it unchanged there.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from prunelab.data.splits import draw_indices
from prunelab.io import atomic_write_bytes

RECORD = 3073


def records(path: Path) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.uint8)
    return raw.reshape(-1, RECORD)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", required=True, help="a data root with cifar10/ (official binary files)")
    ap.add_argument("--out", required=True, help="the data root to write (cifar10/ inside it)")
    ap.add_argument("--train", type=int, default=10000, help="training images kept, class-balanced")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    src, out = Path(args.src) / "cifar10", Path(args.out) / "cifar10"
    train = np.concatenate([records(src / f"data_batch_{i}.bin") for i in range(1, 6)])
    keep = np.sort(draw_indices(train[:, 0].astype(np.int64), args.train, args.seed, balanced=True, num_classes=10))
    for i, part in enumerate(np.array_split(train[keep], 5), 1):
        atomic_write_bytes(out / f"data_batch_{i}.bin", part.tobytes())
    atomic_write_bytes(out / "test_batch.bin", (src / "test_batch.bin").read_bytes())
    print(f"wrote {len(keep)} training and {len(records(src / 'test_batch.bin'))} test images to {out}")


if __name__ == "__main__":
    main()
