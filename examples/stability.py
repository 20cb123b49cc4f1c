"""Generalization-stability tradeoff (Bartoldson et al. 2020) at CPU scale.

VGG11-BN at reduced width on a class-balanced CIFAR-10 subset, Adam 1e-3, no augmentation, no weight decay
(spec §2.4 F2_VGG / F3 / F5 / FD2 with the 325-epoch schedule compressed to a few epochs). Every run is
appended to ``<out>/runs.jsonl`` as soon as it finishes, so an interrupted sweep continues where it stopped;
``--report`` turns the file into tables, correlations and plots.

    python examples/stability.py --seeds 0 1 2 3 4                 # the sweep (one process, one thread)
    python examples/stability.py --report                           # tables + plots from runs.jsonl
    python examples/stability.py --configs prune_L_r6 --seeds 0 --epochs 3 --out /tmp/gst   # a quick try
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from prunelab.data import load_dataset
from prunelab.data.dataset import subsample
from prunelab.io import atomic_write_bytes
from prunelab.models import build_model
from prunelab.procedures import run_procedure
from prunelab.procedures.stability import FlatnessSpec, StabilityConfig
from prunelab.training import TrainConfig

OUT = Path(__file__).resolve().parent.parent / "docs" / "results" / "stability"


def layers(epochs_pruning_end: int) -> dict:
    """GST's VGG11 targets (conv5-7 to 30 %, conv8 to 90 % removed) on a compressed schedule."""
    e = epochs_pruning_end
    return {"conv5": {"fraction": 0.3, "start": 1, "end": e - 1},
            "conv6": {"fraction": 0.3, "start": 1, "end": e - 1},
            "conv7": {"fraction": 0.3, "start": 1, "end": e - 1},
            "conv8": {"fraction": 0.9, "start": 1, "end": e}}


def configs(end: int, low: int, high: int, noise_passes: dict, fraction_scale: float = 1.0) -> dict[str, dict]:
    """name -> StabilityConfig fields. ``low``/``high``: retrain periods (events every epoch = the smaller
    pruning rate per event; every ``high`` epochs = the larger one). ``fraction_scale`` (StabilityConfig's)
    shrinks every final fraction by the same factor: at reduced width GST's 90 % leaves conv8 a handful of
    filters, and scaling keeps the paper's layer-to-layer proportions while leaving more capacity."""
    L = {"layers": layers(end), "fraction_scale": fraction_scale}
    out = {"no_pruning": {}, "scratch_S": {**L, "scratch": True, "target": "small"}}
    for t, tag in (("small", "S"), ("large", "L"), ("random", "R")):
        out[f"prune_{tag}_r{low}"] = {**L, "retrain_period": low, "target": t}
        out[f"prune_{tag}_r{high}"] = {**L, "retrain_period": high, "target": t}
    for kind, n in noise_passes.items():
        out[f"{kind}{n}_L_r{high}"] = {**L, "retrain_period": high, "target": "large",
                                        "noise": {"kind": kind, "passes": n}}
    return out


def load_data(train_size: int, test_size: int, root: str):
    data = load_dataset("cifar10", root, train_size=train_size, train_seed=0, augment=False, download=False,
                        progress=False)
    if test_size < len(data.test):
        data.test = subsample(data.test, test_size, 0, num_classes=10)
    return data


def done_keys(path: Path) -> set:
    if not path.exists():
        return set()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["config"], r["seed"]) for r in rows}


def sweep(args) -> None:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = out / "runs.jsonl"
    data = load_data(args.train_size, args.test_size, args.data)
    cfgs = configs(args.prune_end, args.low, args.high,
                   {"zeroing": args.zero_passes, "gaussian": args.gauss_passes,
                    "cumulative_restore": args.restore_passes}, args.fraction_scale)
    names = args.configs or list(cfgs)
    unknown = [n for n in names if n not in cfgs]
    if unknown:
        raise SystemExit(f"unknown configs {unknown}; allowed: {list(cfgs)}")
    train_cfg = TrainConfig(optimizer="adam", lr=1e-3, batch_size=128, epochs=args.epochs,
                            schedule="multistep", milestones=tuple(args.milestones), eval_splits=("test",),
                            eval_batch_size=1000, precision=args.precision, device=args.device)
    flat = FlatnessSpec(images=args.flat_images, top_k=args.flat_k, iterations=args.flat_steps,
                        perturb_vectors=1, perturb_eps=tuple(round(-0.4 + 0.1 * i, 2) for i in range(9)))
    done = done_keys(runs)

    def model_fn(seed):
        return build_model("vgg11_bn", num_classes=10, input_shape=(3, 32, 32), seed=seed, width=args.width)

    # seeds outermost: every config gets seed 0 before any gets seed 1, so a cut-short sweep stays balanced
    for seed in args.seeds:
        for name in names:
            if (name, seed) in done:
                continue
            measure = seed in args.flat_seeds and name in (args.flat_configs or names)
            cfg = StabilityConfig(**cfgs[name], flatness=flat if measure else None)
            t0 = time.time()
            r = run_procedure(model_fn, data, train_cfg, cfg, seed=seed, keep_history=True).rows[0]
            row = {"config": name, "seed": seed, "seconds": round(time.time() - t0, 1),
                   "width": args.width, "train_size": args.train_size, "test_size": len(data.test),
                   "epochs": args.epochs, "fraction_scale": args.fraction_scale,
                   "final_test_acc": r.final.get("test_acc"),
                   "history": [{k: h[k] for k in ("epoch", "test_acc", "train_running_acc") if k in h}
                               for h in r.history], **r.extra}
            old = runs.read_text() if runs.exists() else ""
            atomic_write_bytes(runs, (old + json.dumps(row) + "\n").encode())
            print(f"{name:>28} seed {seed}: stability {r.extra['mean_stability']:.2f}  best "
                  f"{r.extra['best_test_acc']:.4f}  gap {r.extra.get('gen_gap', float('nan')):.4f}  "
                  f"({row['seconds']} s)", flush=True)


