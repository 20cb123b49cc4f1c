"""The demo: a real, complete small lottery-ticket experiment that runs offline in a few minutes on CPU.

IMP with rewinding to initialisation on MNIST-1D (generated locally by the ``mnist1d`` package) with an
MLP of LeNet-300-100's shape, Frankle & Carbin's per-round rates (hidden 20 %, output 10 %), both LTH
controls, two seeds, run through the results store like every experiment. Prints the per-round table
(mean ± std over seeds), writes the rows as CSV and an HTML report (accuracy vs remaining weights with
95 % confidence bands, per-round table).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def demo_spec(*, seeds=(0, 1), rounds: int = 6, epochs: float = 30, data_root: str | None = None,
              device: str = "cpu", threads: int = 1) -> dict:
    """The demo as an experiment spec (one run per seed); ``prunelab run`` accepts the same dict as YAML."""
    return {"name": "demo", "threads": threads,
            "model": {"name": "lenet300_100"},
            "dataset": {"name": "mnist1d", "root": data_root, "val_size": 500, "val_seed": 0},
            "train": {"optimizer": "adam", "lr": 2e-3, "batch_size": 100, "epochs": epochs, "eval_every": 175,
                      "device": device},
            "procedure": {"kind": "imp", "rounds": rounds, "rate": "lenet300_100", "rewind": "init",
                          "controls": ["reinit", "random_mask"]},
            "sweep": {"axes": {"seed": list(seeds)}}}


def run_demo(out: str | Path = "prunelab-demo", *, seeds=(0, 1), rounds: int = 6, epochs: float = 30,
             data_root: str | None = None, device: str = "cpu", progress: bool = True,
             threads: int = 1) -> pd.DataFrame:
    """Run the demo through a results store in ``out/store`` (cached and resumable: run it again after an
    interruption and it continues), then write ``out/rounds.csv`` and the HTML report into ``out``."""
    from .experiments import load_plan, run_experiment
    from .io import atomic_write_bytes
    from .report import write_report

    out = Path(out)
    runs = load_plan(demo_spec(seeds=seeds, rounds=rounds, epochs=epochs, data_root=data_root, device=device,
                               threads=threads))
    df = run_experiment(runs, out / "store", progress=progress, log=None)
    atomic_write_bytes(out / "rounds.csv", df.to_csv(index=False).encode())
    write_report(df, out, title="prunelab demo: lottery tickets on MNIST-1D")
    return df


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std of test accuracy per round and variant (round 0, the dense net, is shared)."""
    agg = (df.groupby(["round", "variant"])
             .agg(remaining_pct=("remaining_pct", "mean"), test_acc=("test_acc", "mean"),
                  test_acc_std=("test_acc", "std"), seeds=("seed", "nunique"))
             .reset_index())
    cell = agg.apply(lambda r: f"{100 * r.test_acc:.1f} ± {100 * (r.test_acc_std if r.test_acc_std == r.test_acc_std else 0):.1f}", axis=1)
    wide = agg.assign(cell=cell).pivot(index="round", columns="variant", values="cell")
    wide.insert(0, "remaining %", agg.groupby("round").remaining_pct.first().round(1))
    return wide.fillna("")
