"""Continuous-sparsification page (docs/results/continuous_sparsification.md): the CS rebuttal's pruning table
and CS-vs-IMP ticket search (Savarese et al. 2020) at CPU scale.

Two suites, each with its own ``tables.md`` and ``sparsity_accuracy.png``: LeNet-300-100 / MNIST (pruning
table and ticket search) in the page's directory, and a quarter-width VGG11-BN / 4k CIFAR-10 subset (pruning
table only) in ``vgg11/``. Every method is a *group* of runs, the runs of one recipe; the dense reference is
round 0 of the magnitude-pruning runs (the same dense training).

- pruning table: per method, the highest sparsity whose test accuracy is within 2 % (relative) of the dense
  network's (mean over seeds of the per-seed value, and where the seed-mean curve crosses the 2 % line);
- ticket search: CS (3 rounds + rewound ticket, several s0) vs IMP with rewinding, sparsest matching ticket
  and the training epochs each method spent to find it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from ...io import atomic_write_bytes
from . import Committed, PageData, register_page
from .cs_rebuttal import TABLE_RECIPES, write_rebuttal_tables

OUT = "docs/results/continuous_sparsification"


@dataclass(frozen=True)
class Suite:
    name: str                       # the old script's --suite
    subdir: str                     # under the page's directory ("" = the directory itself)
    groups: dict                    # group (a method, or an ablation) -> the recipe whose runs it is
    net_data: str                   # setting named in the tables and the plot
    counted: str                    # the weights sparsity is counted over
    ylim: Optional[tuple] = None    # plot y range (%)

    @property
    def has_tickets(self) -> bool:
        return "cs_ticket" in self.groups


LENET = Suite("lenet", "", {
    "magnitude": "cs/magnitude_lenet_mnist-small",
    "cs_prune": "cs/prune_lenet_mnist-small",
    "gmp": "cs/gmp_lenet_mnist-small",
    "l0": "cs/l0_lenet_mnist-small",
    "cs_ticket": "cs/lenet_mnist-small",
    "imp_rewind": "cs/imp_rewind_lenet_mnist-small",
    # the 1/σ(s0) factor multiplies the ticket's lr by 1/σ(s0)² in a net without BN (see the doc)
    "cs_ticket_noscale": "cs/lenet_mnist_noscale-page",
}, "LeNet-300-100 / MNIST", "every Linear weight", (93.0, 99.0))
# the pruning table only: a conv net (BN after every conv, sparsity over the 3x3 convs, the paper's CS scope)
VGG = Suite("vgg", "vgg11", {
    "magnitude": "cs/magnitude_vgg11_cifar10-small",
    "cs_prune": "cs/prune_vgg11_cifar10-small",
    "gmp": "cs/gmp_vgg11_cifar10-small",
    "l0": "cs/l0_vgg11_cifar10-small",
}, "VGG11-BN x0.25 / CIFAR-10 4k subset", "every 3x3 conv weight")
SUITES = (LENET, VGG)

PAPER = {  # CS rebuttal, CIFAR-10: highest sparsity (%) within 2 % relative of dense
    "VGG-16": {"l0": 32.0, "magnitude": 97.5, "gmp": 98.0, "cs_prune": 99.6},
    "ResNet-20": {"l0": 31.8, "magnitude": 75.5, "gmp": 86.0, "cs_prune": 89.3},
}
METHOD_NAMES = {"l0": "L0 (Louizos)", "magnitude": "Mag. pruning (Han)", "gmp": "GMP (Zhu & Gupta)",
                "cs_prune": "CS"}
PRUNING_METHODS = ("l0", "magnitude", "gmp", "cs_prune")
CS_GROUPS = ("cs_prune", "cs_ticket", "cs_ticket_noscale")
ROUND_GROUPS = ("magnitude", "imp_rewind")     # IMP-style runs: one candidate per round, named by it
# the full train splits, to turn a rewind iteration into epochs without loading the data
TRAIN_IMAGES = {"mnist": 60_000, "cifar10": 50_000}


# committed rows ------------------------------------------------------------------------------------------
# examples/continuous_sparsification.py ran the sweep of each group's recipe (the ablation: the ticket recipe
# with procedure.scale=false, s0 0.05, seed 0) and wrote one file per run, <group>/<label>@s<seed>.jsonl.
# Each swept value's files are imported with that value fixed by --set and the seed matched by column.
def _committed(suite: Suite, group: str, axis: str = "", values: tuple[str, ...] = ()) -> list[Committed]:
    base = f"{OUT}/{suite.subdir + '/' if suite.subdir else ''}{group}"
    note = f"examples/continuous_sparsification.py --suite {suite.name}, 2026-11 (group {group}, one file per run)"
    if not values:
        return [Committed(suite.groups[group], f"{base}/*.jsonl", {"seed": "seed"}, note)]
    short = axis.split(".")[-1]     # the run label (and file name) is the axis' last part = the value
    return [Committed(suite.groups[group], f"{base}/{short}={v}@s*.jsonl", {"seed": "seed"}, note,
                      set=(f"{axis}={v}",)) for v in values]


COMMITTED = (
    _committed(LENET, "magnitude")
    + _committed(LENET, "cs_prune", "procedure.s0", ("-0.25", "-0.15", "-0.1", "-0.05", "-0.02"))
    + _committed(LENET, "gmp", "procedure.final_sparsity", ("0.9", "0.95", "0.98", "0.99", "0.995"))
    + _committed(LENET, "l0", "procedure.penalty", ("3e-05", "0.0001", "0.0003"))
    + _committed(LENET, "cs_ticket", "procedure.s0", ("-0.02", "0.0", "0.05"))
    + _committed(LENET, "imp_rewind")
    + _committed(LENET, "cs_ticket_noscale")
    + _committed(VGG, "magnitude")
    + _committed(VGG, "cs_prune", "procedure.s0", ("-0.04", "-0.03", "-0.02", "-0.01", "-0.005", "0.0"))
    + _committed(VGG, "gmp", "procedure.final_sparsity", ("0.5", "0.7", "0.8", "0.85", "0.9", "0.95", "0.98",
                                                          "0.99"))
    + _committed(VGG, "l0", "procedure.penalty", ("1e-05", "3e-05", "0.0001"))
)


# rows of one suite ---------------------------------------------------------------------------------------
def suite_frame(data: PageData, suite: Suite) -> pd.DataFrame:
    """The suite's rows with ``group``, ``sparsity`` and, per run, its ``setting`` (the swept values but the
    seed, as JSON), ``s0`` and the epochs an IMP search spends (from the spec, so computed runs have them)."""
    group_of = {rec: g for g, rec in suite.groups.items()}
    runs = {r.run_id: r for r in data.runs if data.recipe_of[r.run_id] in group_of}
    df = data.frame[data.frame["run_id"].isin(runs)].copy()
    df["group"] = df["recipe"].map(group_of)
    df["sparsity"] = 1.0 - df["remaining_pct"] / 100.0
    df["setting"] = df["run_id"].map(
        lambda rid: json.dumps({k: v for k, v in runs[rid].sweep_values.items() if k != "seed"}))
    df["s0"] = df["run_id"].map(lambda rid: getattr(runs[rid].spec.procedure, "s0", None))
    epochs = {rid: _train_and_rewind_epochs(r.spec) for rid, r in runs.items()}
    df["train_epochs"] = df["run_id"].map(lambda rid: epochs[rid][0])
    df["rewind_epochs"] = df["run_id"].map(lambda rid: epochs[rid][1])
    return df


def _train_and_rewind_epochs(spec) -> tuple[float, float]:
    """Epochs of one training and of IMP's rewind point (0 without one), as the old script counted them."""
    ds = spec.dataset
    n_train = ds.train_size or TRAIN_IMAGES[ds.name] - ds.val_size
    per_epoch = spec.train.iterations_per_epoch(n_train)
    rewind = getattr(spec.procedure, "rewind_iteration", 0) or 0
    return spec.train.total_iterations(n_train) / per_epoch, rewind / per_epoch


