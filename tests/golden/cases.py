"""Tiny configurations of every procedure kind whose rows and masks are pinned by a committed fixture.

``golden.json`` was recorded from these cases before the procedure contract was introduced; the test in
``tests/test_golden.py`` recomputes them and requires the same rows and mask hashes, so a refactor of the
procedures cannot change a number unnoticed. Regenerate only when a change of numbers is intended:
``python tests/golden/cases.py --write``.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from conftest import make_blobs, tiny_mlp  # noqa: E402
from gst_helpers import tiny_convnet, tiny_images  # noqa: E402

MLP_TRAIN = {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "epochs": 2}
CONV_TRAIN = {"optimizer": "sgd", "lr": 0.05, "batch_size": 16, "epochs": 3, "eval_splits": ["test"]}

# name -> (model, procedure section, train section, finetune section or None)
CASES: dict[str, tuple[str, dict, dict, dict | None]] = {
    "imp_init_controls": ("mlp", {"kind": "imp", "rounds": 2, "rate": 0.3, "controls": ["reinit", "random_mask"]},
                          MLP_TRAIN, None),
    "imp_iteration": ("mlp", {"kind": "imp", "rounds": 2, "rate": 0.3, "rewind": "iteration",
                              "rewind_iteration": 3, "controls": ["reinit"]}, MLP_TRAIN, None),
    "imp_lr_global": ("mlp", {"kind": "imp", "rounds": 2, "sparsity": 0.7, "rewind": "lr",
                              "allocation": "global"}, MLP_TRAIN, None),
    "imp_weight_actions": ("mlp", {"kind": "imp", "rounds": 2, "rate": 0.4, "kept_action": "signed_reinit",
                                   "pruned_action": "freeze_init"}, MLP_TRAIN, None),
    "oneshot_finetune": ("mlp", {"kind": "oneshot", "sparsity": 0.8, "rewind": "finetune",
                                 "controls": ["random_mask"]}, MLP_TRAIN,
                         {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 1}),
    "criterion_supermask": ("mlp", {"kind": "criterion_supermask", "rate": 0.5, "powers": 2}, MLP_TRAIN, None),
    "supermask": ("mlp", {"kind": "supermask", "eval_samples": 2}, MLP_TRAIN, None),
    "cs_rewind": ("mlp", {"kind": "cs", "rounds": 2, "beta_final": 50.0, "rewind_epoch": 1, "penalty": 1e-4,
                          "s0": 0.1}, MLP_TRAIN, None),
    "gmp": ("mlp", {"kind": "gmp", "final_sparsity": 0.8, "start_epoch": 0.5, "end_epoch": 1.5, "frequency": 2},
            MLP_TRAIN, None),
    "l0": ("mlp", {"kind": "l0", "penalty": 0.01, "gate_lr": 0.5, "init_drop": 0.2}, MLP_TRAIN, None),
    "dsd": ("mlp", {"kind": "dsd", "sparsity": 0.6}, MLP_TRAIN, None),
    "slimming": ("conv", {"kind": "slimming", "penalty": 1e-3, "channel_sparsity": 0.5}, CONV_TRAIN,
                 {"optimizer": "sgd", "lr": 0.02, "batch_size": 16, "epochs": 1, "eval_splits": ["test"]}),
    "sanity": ("conv", {"kind": "sanity", "methods": ["snip", "lt", "lr_rewind", "random", "hybrid"],
                        "sparsities": [0.5], "data_checks": ["random_labels"], "ticket_checks": ["rearrange"],
                        "samples_per_class": 4}, CONV_TRAIN, None),
    "stability_prune_s": ("conv", {"kind": "stability", "layers": {"features.4": {"fraction": 0.5, "start": 0,
                                                                                   "end": 2}},
                                   "retrain_period": 1, "target": "small", "score": "l1"}, CONV_TRAIN, None),
    "stability_activations": ("conv", {"kind": "stability", "layers": {"features.8": {"fraction": 0.5, "start": 1,
                                                                                       "end": 2}},
                                       "retrain_period": 1, "target": "large", "score": "activations",
                                       "activation_every": 2}, CONV_TRAIN, None),
    "stability_noise": ("conv", {"kind": "stability", "layers": {"features.4": {"fraction": 0.5, "start": 0,
                                                                                 "end": 1}},
                                 "retrain_period": 1, "target": "large", "noise": {"kind": "gaussian",
                                                                                    "passes": 3}},
                        CONV_TRAIN, None),
    "stability_restore": ("conv", {"kind": "stability", "layers": {"features.4": {"fraction": 0.5, "start": 0,
                                                                                   "end": 1}},
                                   "retrain_period": 1, "target": "random",
                                   "noise": {"kind": "cumulative_restore", "passes": 4}}, CONV_TRAIN, None),
}
SEED = 3


def data_for(model: str):
    return make_blobs() if model == "mlp" else tiny_images()


def model_fn_for(model: str):
    return tiny_mlp if model == "mlp" else tiny_convnet


def mask_sha256(mask) -> str:
    h = hashlib.sha256()
    for name in sorted(mask):
        t = mask[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.to(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _plain(v):
    if isinstance(v, float):
        return float(repr(v)) if v == v else "nan"
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def golden_rows(rounds) -> list[dict]:
    return [{**_plain(r.row()), "mask_sha256": mask_sha256(r.mask), "history": _plain(r.history)} for r in rounds]


def run_case(name: str, checkpoints=None):
    """The case's rounds, computed through the procedure contract as it stands."""
    from golden.compute import compute
    return compute(name, checkpoints)


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = {name: golden_rows(run_case(name)) for name in CASES}
    if "--write" in sys.argv:
        (HERE / "golden.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(json.dumps({k: len(v) for k, v in out.items()}))
