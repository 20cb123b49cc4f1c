"""Tables and plots of the DLT reproduction (``python examples/dlt_mnist.py --report``)."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

PAIRS = {
    "criteria": ("imp", None),
    "kept": ("kept", "imp-large_final"),
    "pruned": ("pruned", "imp-large_final"),
}


def md(df: pd.DataFrame) -> str:
    """A GitHub markdown table (no tabulate dependency)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines)


def load(out_dir: Path) -> pd.DataFrame:
    frames = []
    for p in sorted(out_dir.glob("*.jsonl")):
        df = pd.read_json(p, lines=True)
        tag = p.stem
        df["tag"] = tag
        df["job"] = tag.split("@")[0]
        m = re.search(r"@s(\d+)", tag) or re.search(r"^(?:csm|lsm)-s(\d+)", tag)
        df["seed"] = int(m.group(1)) if m else 0
        e = re.search(r"@e(\d+)", tag)
        df["epochs_override"] = int(e.group(1)) if e else None
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _cell(s: pd.Series) -> str:
    s = s.dropna() * 100
    if not len(s):
        return ""
    return f"{s.mean():.2f}" if len(s) == 1 else f"{s.mean():.2f} ± {s.std(ddof=1):.2f}"


def imp_table(df: pd.DataFrame, jobs: list[str], labels: list[str]) -> pd.DataFrame:
    d = df[df.job.isin(jobs) & (df.variant == "ticket")]
    rem = d.groupby("round").remaining_pct.mean()
    out = pd.DataFrame({"round": rem.index, "remaining %": rem.round(2).values})
    for job, lab in zip(jobs, labels):
        g = d[d.job == job].groupby("round").test_acc
        out[lab] = [_cell(g.get_group(r)) if r in g.groups else "" for r in rem.index]
    out["seeds"] = [d[d["round"] == r].groupby("job").seed.nunique().min() for r in rem.index]
    return out