def dense_acc(df: pd.DataFrame) -> pd.Series:
    """Dense test accuracy per seed: round 0 of the magnitude-pruning runs."""
    return df[(df["group"] == "magnitude") & (df["round"] == 0)].set_index("seed")["test_acc"].sort_index()


def candidates(df: pd.DataFrame, group: str) -> pd.DataFrame:
    """The pruned networks a method offers, one row per (seed, setting)."""
    g = df[df["group"] == group]
    if group in ROUND_GROUPS:
        return g[g["round"] > 0]
    if group in CS_GROUPS:
        return g[g["variant"] == "ticket"]
    return g


def epochs_spent(row, group: str) -> float:
    """Training epochs a ticket search spent up to and including this candidate."""
    if group in CS_GROUPS:
        return float(row["epochs_spent"])
    if group == "imp_rewind":   # dense run + one retraining per round, each from the rewind point on
        return row["train_epochs"] + row["round"] * (row["train_epochs"] - row["rewind_epochs"])
    raise ValueError(f"no ticket-search epochs for group {group!r}")


def crossings(df: pd.DataFrame, dense: pd.Series) -> dict:
    """Sparsity (%) where the seed-mean accuracy curve crosses 98 % of the seed-mean dense accuracy."""
    out = {}
    target = 0.98 * float(dense.mean())
    for group in PRUNING_METHODS:
        c = candidates(df, group)
        curve = c.groupby(c["sparsity"].round(4))["test_acc"].mean().sort_index()
        pts = list(curve.items())
        # no crossing: every grid point passes, or (e.g. L0 on the conv net) none does
        out[group] = "above the grid" if pts and pts[-1][1] >= target else "below the grid"
        for (s1, a1), (s2, a2) in zip(pts, pts[1:]):
            if a1 >= target > a2:
                out[group] = f"{100 * (s1 + (a1 - target) * (s2 - s1) / (a1 - a2)):.2f} %"
                break
    return out


