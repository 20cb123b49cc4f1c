"""How a golden case runs with the procedure API of the moment (the only file a refactor edits)."""
from __future__ import annotations

from pydantic import TypeAdapter

from golden.cases import CASES, SEED, data_for, model_fn_for
from prunelab.experiments.spec import ProcedureSpec
from prunelab.procedures import run_procedure
from prunelab.training import TrainConfig


def compute(name: str, checkpoints=None):
    model, proc, train, finetune = CASES[name]
    spec = TypeAdapter(ProcedureSpec).validate_python(proc)
    res = run_procedure(model_fn_for(model), data_for(model), TrainConfig(**train), spec, seed=SEED,
                        finetune=TrainConfig(**finetune) if finetune else None, keep_history=True,
                        checkpoints=checkpoints)
    return res.rows
