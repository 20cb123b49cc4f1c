"""Inference latency of pruned models: dense vs masked vs sparse kernels vs channels removed (issue 16).

Variants, timed side by side in this one process, eval mode, under ``torch.inference_mode()``:

* ``dense``   -- the plain model;
* ``masked``  -- 50 % of its conv/Linear weights zeroed (global magnitude, ``prunelab.prune``): the same dense
  kernels, so the same latency is expected -- zeros cost as much as any other number;
* ``removed`` -- 50 % of the filters of every conv pruned by a filter mask and physically removed with
  :func:`prunelab.export.export_pruned` (a smaller dense model; the export checks its outputs equal the
  filter-masked model's on a random batch);
* LeNet-300-100 only: ``csr@d`` -- its three Linear layers as ``torch.sparse_csr`` matrices at density d
  (random unstructured masks), run with ``torch.addmm(bias, W_csr, x^T)``, against the dense layers.

ResNet-20 (CIFAR shape): residual streams (the stem and the ``conv2`` of the blocks adding into one tensor,
up to the next option-A shortcut) lose a channel only if *every* producer of the stream prunes it, so the
mask prunes the *same* channels in all producers of a stream (the half with the smallest summed filter
norm); each block's ``conv1`` prunes its own smallest-norm half. The printed export report says what was
removed. VGG-11-BN: every conv its own smallest-norm half.

Models are randomly initialised (latency does not depend on trained values). FLOP reduction = conv + Linear
multiply-accumulates of the dense model / of the exported one (counted with forward hooks at batch 1).

Machines here are shared and noisy, so every round runs a block of calls of each variant in a shuffled
order, and each speedup is the median over rounds of the per-round ratio dense time / variant time.

Usage::

    python benchmarks/latency.py               # ResNet-20, VGG-11-BN, LeNet CSR; batch 1, 32, 256 (< 5 min)
    python benchmarks/latency.py --threads 2
    python benchmarks/latency.py --quick       # a smoke run, numbers not meaningful

The last line is ``channel-removed speedup at 50 % filters: X.XX`` (ResNet-20, batch 256).
"""
from __future__ import annotations

import argparse
import copy
import random
import statistics
import sys
import time

import torch
from torch import nn

import prunelab
from prunelab.export import export_pruned
from prunelab.primitives.filters import block_shortcuts, conv_names, filter_mask

from _machine import cores, load  # benchmarks/_machine.py: scripts here import their neighbours

FRACTION = 0.5
CONV_MODELS = {"resnet20": (3, 32, 32), "vgg11_bn": (3, 32, 32)}
DENSITIES = (1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01)


# masks -------------------------------------------------------------------------------------------------
def _smallest(norms: torch.Tensor, fraction: float) -> list[int]:
    k = int(round(fraction * norms.numel()))
    return sorted(torch.argsort(norms, stable=True)[:k].tolist())


def _streams(model: nn.Module) -> list[list[str]]:
    """Producers of each residual stream: the stem conv, then block conv2s until a non-identity shortcut."""
    convs = conv_names(model)
    streams = [[convs[0]]]
    for conv2, sc in block_shortcuts(model).items():
        if not isinstance(sc, nn.Identity):
            streams.append([])
        streams[-1].append(conv2)
    return streams


def filter_mask_50(model: nn.Module, fraction: float = FRACTION) -> tuple:
    """A filter mask pruning ``fraction`` of every conv's filters; on residual streams the same channels in
    every producer (so they can be removed). Returns (mask, what was done, in words)."""
    convs = conv_names(model)
    mask = filter_mask(model, convs)
    mods = dict(model.named_modules())
    norm = {c: mods[c].weight.detach().flatten(1).norm(dim=1) for c in convs}
    pruned: dict[str, list[int]] = {}
    streams = _streams(model) if block_shortcuts(model) else []
    for producers in streams:
        common = _smallest(sum(norm[p] for p in producers), fraction)
        for p in producers:
            pruned[p] = common
    for c in convs:
        pruned.setdefault(c, _smallest(norm[c], fraction))
    for c, chans in pruned.items():
        m = mask[f"{c}.weight"]
        m.view(-1)[chans] = False
    how = (f"{len(streams)} residual streams pruned on shared channels (smallest summed norm), other convs "
           f"their own smallest-norm half" if streams else "every conv its own smallest-norm half")
    return mask, how


