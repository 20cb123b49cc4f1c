"""Sanity-checks page (docs/results/sanity_checks.md): Su et al.'s checks on VGG11-BN x0.25 / CIFAR-10.

Two recipes, one table set each: the first run (random labels, rearrange, weight shuffle, random and hybrid
tickets) writes ``tables.md``, ``summary.csv`` and ``sanity_checks.png``; the second (random pixels, half
data, reinit, SynFlow) the same three files under ``extra/``. The first run's tables end with the masks at
initialisation of seed 0, recomputed from its spec (they are not in the rows), so that section needs the
CIFAR-10 files ($PRUNELAB_DATA); without them the tables say so instead.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from ...io import atomic_write_bytes
from . import Committed, PageData, register_page

MAIN = "sanity/vgg11_cifar10-page"
EXTRA = "sanity/vgg11_cifar10-page-extra"

CHECK_NAMES = {"random_labels": "random labels", "random_pixels": "random pixels", "half_data": "half data",
               "rearrange": "rearrange", "shuffle": "weight shuffle", "reinit": "reinit"}
CHECKED_METHODS = ("snip", "grasp", "synflow", "lt", "lr_rewind")   # methods the checks can apply to, in table order
NAMES = {"snip": "SNIP", "grasp": "GraSP", "synflow": "SynFlow", "lt": "LT (rewind to init)",
         "lr_rewind": "LR rewinding", "random": "random ticket (smart ratio)",
         "hybrid": "hybrid ticket (smart ratio + LRR)"}
TICKET_TABLE = ("snip", "grasp", "synflow", "lt", "random", "lr_rewind", "hybrid")
PAIRS = (("random", "snip"), ("random", "grasp"), ("random", "lt"), ("hybrid", "lr_rewind"))
# The raw rows as the example script wrote them (summary.csv); elapsed_s only exists for imported rows.
SUMMARY_COLUMNS = ("variant", "round", "kept", "total", "remaining_pct", "test_acc", "test_loss", "method",
                   "data_check", "ticket_check", "sparsity", "best_test_acc", "seed", "elapsed_s", "run_id")


# --------------------------------------------------------------------------------------------------------
# rows

def training_order(cfg) -> dict[tuple[int, str], int]:
    """(round, variant) -> position in which the sanity procedure trains it: dense runs first, then per
    sparsity, method and check. The tables list dense runs in order of appearance, so the order matters."""
    labels = [(0, "dense" if d == "none" else f"dense/{d}") for d in cfg.dense_checks()]
    for r, _ in enumerate(cfg.sparsities):
        for m in cfg.methods:
            labels += [(r, "/".join([m] + [c for c in (d, t) if c != "none"])) for d, t in cfg.combos(m)]
    return {key: i for i, key in enumerate(labels)}


def recipe_rows(data: PageData, recipe: str) -> pd.DataFrame:
    """The recipe's rows per seed in training order (the order of the committed seed<N>.jsonl files)."""
    df = data.recipe(recipe)
    if df.empty:
        return df
    spec = next(r.spec for r in data.runs if data.recipe_of[r.run_id] == recipe)
    order = training_order(spec.procedure)
    pos = [order.get((r, v), len(order)) for r, v in zip(df["round"], df["variant"])]
    return df.assign(_pos=pos).sort_values(["seed", "_pos"], kind="stable").drop(columns="_pos") \
             .reset_index(drop=True)


def summary_csv(df: pd.DataFrame) -> str:
    return df[[c for c in SUMMARY_COLUMNS if c in df.columns]].to_csv(index=False)


# --------------------------------------------------------------------------------------------------------
# tables (the example script's report, unchanged in numbers and formatting)

