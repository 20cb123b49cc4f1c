"""DLT page (docs/results/deconstructing.md): Zhou et al. 2019 on LeNet-300-100 / MNIST at CPU scale.

Six recipes: IMP with eleven mask criteria, with six kept-weight actions and with five pruned-weight actions
(the lottery ticket, large_final with no action, is the criteria recipe's ``score=large_final`` run),
criterion supermasks, ``*_single`` masks and learned supermasks. The tables name each run as the old
example script's jobs did (``imp-random``, ``kept-reinit``, ``lsm-s0@r1``, ...); the name is derived
from the run's spec, so computed and imported runs read the same.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...io import atomic_write_bytes
from . import Committed, PageData, register_page

RECIPES = {"criteria": "dlt/criteria_lenet_mnist-page", "kept": "dlt/kept_actions_lenet_mnist-page",
           "pruned": "dlt/pruned_actions_lenet_mnist-page", "csm": "dlt/criterion_supermask_lenet_mnist-page",
           "single": "dlt/single_supermask_lenet_mnist-page", "lsm": "dlt/learned_supermask_lenet_mnist-page"}
CRITERIA = ["large_final", "random", "magnitude_increase", "movement", "small_final", "large_init",
            "large_init_large_final", "small_init_small_final", "small_init", "large_final_same_sign",
            "large_final_diff_sign"]
KEPT = ["reinit", "signed_reinit", "reshuffle", "signed_reshuffle", "constant", "signed_constant"]
PRUNED = ["freeze_init", "freeze_init_zero_mask", "freeze_init_zero_all", "freeze_init_zero_reshuffle",
          "freeze_init_zero_rev"]
LSM_EPOCHS = 25            # the learned-supermask recipe's default budget: no ``@e`` in the run name

# committed rows ------------------------------------------------------------------------------------------
# examples/dlt_mnist.py wrote one file per job, ``<job>[@s<seed>].jsonl``; the older files carry neither a
# seed nor the options in their rows, so each file is imported on its own, its run fixed by ``set``.
ROWS = "docs/results/deconstructing"
NOTE = "examples/dlt_mnist.py, 2026-11 ({})"
# every key a learned-supermask case sets, with the recipe's base values: fixing them all picks one case
LSM_BASE = {"seed": 0, "train.epochs": LSM_EPOCHS, "procedure.dynamic_rescale": "false",
            "procedure.signed_constant": "false", "procedure.mode": "sample", "procedure.score_init": 0.0}
LSM_FILES = {"lsm-s0": {}, "lsm-s1": {"seed": 1}, "lsm-s2": {"seed": 2}, "lsm-s0@e200": {"train.epochs": 200},
             "lsm-s0@r1": {"procedure.dynamic_rescale": "true"}, "lsm-s0@c1": {"procedure.signed_constant": "true"},
             "lsm-s0@m1": {"procedure.mode": "round"},
             "lsm-s0@m1@i10": {"procedure.mode": "round", "procedure.score_init": 0.1}}


def _committed(recipe: str, job: str, *sets: str) -> Committed:
    return Committed(RECIPES[recipe], f"{ROWS}/{job}.jsonl", {}, NOTE.format(job), tuple(sets))


def _imp_file(job: str, seed: int) -> str:
    return job if seed == 0 else f"{job}@s{seed}"   # seed 0 was the script's default: no suffix


def committed_rows() -> tuple[Committed, ...]:
    out = []
    for seed in (0, 1, 2):
        out += [_committed("criteria", _imp_file(f"imp-{c}", seed), f"procedure.score={c}", f"seed={seed}")
                for c in CRITERIA]
        out += [_committed("kept", _imp_file(f"kept-{a}", seed), f"procedure.kept_action={a}", f"seed={seed}")
                for a in KEPT]
        out += [_committed("pruned", _imp_file(f"pruned-{a}", seed), f"procedure.pruned_action={a}",
                           f"seed={seed}") for a in PRUNED]
        out.append(_committed("csm", f"csm-s{seed}", f"seed={seed}"))
    out += [_committed("single", f"single-{s}@s{seed}", f"procedure.score=large_final_{s}_sign_single",
                       f"seed={seed}") for s in ("same", "diff") for seed in (0, 1)]
    out += [_committed("lsm", job, *(f"{k}={v}" for k, v in {**LSM_BASE, **over}.items()))
            for job, over in LSM_FILES.items()]
    return tuple(out)


# run names -----------------------------------------------------------------------------------------------
def job_name(spec) -> str:
    """The old script's job name of a run (without the seed): ``imp-<criterion>``, ``kept-<action>``,
    ``pruned-<action>``, ``csm``, ``single-{same,diff}`` or ``lsm``."""
    p = spec.procedure
    if p.kind == "imp":
        if p.kept_action != "none":
            return f"kept-{p.kept_action}"
        if p.pruned_action != "zero":
            return f"pruned-{p.pruned_action}"
        return f"imp-{p.score}"
    if p.kind == "criterion_supermask":
        if p.score.endswith("_sign_single"):
            return "single-" + p.score.removeprefix("large_final_").removesuffix("_sign_single")
        return "csm"
    return "lsm"


def lsm_tag(spec) -> str:
    """``lsm-s<seed>`` plus the options that differ from the plain run, in the old script's order:
    ``@e<epochs>``, ``@r1`` dynamic rescaling, ``@c1`` signed constant, ``@m1`` rounded mask,
    ``@i<N>`` score init N/100."""
    p = spec.procedure
    tag = f"lsm-s{spec.seed}"
    if spec.train.epochs != LSM_EPOCHS:
        tag += f"@e{spec.train.epochs:g}"
    tag += "@r1" * p.dynamic_rescale + "@c1" * p.signed_constant + "@m1" * (p.mode == "round")
    if p.score_init:
        tag += f"@i{round(100 * p.score_init)}"
    return tag


def named_frame(data: PageData) -> pd.DataFrame:
    """The page's frame with ``job`` (and ``tag`` for learned supermasks) from each run's spec; imported rows
    carry the script's own ``job``/``tag`` columns, computed ones do not, so those are replaced."""
    specs = {r.run_id: r.spec for r in data.runs}
    df = data.frame
    return df.assign(job=df.run_id.map(lambda rid: job_name(specs[rid])),
                     tag=df.run_id.map(lambda rid: lsm_tag(specs[rid]) if job_name(specs[rid]) == "lsm" else ""),
                     train_epochs=df.run_id.map(lambda rid: specs[rid].train.epochs))


