"""prunelab's ``train()`` against a minimal plain PyTorch loop doing identical work.

Both sides use the same data path (``Dataset.batches`` with the generator ``train()`` derives for the
epoch, so the batch order, crops and flips are the same tensors), the same optimizer (torch's SGD, fused
kernel, as ``build_optimizer`` makes it), the same memory format and precision, and one test evaluation
at the end of the epoch (loss + accuracy, batch 1000). The plain loop is only forward, cross-entropy,
zero_grad, backward, step; everything else ``train()`` does per step (LR schedule, running loss and
accuracy, the periodic NaN check, hooks, checkpoint bookkeeping) is what the ratio measures. After the
first round the script checks that both sides ended with bit-identical weights, so the work is the same.

* (a) LeNet-300-100 on a 10K subset of MNIST, OpenLTH's settings (SGD lr 0.1, no momentum, batch 128),
  one epoch + test evaluation (the full 10K test split);
* (b) ResNet-20 on 1,280 CIFAR-10 training images (crop + flip augmentation, channels_last, SGD 0.1,
  momentum 0.9), one epoch + evaluation on 500 test images;
* (c) ResNet-20 training throughput (images/s, no evaluation): plain loop fp32 NCHW, prunelab fp32
  channels_last, prunelab bf16 autocast (channels_last; on a CPU without native bf16 this is slow).

Rounds are interleaved (every round runs each variant once, in a shuffled order); the overhead ratio is
the median of the per-round paired ratios prunelab / plain.

Usage::

    python benchmarks/loop.py                # all three parts
    python benchmarks/loop.py --parts lenet --reps 15
    python benchmarks/loop.py --quick        # a smoke run, numbers not meaningful
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
import platform
import random
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F

import prunelab
from prunelab import TrainConfig, train
from prunelab.data import load_dataset
from prunelab.seeding import generator

from _machine import cores, load  # benchmarks/_machine.py: scripts here import their neighbours

DATA = os.environ.get("PRUNELAB_DATA", "../shared/data")   # the data root, as everywhere else


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def plain_epoch(model, data, cfg: TrainConfig, seed: int, *, channels_last: bool, evaluate: bool) -> dict:
    """One epoch of the minimal loop: the batches train() would see, torch's SGD, then a test evaluation."""
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, fused=True)
    ctx = (torch.autocast("cpu", dtype=torch.bfloat16) if cfg.precision == "bf16"
           else contextlib.nullcontext())
    g = generator(seed, "data-order", 0)
    for x, y in data.batches("train", cfg.batch_size, shuffle=True, generator=g, augment=cfg.augment,
                             channels_last=channels_last):
        with ctx:
            out = model(x)
            loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if not evaluate:
        return {}
    model.eval()
    loss_sum, correct, n = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64), 0
    with torch.no_grad():
        for x, y in data.batches("test", cfg.eval_batch_size, augment=False, channels_last=channels_last):
            with ctx:
                out = model(x)
            loss_sum += F.cross_entropy(out.float(), y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
            n += y.numel()
    model.train()
    return {"test_loss": float(loss_sum) / n, "test_acc": float(correct) / n}


def prunelab_epoch(model, data, cfg: TrainConfig, seed: int) -> dict:
    return train(model, data, cfg, seed=seed).final


def same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def run_rounds(variants: dict, reps: int, rng: random.Random) -> dict[str, list[float]]:
    """variants: name -> callable() returning seconds. Each round runs each once, in a shuffled order."""
    times = {k: [] for k in variants}
    for _ in range(reps):
        order = list(variants)
        rng.shuffle(order)
        for k in order:
            times[k].append(variants[k]())
    return times


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def overhead(name: str, template, data, cfg: TrainConfig, reps: int, rng: random.Random, channels_last: bool):
    # identical work: one round of each from the same initial weights must end bit-identical
    a, b = copy.deepcopy(template), copy.deepcopy(template)
    ra = prunelab_epoch(a, data, cfg, 0)
    rb = plain_epoch(b, data, cfg, 0, channels_last=channels_last, evaluate=True)
    ident = same_weights(a, b) and ra["test_acc"] == rb["test_acc"]
    variants = {
        "prunelab": lambda: timed(lambda: prunelab_epoch(copy.deepcopy(template), data, cfg, 0)),
        "plain": lambda: timed(lambda: plain_epoch(copy.deepcopy(template), data, cfg, 0,
                                                   channels_last=channels_last, evaluate=True)),
    }
    t = run_rounds(variants, reps, rng)
    ratios = [p / q for p, q in zip(t["prunelab"], t["plain"])]
    n = len(data.train)
    print(f"{name}: {n} train images/epoch, {len(data.test)} test, batch {cfg.batch_size}, {reps} rounds; "
          f"identical weights and test accuracy after one epoch: {'yes' if ident else 'NO'} "
          f"(test acc {ra['test_acc']:.4f})")
    for k in ("plain", "prunelab"):
        print(f"  {k:9s} median {statistics.median(t[k]):7.3f} s   min {min(t[k]):7.3f}   max {max(t[k]):7.3f}   "
              f"{n / statistics.median(t[k]):8.0f} train images/s incl. eval")
    r = statistics.median(ratios)
    print(f"  overhead prunelab/plain (median of paired ratios): {r:.3f}   "
          f"[ratios min {min(ratios):.3f} max {max(ratios):.3f}]")
    return r


def throughput(template, data, cfg: TrainConfig, reps: int, bf16_reps: int, bf16_data, rng: random.Random):
    fp32 = cfg.model_copy(update={"eval_splits": ()})
    bf16 = fp32.model_copy(update={"precision": "bf16", "channels_last": True})
    variants = {
        "plain fp32 NCHW": lambda: timed(lambda: plain_epoch(copy.deepcopy(template), data, fp32, 0,
                                                             channels_last=False, evaluate=False)),
        "prunelab fp32 channels_last": lambda: timed(lambda: prunelab_epoch(copy.deepcopy(template), data, fp32, 0)),
    }
    t = run_rounds(variants, reps, rng)
    tb = run_rounds({"prunelab bf16 autocast (channels_last)":
                     lambda: timed(lambda: prunelab_epoch(copy.deepcopy(template), bf16_data, bf16, 0))},
                    bf16_reps, rng)
    print(f"resnet20 training throughput (no evaluation), batch {cfg.batch_size}:")
    for k, v in t.items():
        print(f"  {k:40s} {len(data.train) / statistics.median(v):7.1f} images/s  "
              f"(median of {reps}: {statistics.median(v):.3f} s for {len(data.train)} images)")
    for k, v in tb.items():
        print(f"  {k:40s} {len(bf16_data.train) / statistics.median(v):7.1f} images/s  "
              f"(median of {bf16_reps}: {statistics.median(v):.3f} s for {len(bf16_data.train)} images)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["lenet", "resnet", "throughput"],
                    choices=["lenet", "resnet", "throughput"])
    ap.add_argument("--reps", type=int, default=None, help="rounds (default: 15 LeNet, 5 ResNet)")
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads (default 1: these cores are shared with other jobs)")
    ap.add_argument("--quick", action="store_true", help="tiny subsets and 2 rounds: a smoke run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = random.Random(0)
    q = args.quick
    print(f"{cpu_model()}, {cores()} cores usable, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads; load average {load()}")
    ratios = {}
    if "lenet" in args.parts:
        data = load_dataset("mnist", DATA, train_size=1280 if q else 10_000, test_size=1000 if q else None,
                            progress=False, download=False)
        model = prunelab.build_model("lenet300_100", num_classes=10, input_shape=(1, 28, 28), seed=0)
        cfg = TrainConfig(lr=0.1, momentum=0.0, batch_size=128, epochs=1, eval_splits=("test",))
        ratios["lenet300_100"] = overhead("lenet300_100 / MNIST", model, data, cfg,
                                          2 if q else (args.reps or 15), rng, channels_last=False)
    if "resnet" in args.parts or "throughput" in args.parts:
        data = load_dataset("cifar10", DATA, train_size=260 if q else 1280, test_size=100 if q else 500,
                            progress=False, download=False)
        model = prunelab.build_model("resnet20", num_classes=10, input_shape=(3, 32, 32), seed=0)
        cfg = TrainConfig(lr=0.1, momentum=0.9, batch_size=128, epochs=1, eval_splits=("test",))
        if "resnet" in args.parts:
            ratios["resnet20"] = overhead("resnet20 / CIFAR-10", model, data, cfg,
                                          2 if q else (args.reps or 5), rng, channels_last=True)
        if "throughput" in args.parts:
            small = load_dataset("cifar10", DATA, train_size=130 if q else 260, test_size=100,
                                 progress=False, download=False)
            throughput(model, data, cfg, 2 if q else (args.reps or 5), 1 if q else 2, small, rng)
    print(f"load average at the end: {load()}")
    for k, r in ratios.items():
        print(f"overhead {k}: {r:.3f} (target <= 1.05: {'met' if r <= 1.05 else 'MISSED'})")


if __name__ == "__main__":
    main()