def check_columns(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(data check, ticket check, label) for the unchecked runs and every check that has rows."""
    cols = [("none", "none", "unchecked")]
    cols += [(d, "none", CHECK_NAMES[d]) for d in CHECK_NAMES if d in set(df.data_check)]
    cols += [("none", t, CHECK_NAMES[t]) for t in CHECK_NAMES if t in set(df.ticket_check)]
    return cols


def _select(df, method, sparsity, d="none", t="none", seed=None) -> pd.DataFrame:
    sel = (df.method == method) & (df.sparsity == sparsity) & (df.data_check == d) & (df.ticket_check == t)
    if seed is not None:
        sel &= df.seed == seed
    return df[sel]


def cell(sub: pd.DataFrame) -> str:
    """Mean ± sample std of the accuracies (%), the mean alone for one seed, '–' for none."""
    v = sub["acc"].to_numpy()
    if len(v) == 0:
        return "–"
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}"


def _mean(df, method, sparsity, d="none", t="none") -> float:
    sub = _select(df, method, sparsity, d, t)
    return sub["acc"].mean() if len(sub) else np.nan


def tables(df: pd.DataFrame) -> list[str]:
    """The dense runs, the checks with their Δ, the random / hybrid tickets and the per-seed paired
    differences, as markdown lines. ``df``: rows in training order with ``acc`` = test accuracy in %."""
    seeds = sorted(int(s) for s in df["seed"].unique())
    lines = [f"Test accuracy (%) after training, mean ± std over seeds {seeds} (final = best: one evaluation "
             f"at the end).", ""]
    lines += ["| dense run | test acc |", "|---|---|"]
    for d, sub in df[df.method == "dense"].groupby("data_check", sort=False):
        lines.append(f"| {'true labels' if d == 'none' else CHECK_NAMES.get(d, d)} | {cell(sub)} |")

    sparsities = sorted(df[df.method != "dense"]["sparsity"].unique())
    methods = [m for m in CHECKED_METHODS if m in set(df.method)]
    columns = check_columns(df)
    lines += ["", "### Sanity checks (Δ = checked − unchecked, mean over seeds)", ""]
    lines += ["| sparsity | method | " + " | ".join(c for _, _, c in columns) + " | "
              + " | ".join(f"Δ {c}" for _, _, c in columns[1:]) + " |", "|---" * (2 * len(columns) + 1) + "|"]
    for s in sparsities:
        for m in methods:
            cells = [cell(_select(df, m, s, d, t)) for d, t, _ in columns]
            base = _mean(df, m, s)
            deltas = [_mean(df, m, s, d, t) - base for d, t, _ in columns[1:]]
            lines.append(f"| {100 * s:.0f} % | {NAMES[m]} | " + " | ".join(cells) + " | "
                         + " | ".join("–" if np.isnan(x) else f"{x:+.2f}" for x in deltas) + " |")

    lines += ["", "### Random and hybrid tickets", ""]
    shown = [m for m in TICKET_TABLE if m in set(df.method)]
    lines += ["| sparsity | " + " | ".join(NAMES[m] for m in shown) + " |", "|---" * (1 + len(shown)) + "|"]
    for s in sparsities:
        lines.append(f"| {100 * s:.0f} % | " + " | ".join(cell(_select(df, m, s)) for m in shown) + " |")
    lines += paired_differences(df, sparsities, seeds)
    return lines


def paired_differences(df, sparsities, seeds) -> list[str]:
    """Random / hybrid ticket minus the method it replaces, per seed (same seed = same θ0); no table when
    neither ticket was run."""
    lines = []
    for s in sparsities:
        for a, b in PAIRS:
            diffs = []
            for seed in seeds:
                x, y = _select(df, a, s, seed=seed)["acc"], _select(df, b, s, seed=seed)["acc"]
                if len(x) and len(y):
                    diffs.append(float(x.iloc[0]) - float(y.iloc[0]))
            if diffs:
                lines.append(f"| {100 * s:.0f} % | {NAMES[a]} − {NAMES[b]} | "
                             + ", ".join(f"{d:+.2f}" for d in diffs) + f" | {np.mean(diffs):+.2f} |")
    if not lines:
        return []
    return ["", "Per-seed paired differences (same seed, same init):", "",
            "| sparsity | comparison | per seed | mean |", "|---|---|---|---|"] + lines


# --------------------------------------------------------------------------------------------------------
# masks at initialisation (recomputed: the rows hold accuracies, not masks)

def mask_structure(spec) -> list[str]:
    """Per-layer keep % and fully pruned conv filters of seed ``spec.seed``'s masks at init, with the seeds
    the sanity procedure derives, so they are the masks that were trained. The CIFAR-10 files must be there
    (they are not downloaded for a report); without them one line says so."""
    import torch
    from ...data import load_dataset
    from ...errors import DataNotFoundError

    ds = spec.dataset
    try:
        data = load_dataset(ds.name, ds.root, download=False, progress=False, **ds.load_kwargs())
    except DataNotFoundError:
        return ["", f"(Masks at initialisation: not computed, the {ds.name} files were not found; set "
                    f"PRUNELAB_DATA and rebuild.)"]
    threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads or 1)   # as the run scored them: more threads may sum in another order
    try:
        return _mask_lines(spec, data)
    finally:
        torch.set_num_threads(threads)


def _mask_lines(spec, data) -> list[str]:
    """The masks table of :func:`mask_structure` for ``data`` loaded as the spec says."""
    import torch
    from ...models import build_model
    from ...primitives.ratios import ratio_mask
    from ...primitives.sanity import rearrange_mask
    from ...procedures.sanity import _counts, init_score_mask
    from ...seeding import derive_seed, generator

    cfg = spec.procedure
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


# --------------------------------------------------------------------------------------------------------
# plot

def plot(df: pd.DataFrame, path: Path) -> Path:
    """Bars per method and check at each sparsity (mean ± std over seeds); dashed: random / hybrid tickets."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sparsities = sorted(df[df.method != "dense"]["sparsity"].unique())
    methods = [m for m in CHECKED_METHODS if m in set(df.method)]
    columns = check_columns(df)
    fig, axes = plt.subplots(1, len(sparsities), figsize=(6 * len(sparsities), 4), squeeze=False)
    width = 0.8 / len(columns)
    for ax, s in zip(axes[0], sparsities):
        for j, (d, t, label) in enumerate(columns):
            accs = [_select(df, m, s, d, t)["acc"] for m in methods]
            means = [v.mean() if len(v) else np.nan for v in accs]
            errs = [v.std(ddof=1) if len(v) > 1 else 0.0 for v in accs]
            ax.bar(np.arange(len(methods)) + (j - (len(columns) - 1) / 2) * width, means, width, yerr=errs,
                   label=label, capsize=2)
        for m, color in (("random", "k"), ("hybrid", "tab:red")):
            v = df[(df.method == m) & (df.sparsity == s)]["acc"]
            if len(v):
                ax.axhline(v.mean(), color=color, ls="--", lw=1, label=NAMES[m])
        ax.set_xticks(np.arange(len(methods)), [NAMES[m].split(" (")[0] for m in methods])
        ax.set_title(f"sparsity {100 * s:.0f} %")
        ax.set_ylabel("test accuracy (%)")
        lo = np.nanmin(df[df.sparsity == s]["acc"]) if len(df[df.sparsity == s]) else 0
        ax.set_ylim(max(0, lo - 5), None)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=3)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------------------------------------

