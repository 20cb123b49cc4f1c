"""Training-step cost of keeping a mask: prunelab's MaskEnforcer vs dense vs torch.nn.utils.prune.

One SGD step (forward + backward + momentum/weight-decay update) per call, at 80 % global magnitude
sparsity. Three copies of each model are trained side by side in this one process:

* ``dense``   -- the plain model, no mask;
* ``masked``  -- ``prunelab.prune`` + ``MaskEnforcer`` (one fused multiply after each optimizer step);
* ``torch``   -- ``torch.nn.utils.prune.global_unstructured`` (L1), i.e. forward-pre hooks recomputing
  ``weight = weight_orig * weight_mask`` on every forward;
* ``dense_fused`` / ``masked_fused`` -- the same two with torch's fused SGD kernel (what prunelab's
  training loop uses when the device has it), to show the mask's cost against the faster step too.

The machines this runs on are shared and noisy, so the variants are *interleaved*: every round runs a
short block of steps of each variant, in a shuffled order, and every statistic is a median over rounds.
The ratio columns are medians of the per-round paired ratios (variant / dense in the same round), which
cancels slow drifts in machine load better than a ratio of two medians would.

With ``--alternatives`` the same loop also times other ways of keeping the mask, to show what each costs
(all keep the pruned weights exactly zero; none is prunelab's default):

* ``grad_prestep`` -- gradients masked in one ``_foreach_mul_`` before the step, weights not touched
  (exact for coordinate-wise optimizers such as SGD/Adam when their state starts at zero);
* ``grad_hook``    -- each gradient masked in a post-accumulate hook, right after backward writes it;
* ``compiled``     -- ``torch.compile`` of (fused SGD step + weight multiply), which lets inductor fuse the
  multiply into generated code (needs a C++ compiler; its compile time is excluded).

Usage::

    python benchmarks/masking.py                      # all four models
    python benchmarks/masking.py --models resnet20 --reps 100
    python benchmarks/masking.py --models lenet300_100 --alternatives
    python benchmarks/masking.py --quick              # a smoke run, numbers not meaningful
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

import torch
from torch import nn
from torch.nn.utils import prune as tprune

import prunelab
from prunelab.primitives import resolve_scope

from _machine import cores, load  # benchmarks/_machine.py: scripts here import their neighbours

SPARSITY = 0.8
# name -> (input shape, batch size)
MODELS = {
    "lenet300_100": ((1, 28, 28), 60),
    "conv4": ((3, 32, 32), 128),
    "resnet20": ((3, 32, 32), 128),
    "vgg11_bn": ((3, 32, 32), 128),
}
VARIANTS = ("dense", "masked", "torch", "dense_fused", "masked_fused")
ALTERNATIVES = ("grad_prestep", "grad_hook", "compiled")


def _optimizer(params, fused: bool = False) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4, fused=fused or None)


def _build(name: str, device: torch.device) -> nn.Module:
    shape, _ = MODELS[name]
    return prunelab.build_model(name, num_classes=10, input_shape=shape, seed=0).to(device).train()


def _make_variant(kind: str, name: str, device: torch.device, channels_last: bool):
    model = _build(name, device)
    # torch's global_unstructured flattens with .view(-1), which fails on channels_last weights, so its
    # variant is pruned first and converted after (weight_orig and weight_mask both follow the format).
    if channels_last and kind != "torch":
        model = model.to(memory_format=torch.channels_last)
    if kind in ALTERNATIVES:
        return model, _alternative(kind, model)
    if kind.startswith("masked"):
        mask = prunelab.prune(model, sparsity=SPARSITY)
        opt = _optimizer(model.parameters(), fused=kind.endswith("fused"))
        prunelab.MaskEnforcer(model, mask).attach(opt)
    elif kind == "torch":
        # Same scope as prunelab's default (every Conv/Linear weight), one global L1 threshold.
        modules = dict(model.named_modules())
        targets = [(modules[n.rsplit(".", 1)[0]], "weight") for n in resolve_scope(model)]
        tprune.global_unstructured(targets, pruning_method=tprune.L1Unstructured, amount=SPARSITY)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = _optimizer(model.parameters())  # after pruning: the trainable tensors are now weight_orig
    else:
        opt = _optimizer(model.parameters(), fused=kind.endswith("fused"))
    return model, opt


def _alternative(kind: str, model: nn.Module):
    """A step function for one of ALTERNATIVES (see the module docstring); returns an object with step()."""
    mask = prunelab.prune(model, sparsity=SPARSITY)
    enforcer = prunelab.MaskEnforcer(model, mask)  # zeroes the pruned weights once; not attached
    opt = _optimizer(model.parameters(), fused=kind == "compiled")
    params, factors = enforcer.params, enforcer.factors
    if kind == "grad_prestep":
        def mask_grads(*_):
            torch._foreach_mul_([p.grad for p in params], factors)
        opt.register_step_pre_hook(mask_grads)
    elif kind == "grad_hook":
        def hook(f):
            def mask_grad(p):
                p.grad.mul_(f)
            return mask_grad
        for p, f in zip(params, factors):
            p.register_post_accumulate_grad_hook(hook(f))
    else:
        def step():
            opt.step()
            torch._foreach_mul_([p.detach() for p in params], factors)
        compiled = torch.compile(step)

        class _Compiled:  # quacks like an optimizer for _step
            zero_grad = staticmethod(opt.zero_grad)
            step = staticmethod(compiled)
        return _Compiled()
    return opt


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _check_sparsity(kind: str, model: nn.Module) -> float:
    """Fraction of zero weights in scope after training, to prove each variant really is (not) masked."""
    if kind == "torch":
        ws = [m.weight for m in model.modules() if hasattr(m, "weight_mask")]
    else:
        params = dict(model.named_parameters())
        ws = [params[n] for n in resolve_scope(model)]
    zeros = sum(int((w == 0).sum()) for w in ws)
    return zeros / sum(w.numel() for w in ws)


def bench_model(name: str, *, rounds: int, block: int | None, block_seconds: float, warmup: int,
                device: torch.device, seed: int, kinds: tuple[str, ...] = VARIANTS) -> dict:
    shape, batch = MODELS[name]
    channels_last = len(shape) == 3 and name != "lenet300_100"
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *shape, generator=g).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)

    variants = {k: _make_variant(k, name, device, channels_last) for k in kinds}
    for _ in range(warmup):
        for model, opt in variants.values():
            _step(model, opt, x, y)
    _sync(device)
    if block is None:  # enough steps per block to average out scheduler ticks, but many rounds in total
        model, opt = variants["dense"]
        t0 = time.perf_counter()
        for _ in range(3):
            _step(model, opt, x, y)
        _sync(device)
        block = max(1, min(200, round(block_seconds / ((time.perf_counter() - t0) / 3))))

    times = {k: [] for k in kinds}
    order = list(kinds)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)  # no variant always runs first (cache state) or last
        for k in order:
            model, opt = variants[k]
            t0 = time.perf_counter()
            for _ in range(block):
                _step(model, opt, x, y)
            _sync(device)
            times[k].append((time.perf_counter() - t0) / block * 1e3)

    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = {k: statistics.median(a / d for a, d in zip(times[k], times["dense"])) for k in kinds}
    ratio["masked_fused/dense_fused"] = statistics.median(
        a / d for a, d in zip(times["masked_fused"], times["dense_fused"]))
    zero_frac = {k: _check_sparsity(k, variants[k][0]) for k in kinds}
    return {"ms": med, "ratio": ratio, "zeros": zero_frac, "block": block}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), metavar="NAME",
                    help=f"models to run (default: all of {', '.join(MODELS)})")
    ap.add_argument("--reps", type=int, default=None,
                    help="interleaved rounds per model (default 60, or 5 with --quick)")
    ap.add_argument("--block", type=int, default=None,
                    help="steps per variant per round (default: as many as take ~0.25 s, at least 1)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps per variant first")
    ap.add_argument("--quick", action="store_true", help="few rounds, for a smoke test")
    ap.add_argument("--alternatives", action="store_true",
                    help=f"also time other ways of keeping the mask: {', '.join(ALTERNATIVES)}")
    ap.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ap.add_argument("--threads", type=int, default=cores(), help="torch threads (default: usable cores)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rounds = args.reps if args.reps is not None else (5 if args.quick else 60)
    warmup = 2 if args.quick else args.warmup
    if rounds < 1:
        ap.error(f"--reps must be >= 1, got {rounds}")

    print(f"torch {torch.__version__}, device {device}, {args.threads} threads, sparsity {SPARSITY}, "
          f"{rounds} interleaved rounds per model; load average {load()}", flush=True)
    header = (f"{'model':<14} {'dense ms/step':>13} {'masked ms/step':>14} {'masked/dense':>12} "
              f"{'torch-prune ms/step':>19} {'torch-prune/dense':>17} {'fused dense ms':>14} "
              f"{'fused/dense':>11} {'fused masked/dense':>18}")
    results = {}
    for name in args.models:
        results[name] = r = bench_model(name, rounds=rounds, block=args.block,
                                        block_seconds=0.05 if args.quick else 0.25, warmup=warmup,
                                        device=device, seed=args.seed,
                                        kinds=VARIANTS + (ALTERNATIVES if args.alternatives else ()))
        z = r["zeros"]
        print(f"  {name}: {r['block']} steps/variant/round; zero fraction after training: "
              f"dense {z['dense']:.3f}, masked {z['masked']:.3f}, torch-prune {z['torch']:.3f}, "
              f"masked (fused SGD) {z['masked_fused']:.3f}", flush=True)
    print()
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        ms, ratio = r["ms"], r["ratio"]
        print(f"{name:<14} {ms['dense']:>13.3f} {ms['masked']:>14.3f} {ratio['masked']:>12.3f} "
              f"{ms['torch']:>19.3f} {ratio['torch']:>17.3f} {ms['dense_fused']:>14.3f} "
              f"{ratio['dense_fused']:>11.3f} {ratio['masked_fused/dense_fused']:>18.3f}")
    if args.alternatives:
        print(f"\nother ways of keeping the mask, ratio to dense (zero fraction after training):")
        for name, r in results.items():
            print(f"{name:<14} " + "  ".join(f"{k} {r['ratio'][k]:.3f} ({r['zeros'][k]:.3f})"
                                             for k in ALTERNATIVES))
    print(f"\nload average at the end: {load()} (other users' processes share these cores)")
    worst = max(r["ratio"]["masked"] for r in results.values())
    print(f"worst masked/dense ratio: {worst:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
