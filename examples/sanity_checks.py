"""Reproduce Su et al. 2020 ("Sanity-checking pruning methods") at CPU scale, from a -small recipe.

    python examples/sanity_checks.py --data ../shared/data                 # run every seed of the recipe
    python examples/sanity_checks.py --report                              # tables + plot from the JSONL

One process per call, one CPU thread. Each seed runs ``run_procedure`` once (dense runs shared by LT, LR
rewinding and hybrid tickets) and appends every finished training to ``<out>/seed<N>.jsonl``; a seed whose
file is complete is skipped, an incomplete one is run again from the start.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

RECIPE = "recipes/sanity/vgg19_cifar10-small.yaml"
CHECK_NAMES = {"random_labels": "random labels", "random_pixels": "random pixels", "half_data": "half data",
               "rearrange": "rearrange", "shuffle": "weight shuffle", "reinit": "reinit"}
CHECKED_METHODS = ("snip", "grasp", "synflow", "lt", "lr_rewind")   # methods the checks can apply to, in table order


def check_columns(df) -> list[tuple[str, str, str]]:
    """(data check, ticket check, label) for the unchecked runs and every check that has rows."""
    cols = [("none", "none", "unchecked")]
    cols += [(d, "none", CHECK_NAMES[d]) for d in CHECK_NAMES if d in set(df.data_check)]
    cols += [("none", t, CHECK_NAMES[t]) for t in CHECK_NAMES if t in set(df.ticket_check)]
    return cols


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def run(args) -> None:
    import torch
    torch.set_num_threads(1)
    from prunelab.data import load_dataset
    from prunelab.data.dataset import subsample
    from prunelab.experiments import load_plan
    from prunelab.io import atomic_write_bytes
    from prunelab.models import build_model
    from prunelab.procedures import run_procedure
    from prunelab.procedures.sanity import SanityConfig

    plan = load_plan(args.recipe, args.set or ())
    for planned in plan:
        spec = planned.spec
        out = Path(args.out) / f"seed{spec.seed}.jsonl"
        expected = spec.trainings()
        if len(_rows(out)) >= expected:
            print(f"seed {spec.seed}: complete ({out})", flush=True)
            continue
        ds = spec.dataset
        data = load_dataset(ds.name, args.data, progress=False, **ds.load_kwargs())
        if args.test_size:   # a fixed class-balanced test subset: one 10K evaluation costs ~1/5 of a training here
            data.test = subsample(data.test, args.test_size, seed=0, num_classes=data.num_classes)

        def model_fn(s, spec=spec, data=data):
            return build_model(spec.model.name, num_classes=data.num_classes, input_shape=data.input_shape,
                               seed=s, **spec.model.options)

        rows, t0 = [], time.time()

        def on_round(r, spec=spec, out=out, rows=rows, t0=t0):
            row = dict(r.row(), seed=spec.seed, elapsed_s=round(time.time() - t0, 1), run_id=spec.run_id())
            rows.append(row)
            atomic_write_bytes(out, "".join(json.dumps(x) + "\n" for x in rows).encode())
            print(f"[{row['elapsed_s']:7.1f}s] seed {spec.seed} {row['variant']:<26} sparsity "
                  f"{row['sparsity']:.2f}  test_acc {row['test_acc']:.4f}  ({len(rows)}/{expected})", flush=True)

        cfg = SanityConfig(**spec.procedure.model_dump(exclude={"kind"}))
        run_procedure(model_fn, data, spec.train, cfg, seed=spec.seed, on_row=on_round)


def report(args) -> None:
    import numpy as np
    import pandas as pd

    out = Path(args.out)
    df = pd.DataFrame([r for p in sorted(out.glob("seed*.jsonl")) for r in _rows(p)])
    if df.empty:
        raise SystemExit(f"no results in {out}")
    df["acc"] = 100.0 * df["test_acc"]
    seeds = sorted(int(s) for s in df["seed"].unique())

    def cell(sub) -> str:
        v = sub["acc"].to_numpy()
        if len(v) == 0:
            return "–"
        return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}"

    def mean(method, sparsity, d="none", t="none"):
        sub = df[(df.method == method) & (df.sparsity == sparsity) & (df.data_check == d) & (df.ticket_check == t)]
        return sub["acc"].mean() if len(sub) else np.nan

    lines = [f"Test accuracy (%) after training, mean ± std over seeds {seeds} (final = best: one evaluation "
             f"at the end).", ""]
    dense = df[df.method == "dense"]
    lines += ["| dense run | test acc |", "|---|---|"]
    for d, sub in dense.groupby("data_check", sort=False):
        lines.append(f"| {'true labels' if d == 'none' else CHECK_NAMES.get(d, d)} | {cell(sub)} |")
    sparsities = sorted(df[df.method != "dense"]["sparsity"].unique())
    methods = [m for m in CHECKED_METHODS if m in set(df.method)]
    names = {"snip": "SNIP", "grasp": "GraSP", "synflow": "SynFlow", "lt": "LT (rewind to init)",
             "lr_rewind": "LR rewinding", "random": "random ticket (smart ratio)",
             "hybrid": "hybrid ticket (smart ratio + LRR)"}
    columns = check_columns(df)
    lines += ["", "### Sanity checks (Δ = checked − unchecked, mean over seeds)", ""]
    lines += ["| sparsity | method | " + " | ".join(c for _, _, c in columns) + " | "
              + " | ".join(f"Δ {c}" for _, _, c in columns[1:]) + " |", "|---" * (2 * len(columns) + 1) + "|"]
    for s in sparsities:
        for m in methods:
            cells = []
            for d, t, _ in columns:
                cells.append(cell(df[(df.method == m) & (df.sparsity == s) & (df.data_check == d)
                                     & (df.ticket_check == t)]))
            base = mean(m, s)
            deltas = [mean(m, s, d, t) - base for d, t, _ in columns[1:]]
            lines.append(f"| {100 * s:.0f} % | {names[m]} | " + " | ".join(cells) + " | "
                         + " | ".join("–" if np.isnan(x) else f"{x:+.2f}" for x in deltas) + " |")
    lines += ["", "### Random and hybrid tickets", ""]
    shown = [m for m in ("snip", "grasp", "synflow", "lt", "random", "lr_rewind", "hybrid") if m in set(df.method)]
    lines += ["| sparsity | " + " | ".join(names[m] for m in shown) + " |"]
    lines.append("|---" * (1 + len(shown)) + "|")
    for s in sparsities:
        lines.append(f"| {100 * s:.0f} % | " + " | ".join(
            cell(df[(df.method == m) & (df.sparsity == s) & (df.data_check == "none") & (df.ticket_check == "none")])
            for m in shown) + " |")
    paired = ["", "Per-seed paired differences (same seed, same init):", "",
              "| sparsity | comparison | per seed | mean |", "|---|---|---|---|"]
    pairs = [("random", "snip"), ("random", "grasp"), ("random", "lt"), ("hybrid", "lr_rewind")]
    for s in sparsities:
        for a, b in pairs:
            diffs = []
            for seed in seeds:
                x = df[(df.method == a) & (df.sparsity == s) & (df.seed == seed) & (df.data_check == "none")
                       & (df.ticket_check == "none")]["acc"]
                y = df[(df.method == b) & (df.sparsity == s) & (df.seed == seed) & (df.data_check == "none")
                       & (df.ticket_check == "none")]["acc"]
                if len(x) and len(y):
                    diffs.append(float(x.iloc[0]) - float(y.iloc[0]))
            if diffs:
                paired.append(f"| {100 * s:.0f} % | {names[a]} − {names[b]} | "
                              + ", ".join(f"{d:+.2f}" for d in diffs) + f" | {np.mean(diffs):+.2f} |")
    if len(paired) > 5:
        lines += paired
    if Path(args.data).is_dir():
        lines += mask_structure(args)
    (out / "tables.md").write_text("\n".join(lines) + "\n")
    df.drop(columns=["acc"]).to_csv(out / "summary.csv", index=False)
    _plot(df, methods, sparsities, names, columns, out / "sanity_checks.png")
    print("\n".join(lines))


def mask_structure(args) -> list[str]:
    """Per-layer keep % and fully pruned filters of the masks at init of the first seed (recomputed with the
    seeds run_procedure derives, so they are the masks that were trained)."""
    import torch
    torch.set_num_threads(1)
    from prunelab.data import load_dataset
    from prunelab.experiments import load_plan
    from prunelab.models import build_model
    from prunelab.primitives.ratios import ratio_mask
    from prunelab.primitives.sanity import rearrange_mask
    from prunelab.procedures.sanity import SanityConfig, _counts, init_score_mask
    from prunelab.seeding import derive_seed, generator

    spec = load_plan(args.recipe, args.set or ())[0].spec
    ds = spec.dataset
    data = load_dataset(ds.name, args.data, progress=False, **ds.load_kwargs())
    cfg = SanityConfig(**spec.procedure.model_dump(exclude={"kind"}))
    model = build_model(spec.model.name, num_classes=data.num_classes, input_shape=data.input_shape,
                        seed=spec.seed, **spec.model.options)
    lines = ["", f"### Masks at initialisation (seed {spec.seed}): keep % per layer (convs in order, Linear last) "
             "and conv filters / input channels left without any weight", ""]
    lines += ["| sparsity | mask | keep % per layer | empty filters / in-channels | rearranged: empty filters / "
              "in-channels |",
              "|---|---|---|---|---|"]

    def empty_filters(mask):
        outs = sum(int((mask[n].sum((1, 2, 3)) == 0).sum()) for n in mask if mask[n].dim() == 4)
        ins = sum(int((mask[n].sum((0, 2, 3)) == 0).sum()) for n in mask if mask[n].dim() == 4)
        return f"{outs} / {ins}"

    for r, s in enumerate(cfg.sparsities):
        masks = {}
        for method in ("snip", "grasp"):
            masks[method] = init_score_mask(model, method, s, data, cfg=cfg,
                                            seed=derive_seed(spec.seed, "mask", method, "none", r))
        g = generator(derive_seed(spec.seed, "mask", "random", "none", r), "select")
        masks["random (smart ratio)"] = ratio_mask(model, _counts(model, s, cfg), fill="random", generator=g)
        for name, m in masks.items():
            pct = " / ".join(f"{100 * m.density(n):.1f}" for n in m)
            re = rearrange_mask(m, torch.Generator().manual_seed(0))
            lines.append(f"| {100 * s:.0f} % | {name} | {pct} | {empty_filters(m)} | {empty_filters(re)} |")
    total = sum(p.shape[0] for n, p in model.named_parameters() if p.dim() == 4)
    lines += ["", f"({total} conv filters in all; rearranged = the same per-layer counts at random positions.)"]
    return lines


def _plot(df, methods, sparsities, names, columns, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(sparsities), figsize=(6 * len(sparsities), 4), squeeze=False)
    width = 0.8 / len(columns)
    for ax, s in zip(axes[0], sparsities):
        for j, (d, t, label) in enumerate(columns):
            means, errs = [], []
            for m in methods:
                v = df[(df.method == m) & (df.sparsity == s) & (df.data_check == d) & (df.ticket_check == t)]["acc"]
                means.append(v.mean() if len(v) else np.nan)
                errs.append(v.std(ddof=1) if len(v) > 1 else 0.0)
            ax.bar(np.arange(len(methods)) + (j - (len(columns) - 1) / 2) * width, means, width, yerr=errs,
                   label=label, capsize=2)
        for m, color in (("random", "k"), ("hybrid", "tab:red")):
            v = df[(df.method == m) & (df.sparsity == s)]["acc"]
            if len(v):
                ax.axhline(v.mean(), color=color, ls="--", lw=1, label=names[m])
        ax.set_xticks(np.arange(len(methods)), [names[m].split(" (")[0] for m in methods])
        ax.set_title(f"sparsity {100 * s:.0f} %")
        ax.set_ylabel("test accuracy (%)")
        lo = np.nanmin(df[df.sparsity == s]["acc"]) if len(df[df.sparsity == s]) else 0
        ax.set_ylim(max(0, lo - 5), None)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=3)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("PRUNELAB_DATA", "../shared/data"))
    ap.add_argument("--recipe", default=RECIPE)
    ap.add_argument("--set", nargs="*", help="recipe overrides, e.g. train.epochs=1 'sweep.axes.seed=[0]'")
    ap.add_argument("--test-size", type=int, default=5000, help="class-balanced test subset (0: all 10K)")
    ap.add_argument("--out", default="docs/results/sanity_checks")
    ap.add_argument("--report", action="store_true", help="tables and plot (with --data: also the masks at init)")
    args = ap.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (report if args.report else run)(args)


if __name__ == "__main__":
    main()
