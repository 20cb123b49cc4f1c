"""Reproduce Zhou et al. 2019 ("Deconstructing lottery tickets") on LeNet-300-100 / MNIST at CPU scale.

    python examples/dlt_mnist.py --data ../shared/data --out docs/results/deconstructing --jobs 2
    python examples/dlt_mnist.py --out docs/results/deconstructing --report

Jobs (each writes ``<job>.jsonl`` atomically when done, so a rerun skips finished jobs):
- ``imp-<criterion>``: iterative pruning with a mask criterion (kept: rewind to θ0, pruned: zero);
- ``kept-<action>``: large_final masks, kept weights from a kept-weight action (cumulative over rounds);
- ``pruned-<action>``: large_final masks, pruned weights zeroed or frozen (Variants 1/2, controls);
- ``csm-s<seed>``: criterion supermasks (large_final_same_sign, with and without signed constant);
- ``single-{same,diff}@s<seed>``: the *_single criteria (mask = the same-/different-sign weights) on the
  untrained weights, with and without signed constant;
- ``lsm-s<seed>``: learned Bernoulli supermask; ``@r1`` dynamic weight rescaling, ``@c1`` signed-constant
  weights, ``@m1`` deterministic (rounded) mask instead of sampling, ``@i<N>`` score init N/100.
Scaled down from the paper (see docs/results/deconstructing.md): each IMP round prunes what two LTH rounds
prune (hidden 36 %, output 19 % of the remaining weights) and trains 3 epochs.
"""
from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

CRITERIA = ["large_final", "random", "magnitude_increase", "movement", "small_final", "large_init",
            "large_init_large_final", "small_init_small_final", "small_init", "large_final_same_sign",
            "large_final_diff_sign"]
KEPT = ["reinit", "signed_reinit", "reshuffle", "signed_reshuffle", "constant", "signed_constant"]
PRUNED = ["freeze_init", "freeze_init_zero_mask", "freeze_init_zero_all", "freeze_init_zero_reshuffle",
          "freeze_init_zero_rev"]
# two LTH rounds per round: 1 - 0.8^2 and 1 - 0.9^2
RATE = {"fc": 0.36, "output": 0.19}


def jobs(args) -> list[str]:
    """Job names; a suffix ``@s<N>`` runs an IMP job with seed N, ``@e<N>`` a supermask job for N epochs."""
    if args.imp_seed:
        sfx = f"@s{args.imp_seed}"
        return [f"imp-{c}{sfx}" for c in CRITERIA] + [f"kept-{a}{sfx}" for a in KEPT] + \
            [f"pruned-{a}{sfx}" for a in PRUNED]
    out = ["imp-large_final"]
    out += [f"csm-s{s}" for s in range(args.seeds_supermask)]
    out += [f"lsm-s{s}" for s in range(args.seeds_supermask)]
    out += [f"imp-{c}" for c in CRITERIA[1:]]
    out += [f"kept-{a}" for a in KEPT] + [f"pruned-{a}" for a in PRUNED]
    out += [f"single-{s}@s{i}" for s in ("same", "diff") for i in range(args.seeds_supermask)]
    out += ["lsm-s0@r1", "lsm-s0@c1", "lsm-s0@m1"]
    return out


def run_job(job: str, args) -> str:
    try:
        return _run_job(job, args)
    except Exception as e:  # report and let the other jobs finish
        import traceback
        traceback.print_exc()
        return f"{job} FAILED: {e!r}"


