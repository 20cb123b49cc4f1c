"""GST page (docs/results/stability.md): the generalization-stability tradeoff (Bartoldson et al. 2020) at CPU
scale. Three sets of runs, one recipe each:

- ``stability/vgg11_cifar10-page``: VGG11-BN at 1/8 width with GST's fractions, 11 configs x 5 seeds, flatness
  on seeds 0-1 of seven configs -> ``tables.md``, ``summary.csv`` and the ``stability_vs_*`` scatter plots;
- ``stability/vgg11_cifar10_half-page``: the follow-up with every fraction halved, 8 configs x 5 seeds ->
  ``followup/`` (``tables.md`` etc. over the four requested configs, ``combined.md`` over all eight);
- ``stability/f2_resnet18_cifar10-page``: F2_RN, ResNet-18 at 1/8 width, 4 configs x 3 seeds ->
  ``resnet18/tables.md``.

A run's config name (``procedure.config``) is its row's variant. The tables read the per-run numbers of the
procedure's row (``mean_stability``, ``best_test_acc``, ``gen_gap``, flatness) and, for the follow-up's
training accuracies, the epoch history: the one the imported rows carry, or the store's for computed runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from ...analysis import config_summary, correlate, pairwise_welch
from ...io import atomic_write_bytes
from . import Committed, PageData, register_page

MAIN = "stability/vgg11_cifar10-page"
HALF = "stability/vgg11_cifar10_half-page"
RN18 = "stability/f2_resnet18_cifar10-page"
F4 = "stability/f4_resnet_sgd-small"    # the rebuttal's experiment in the paper's regime (issue 13)

# the --pairs the committed reports were made with (Welch t-tests on best test accuracy)
MAIN_PAIRS = [("prune_L_r5", "prune_S_r5"), ("prune_L_r1", "prune_S_r1"), ("prune_S_r5", "prune_S_r1"),
              ("prune_L_r5", "prune_L_r1"), ("prune_R_r5", "prune_R_r1"), ("prune_S_r1", "no_pruning"),
              ("prune_L_r1", "no_pruning"), ("scratch_S", "no_pruning"), ("scratch_S", "prune_S_r1"),
              ("zeroing10_L_r5", "no_pruning"), ("gaussian10_L_r5", "no_pruning"),
              ("cumulative_restore20_L_r5", "no_pruning"), ("zeroing10_L_r5", "prune_L_r5")]
FOLLOWUP_REQUESTED = ("no_pruning", "prune_S_r5", "prune_L_r5", "prune_R_r5")
FOLLOWUP_PAIRS = [("prune_S_r5", "no_pruning"), ("prune_L_r5", "no_pruning"), ("prune_R_r5", "no_pruning"),
                  ("prune_L_r5", "prune_S_r5"), ("prune_R_r5", "prune_S_r5")]
# the follow-up's last pruning epoch: pruned runs take their best over epochs 6-10, no_pruning over 1-10
LAST_EVENT_EPOCH = 6
FLATNESS = ("hessian_sum", "grad_cov_trace", "trace_ratio")

_NOTE = "examples/stability.py, 2026-11 (one JSON line per run; the config name is the variant)"


# the runs of one recipe ------------------------------------------------------------------------------
def runs_frame(data: PageData, recipe: str, batches: Sequence[Sequence[str]] = ()) -> pd.DataFrame:
    """The recipe's finished runs, one row each, with ``config`` and ``final_test_acc``, in the order
    examples/stability.py appended them to its runs.jsonl: seeds outermost, configs in recipe order, and
    ``batches`` (configs run by earlier invocations, the rest after them) one after the other. The order is
    not cosmetic: config_summary lists configs by first appearance, and sums follow row order to the last bit."""
    df = data.recipe(recipe).copy()
    df["config"] = df["variant"]
    # imported rows carry the script's final_test_acc; computed runs have the row's test_acc (the same number)
    final = df["final_test_acc"] if "final_test_acc" in df else pd.Series(float("nan"), index=df.index)
    df["final_test_acc"] = final.fillna(df["test_acc"]).astype(float)
    order = list(dict.fromkeys(r.spec.procedure.config for r in data.runs if data.recipe_of[r.run_id] == recipe))
    batch = {c: i for i, group in enumerate(batches) for c in group}
    df["_key"] = [(batch.get(c, len(batches)), s, order.index(c)) for c, s in zip(df["config"], df["seed"])]
    return df.sort_values("_key").drop(columns="_key").reset_index(drop=True)


def epoch_history(data: PageData, run_id: str) -> list[dict]:
    """Per-epoch evaluations (``epoch``, ``test_acc``, ``train_running_acc``) of a run, oldest first."""
    row = data.rows(run_id)[0]
    hist = row.get("history") or data.history(run_id)   # imported rows embed it; computed runs store it
    return [h for h in hist if "test_acc" in h]


# the report of examples/stability.py --report ----------------------------------------------------------
def flatness_columns(df: pd.DataFrame) -> list[str]:
    """The flatness measures some of these runs have (only runs with ``procedure.flatness`` measure them)."""
    return [c for c in FLATNESS if c in df and df[c].notna().any()]


def gst_tables(df: pd.DataFrame, pairs) -> tuple[str, pd.DataFrame]:
    """Per-config means ± 95 % CI, correlations of mean stability over subsets of runs, Welch t-tests."""
    metrics = ["mean_stability", "best_test_acc", "gen_gap", "final_test_acc"]
    flat_cols = flatness_columns(df)
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
    for label, d in sets.items():
        for y in ("best_test_acc", "gen_gap", *flat_cols):
            c = correlate(d["mean_stability"], d[y])
            text.append(f"| {label} | {y} | {c['n']} | {c['pearson_r']:.3f} | {c['pearson_p']:.3g} | "
                        f"{c['kendall_tau']:.3f} | {c['kendall_p']:.3g} |")
    if pairs:
        pw = pairwise_welch(df, "best_test_acc", pairs)
        text += ["", "## Welch t-tests, best test accuracy", "", "| a | b | mean a (%) | mean b (%) | t | p |",
                 "|---|---|---|---|---|---|"]
        for _, p in pw.iterrows():
            text.append(f"| {p['a']} | {p['b']} | {100 * p['mean_a']:.2f} | {100 * p['mean_b']:.2f} | "
                        f"{p['t']:.2f} | {p['p']:.3g} |")
    return "\n".join(text) + "\n", summ


def write_gst_report(df: pd.DataFrame, pairs, out: Path, runs_line: str) -> list[Path]:
    """tables.md, summary.csv and the scatter plots of one set of runs into ``out``."""
    from .. import plot_stability

    text, summ = gst_tables(df, pairs)
    files = [atomic_write_bytes(out / "tables.md", (text + f"\n{runs_line}\n").encode()),
             atomic_write_bytes(out / "summary.csv", summ.to_csv(index=False).encode())]
    files += plot_stability(df, out / "stability_vs_accuracy", "best_test_acc",
                            title="Best post-pruning test accuracy vs mean stability")
    files += plot_stability(df, out / "stability_vs_gap", "gen_gap", ylabel="generalization gap (pt)",
                            title="Generalization gap vs mean stability")
    for c in flatness_columns(df)[:2]:
        sub = df[df[c].notna()]
        if len(sub) >= 3:
            files += plot_stability(sub, out / f"stability_vs_{c}", c, percent_y=False, ylabel=c,
                                    title=f"{c} vs mean stability")
    return files


# the follow-up's combined tables (formerly followup/combine.py) ----------------------------------------
def followup_frame(data: PageData, df: pd.DataFrame) -> pd.DataFrame:
    """Per run, in percent: the numbers above plus what needs the epoch history: the final training
    accuracy, the gap at the final epoch, and the best test accuracy over one epoch window for every config
    (no_pruning's wider window would otherwise be an advantage)."""
    out = []
    for _, r in df.iterrows():
        h = epoch_history(data, r["run_id"])
        out.append({"config": r["config"], "seed": r["seed"], "mean_stability": r["mean_stability"],
                    "best_test_acc": 100 * r["best_test_acc"],
                    "best_same_window": 100 * max(x["test_acc"] for x in h if x["epoch"] >= LAST_EVENT_EPOCH),
                    "final_test_acc": 100 * r["final_test_acc"], "final_train_acc": 100 * h[-1]["train_running_acc"],
                    "gen_gap": 100 * r["gen_gap"],
                    "final_gap": 100 * (h[-1]["train_running_acc"] - h[-1]["test_acc"]),
                    "best_epoch": r["best_epoch"]})
    return pd.DataFrame(out)


def combined_tables(df: pd.DataFrame) -> str:
    """Means ± sample std, correlations over the follow-up's subsets, Welch t-tests of four metrics."""
    metrics = ["mean_stability", "best_test_acc", "best_same_window", "final_test_acc", "final_train_acc",
               "gen_gap", "final_gap", "best_epoch"]
    s = config_summary(df, metrics)
    text = ["| config | n | mean stability (%) | best test acc (%) | best, epochs ≥ 6 (%) | final test acc (%) | "
            "final train acc (%) | gen. gap at best (pt) | gap at final epoch (pt) | best epoch |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in s.iterrows():
        cells = [f"{r[m + '_mean']:.2f} ± {r[m + '_std']:.2f}" for m in metrics[:4]]
        cells += [f"{r[m + '_mean']:.1f} ± {r[m + '_std']:.1f}" for m in metrics[4:]]
        text.append(f"| {r['config']} | {r['n']} | " + " | ".join(cells) + " |")
    text += ["", "(mean ± sample std over seeds)", "", "| runs | y | n | Pearson r | p | Kendall τ | p |",
             "|---|---|---|---|---|---|---|"]
    r5 = df["config"].isin(FOLLOWUP_REQUESTED)
    pruning = df["config"].str.startswith("prune_")
    subsets = {"no_pruning + Prune_S/L/R r5 (requested)": df[r5],
               "Prune_S/L/R r5": df[r5 & pruning],
               "Prune_S/L/R r1 + r5": df[pruning],
               "all follow-up runs": df}
    for label, d in subsets.items():
        for y in ("best_test_acc", "best_same_window", "gen_gap"):
            c = correlate(d["mean_stability"], d[y])
            text.append(f"| {label} | {y} | {c['n']} | {c['pearson_r']:.3f} | {c['pearson_p']:.3g} | "
                        f"{c['kendall_tau']:.3f} | {c['kendall_p']:.3g} |")
    pairs = [(f"prune_{t}_r{k}", "no_pruning") for k in (5, 1) for t in "SLR"]
    pairs += [("scratch_S", "no_pruning"), ("prune_S_r5", "scratch_S"), ("prune_L_r5", "prune_S_r5"),
              ("prune_S_r5", "prune_S_r1"), ("prune_L_r5", "prune_L_r1"), ("prune_R_r5", "prune_R_r1")]
    pairs = [p for p in pairs if set(p) <= set(df["config"])]
    for metric in ("best_test_acc", "best_same_window", "final_test_acc", "mean_stability"):
        pw = pairwise_welch(df, metric, pairs)
        text += ["", f"Welch t-tests, {metric}", "", "| a | b | mean a | mean b | t | p |", "|---|---|---|---|---|---|"]
        text += [f"| {p['a']} | {p['b']} | {p['mean_a']:.2f} | {p['mean_b']:.2f} | {p['t']:.2f} | {p['p']:.3g} |"
                 for _, p in pw.iterrows()]
    return "\n".join(text) + "\n"


def write_followup(data: PageData, out: Path) -> list[Path]:
    df = runs_frame(data, HALF, batches=(FOLLOWUP_REQUESTED,))   # the extra configs ran after the requested
    line = data.runs_line(HALF)
    files = write_gst_report(df[df["config"].isin(FOLLOWUP_REQUESTED)], FOLLOWUP_PAIRS, out, line)
    combined = followup_frame(data, df)
    files.append(atomic_write_bytes(out / "combined.md", (combined_tables(combined) + f"\n{line}\n").encode()))
    from .. import plot_stability
    files += plot_stability(combined, out / "stability_vs_accuracy_all", percent_y=False,
                            ylabel="best test accuracy (%)",
                            title="Follow-up (fractions ×0.5): best test accuracy vs mean stability, all runs")
    return files


# ResNet-18 (F2_RN) ----------------------------------------------------------------------------------------
def describe(cfg) -> str:
    """``Prune_S, r=4`` / ``no pruning``: what a config does, from its StabilityConfig."""
    if not cfg.layers:
        return "no pruning"
    tag = {"small": "S", "large": "L", "random": "R"}[cfg.target]
    return f"scratch_{tag}" if cfg.scratch else f"Prune_{tag}, r={cfg.retrain_period}"


def resnet_tables(data: PageData, df: pd.DataFrame) -> str:
    """Means ± 95 % CI per config, correlations over all and over the pruned runs, Welch t-tests of each
    config against the unpruned one, and the per-seed best accuracies they rest on."""
    cfgs = {r.spec.procedure.config: r.spec.procedure for r in data.runs if data.recipe_of[r.run_id] == RN18}
    summ = config_summary(df, ["mean_stability", "best_test_acc", "gen_gap"])
    text = ["## Per-config means ± 95 % CI (t, over seeds)", "",
            "| config | n | mean stability (%) | best test acc (%) | gen. gap (pt) |", "|---|---|---|---|---|"]
    for _, s in summ.iterrows():
        def f(m, scale=1.0):
            return f"{scale * s[m + '_mean']:.2f} ± {scale * s[m + '_ci95']:.2f}"
        text.append(f"| {s['config']} ({describe(cfgs[s['config']])}) | {s['n']} | {f('mean_stability')} | "
                    f"{f('best_test_acc', 100)} | {f('gen_gap', 100)} |")
    base = next(c for c, cfg in cfgs.items() if not cfg.layers)
    pruned = df[df["config"] != base]
    text += ["", "## Correlations of mean stability with best test accuracy", "",
             "| runs | n | Pearson r | p | Kendall τ | p |", "|---|---|---|---|---|---|"]
    for label, d in (("all runs", df), ("pruned runs", pruned)):
        c = correlate(d["mean_stability"], d["best_test_acc"])
        text.append(f"| {label} | {c['n']} | {c['pearson_r']:.3f} | {c['pearson_p']:.3g} | "
                    f"{c['kendall_tau']:.3f} | {c['kendall_p']:.3g} |")
    pw = pairwise_welch(df, "best_test_acc", [(c, base) for c in summ["config"] if c != base])
    text += ["", "## Welch t-tests, best test accuracy", "", "| a | b | mean a (%) | mean b (%) | t | p |",
             "|---|---|---|---|---|---|"]
    text += [f"| {p['a']} | {p['b']} | {100 * p['mean_a']:.2f} | {100 * p['mean_b']:.2f} | {p['t']:.2f} | "
             f"{p['p']:.3g} |" for _, p in pw.iterrows()]
    wide = df.pivot(index="seed", columns="config", values="best_test_acc")[list(summ["config"])]
    text += ["", f"## Best test accuracy per seed (%; in brackets: minus {base})", "",
             "| seed | " + " | ".join(wide.columns) + " |", "|---|" + "---|" * len(wide.columns)]
    for seed, r in wide.iterrows():
        cells = [f"{100 * r[c]:.2f}" + ("" if c == base else f" ({100 * (r[c] - r[base]):+.2f})")
                 for c in wide.columns]
        text.append(f"| {seed} | " + " | ".join(cells) + " |")
    return "\n".join(text) + "\n"


# F4 (the rebuttal's ResNet experiment with He et al.'s training) ------------------------------------------
def f4_frame(data: PageData) -> pd.DataFrame:
    """One row per finished F4 run, in percent: mean stability, best test accuracy (epochs from the last event
    on), the generalization gap there, the final epoch's training and test accuracy, events and drops."""
    rows = []
    for _, r in data.recipe(F4).iterrows():
        hist = epoch_history(data, r["run_id"])
        events = next((x.get("events") for x in data.rows(r["run_id"]) if x.get("variant") == r["variant"]), [])
        drops = [100 * (e["acc_pre"] - e["acc_post"]) for e in events or [] if "acc_post" in e]
        rows.append({"config": r["variant"], "seed": r["seed"], "mean_stability": r["mean_stability"],
                     "best_test_acc": 100 * r["best_test_acc"], "gen_gap": 100 * r["gen_gap"],
                     "final_train_acc": 100 * hist[-1]["train_running_acc"], "final_test_acc": 100 * hist[-1]["test_acc"],
                     "n_events": int(r["n_events"]), "mean_drop": sum(drops) / len(drops) if drops else 0.0,
                     "epochs": int(hist[-1]["epoch"])})
    order = list(dict.fromkeys(r.spec.procedure.config for r in data.runs if data.recipe_of[r.run_id] == F4))
    df = pd.DataFrame(rows)
    if len(df):
        df = df.assign(_o=df["config"].map(order.index)).sort_values(["_o", "seed"]).drop(columns="_o")
    return df.reset_index(drop=True)


def f4_tables(data: PageData, df: pd.DataFrame) -> str:
    """Per-config means ± 95 % CI, per-run numbers, correlations (Pearson and Kendall, with p) of mean stability
    with best test accuracy and with the generalization gap, and Welch tests against the unpruned runs."""
    cfgs = {r.spec.procedure.config: r.spec.procedure for r in data.runs if data.recipe_of[r.run_id] == F4}
    metrics = ["mean_stability", "best_test_acc", "gen_gap", "final_train_acc", "mean_drop"]
    summ = config_summary(df, metrics)
    text = ["## Per-config means ± 95 % CI (t, over seeds)", "",
            "| config | n | mean stability (%) | best test acc (%) | gen. gap (pt) | final train acc (%) | "
            "mean drop per event (pt) |", "|---|---|---|---|---|---|---|"]
    for _, s in summ.iterrows():
        cells = [f"{s[m + '_mean']:.2f} ± {s[m + '_ci95']:.2f}" for m in metrics]
        text.append(f"| {s['config']} ({describe(cfgs[s['config']])}) | {s['n']} | " + " | ".join(cells) + " |")
    text += ["", "## Runs", "", "| config | seed | epochs | events | mean stability (%) | best test acc (%) | "
             "gen. gap (pt) | final train acc (%) | final test acc (%) |", "|---|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        text.append(f"| {r['config']} | {r['seed']} | {r['epochs']} | {r['n_events']} | {r['mean_stability']:.2f} | "
                    f"{r['best_test_acc']:.2f} | {r['gen_gap']:.2f} | {r['final_train_acc']:.2f} | "
                    f"{r['final_test_acc']:.2f} |")
    pruned = df[df["n_events"] > 0]
    text += ["", "## Correlations across runs (mean stability against y)", "",
             "| runs | y | n | Pearson r | p | Kendall τ | p |", "|---|---|---|---|---|---|---|"]
    for label, d in (("all runs", df), ("pruned runs", pruned)):
        for y in ("best_test_acc", "gen_gap"):
            c = correlate(d["mean_stability"], d[y])
            text.append(f"| {label} | {y} | {c['n']} | {c['pearson_r']:.3f} | {c['pearson_p']:.3g} | "
                        f"{c['kendall_tau']:.3f} | {c['kendall_p']:.3g} |")
    base = next((c for c, cfg in cfgs.items() if not cfg.layers), None)
    others = [c for c in summ["config"] if c != base]
    if base in set(summ["config"]) and others:
        pw = pairwise_welch(df, "best_test_acc", [(c, base) for c in others])
        text += ["", "## Welch t-tests, best test accuracy against the unpruned runs", "",
                 "| a | b | mean a (%) | mean b (%) | t | p |", "|---|---|---|---|---|---|"]
        text += [f"| {p['a']} | {p['b']} | {p['mean_a']:.2f} | {p['mean_b']:.2f} | {p['t']:.2f} | {p['p']:.3g} |"
                 for _, p in pw.iterrows()]
    return "\n".join(text) + "\n"


def write_f4(data: PageData, out: Path) -> list[Path]:
    from .. import plot_stability

    df = f4_frame(data)
    text = f4_tables(data, df) + f"\n{data.runs_line(F4)}\n"
    files = [atomic_write_bytes(out / "tables.md", text.encode()),
             atomic_write_bytes(out / "runs.csv", df.to_csv(index=False).encode())]
    if len(df) >= 2:
        files += plot_stability(df, out / "stability_vs_accuracy", "best_test_acc", percent_y=False,
                                ylabel="best test accuracy (%)", title="F4: best test accuracy vs mean stability")
        files += plot_stability(df, out / "stability_vs_gap", "gen_gap", percent_y=False,
                                ylabel="generalization gap (pt)", title="F4: generalization gap vs mean stability")
    return files


@register_page(
    "stability", "docs/results/stability", (MAIN, HALF, RN18, F4),
    title="Generalization-stability tradeoff (Bartoldson et al.) at CPU scale",
    committed=(   # the example script wrote one line per run, keyed by config and seed: variant = config, round 0
        Committed(MAIN, "docs/results/stability/runs.jsonl", {"procedure.config": "config", "seed": "seed"}, _NOTE,
                  defaults={"round": 0}, copies={"variant": "config"}),
        Committed(HALF, "docs/results/stability/followup/runs.jsonl", {"procedure.config": "config", "seed": "seed"},
                  _NOTE + ", the follow-up's requested configs", defaults={"round": 0}, copies={"variant": "config"}),
        Committed(HALF, "docs/results/stability/followup/extra/runs.jsonl",
                  {"procedure.config": "config", "seed": "seed"}, _NOTE + ", the follow-up's extra configs",
                  defaults={"round": 0}, copies={"variant": "config"}),
        Committed(RN18, "docs/results/stability/resnet18/runs.csv", {"procedure.config": "variant", "seed": "seed"},
                  "prunelab run stability/f2_resnet18_cifar10-small, then prunelab results --extra --csv"),
    ))
def build(data: PageData, out: Path) -> list[Path]:
    out = Path(out)
    files = []
    if len(data.recipe(MAIN)):
        files += write_gst_report(runs_frame(data, MAIN), MAIN_PAIRS, out, data.runs_line(MAIN))
    if len(data.recipe(HALF)):
        files += write_followup(data, out / "followup")
    if len(data.recipe(RN18)):
        text = resnet_tables(data, runs_frame(data, RN18)) + f"\n{data.runs_line(RN18)}\n"
        files.append(atomic_write_bytes(out / "resnet18" / "tables.md", text.encode()))
    if len(data.recipe(F4)):
        files += write_f4(data, out / "f4")
    return files
