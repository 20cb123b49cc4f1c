"""Numbers of the "Follow-up: less capacity-starved pruning" section of docs/results/stability.md.

Reads followup/runs.jsonl (no_pruning + Prune_S/L/R at r = 5, the requested runs) and followup/extra/runs.jsonl
(scratch_S + Prune_S/L/R at r = 1, added within the same CPU budget) and writes followup/combined.md.
Kept separate from examples/stability.py --report because it also needs the final training accuracy, the
final-epoch gap and a best-accuracy window common to every config.

    python docs/results/stability/followup/combine.py
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from prunelab.analysis import config_summary, correlate, pairwise_welch
from prunelab.report import plot_stability
from prunelab.io import atomic_write_bytes

HERE = Path(__file__).resolve().parent
LAST_EVENT_EPOCH = 6  # --prune-end 6: pruned runs take their best over epochs 6-10, no_pruning over 1-10


def load(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def frame(rows: list[dict]) -> pd.DataFrame:
    out = []
    for r in rows:
        h = r["history"]
        out.append({"config": r["config"], "seed": r["seed"], "mean_stability": r["mean_stability"],
                    "best_test_acc": 100 * r["best_test_acc"],
                    # the same epoch window for every config, so no_pruning's wider window is no advantage
                    "best_same_window": 100 * max(x["test_acc"] for x in h if x["epoch"] >= LAST_EVENT_EPOCH),
                    "final_test_acc": 100 * r["final_test_acc"], "final_train_acc": 100 * h[-1]["train_running_acc"],
                    "gen_gap": 100 * r["gen_gap"],
                    "final_gap": 100 * (h[-1]["train_running_acc"] - h[-1]["test_acc"]),
                    "best_epoch": r["best_epoch"]})
    return pd.DataFrame(out)


def main() -> None:
    main_df, extra_df = frame(load(HERE / "runs.jsonl")), frame(load(HERE / "extra" / "runs.jsonl"))
    df = pd.concat([main_df, extra_df], ignore_index=True)
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
    r5 = df["config"].isin(["no_pruning", "prune_S_r5", "prune_L_r5", "prune_R_r5"])
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
    atomic_write_bytes(HERE / "combined.md", ("\n".join(text) + "\n").encode())
    plot_stability(df, HERE / "stability_vs_accuracy_all", percent_y=False, ylabel="best test accuracy (%)",
                   title="Follow-up (fractions ×0.5): best test accuracy vs mean stability, all runs")
    print("\n".join(text))


if __name__ == "__main__":
    main()