@register_page(
    "sanity", "docs/results/sanity_checks", (MAIN, EXTRA),
    title="Sanity-checking pruning methods (Su et al. 2020) at CPU scale",
    committed=(Committed(MAIN, "docs/results/sanity_checks/seed*.jsonl", {"seed": "seed"},
                         "examples/sanity_checks.py, 2026-11 (one JSON line per training, per seed; "
                         "test accuracy on a class-balanced 5,000-image test subset, seed 0)"),
               Committed(EXTRA, "docs/results/sanity_checks/extra/seed*.jsonl", {"seed": "seed"},
                         "examples/sanity_checks.py --out .../extra with the extra recipe's methods and checks, "
                         "2026-11 (test accuracy on a class-balanced 5,000-image test subset, seed 0)")))
def build(data: PageData, out: Path) -> list[Path]:
    files = []
    for recipe, where, with_masks in ((MAIN, out, True), (EXTRA, out / "extra", False)):
        df = recipe_rows(data, recipe)
        if df.empty:
            continue
        lines = tables(df.assign(acc=100.0 * df["test_acc"]))
        if with_masks:   # the extra run's masks at init are the same ones (same spec but the checks)
            first = next(r.spec for r in data.runs if data.recipe_of[r.run_id] == recipe)
            lines += mask_structure(first)
        lines += ["", data.runs_line(recipe)]
        files += [atomic_write_bytes(where / "tables.md", ("\n".join(lines) + "\n").encode()),
                  atomic_write_bytes(where / "summary.csv", summary_csv(df).encode()),
                  plot(df.assign(acc=100.0 * df["test_acc"]), where / "sanity_checks.png")]
    return files
