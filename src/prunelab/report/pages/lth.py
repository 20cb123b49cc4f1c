"""LTH page (docs/results/lth_mnist.md): IMP tickets and both controls on LeNet-300-100 / MNIST."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...io import atomic_write_bytes
from . import Committed, PageData, register_page

LABELS = {"ticket": "winning ticket (IMP, rewind to θ0)", "reinit": "random reinit",
          "random_mask": "random mask (same layer counts)"}


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Mean/std over seeds per (variant, round); round 0 (the dense net, shared) is copied to the controls."""
    dense = df[(df.variant == "ticket") & (df["round"] == 0)]
    df = pd.concat([df] + [dense.assign(variant=v) for v in ("reinit", "random_mask")])
    return (df.groupby(["variant", "round"])
              .agg(remaining=("remaining_pct", "mean"), n=("seed", "nunique"),
                   acc=("test_acc", "mean"), acc_std=("test_acc", "std"),
                   es_acc=("early_stop_test_acc", "mean"), es_acc_std=("early_stop_test_acc", "std"),
                   es_it=("early_stop_iteration", "mean")).reset_index())


def table(agg: pd.DataFrame) -> str:
    wide = agg.pivot(index="round", columns="variant")

    def cell(rnd, v, c="acc", s="acc_std"):
        sd = wide.loc[rnd, (s, v)]
        return f"{100 * wide.loc[rnd, (c, v)]:.2f} ± {100 * (0 if pd.isna(sd) else sd):.2f}"

    lines = ["| round | remaining % | ticket acc | ticket early-stop acc (iter) | reinit acc | random mask acc |",
             "|---|---|---|---|---|---|"]
    for rnd in sorted(agg["round"].unique()):
        lines.append(f"| {rnd} | {wide.loc[rnd, ('remaining', 'ticket')]:.2f} | {cell(rnd, 'ticket')} | "
                     f"{cell(rnd, 'ticket', 'es_acc', 'es_acc_std')} ({wide.loc[rnd, ('es_it', 'ticket')]:.0f}) | "
                     f"{cell(rnd, 'reinit')} | {cell(rnd, 'random_mask')} |")
    return "\n".join(lines) + "\n"


def plot(agg: pd.DataFrame, seeds: int, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (col, sd, title) in zip(axes, [("acc", "acc_std", "test accuracy at end of training"),
                                           ("es_acc", "es_acc_std", "test accuracy at early-stop iteration")]):
        for v, lab in LABELS.items():
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
    fig.suptitle(f"LeNet-300-100 on MNIST, mean ± std over {seeds} seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


@register_page("lth", "docs/results/lth_mnist", ("lth/lenet_mnist-10ep",),
               title="Lottery tickets: LeNet-300-100 on MNIST",
               committed=(Committed("lth/lenet_mnist-10ep", "docs/results/lth_mnist/seed*.jsonl", {"seed": "seed"},
                                    "examples/lth_mnist.py, 2026-11 (one JSON line per row, per seed)"),))
def build(data: PageData, out: Path) -> list[Path]:
    df = data.frame
    agg = aggregate(df)
    files = [atomic_write_bytes(out / "summary.csv", agg.to_csv(index=False).encode()),
             atomic_write_bytes(out / "table.md", (table(agg) + f"\nRuns: {data.coverage()}.\n").encode())]
    plot(agg, df.seed.nunique(), out / "lth_mnist.png")
    return files + [out / "lth_mnist.png"]