# tables ------------------------------------------------------------------------------------------------
def pruning_table(df: pd.DataFrame, dense: pd.Series) -> list[str]:
    from ...procedures.tickets import highest_sparsity_within
    lines = ["## Highest sparsity within 2 % (relative) of dense", "",
             "| method | per seed (%) | mean (%) | acc. there (%) | paper VGG-16 | paper ResNet-20 |",
             "|---|---|---|---|---|---|"]
    for group in PRUNING_METHODS:
        per_seed, accs = [], []
        for seed, d in dense.items():
            c = candidates(df, group)
            c = c[c["seed"] == seed]
            best = highest_sparsity_within(c, d, 0.02) if len(c) else None
            per_seed.append(100 * best["sparsity"] if best else float("nan"))
            accs.append(100 * best["test_acc"] if best else float("nan"))
        mean = sum(per_seed) / len(per_seed)
        lines.append(f"| {METHOD_NAMES[group]} | {', '.join(f'{v:.2f}' for v in per_seed)} | {mean:.2f} | "
                     f"{', '.join(f'{a:.2f}' for a in accs)} | {PAPER['VGG-16'][group]} | "
                     f"{PAPER['ResNet-20'][group]} |")
    return lines + ["", "Grid-bound: the value is the sparsest grid point that passes. Where the 2 % line falls "
                    "between two grid points, linear interpolation of the seed-mean curve between the last passing "
                    "and the first failing point puts the crossing at: "
                    + ", ".join(f"{METHOD_NAMES[g]} {v}" for g, v in crossings(df, dense).items()) + "."]


def networks_table(df: pd.DataFrame) -> list[str]:
    lines = ["## Every pruned network (mean over seeds)", "",
             "| method | setting | sparsity (%) | test acc. (%) | seeds |", "|---|---|---|---|---|"]
    for group in ("l0", "magnitude", "gmp", "cs_prune", "cs_ticket", "cs_ticket_noscale", "imp_rewind"):
        c = candidates(df, group).copy()
        if c.empty:
            continue
        if group in ROUND_GROUPS:
            c["setting"] = c["round"].map(lambda n: f"round {n}")
        order = c.groupby("setting")["sparsity"].mean().sort_values().index
        for setting in order:
            g = c[c["setting"] == setting]
            lines.append(f"| {group} | {setting} | {100 * g['sparsity'].mean():.2f} | "
                         f"{100 * g['test_acc'].mean():.2f} ± {100 * g['test_acc'].std(ddof=0):.2f} | {len(g)} |")
    return lines


def search_rounds_table(df: pd.DataFrame) -> list[str]:
    search = df[(df["group"] == "cs_ticket") & (df["variant"] == "search")]
    if search.empty:
        return []
    lines = ["## CS search rounds (mean over seeds)", "",
             "Sparsity of 1[s > 0] after each search round, test accuracy of the soft-mask network at the "
             "end of the round and of the hard-masked network before rewinding.", "",
             "| s0 | round | sparsity (%) | soft acc. (%) | hard acc. (%) |", "|---|---|---|---|---|"]
    for (s0, rnd), g in search.groupby(["s0", "round"]):
        lines.append(f"| {s0} | {rnd} | {100 * g['sparsity'].mean():.2f} | {100 * g['test_acc'].mean():.2f} | "
                     f"{100 * g['hard_test_acc'].mean():.2f} |")
    return lines


