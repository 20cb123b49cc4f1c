"""Reproduce the CS rebuttal's pruning table and CS-vs-IMP ticket search (Savarese et al. 2020) at CPU scale.

    python examples/continuous_sparsification.py --data ../shared/data --out docs/results/continuous_sparsification
    python examples/continuous_sparsification.py --out docs/results/continuous_sparsification --report
    python examples/continuous_sparsification.py --suite vgg --data ../shared/data   # the conv-net pruning table
    python examples/continuous_sparsification.py --suite vgg --report

``--suite lenet`` (default) runs LeNet-300-100 / MNIST, pruning table and ticket search; ``--suite vgg`` runs
only the pruning table on a quarter-width VGG11-BN / 4k CIFAR-10 subset (``recipes/cs/*_vgg11_cifar10-small``)
and writes to ``docs/results/continuous_sparsification/vgg11`` by default.

Every run of the ``recipes/cs/*-small`` recipes listed in the suite's ``GROUPS`` (each recipe's sweep: seeds, s0, λ,
target sparsities) is computed one after another in this process and written to
``<out>/<group>/<label>@s<seed>.jsonl`` (one row per round/variant, with the procedure's extra numbers) as soon as
it finishes, so a rerun skips finished runs. ``--report`` turns the rows into ``tables.md`` and plots:

- pruning table: per method, the highest sparsity whose test accuracy is within 2 % (relative) of the
  dense network's (mean over seeds of the per-seed value, and the value over seed-averaged points);
- ticket search: CS (3 rounds + rewound ticket, several s0) vs IMP with rewinding, sparsest matching
  ticket and the training epochs each method spent to find it.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

# (group, recipe): the dense reference is round 0 of the magnitude-pruning runs (the same dense training)
LENET_GROUPS = [
    ("magnitude", "cs/magnitude_lenet_mnist-small"),
    ("cs_prune", "cs/prune_lenet_mnist-small"),
    ("gmp", "cs/gmp_lenet_mnist-small"),
    ("l0", "cs/l0_lenet_mnist-small"),
    ("cs_ticket", "cs/lenet_mnist-small"),
    ("imp_rewind", "cs/imp_rewind_lenet_mnist-small"),
]
# (group, recipe, --set overrides): ablations run after the main groups
LENET_EXTRA = [
    # the 1/σ(s0) factor multiplies the ticket's learning rate by 1/σ(s0)² in a net without BN (see the doc)
    ("cs_ticket_noscale", "cs/lenet_mnist-small",
     ["procedure.scale=false", "sweep.axes={procedure.s0: [0.05], seed: [0]}"]),
]
# the pruning table only: a conv net (BN after every conv, sparsity over the 3x3 convs, the paper's CS scope)
VGG_GROUPS = [
    ("magnitude", "cs/magnitude_vgg11_cifar10-small"),
    ("cs_prune", "cs/prune_vgg11_cifar10-small"),
    ("gmp", "cs/gmp_vgg11_cifar10-small"),
    ("l0", "cs/l0_vgg11_cifar10-small"),
]
# suite -> (groups, extra groups, default output dir, setting named in tables and plot, plot y range (%))
SUITES = {
    "lenet": (LENET_GROUPS, LENET_EXTRA, "docs/results/continuous_sparsification",
              ("LeNet-300-100 / MNIST", "every Linear weight"), (93.0, 99.0)),
    "vgg": (VGG_GROUPS, [], "docs/results/continuous_sparsification/vgg11",
            ("VGG11-BN x0.25 / CIFAR-10 4k subset", "every 3x3 conv weight"), None),
}
PAPER = {  # CS rebuttal, CIFAR-10: highest sparsity (%) within 2 % relative of dense
    "VGG-16": {"l0": 32.0, "magnitude": 97.5, "gmp": 98.0, "cs_prune": 99.6},
    "ResNet-20": {"l0": 31.8, "magnitude": 75.5, "gmp": 86.0, "cs_prune": 89.3},
}
METHOD_NAMES = {"l0": "L0 (Louizos)", "magnitude": "Mag. pruning (Han)", "gmp": "GMP (Zhu & Gupta)",
                "cs_prune": "CS"}


_DATA: dict = {}


def run_file(planned) -> str:
    return f"{planned.label}@s{planned.spec.seed}.jsonl"


def run_one(planned, data_root: str, out: Path) -> None:
    import torch
    torch.set_num_threads(1)
    from prunelab.data import load_dataset
    from prunelab.models import build_model
    from prunelab.procedures import run_imp

    spec = planned.spec
    ds = spec.dataset
    key = ds.model_dump_json()
    if key not in _DATA:   # every run of a group shares its dataset; load it once
        _DATA.clear()
        _DATA[key] = load_dataset(ds.name, data_root, device="cpu", **ds.load_kwargs())
    data = _DATA[key]

    def model_fn(seed):
        return build_model(spec.model.name, num_classes=data.num_classes, input_shape=data.input_shape,
                           seed=seed, **spec.model.options)

    t = time.time()
    if hasattr(spec.procedure, "imp_config"):
        res = run_imp(model_fn, data, spec.train, spec.procedure.imp_config(), seed=spec.seed,
                      finetune=spec.finetune)
    else:
        res = spec.procedure.run(model_fn, data, spec.train, seed=spec.seed, finetune=spec.finetune)
    seconds = time.time() - t
    n_train = len(data.train)
    epochs = spec.train.total_iterations(n_train) / spec.train.iterations_per_epoch(n_train)
    ft_epochs = (spec.finetune.total_iterations(n_train) / spec.finetune.iterations_per_epoch(n_train)
                 if spec.finetune else None)
    rewind_epochs = getattr(spec.procedure, "rewind_iteration", 0) / spec.train.iterations_per_epoch(n_train)
    rows = [{**r.row(), "label": planned.label, "seed": spec.seed, "procedure": spec.procedure.kind,
             "sweep": {k: v for k, v in planned.sweep_values.items()}, "seconds": seconds,
             "train_epochs": epochs, "finetune_epochs": ft_epochs, "rewind_epochs": rewind_epochs}
            for r in res.rows]
    path = out / run_file(planned)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, default=float) + "\n" for r in rows))
    tmp.replace(path)


def compute(args) -> None:
    from prunelab.experiments.plan import load_plan
    groups, extra = SUITES[args.suite][:2]
    out_root = Path(args.out)
    todo = []
    for order, (group, recipe, *overrides) in enumerate(groups + extra):
        for planned in load_plan(recipe, *overrides):
            todo.append((planned.spec.seed if order < len(groups) else 99, order, group, planned))
    # every method's first seed before any second seed: an interrupted reproduction still has a full table
    for _, _, group, planned in sorted(todo, key=lambda t: (t[0], t[1])):
        out = out_root / group
        out.mkdir(parents=True, exist_ok=True)
        if (out / run_file(planned)).exists():
            continue
        t = time.time()
        print(f"{group}: {planned.label} ...", flush=True)
        try:
            run_one(planned, args.data, out)
        except Exception as e:  # keep going: report what finished
            import traceback
            traceback.print_exc()
            print(f"{group}: {planned.label} FAILED: {e!r}", flush=True)
            continue
        print(f"{group}: {planned.label} done in {time.time() - t:.0f} s", flush=True)



def load_rows(out_root: Path, suite: str = "lenet"):
    import pandas as pd
    groups, extra = SUITES[suite][:2]
    rows = []
    for group, *_ in groups + extra:
        for p in sorted((out_root / group).glob("*.jsonl")):
            for line in p.read_text().splitlines():
                rows.append({**json.loads(line), "group": group})
    df = pd.DataFrame(rows)
    df["sparsity"] = 1.0 - df["remaining_pct"] / 100.0
    return df


def candidates(df, group):
    """The pruned networks a method offers, one row per (seed, setting)."""
    g = df[df["group"] == group]
    if group == "magnitude":
        return g[g["round"] > 0]
    if group in ("cs_prune", "cs_ticket", "cs_ticket_noscale"):
        return g[g["variant"] == "ticket"]
    if group == "imp_rewind":
        return g[g["round"] > 0]
    return g


def epochs_spent(row, group) -> float:
    """Training epochs a method spent up to and including this candidate."""
    if group in ("cs_prune", "cs_ticket", "cs_ticket_noscale"):
        return float(row["epochs_spent"])
    if group == "imp_rewind":   # dense run + one retraining per round, each from the rewind point on
        return row["train_epochs"] + row["round"] * (row["train_epochs"] - row["rewind_epochs"])
    if group == "magnitude":
        return row["train_epochs"] + row["finetune_epochs"] * row["round"]
    return row["train_epochs"]


def crossings(df, dense) -> dict:
    """Sparsity (%) where the seed-mean accuracy curve crosses 98 % of the seed-mean dense accuracy."""
    out = {}
    target = 0.98 * float(dense.mean())
    for group in ("l0", "magnitude", "gmp", "cs_prune"):
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


def report(args) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from prunelab.procedures.tickets import best_ticket, highest_sparsity_within, sparsest_matching

    (net_data, counted), ylim = SUITES[args.suite][3:]
    out_root = Path(args.out)
    df = load_rows(out_root, args.suite)
    dense = df[(df["group"] == "magnitude") & (df["round"] == 0)].set_index("seed")["test_acc"]
    lines = ["# Continuous sparsification at CPU scale: tables", "",
             "Generated by `python examples/continuous_sparsification.py "
             f"{'' if args.suite == 'lenet' else f'--suite {args.suite} '}--report`. "
             f"{net_data}, test accuracy (%) at the end of training; sparsity over {counted}.", "",
             "Dense test accuracy per seed: " + ", ".join(f"seed {s}: {100 * a:.2f} %" for s, a in dense.items()),
             ""]
    lines += ["## Highest sparsity within 2 % (relative) of dense", "",
              "| method | per seed (%) | mean (%) | acc. there (%) | paper VGG-16 | paper ResNet-20 |",
              "|---|---|---|---|---|---|"]
    summary = {}
    for group in ("l0", "magnitude", "gmp", "cs_prune"):
        per_seed, accs = [], []
        for seed, d in dense.items():
            c = candidates(df, group)
            c = c[c["seed"] == seed]
            best = highest_sparsity_within(c, d, 0.02) if len(c) else None
            per_seed.append(100 * best["sparsity"] if best else float("nan"))
            accs.append(100 * best["test_acc"] if best else float("nan"))
        mean = sum(per_seed) / len(per_seed)
        summary[group] = mean
        lines.append(f"| {METHOD_NAMES[group]} | {', '.join(f'{v:.2f}' for v in per_seed)} | {mean:.2f} | "
                     f"{', '.join(f'{a:.2f}' for a in accs)} | {PAPER['VGG-16'][group]} | "
                     f"{PAPER['ResNet-20'][group]} |")
    lines += ["", "Grid-bound: the value is the sparsest grid point that passes. Where the 2 % line falls between two "
              "grid points, linear interpolation of the seed-mean curve between the last passing and the first "
              "failing point puts the crossing at: "
              + ", ".join(f"{METHOD_NAMES[g]} {v}" for g, v in crossings(df, dense).items()) + "."]
    lines += ["", "## Every pruned network (mean over seeds)", "",
              "| method | setting | sparsity (%) | test acc. (%) | seeds |", "|---|---|---|---|---|"]
    for group in ("l0", "magnitude", "gmp", "cs_prune", "cs_ticket", "cs_ticket_noscale", "imp_rewind"):
        c = candidates(df, group).copy()
        if c.empty:
            continue
        c["setting"] = c.apply(lambda r: (f"round {r['round']}" if group in ("magnitude", "imp_rewind")
                                          else json.dumps({k: v for k, v in r["sweep"].items() if k != "seed"})),
                               axis=1)
        order = c.groupby("setting")["sparsity"].mean().sort_values().index
        for setting in order:
            g = c[c["setting"] == setting]
            lines.append(f"| {group} | {setting} | {100 * g['sparsity'].mean():.2f} | "
                         f"{100 * g['test_acc'].mean():.2f} ± {100 * g['test_acc'].std(ddof=0):.2f} | {len(g)} |")
    search = df[(df["group"] == "cs_ticket") & (df["variant"] == "search")].copy()
    if len(search):
        search["s0"] = search["sweep"].map(lambda d: d.get("procedure.s0"))
        lines += ["", "## CS search rounds (mean over seeds)", "",
                  "Sparsity of 1[s > 0] after each search round, test accuracy of the soft-mask network at the "
                  "end of the round and of the hard-masked network before rewinding.", "",
                  "| s0 | round | sparsity (%) | soft acc. (%) | hard acc. (%) |", "|---|---|---|---|---|"]
        for (s0, rnd), g in search.groupby(["s0", "round"]):
            lines.append(f"| {s0} | {rnd} | {100 * g['sparsity'].mean():.2f} | {100 * g['test_acc'].mean():.2f} | "
                         f"{100 * g['hard_test_acc'].mean():.2f} |")
    has_tickets = any(g == "cs_ticket" for g, *_ in SUITES[args.suite][0])
    lines += [] if not has_tickets else ["", "## Ticket search: CS vs IMP with rewinding", "",
              "Sparsest matching ticket (test accuracy ≥ dense of the same seed) and highest sparsity within 0.5 % "
              "and 2 % (relative) of dense; epochs = all "
              "training epochs the search spent up to that ticket (CS: every s0 run is counted on its own; "
              "the parallel search runs them side by side).", "",
              "| method | seed | dense acc. (%) | sparsest matching (%) | acc. (%) | epochs | "
              "highest within 0.5 % (%) | acc. (%) | epochs | highest within 2 % (%) | acc. (%) | epochs | "
              "best ticket acc. (%) at sparsity (%) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for group in ("cs_ticket", "imp_rewind") if has_tickets else ():
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
    (out_root / "tables.md").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for group, marker in (("magnitude", "o"), ("gmp", "s"), ("l0", "^"), ("cs_prune", "D"),
                          ("cs_ticket", "*"), ("imp_rewind", "v"), ("cs_ticket_noscale", "x")):
        c = candidates(df, group)
        if c.empty:
            continue
        ax.scatter(100 * (1 - c["sparsity"]), 100 * c["test_acc"], marker=marker, label=group, alpha=0.75)
    for d in dense.values:
        ax.axhline(100 * d * 0.98, color="grey", lw=0.6, ls=":")
        ax.axhline(100 * d, color="grey", lw=0.6)
    ax.set_xscale("log")
    ax.invert_xaxis()   # sparser to the right
    ax.set_xlabel("remaining weights (%, log scale)")
    ax.set_ylabel("test accuracy (%)")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_title(f"{net_data} (grey: dense, dotted: 2 % below dense)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_root / "sparsity_accuracy.png", dpi=120)
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="data root (default: $PRUNELAB_DATA)")
    ap.add_argument("--suite", choices=sorted(SUITES), default="lenet",
                    help="lenet: LeNet-300-100 / MNIST, pruning table and ticket search; "
                         "vgg: quarter-width VGG11-BN / CIFAR-10 subset, pruning table only")
    ap.add_argument("--out", default=None, help="output directory (default: the suite's)")
    ap.add_argument("--report", action="store_true", help="write tables.md and plots from finished runs")
    args = ap.parse_args()
    if args.out is None:
        args.out = SUITES[args.suite][2]
    if args.report:
        report(args)
    else:
        compute(args)


if __name__ == "__main__":
    main()
