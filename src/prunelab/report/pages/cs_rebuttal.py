"""The CS rebuttal's table under one protocol (recipes ``cs/table_*``): for each model, the highest sparsity
each method reaches within 2 % (relative) of the dense accuracy, per seed and as a mean with a 95 % CI,
beside the rebuttal's numbers, and the accuracy-vs-sparsity curves it is read from."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...analysis import mean_std_ci
from ...io import atomic_write_bytes
from ...procedures.tickets import highest_sparsity_within
from ..plots import save_png
from . import PageData

# recipe -> (model as the rebuttal names it, output subdirectory)
TABLE_RECIPES = {"cs/table_vgg16-small": ("VGG-16", "table_vgg16"),
                 "cs/table_resnet20-small": ("ResNet-20", "table_resnet20")}
REBUTTAL = {"VGG-16": {"l0": 32.0, "magnitude": 97.5, "gmp": 98.0, "cs": 99.6},
            "ResNet-20": {"l0": 31.8, "magnitude": 75.5, "gmp": 86.0, "cs": 89.3}}
METHODS = {"l0_plain": "ℓ0 (plain)", "l0": "ℓ0 (fixed mask, fine-tuned)", "magnitude": "magnitude (one-shot)",
           "gmp": "GMP", "cs": "CS"}


def method_rows(data: PageData, recipe: str) -> tuple[pd.DataFrame, pd.Series]:
    """Every pruned network of the recipe's finished runs with its method, and the dense accuracy per seed
    (round 0 of the one-shot magnitude runs: the dense net after the shared training)."""
    df = data.recipe(recipe)
    kind = {r.run_id: r.spec.procedure.kind for r in data.runs}
    k = df["run_id"].map(kind)
    last = df.groupby("run_id")["round"].transform("max")
    pick = {
        "magnitude": (k == "oneshot") & (df["round"] == 1),
        "gmp": k == "gmp",
        "l0": (k == "l0") & (df["variant"] == "l0_fixed"),
        "l0_plain": (k == "l0") & (df["variant"] == "l0"),
        "cs": (k == "cs") & (df["round"] == last),
    }
    rows = pd.concat([df[m].assign(method=name) for name, m in pick.items()], ignore_index=True)
    rows["sparsity"] = 1.0 - rows["remaining_pct"] / 100.0
    dense = df[(k == "oneshot") & (df["round"] == 0)].groupby("seed")["test_acc"].mean()
    return rows, dense


def highest_table(rows: pd.DataFrame, dense: pd.Series, model: str) -> list[str]:
    lines = [f"## {model}: highest sparsity within 2 % (relative) of dense", "",
             f"Dense test accuracy per seed: {', '.join(f'{100 * a:.2f}' for a in dense)} %.", "",
             "| method | per seed (%) | mean ± 95 % CI (%) | rebuttal (%) |", "|---|---|---|---|"]
    for method, name in METHODS.items():
        per_seed = []
        for seed, d in dense.items():
            c = rows[(rows["method"] == method) & (rows["seed"] == seed)]
            best = highest_sparsity_within(c, d, 0.02) if len(c) else None
            per_seed.append(100 * best["sparsity"] if best else float("nan"))
        stat = mean_std_ci(per_seed)   # seeds with no passing point are left out of the mean
        lines.append(f"| {name} | {', '.join('none' if v != v else f'{v:.1f}' for v in per_seed)} | "
                     f"{stat['mean']:.1f} ± {stat['ci95']:.1f} | {REBUTTAL[model].get(method, '–')} |")
    return lines + ["", "A value is the sparsest grid point that passes (grid-bound); \"none\": no point of the "
                    "method's sweep stays within 2 %."]


def curves_table(rows: pd.DataFrame) -> list[str]:
    lines = ["## Every pruned network (mean over seeds)", "", "| method | sparsity (%) | test acc. (%) | seeds |",
             "|---|---|---|---|"]
    for method, name in METHODS.items():
        g = rows[rows["method"] == method]
        for _, s in g.groupby(["label"], sort=False):
            lines.append(f"| {name} | {100 * s['sparsity'].mean():.2f} | {100 * s['test_acc'].mean():.2f} | "
                         f"{s['seed'].nunique()} |")
    return lines


def plot(rows: pd.DataFrame, dense: pd.Series, model: str, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, name in METHODS.items():
        g = rows[rows["method"] == method].groupby("label", sort=False)
        pts = sorted((s["sparsity"].mean(), s["test_acc"].mean()) for _, s in g)
        if pts:
            ax.plot([100 * p[0] for p in pts], [100 * p[1] for p in pts], marker="o", ms=3, label=name)
    ax.axhline(100 * 0.98 * dense.mean(), color="grey", ls="--", lw=1, label="98 % of dense")
    ax.set_xlabel("sparsity of the 3×3 convs (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{model}: accuracy vs sparsity, mean over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, path)


def write_rebuttal_tables(data: PageData, out: Path) -> list[Path]:
    files = []
    for recipe, (model, sub) in TABLE_RECIPES.items():
        rows, dense = method_rows(data, recipe)
        if dense.empty:          # no dense reference yet
            continue
        text = highest_table(rows, dense, model) + [""] + curves_table(rows)
        text += ["", data.runs_line(recipe)]
        files.append(atomic_write_bytes(out / sub / "tables.md", ("\n".join(text) + "\n").encode()))
        files.append(plot(rows, dense, model, out / sub / "sparsity_accuracy.png"))
    return files
