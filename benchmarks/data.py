"""CIFAR-10 training-epoch input pipeline: prunelab's batched tensor pipeline vs a per-sample DataLoader.

Both do the same work per image: random crop 32 with zero padding 4, random horizontal flip, conversion to
float and per-channel normalisation, batch 128, shuffled. The per-sample baseline is the usual
``torch.utils.data.Dataset`` + ``DataLoader(num_workers=0)`` with the transforms applied to one image
tensor at a time and the default collate.

    python benchmarks/data.py [--root ../shared/data] [--images N] [--slow-images 3000] [--repeats 3]

The last line printed is ``speedup vs per-sample loader: X.X`` (ratio of median images/s).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from prunelab.data import Split, load_dataset

REPO = Path(__file__).resolve().parents[1]


class PerSampleCIFAR(torch.utils.data.Dataset):
    """The conventional pipeline: one image at a time, transforms on (3, 32, 32) tensors."""

    def __init__(self, split: Split, mean, std, padding: int = 4):
        self.x, self.y, self.padding = split.x, split.y, padding
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        p = self.padding
        img = F.pad(self.x[i], (p, p, p, p))
        dy, dx = torch.randint(0, 2 * p + 1, (2,)).tolist()
        img = img[:, dy:dy + 32, dx:dx + 32]
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        img = (img.float() / 255 - self.mean) / self.std
        return img, self.y[i]


def time_epoch(batches) -> tuple[int, float]:
    n, t0 = 0, time.perf_counter()
    for x, y in batches:
        n += x.shape[0]
    return n, time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--images", type=int, default=None,
                    help="images per epoch for the batched pipeline (default: the whole 45k train split)")
    ap.add_argument("--slow-images", type=int, default=3000, help="images per epoch for the per-sample loader")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    # One thread by default: on a shared 2-core machine, torch's intra-op threads stall whenever another
    # process holds a core, which penalises only the batched path (per-sample ops are too small to be split).
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads; 0 keeps torch's default")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    ds = load_dataset("cifar10", root=args.root, val_size=5000, balanced_val=True, download=False, progress=False)
    fast_split = ds.train if args.images is None else ds.train.subset(range(min(args.images, len(ds.train))))
    slow_split = ds.train.subset(range(min(args.slow_images, len(ds.train))))
    print(f"CIFAR-10 from {args.root}: train {len(ds.train)}, batch {args.batch_size}, crop 32 pad 4 + flip "
          f"+ normalise, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")

    g = torch.Generator().manual_seed(0)
    fast, slow = [], []
    for r in range(args.repeats):
        n, dt = time_epoch(ds.batches(fast_split, args.batch_size, shuffle=True, generator=g, augment=True))
        fast.append(n / dt)
        print(f"  [{r + 1}/{args.repeats}] batched tensor pipeline: {n} images in {dt:.3f} s = {n / dt:,.0f} images/s")
        loader = DataLoader(PerSampleCIFAR(slow_split, ds.mean, ds.std), batch_size=args.batch_size, shuffle=True,
                            num_workers=0, generator=g)
        n, dt = time_epoch(loader)
        slow.append(n / dt)
        print(f"  [{r + 1}/{args.repeats}] per-sample DataLoader:   {n} images in {dt:.3f} s = {n / dt:,.0f} images/s")
    f, s = statistics.median(fast), statistics.median(slow)
    print(f"median images/s: batched {f:,.0f}, per-sample {s:,.0f}")
    print(f"speedup vs per-sample loader: {f / s:.1f}")


if __name__ == "__main__":
    main()
