"""How a golden case runs with the procedure API of the moment (the only file a refactor edits)."""
from __future__ import annotations

from pydantic import TypeAdapter

from golden.cases import CASES, SEED, data_for, model_fn_for
from prunelab.experiments.spec import ProcedureSpec
from prunelab.procedures import run_imp
from prunelab.training import TrainConfig


def compute(name: str):
    model, proc, train, finetune = CASES[name]
    spec = TypeAdapter(ProcedureSpec).validate_python(proc)
    data = data_for(model)
    cfg = TrainConfig(**train)
    ft = TrainConfig(**finetune) if finetune else None
    if hasattr(spec, "imp_config"):
        res = run_imp(model_fn_for(model), data, cfg, spec.imp_config(), seed=SEED, finetune=ft,
                      keep_history=True)
    else:
        res = spec.run(model_fn_for(model), data, cfg, seed=SEED, keep_history=True, finetune=ft)
    return res.rounds
