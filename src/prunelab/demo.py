"""The demo: a real, complete small lottery-ticket experiment that runs offline in a few minutes on CPU.

IMP with rewinding to initialisation on MNIST-1D (generated locally by the ``mnist1d`` package) with an
MLP of LeNet-300-100's shape, Frankle & Carbin's per-round rates (hidden 20 %, output 10 %), both LTH
controls, two seeds. Prints the per-round table (mean ± std over seeds), writes the rows as CSV and an
HTML report (accuracy vs remaining weights with 95 % confidence bands, per-round table).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .data import load_dataset
from .models import build_model
from .procedures import IMPConfig, run_imp
from .training import TrainConfig


def run_demo(out: str | Path = "prunelab-demo", *, seeds=(0, 1), rounds: int = 6, epochs: float = 30,
             data_root: str | None = None, device: str = "cpu", progress: bool = True) -> pd.DataFrame:
    data = load_dataset("mnist1d", data_root, val_size=500, val_seed=0, device=device, progress=progress)
    cfg = TrainConfig(optimizer="adam", lr=2e-3, batch_size=100, epochs=epochs, eval_every=175, device=device)
    imp = IMPConfig(rounds=rounds, rate="lenet300_100", rewind="init", controls=("reinit", "random_mask"))

    def model_fn(seed):
        return build_model("lenet300_100", num_classes=data.num_classes, input_shape=data.input_shape, seed=seed)

    frames = []
    try:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(seeds) * (1 + 3 * rounds), desc="demo trainings", disable=not progress)
    except ImportError:  # pragma: no cover
        bar = None
    for seed in seeds:
        res = run_imp(model_fn, data, cfg, imp, seed=seed, on_row=lambda r: bar.update(1) if bar else None)
        frames.append(res.table().assign(seed=seed, run_id=f"demo-seed{seed}", name="demo",
                                         label="IMP, rewind to init", model="lenet300_100",
                                         dataset="mnist1d", procedure="imp"))
    if bar is not None:
        bar.close()
    df = pd.concat(frames, ignore_index=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from .io import atomic_write_bytes
    from .report import write_report
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
