"""Global magnitude pruning of ResNet-50-sized weights to 90 %: prunelab vs torch.nn.utils.prune.

The weights are the 54 Conv/Linear weight tensors of a standard (torchvision-layout) ResNet-50, 25,502,912
values, drawn from a normal distribution as plain ``nn.Parameter``s. Each method prunes them to 90 %
sparsity with one global |w| threshold and leaves the pruned weights zero in the module:

* ``prunelab`` -- ``prunelab.prune(model, sparsity=0.9)`` (score, global selection, apply);
* ``torch``    -- ``torch.nn.utils.prune.global_unstructured(..., L1Unstructured, amount=0.9)``.

Every measurement runs in a fresh subprocess, so that its peak resident memory (VmHWM from
/proc/self/status, reset to the current RSS just before pruning) belongs to that one call alone: the
allocator cache of an earlier run cannot hide or inflate it. The subprocesses alternate between the two
methods in shuffled order, and times and peaks are medians over the repetitions.

Each thread count is measured separately (default: all usable cores, then one thread). The last line
reports the first.

Usage::

    python benchmarks/threshold.py                   # 5 repetitions per method and thread count
    python benchmarks/threshold.py --reps 9 --threads 2
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time

from _machine import cores, load  # benchmarks/_machine.py: scripts here import their neighbours

SPARSITY = 0.9
METHODS = ("prunelab", "torch")


def resnet50_weight_shapes() -> list[tuple[int, ...]]:
    """Conv/Linear weight shapes of torchvision's ResNet-50 (bottleneck v1.5: stride on the 3x3)."""
    shapes = [(64, 3, 7, 7)]
    inplanes = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            shapes += [(width, inplanes, 1, 1), (width, width, 3, 3), (width * 4, width, 1, 1)]
            if b == 0:  # projection shortcut
                shapes.append((width * 4, inplanes, 1, 1))
            inplanes = width * 4
    shapes.append((1000, 2048))
    return shapes


# --- worker side (one method, one call, in a fresh process) ----------------------------------------------