# FLOPs -------------------------------------------------------------------------------------------------
def macs(model: nn.Module, x: torch.Tensor) -> int:
    """Conv2d + Linear multiply-accumulates of one forward of ``x`` (per sample)."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
            total += out.numel() * k
        else:
            total += out.numel() * mod.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in hs:
            h.remove()
    return total // x.shape[0]


# timing ------------------------------------------------------------------------------------------------
def interleaved(fns: dict, *, rounds: int, block_seconds: float, seed: int) -> dict:
    """Median ms/call of each fn and median per-round ratio dense/fn (``fns`` has a 'dense' entry)."""
    with torch.inference_mode():
        for f in fns.values():  # warm-up (allocator, first-call overhead)
            f()
            f()
        t0 = time.perf_counter()
        fns["dense"]()
        one = time.perf_counter() - t0
        block = max(1, min(500, round(block_seconds / max(one, 1e-6))))
        times = {k: [] for k in fns}
        order = list(fns)
        rng = random.Random(seed)
        for _ in range(rounds):
            rng.shuffle(order)  # no variant always first (cache state) or last
            for k in order:
                f = fns[k]
                t0 = time.perf_counter()
                for _ in range(block):
                    f()
                times[k].append((time.perf_counter() - t0) / block * 1e3)
    ms = {k: statistics.median(v) for k, v in times.items()}
    speedup = {k: statistics.median(d / a for d, a in zip(times["dense"], times[k])) for k in fns}
    return {"ms": ms, "speedup": speedup, "block": block}


def _rounds(args, batch: int) -> int:
    if args.reps is not None:
        return args.reps
    if args.quick:
        return 2
    return 7 if batch >= 256 else 11


# conv models -------------------------------------------------------------------------------------------
def bench_conv(name: str, args) -> dict:
    shape = CONV_MODELS[name]
    dense = prunelab.build_model(name, num_classes=10, input_shape=shape, seed=args.seed).eval()
    masked = copy.deepcopy(dense)
    prunelab.prune(masked, sparsity=FRACTION)   # 50 % of conv/Linear weights zeroed, global magnitude
    fmask, how = filter_mask_50(dense)
    removed = export_pruned(dense, fmask).eval()
    rep = removed.export_report
    x1 = torch.randn(1, *shape)
    flops = (macs(dense, x1), macs(removed, x1))
    params = (sum(p.numel() for p in dense.parameters()), sum(p.numel() for p in removed.parameters()))
    convs = [n for n in rep if isinstance(dense.get_submodule(n), nn.Conv2d)]
    pruned_ch = sum(int((~fmask[f"{c}.weight"]).sum()) for c in convs)
    removed_ch = sum(len(rep[c].removed_out) for c in convs)
    zero_kept = sum(len(rep[c].zero_kept) for c in convs)
    out = {"flops": flops, "params": params, "how": how, "pruned": pruned_ch, "removed": removed_ch,
           "zero_kept": zero_kept, "channels": sum(rep[c].out_before for c in convs), "batches": {}}
    for b in args.batches:
        x = torch.randn(b, *shape, generator=torch.Generator().manual_seed(args.seed))
        fns = {"dense": lambda: dense(x), "masked": lambda: masked(x), "removed": lambda: removed(x)}
        out["batches"][b] = r = interleaved(fns, rounds=_rounds(args, b), block_seconds=args.block_seconds,
                                            seed=args.seed)
        print(f"  {name} batch {b}: {r['block']} calls/variant/round, dense {r['ms']['dense']:.3f} ms", flush=True)
    return out


# LeNet-300-100: dense Linear vs CSR --------------------------------------------------------------------
def bench_csr(args) -> dict:
    model = prunelab.build_model("lenet300_100", num_classes=10, input_shape=(1, 28, 28), seed=args.seed).eval()
    lins = [m for m in model.modules() if isinstance(m, nn.Linear)]
    g = torch.Generator().manual_seed(args.seed)
    sparse = {}
    for d in DENSITIES:
        layers = []
        for lin in lins:
            w = lin.weight.detach().clone()
            w[torch.rand(w.shape, generator=g) >= d] = 0
            layers.append((w.to_sparse_csr(), lin.bias.detach().clone()[:, None]))
        sparse[d] = layers

    def csr_forward(layers, xt):
        h = xt
        for i, (w, b) in enumerate(layers):
            h = torch.addmm(b, w, h)
            if i < len(layers) - 1:
                h = torch.relu(h)
        return h.t()

    out = {}
    for b in args.batches:
        x = torch.randn(b, 1, 28, 28, generator=torch.Generator().manual_seed(args.seed))
        xt = x.flatten(1).t().contiguous()
        with torch.inference_mode():  # the CSR path computes the same function (checked at density 1)
            torch.testing.assert_close(csr_forward(sparse[1.0], xt), model(x), atol=1e-4, rtol=1e-4)
        fns = {"dense": lambda: model(x)}
        for d in DENSITIES:
            fns[f"csr@{d:g}"] = lambda layers=sparse[d]: csr_forward(layers, xt)
        out[b] = r = interleaved(fns, rounds=_rounds(args, 1), block_seconds=args.block_seconds / 2,
                                 seed=args.seed)
        print(f"  lenet300_100 CSR batch {b}: {r['block']} calls/variant/round, dense {r['ms']['dense']:.4f} ms",
              flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: %(default)s)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256], help="default: 1 32 256")
    ap.add_argument("--reps", type=int, default=None,
                    help="interleaved rounds (default 11, 7 at batch >= 256; 2 with --quick)")
    ap.add_argument("--quick", action="store_true", help="few rounds, short blocks: a smoke test")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if 256 not in args.batches:
        args.batches.append(256)  # the last line reports batch 256
    args.block_seconds = 0.02 if args.quick else 0.2
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    print(f"torch {torch.__version__}, {args.threads} thread(s) of {cores()} usable cores, eval mode, "
          f"inference_mode, batches {args.batches}; load average {load()}", flush=True)

    conv = {}
    for name in CONV_MODELS:
        conv[name] = bench_conv(name, args)
    csr = bench_csr(args)

    print("\nchannel removal (50 % of the filters of every conv pruned by a filter mask, then export_pruned):")
    for name, r in conv.items():
        fd, fr = r["flops"]
        pd_, pr = r["params"]
        print(f"  {name}: {r['how']}; filters pruned {r['pruned']}/{r['channels']}, removed {r['removed']}, "
              f"kept as zeros {r['zero_kept']}; params {pd_:,} -> {pr:,}; MACs/sample {fd:,} -> {fr:,} "
              f"(FLOP reduction {fd / fr:.2f}x)")
    header = (f"{'model':<10} {'batch':>5} {'dense ms':>10} {'masked ms':>10} {'masked x':>9} {'removed ms':>10} "
              f"{'removed x':>9} {'FLOP red.':>9} {'speedup/FLOP red.':>17}")
    print("\n" + header + "\n" + "-" * len(header))
    for name, r in conv.items():
        red = r["flops"][0] / r["flops"][1]
        for b, t in r["batches"].items():
            ms, sp = t["ms"], t["speedup"]
            print(f"{name:<10} {b:>5} {ms['dense']:>10.3f} {ms['masked']:>10.3f} {sp['masked']:>9.2f} "
                  f"{ms['removed']:>10.3f} {sp['removed']:>9.2f} {red:>9.2f} {sp['removed'] / red:>17.2f}")

    print("\nLeNet-300-100, Linear layers as torch CSR (addmm) vs dense: speedup dense/CSR (>1: CSR faster)")
    header = f"{'batch':>5} {'dense ms':>9} " + " ".join(f"{f'd={d:g}':>7}" for d in DENSITIES) + "  CSR faster at"
    print(header + "\n" + "-" * len(header))
    for b, t in csr.items():
        sp = t["speedup"]
        faster = [d for d in DENSITIES if sp[f"csr@{d:g}"] > 1.0]
        over = (f"density <= {max(faster):g}" if faster and all(sp[f"csr@{d:g}"] > 1.0 for d in DENSITIES
                                                                  if d <= max(faster))
                else (f"densities {', '.join(f'{d:g}' for d in faster)}" if faster else "none tested"))
        print(f"{b:>5} {t['ms']['dense']:>9.4f} " + " ".join(f"{sp[f'csr@{d:g}']:>7.2f}" for d in DENSITIES)
              + f"  {over}")

    print(f"\nload average at the end: {load()} (other processes share these cores; ratios are interleaved "
          f"medians); total {time.perf_counter() - t_start:.0f} s")
    print(f"channel-removed speedup at 50 % filters: {conv['resnet20']['batches'][256]['speedup']['removed']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