def ticket_search_table(df: pd.DataFrame, dense: pd.Series) -> list[str]:
    from ...procedures.tickets import best_ticket, highest_sparsity_within, sparsest_matching
    lines = ["## Ticket search: CS vs IMP with rewinding", "",
             "Sparsest matching ticket (test accuracy ≥ dense of the same seed) and highest sparsity within 0.5 % "
             "and 2 % (relative) of dense; epochs = all "
             "training epochs the search spent up to that ticket (CS: every s0 run is counted on its own; "
             "the parallel search runs them side by side).", "",
             "| method | seed | dense acc. (%) | sparsest matching (%) | acc. (%) | epochs | "
             "highest within 0.5 % (%) | acc. (%) | epochs | highest within 2 % (%) | acc. (%) | epochs | "
             "best ticket acc. (%) at sparsity (%) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for group in ("cs_ticket", "imp_rewind"):
        for seed, d in dense.items():
            c = candidates(df, group)
            c = c[c["seed"] == seed]
            if c.empty:
                continue
            b = best_ticket(c)
            cells = []
            for r in (sparsest_matching(c, d), highest_sparsity_within(c, d, 0.005),
                      highest_sparsity_within(c, d, 0.02)):
                cells += ["–"] * 3 if r is None else [f"{100 * r['sparsity']:.2f}", f"{100 * r['test_acc']:.2f}",
                                                      f"{epochs_spent(r, group):g}"]
            lines.append(f"| {group} | {seed} | {100 * d:.2f} | {' | '.join(cells)} | "
                         f"{100 * b['test_acc']:.2f} at {100 * b['sparsity']:.2f} |")
    return lines


def tables(df: pd.DataFrame, suite: Suite, coverage: str) -> str:
    dense = dense_acc(df)
    lines = ["# Continuous sparsification at CPU scale: tables", "",
             f"Generated by `prunelab report --paper cs`. {suite.net_data}, test accuracy (%) at the end of "
             f"training; sparsity over {suite.counted}.", "",
             "Dense test accuracy per seed: " + ", ".join(f"seed {s}: {100 * a:.2f} %" for s, a in dense.items()),
             ""]
    lines += pruning_table(df, dense) + [""] + networks_table(df)
    search = search_rounds_table(df)
    lines += [""] + search if search else []
    lines += [""] + ticket_search_table(df, dense) if suite.has_tickets else []
    return "\n".join(lines) + "\n" + f"\nRuns: {coverage}.\n"


def plot(df: pd.DataFrame, suite: Suite, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for group, marker in (("magnitude", "o"), ("gmp", "s"), ("l0", "^"), ("cs_prune", "D"),
                          ("cs_ticket", "*"), ("imp_rewind", "v"), ("cs_ticket_noscale", "x")):
        c = candidates(df, group)
        if c.empty:
            continue
        ax.scatter(100 * (1 - c["sparsity"]), 100 * c["test_acc"], marker=marker, label=group, alpha=0.75)
    for d in dense_acc(df).values:
        ax.axhline(100 * d * 0.98, color="grey", lw=0.6, ls=":")
        ax.axhline(100 * d, color="grey", lw=0.6)
    ax.set_xscale("log")
    ax.invert_xaxis()   # sparser to the right
    ax.set_xlabel("remaining weights (%, log scale)")
    ax.set_ylabel("test accuracy (%)")
    if suite.ylim is not None:
        ax.set_ylim(*suite.ylim)
    ax.set_title(f"{suite.net_data} (grey: dense, dotted: 2 % below dense)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def coverage(data: PageData, suite: Suite) -> str:
    """:meth:`PageData.coverage` restricted to the suite's recipes."""
    return data.coverage(suite.groups.values())


@register_page("cs", OUT, tuple(rec for s in SUITES for rec in s.groups.values()) + tuple(TABLE_RECIPES),
               title="Continuous sparsification and its baselines (LeNet-300-100 / MNIST, VGG11-BN / CIFAR-10)",
               committed=tuple(COMMITTED))
def build(data: PageData, out: Path) -> list[Path]:
    files = []
    for suite in SUITES:
        df = suite_frame(data, suite)
        if df.empty or dense_acc(df).empty:    # no dense reference yet: nothing to compare against
            continue
        where = out / suite.subdir
        files.append(atomic_write_bytes(where / "tables.md", tables(df, suite, coverage(data, suite)).encode()))
        plot(df, suite, where / "sparsity_accuracy.png")
        files.append(where / "sparsity_accuracy.png")
    return files + write_rebuttal_tables(data, out)