# tables (formatting as examples/dlt_report.py wrote docs/results/deconstructing/tables.md) ---------------
def md(df: pd.DataFrame) -> str:
    """A GitHub markdown table (no tabulate dependency)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |"
              for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _cell(s: pd.Series) -> str:
    s = s.dropna() * 100
    if not len(s):
        return ""
    return f"{s.mean():.2f}" if len(s) == 1 else f"{s.mean():.2f} ± {s.std(ddof=1):.2f}"


def imp_table(df: pd.DataFrame, jobs: list[str], labels: list[str]) -> pd.DataFrame:
    """Mean ± std test accuracy over seeds per round, one column per job; ``seeds``: the fewest any job has."""
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _csm_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df.job == "csm") & df.variant.str.startswith("supermask_")]


def csm_tables(df):
    """The sweep over p (mean over seeds) and the best p per weights choice, by test and by validation."""
    d = _csm_rows(df)
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
    d = _csm_rows(df)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def single_table(df):
    """The *_single criteria on untrained weights: one mask per seed (no rate)."""
    d = df[df.job.str.startswith("single-") & df.variant.str.startswith("supermask_")]
    rows = []
    for (job, variant), x in d.groupby(["job", "variant"]):
        rows.append({"mask": job.replace("single-", "") + "-sign weights", "weights": variant.replace("supermask_", ""),
                     "test acc %": _cell(x.test_acc), "remaining %": f"{x.remaining_pct.mean():.1f}",
                     "seeds": x.seed.nunique()})
    return pd.DataFrame(rows)


def _sample_std(data: PageData, run_id: str) -> float:
    """Std (in points) over the sampled-mask test evaluations (a list: in the stored rows, not the frame)."""
    samples = next((r.get("test_acc_samples") for r in data.rows(run_id) if r.get("variant") == "supermask"), None)
    return pd.Series(samples).std(ddof=1) * 100 if isinstance(samples, list) else float("nan")


def lsm_table(df, data: PageData):
    d = df[df.job == "lsm"]
    rows = []
    for tag, x in d.groupby("tag"):
        r = x.iloc[0]
        density = r.get("expected_density", float("nan"))
        rows.append({"run": tag, "seed": r.seed, "epochs": int(r.train_epochs),
                     "test acc % (mean of 10 masks)": round(r.test_acc * 100, 2),
                     "std over the 10 masks": round(_sample_std(data, r.run_id), 2),
                     "val acc %": round(r.val_acc * 100, 2),
                     "expected density %": round(density * 100, 2),
                     "hard mask (score > 0) remaining %": round(r.remaining_pct, 2)})
    return pd.DataFrame(rows)


# the rebuttal's statistical tests: at each pruning percentage, across the independent runs (seeds)
WELCH_PAIRS = (("imp-large_final", "imp-random", "large_final vs random"),
               ("imp-large_final", "pruned-freeze_init", "zero vs freeze_init (pruned weights)"))


def welch_table(df: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Welch's t-test of test accuracy between jobs ``a`` and ``b`` at every round both have (seeds as runs)."""
    from ...analysis import welch
    d = df[df.variant == "ticket"]
    rows = []
    for rnd, g in d[d.job.isin([a, b])].groupby("round"):
        xa, xb = g[g.job == a].test_acc, g[g.job == b].test_acc
        if not (len(xa) and len(xb)):
            continue
        w = welch(xa, xb)
        rows.append({"round": rnd, "remaining %": round(g.remaining_pct.mean(), 2),
                     f"{a} %": round(100 * xa.mean(), 2), f"{b} %": round(100 * xb.mean(), 2),
                     "t": round(w["t"], 2), "p": f"{w['p']:.3g}", "seeds": f"{w['n_a']}/{w['n_b']}"})
    return pd.DataFrame(rows)