def imp_plot(df, jobs, labels, title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    d = df[df.variant == "ticket"]
    for i, (job, lab) in enumerate(zip(jobs, labels)):
        g = d[d.job == job].groupby("round").agg(rem=("remaining_pct", "mean"), acc=("test_acc", "mean"))
        if len(g):   # the default cycle has 10 colours: dash the lines after that
            ax.plot(g.rem, g.acc * 100, marker="o", ms=3, label=lab, ls="--" if i >= 10 else "-")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(bottom=max(ax.get_ylim()[0], 80))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def csm_tables(df):
    d = df[df.job.str.startswith("csm-") & df.variant.str.startswith("supermask_")]
    per = d.groupby(["round", "variant"]).agg(rem=("remaining_pct", "mean"), acc=("test_acc", "mean"),
                                              sd=("test_acc", "std")).reset_index()
    wide = per.pivot(index="round", columns="variant", values="acc")
    rem = per.groupby("round").rem.mean()
    sweep = pd.DataFrame({"p": wide.index, "remaining %": rem.round(2).values,
                          "init weights": (wide["supermask_init"] * 100).round(2).values,
                          "signed constant": (wide["supermask_signed_constant"] * 100).round(2).values})
    best = []
    for v in ("supermask_init", "supermask_signed_constant"):
        x = d[d.variant == v]
        by_test = x.loc[x.groupby("seed").test_acc.idxmax()]
        by_val = x.loc[x.groupby("seed").val_acc.idxmax()]
        mean_curve = x.groupby("round").test_acc.mean()
        best.append({"weights": v.replace("supermask_", ""),
                     "best of mean curve (test) %": f"{mean_curve.max() * 100:.2f} at p={mean_curve.idxmax()}",
                     "per-seed best by test %": _cell(by_test.test_acc),
                     "per-seed p chosen on val, test %": _cell(by_val.test_acc),
                     "remaining % at val choice": f"{by_val.remaining_pct.mean():.2f}"})
    return sweep, pd.DataFrame(best)


def csm_plot(df, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    d = df[df.job.str.startswith("csm-") & df.variant.str.startswith("supermask_")]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for v, lab in (("supermask_init", "large_final_same_sign, untrained w_i"),
                   ("supermask_signed_constant", "large_final_same_sign, signed constant")):
        g = d[d.variant == v].groupby("round").agg(rem=("remaining_pct", "mean"), acc=("test_acc", "mean"),
                                                   sd=("test_acc", "std"))
        ax.errorbar(g.rem, g.acc * 100, yerr=g.sd * 100, marker="o", ms=3, capsize=2, label=lab)
    ax.axhline(86, ls="--", c="gray", lw=0.8, label="paper: 86 % (signed constant)")
    ax.axhline(80, ls=":", c="gray", lw=0.8, label="paper: > 80 % (no constant)")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("test accuracy without training (%)")
    ax.set_title("Criterion supermasks on untrained LeNet-300-100 (MNIST)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def lsm_table(df):
    d = df[df.job.str.startswith("lsm-")].copy()
    rows = []
    for tag, x in d.groupby("tag"):
        r = x.iloc[0]
        samples = r.get("test_acc_samples")
        sd = pd.Series(samples).std(ddof=1) * 100 if isinstance(samples, list) else float("nan")
        rows.append({"run": tag, "seed": r.seed,
                     "epochs": int(r.epochs_override) if pd.notna(r.epochs_override) else 25,
                     "test acc % (mean of 10 masks)": round(r.test_acc * 100, 2),
                     "std over the 10 masks": round(sd, 2),
                     "val acc %": round(r.val_acc * 100, 2),
                     "expected density %": round(r.expected_density * 100, 2),
                     "hard mask (score > 0) remaining %": round(r.remaining_pct, 2)})
    return pd.DataFrame(rows)


def single_table(df):
    """The *_single criteria on untrained weights: one mask per seed (no rate)."""
    d = df[df.job.str.startswith("single-") & df.variant.str.startswith("supermask_")]
    rows = []
    for (job, variant), x in d.groupby(["job", "variant"]):
        rows.append({"mask": job.replace("single-", "") + "-sign weights", "weights": variant.replace("supermask_", ""),
                     "test acc %": _cell(x.test_acc), "remaining %": f"{x.remaining_pct.mean():.1f}",
                     "seeds": x.seed.nunique()})
    return pd.DataFrame(rows)


def report(out_dir: Path) -> None:
    from dlt_mnist import CRITERIA, KEPT, PRUNED
    df = load(out_dir)
    parts = []
    crit_jobs = [f"imp-{c}" for c in CRITERIA]
    kept_jobs = ["imp-large_final"] + [f"kept-{a}" for a in KEPT]
    pruned_jobs = ["imp-large_final"] + [f"pruned-{a}" for a in PRUNED]
    for title, jobs, labels, png in (
            ("Mask criteria", crit_jobs, CRITERIA, "criteria.png"),
            ("Kept-weight actions (large_final masks)", kept_jobs, ["none (LT)"] + KEPT, "kept.png"),
            ("Pruned-weight actions (large_final masks)", pruned_jobs, ["zero (LT)"] + PRUNED, "pruned.png")):
        imp_plot(df, jobs, labels, title, out_dir / png)
        parts.append(f"### {title}\n\n" + md(imp_table(df, jobs, labels)))
    csm_plot(df, out_dir / "criterion_supermask.png")
    sweep, best = csm_tables(df)
    parts.append("### Criterion supermask sweep (mean over seeds)\n\n" + md(sweep))
    parts.append("### Criterion supermask best\n\n" + md(best))
    single = single_table(df)
    if len(single):
        parts.append("### *_single masks on the untrained network\n\n" + md(single))
    parts.append("### Learned supermask\n\n" + md(lsm_table(df)))
    (out_dir / "tables.md").write_text("\n\n".join(parts) + "\n")
    print("\n\n".join(parts))