def _run_job(job: str, args) -> str:
    import torch
    torch.set_num_threads(1)
    from prunelab import IMPConfig, TrainConfig, run_imp
    from prunelab.data import load_dataset
    from prunelab.io import atomic_write_bytes
    from prunelab.models import build_model
    from prunelab.procedures import run_procedure
    from prunelab.procedures.supermask import CriterionSupermaskConfig, LearnedSupermaskConfig

    kind, name = job.split("-", 1)
    name, *opts = name.split("@")
    opts = {o[0]: int(o[1:]) for o in opts}
    row_seed = int(name[1:]) if kind in ("csm", "lsm") else opts.get("s", 0)
    out = Path(args.out) / f"{job}.jsonl"
    if out.exists():
        return job
    data = load_dataset("mnist", args.data, val_size=5000, val_seed=0, normalize="divide255", progress=False)

    def model_fn(s):
        return build_model("lenet300_100", num_classes=10, input_shape=(1, 28, 28), seed=s)

    adam = TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, epochs=args.epochs,
                       eval_splits=("val", "test"))
    rows = []

    def on_round(r):
        row = dict(r.row(), job=job.split("@")[0], seed=row_seed, tag=job)
        for k in ("test_acc_samples", "expected_density"):
            if k in r.final:
                row[k] = r.final[k]
        rows.append(row)
        print(json.dumps(row), flush=True)

    if kind in ("imp", "kept", "pruned"):
        kw = {"score": name} if kind == "imp" else {"score": "large_final"}
        if kind == "kept":
            kw["kept_action"] = name
        if kind == "pruned":
            kw["pruned_action"] = name
        imp = IMPConfig(rounds=args.rounds, rate=RATE, rounding="official", allocation="layerwise",
                        rewind="init", ties="random", **kw)
        run_imp(model_fn, data, adam, imp, seed=opts.get("s", 0), on_row=on_round)
    elif kind == "csm":
        seed = int(name[1:])
        cfg = CriterionSupermaskConfig(score="large_final_same_sign", rate="lenet300_100", powers=24)
        run_procedure(model_fn, data, adam.model_copy(update={"epochs": args.dense_epochs}), cfg,
                                seed=seed, on_row=on_round)
    elif kind == "single":   # the *_single criteria: mask = exactly the same-/different-sign weights
        cfg = CriterionSupermaskConfig(score=f"large_final_{name}_sign_single")
        run_procedure(model_fn, data, adam.model_copy(update={"epochs": args.dense_epochs}), cfg,
                                seed=row_seed, on_row=on_round)
    elif kind == "lsm":
        seed = int(name[1:])
        sgd = TrainConfig(optimizer="sgd", lr=100.0, momentum=0.9, batch_size=250,
                          epochs=opts.get("e", args.supermask_epochs), eval_splits=("val", "test"))
        # @r1: dynamic weight rescaling, @c1: signed-constant weights, @m1: deterministic rounded mask
        # @i<N>: score init N/100 (the official sigmoid_bias; 0 = keep probability 0.5)
        cfg = LearnedSupermaskConfig(eval_samples=10, dynamic_rescale=bool(opts.get("r")),
                                     score_init=opts.get("i", 0) / 100,
                                     signed_constant=bool(opts.get("c")),
                                     mode="round" if opts.get("m") else "sample")
        run_procedure(model_fn, data, sgd, cfg, seed=seed, on_row=on_round)
    atomic_write_bytes(out, "".join(json.dumps(r) + "\n" for r in rows).encode())
    return job


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("PRUNELAB_DATA", "../shared/data"))
    ap.add_argument("--out", default="docs/results/deconstructing")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--dense-epochs", type=float, default=5)
    ap.add_argument("--supermask-epochs", type=float, default=25)
    ap.add_argument("--seeds-supermask", type=int, default=3)
    ap.add_argument("--imp-seed", type=int, default=0, help="run the IMP jobs (only) with this seed")
    ap.add_argument("--only", nargs="*", help="run only these jobs")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.report:
        from dlt_report import report  # noqa: E402  (examples/dlt_report.py)
        report(Path(args.out))
        return 0
    todo = args.only or jobs(args)
    with ProcessPoolExecutor(args.jobs) as ex:
        for job in ex.map(run_job, todo, [args] * len(todo)):
            print(f"finished {job}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