def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _build(seed: int, scale: int = 1):
    import torch
    from torch import nn

    class Weights(nn.Module):
        """One conv/linear-shaped parameter per submodule, so both libraries see ordinary layers."""

        def __init__(self, shapes):
            super().__init__()
            self.layers = nn.ModuleList()
            for shape in shapes:
                m = nn.Module()
                # empty + in-place normal_: no temporary, so building leaves no high-water mark of its own
                m.weight = nn.Parameter(torch.empty(shape))
                self.layers.append(m)

    shapes = resnet50_weight_shapes()
    if scale > 1:  # a small stand-in with the same layer structure, for the warm-up
        shapes = [(max(1, s[0] // scale),) + s[1:] for s in shapes]
    model = Weights(shapes)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(generator=g)
    return model


def _run_prunelab(model):
    import prunelab
    # The weights live in plain modules (not Conv/Linear), so the scope names them explicitly.
    mask = prunelab.prune(model, sparsity=SPARSITY, scope=[n for n, _ in model.named_parameters()])
    return lambda: [mask[n] for n in mask]


def _run_torch(model):
    from torch.nn.utils import prune as tprune
    targets = [(m, "weight") for m in model.layers]
    tprune.global_unstructured(targets, pruning_method=tprune.L1Unstructured, amount=SPARSITY)
    return lambda: [m.weight_mask.bool() for m in model.layers]


def worker(method: str, seed: int, threads: int) -> dict:
    import numpy as np
    import torch
    torch.set_num_threads(threads)
    run = {"prunelab": _run_prunelab, "torch": _run_torch}[method]
    run(_build(seed + 1, scale=64))  # warm-up: imports, kernel dispatch, thread pool, on tiny tensors
    model = _build(seed)
    total = sum(p.numel() for p in model.parameters())

    reset = _reset_peak()
    rss0 = _status_kb("VmRSS")
    t0 = time.perf_counter()
    masks = run(model)
    seconds = time.perf_counter() - t0
    hwm = _status_kb("VmHWM")

    # Not timed and after the peak is read: the identity of the kept set, to compare the two methods.
    flat = torch.cat([m.reshape(-1) for m in masks()]).numpy()
    digest = hashlib.sha256(np.packbits(flat).tobytes()).hexdigest()[:16]
    zero = sum(int((m.weight == 0).sum()) for m in model.layers)
    return {"method": method, "seconds": seconds, "peak_extra_mb": (hwm - rss0) / 1024,
            "rss_before_mb": rss0 / 1024, "peak_reset": reset, "total": total,
            "kept": int(flat.sum()), "zeros_in_weights": zero, "mask_sha256": digest}


# --- driver side ----------------------------------------------------------------------------------------

def _spawn(method: str, seed: int, threads: int) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", method, "--seed", str(seed),
           "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"worker {method!r} failed (exit {out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_setting(threads: int, reps: int, seed: int) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {m: [] for m in METHODS}
    order = list(METHODS)
    rng = random.Random(seed)
    for rep in range(reps):
        rng.shuffle(order)  # neither method always runs first
        for method in order:
            r = _spawn(method, seed, threads)
            runs[method].append(r)
            print(f"  {threads} thread(s), rep {rep + 1}: {method:<8} {r['seconds']:8.3f} s   "
                  f"peak +{r['peak_extra_mb']:7.1f} MiB   kept {r['kept']:,}", flush=True)
    return runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="fresh-process repetitions per method (default 5)")
    ap.add_argument("--threads", type=int, nargs="+", default=None, metavar="N",
                    help="torch thread counts to measure, the first one decides the last line "
                         f"(default: {cores()} = usable cores, then 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker, args.seed, (args.threads or [cores()])[0])))
        return 0
    if args.reps < 1:
        ap.error(f"--reps must be >= 1, got {args.reps}")
    settings = list(dict.fromkeys(args.threads or [cores(), 1]))
    if min(settings) < 1:
        ap.error(f"--threads must be >= 1, got {settings}")

    import torch
    shapes = resnet50_weight_shapes()
    total = sum(math.prod(s) for s in shapes)
    print(f"torch {torch.__version__}; {len(shapes)} ResNet-50 conv/linear weights, {total:,} parameters "
          f"({total * 4 / 2**20:.1f} MiB float32); sparsity {SPARSITY}")
    print(f"{args.reps} fresh processes per method and thread count {settings}; load average {load()}",
          flush=True)
    by_setting = {t: _run_setting(t, args.reps, args.seed) for t in settings}
    all_runs = [r for runs in by_setting.values() for rs in runs.values() for r in rs]

    if not all(r["peak_reset"] for r in all_runs):
        print("note: the kernel refused to reset VmHWM; peaks include building the weights")
    expected = total - round(SPARSITY * total)
    print()
    print(f"expected kept count: {total:,} - round({SPARSITY} * {total:,}) = {expected:,}")
    kept, digests = {}, {}
    for m in METHODS:
        mine = [r for r in all_runs if r["method"] == m]
        kept[m] = {r["kept"] for r in mine}
        digests[m] = {r["mask_sha256"] for r in mine}
        zeros = {r["zeros_in_weights"] for r in mine}
        print(f"{m:<8} kept: {', '.join(f'{k:,}' for k in sorted(kept[m]))}   zero weights after pruning: "
              f"{', '.join(f'{z:,}' for z in sorted(zeros))}   mask sha256: {', '.join(sorted(digests[m]))}")
    same_count = kept["prunelab"] == kept["torch"] == {expected}
    same_mask = len(digests["prunelab"] | digests["torch"]) == 1
    yes = {True: "yes", False: "NO"}
    print(f"same kept count: {yes[same_count]}; identical masks: {yes[same_mask]}")

    header = (f"{'threads':>7} {'method':<10} {'median s':>9} {'min s':>8} {'max s':>8} "
              f"{'median peak extra MiB':>22} {'speedup':>8}")
    print()
    print(header)
    print("-" * len(header))
    speedup = {}
    for t, runs in by_setting.items():
        med = {m: statistics.median(r["seconds"] for r in runs[m]) for m in METHODS}
        speedup[t] = med["torch"] / med["prunelab"]
        for m in METHODS:
            secs = [r["seconds"] for r in runs[m]]
            peak = statistics.median(r["peak_extra_mb"] for r in runs[m])
            col = f" {speedup[t]:>8.1f}" if m == "prunelab" else ""
            print(f"{t:>7} {m:<10} {med[m]:>9.3f} {min(secs):>8.3f} {max(secs):>8.3f} {peak:>22.1f}{col}")
    print(f"\nload average at the end: {load()}. Other users' processes may share these cores; prunelab's\n"
          "selection runs on one intra-op thread (its kernels are memory-bound and, with several threads,\n"
          "each would wait at a barrier for a descheduled worker), torch's uses the thread count shown.")
    if not same_count:
        print("ERROR: the two methods kept different numbers of weights")
    print(f"speedup vs torch.nn.utils.prune: {speedup[settings[0]]:.1f}")
    return 0 if same_count else 1


if __name__ == "__main__":
    sys.exit(main())