def report(args) -> None:
    import pandas as pd

    from prunelab.analysis import config_summary, correlate, pairwise_welch
    from prunelab.report import plot_stability

    out = Path(args.out)
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines() if line.strip()]
    df = pd.DataFrame([{k: v for k, v in r.items() if k not in ("history", "events", "perturbation")}
                       for r in rows])
    metrics = ["mean_stability", "best_test_acc", "gen_gap", "final_test_acc"]
    flat_cols = [c for c in ("hessian_sum", "grad_cov_trace", "trace_ratio") if c in df]
    summ = config_summary(df, metrics + flat_cols)
    lines = ["| config | n | mean stability (%) | best test acc (%) | gen. gap (pt) | final test acc (%) |",
             "|---|---|---|---|---|---|"]
    for _, s in summ.iterrows():
        def f(m, scale=1.0, d=2):
            return f"{scale * s[m + '_mean']:.{d}f} ± {scale * s[m + '_ci95']:.{d}f}"
        lines.append(f"| {s['config']} | {s['n']} | {f('mean_stability')} | {f('best_test_acc', 100)} | "
                     f"{f('gen_gap', 100)} | {f('final_test_acc', 100)} |")
    text = ["## Per-config means ± 95 % CI (t, over seeds)", "", *lines, ""]
    pruned = df[~df["config"].isin(["no_pruning", "scratch_S"])]
    sets = {"all runs": df, "runs that prune during training": pruned,
            "pruning runs (no noise variants)": pruned[pruned["config"].str.startswith("prune_")],
            "noise variants + no pruning": df[~df["config"].str.startswith(("prune_", "scratch"))]}
    for rate in sorted({c.rsplit("_r", 1)[1] for c in pruned["config"] if c.startswith("prune_")}):
        sets[f"Prune_S/L/R at r={rate}"] = pruned[pruned["config"].str.match(rf"prune_[SLR]_r{rate}$")]
    text += ["## Correlations across runs", "",
             "| runs | y | n | Pearson r | p | Kendall τ | p |", "|---|---|---|---|---|---|---|"]
    corr = {}
    for label, d in sets.items():
        for y in ("best_test_acc", "gen_gap", *flat_cols):
            c = correlate(d["mean_stability"], d[y])
            corr[(label, y)] = c
            text.append(f"| {label} | {y} | {c['n']} | {c['pearson_r']:.3f} | {c['pearson_p']:.3g} | "
                        f"{c['kendall_tau']:.3f} | {c['kendall_p']:.3g} |")
    pairs = [(a, b) for a, b in args.pairs]
    if pairs:
        pw = pairwise_welch(df, "best_test_acc", pairs)
        text += ["", "## Welch t-tests, best test accuracy", "", "| a | b | mean a (%) | mean b (%) | t | p |",
                 "|---|---|---|---|---|---|"]
        for _, p in pw.iterrows():
            text.append(f"| {p['a']} | {p['b']} | {100 * p['mean_a']:.2f} | {100 * p['mean_b']:.2f} | "
                        f"{p['t']:.2f} | {p['p']:.3g} |")
    atomic_write_bytes(out / "tables.md", ("\n".join(text) + "\n").encode())
    summ.to_csv(out / "summary.csv", index=False)
    plot_stability(df, out / "stability_vs_accuracy", "best_test_acc",
                   title="Best post-pruning test accuracy vs mean stability")
    plot_stability(df, out / "stability_vs_gap", "gen_gap", ylabel="generalization gap (pt)",
                   title="Generalization gap vs mean stability")
    for c in flat_cols[:2]:
        sub = df[df[c].notna()]
        if len(sub) >= 3:
            plot_stability(sub, out / f"stability_vs_{c}", c, percent_y=False, ylabel=c, title=f"{c} vs mean stability")
    print("\n".join(text))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", action="store_true", help="summarise runs.jsonl instead of running")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--data", default="/work/shared/data")
    p.add_argument("--configs", nargs="*")
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--train-size", type=int, default=5000)
    p.add_argument("--test-size", type=int, default=2000)
    p.add_argument("--epochs", type=float, default=12)
    p.add_argument("--milestones", nargs="*", type=float, default=[9])
    p.add_argument("--prune-end", type=int, default=7, help="last pruning epoch (conv8; conv5-7 stop one before)")
    p.add_argument("--fraction-scale", type=float, default=1.0,
                   help="multiply every layer's final pruned fraction (1 = GST's 30 %% / 90 %%), in (0, 1/0.9)")
    p.add_argument("--low", type=int, default=1, help="retrain period of the small per-event rate")
    p.add_argument("--high", type=int, default=6, help="retrain period of the large per-event rate")
    p.add_argument("--zero-passes", type=int, default=10)
    p.add_argument("--gauss-passes", type=int, default=10)
    p.add_argument("--restore-passes", type=int, default=20)
    p.add_argument("--flat-seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--flat-configs", nargs="*")
    p.add_argument("--flat-images", type=int, default=256)
    p.add_argument("--flat-k", type=int, default=10)
    p.add_argument("--flat-steps", type=int, default=30)
    p.add_argument("--pairs", nargs=2, action="append", default=[], metavar=("A", "B"))
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    report(args) if args.report else sweep(args)


if __name__ == "__main__":
    main()