IMP_SECTIONS = (
    ("Mask criteria", [f"imp-{c}" for c in CRITERIA], CRITERIA, "criteria.png"),
    ("Kept-weight actions (large_final masks)", ["imp-large_final"] + [f"kept-{a}" for a in KEPT],
     ["none (LT)"] + KEPT, "kept.png"),
    ("Pruned-weight actions (large_final masks)", ["imp-large_final"] + [f"pruned-{a}" for a in PRUNED],
     ["zero (LT)"] + PRUNED, "pruned.png"))


@register_page("dlt", "docs/results/deconstructing", tuple(RECIPES.values()),
               title="Deconstructing lottery tickets: LeNet-300-100 on MNIST", committed=committed_rows())
def build(data: PageData, out: Path) -> list[Path]:
    """tables.md and four plots; a section whose runs are not done yet is left out."""
    df = named_frame(data)
    parts, files = [], []
    for title, jobs, labels, png in IMP_SECTIONS:
        if not df.job.isin(jobs).any():
            continue
        imp_plot(df, jobs, labels, title, out / png)
        files.append(out / png)
        parts.append(f"### {title}\n\n" + md(imp_table(df, jobs, labels)))
    for a, b, title in WELCH_PAIRS:
        table = welch_table(df, a, b)
        if len(table):
            parts.append(f"### Welch t-tests per pruning percentage: {title}\n\n" + md(table))
    if len(_csm_rows(df)):
        csm_plot(df, out / "criterion_supermask.png")
        files.append(out / "criterion_supermask.png")
        sweep, best = csm_tables(df)
        parts.append("### Criterion supermask sweep (mean over seeds)\n\n" + md(sweep))
        parts.append("### Criterion supermask best\n\n" + md(best))
    single = single_table(df)
    if len(single):
        parts.append("### *_single masks on the untrained network\n\n" + md(single))
    if (df.job == "lsm").any():
        parts.append("### Learned supermask\n\n" + md(lsm_table(df, data)))
    text = "\n\n".join(parts) + "\n" + f"\nRuns: {data.coverage()}.\n"
    return [atomic_write_bytes(out / "tables.md", text.encode())] + files
