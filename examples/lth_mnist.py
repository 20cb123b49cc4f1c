"""Reproduce Frankle & Carbin's LeNet-300-100 / MNIST lottery tickets with both controls.

    python examples/lth_mnist.py --data ../shared/data --out docs/results/lth_mnist

Spec §1.2: Adam 1.2e-3, batch 60, per-round rates fc 20 % / output 10 % (official rounding), 55K/5K/10K
split, survivors rewound to θ0; controls: random re-initialisation and a random mask with the ticket's
per-layer counts. Each seed runs in its own process and writes ``seed<N>.jsonl`` row by row, so an
interrupted run resumes at the first unfinished seed; ``--report`` turns the rows into the table and plot.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def run_seed(seed: int, args) -> Path:
    import torch
    torch.set_num_threads(args.threads)
    from prunelab import IMPConfig, TrainConfig, run_imp
    from prunelab.data import load_dataset
    from prunelab.io import atomic_write_bytes
    from prunelab.models import build_model

    out = Path(args.out) / f"seed{seed}.jsonl"
    if out.exists():
        return out
    data = load_dataset("mnist", args.data, val_size=5000, val_seed=0, progress=False)
    cfg = TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, epochs=args.epochs,
                      eval_every=args.eval_every, eval_splits=("val", "test"))
    imp = IMPConfig(rounds=args.rounds, rate="lenet300_100", rounding="official", allocation="layerwise",
                    rewind="init", controls=("reinit", "random_mask"))
    rows = []

    def on_round(r):
        row = dict(r.row(), seed=seed)
        rows.append(row)
        print(json.dumps(row), flush=True)

    def model_fn(s):
        return build_model("lenet300_100", num_classes=10, input_shape=(1, 28, 28), seed=s)

    run_imp(model_fn, data, cfg, imp, seed=seed, on_row=on_round)
    atomic_write_bytes(out, "".join(json.dumps(r) + "\n" for r in rows).encode())
    return out


def report(out_dir: Path, args) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.concat([pd.read_json(p, lines=True) for p in sorted(out_dir.glob("seed*.jsonl"))])
    dense = df[(df.variant == "ticket") & (df["round"] == 0)]
    # round 0 is the dense network, shared by every variant
    df = pd.concat([df] + [dense.assign(variant=v) for v in ("reinit", "random_mask")])
    g = df.groupby(["variant", "round"])
    agg = g.agg(remaining=("remaining_pct", "mean"), n=("seed", "nunique"),
                acc=("test_acc", "mean"), acc_std=("test_acc", "std"),
                es_acc=("early_stop_test_acc", "mean"), es_acc_std=("early_stop_test_acc", "std"),
                es_it=("early_stop_iteration", "mean")).reset_index()
    agg.to_csv(out_dir / "summary.csv", index=False)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = {"ticket": "winning ticket (IMP, rewind to θ0)", "reinit": "random reinit",
              "random_mask": "random mask (same layer counts)"}
    for ax, (col, sd, title) in zip(axes, [("acc", "acc_std", "test accuracy at end of training"),
                                           ("es_acc", "es_acc_std", "test accuracy at early-stop iteration")]):
        for v, lab in labels.items():
            a = agg[agg.variant == v].sort_values("remaining", ascending=False)
            ax.errorbar(a.remaining, 100 * a[col], yerr=100 * a[sd].fillna(0), label=lab, marker="o",
                        ms=3, capsize=2)
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("weights remaining (%)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"LeNet-300-100 on MNIST, mean ± std over {df.seed.nunique()} seeds")
    fig.tight_layout()
    fig.savefig(out_dir / "lth_mnist.png", dpi=120)

    wide = agg.pivot(index="round", columns="variant")
    lines = ["| round | remaining % | ticket acc | ticket early-stop acc (iter) | reinit acc | random mask acc |",
             "|---|---|---|---|---|---|"]
    for rnd in sorted(agg["round"].unique()):
        def cell(v, c="acc", s="acc_std"):
            return f"{100 * wide.loc[rnd, (c, v)]:.2f} ± {100 * (wide.loc[rnd, (s, v)] or 0):.2f}"
        lines.append(f"| {rnd} | {wide.loc[rnd, ('remaining', 'ticket')]:.2f} | {cell('ticket')} | "
                     f"{cell('ticket', 'es_acc', 'es_acc_std')} ({wide.loc[rnd, ('es_it', 'ticket')]:.0f}) | "
                     f"{cell('reinit')} | {cell('random_mask')} |")
    (out_dir / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.environ.get("PRUNELAB_DATA", "../shared/data"))
    p.add_argument("--out", default="docs/results/lth_mnist")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=float, default=10)
    p.add_argument("--rounds", type=int, default=15)  # round 15 = 3.59 % remaining
    p.add_argument("--eval-every", type=int, default=300)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report", action="store_true", help="only aggregate existing results")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report:
        with ProcessPoolExecutor(args.jobs) as ex:
            for path in ex.map(run_seed, args.seeds, [args] * len(args.seeds)):
                print("done:", path, file=sys.stderr)
    report(out, args)


if __name__ == "__main__":
    main()
