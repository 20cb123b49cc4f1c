"""Training with L0 regularisation through hard-concrete gates (Louizos et al. 2018, spec §1.7).

Weights and gate locations log α are trained jointly on CE + λ · E[‖z‖₀] (gates sampled per forward pass);
the weights' optimiser has the config's weight decay, the gates' none, and both follow the same
learning-rate schedule. The reported network uses the deterministic test-time gates; its sparsity is the
fraction of gates that are exactly zero.
"""
from __future__ import annotations

from typing import Callable, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from ..primitives.l0 import HardConcreteGates
from ..seeding import generator
from ..training import TrainConfig, train
from .continuous import FollowSchedule, mask_optimizer
from .imp import IMPResult, ModelFn, RoundResult, single_round


class L0Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    penalty: float = Field(1e-5, ge=0)         # λ on the expected number of non-zero gates
    init_drop: float = Field(0.5, gt=0, lt=1)  # initial drop probability: log α = log((1 - p)/p)
    # Louizos et al. train everything with Adam; with SGD the tiny per-gate penalty barely moves log α
    gate_optimizer: Literal["same", "adam"] = "same"   # "same": the weights' optimiser type, no decay
    gate_lr: Optional[float] = Field(None, gt=0)       # default: the weights' lr ("same") or 1e-3 (adam)
    beta: float = Field(2.0 / 3.0, gt=0)
    gamma: float = Field(-0.1, lt=0)
    zeta: float = Field(1.1, gt=1)
    scope: Union[str, list[str], None] = None


def run_l0(model_fn: ModelFn, data, train_cfg: TrainConfig, cfg: L0Config, *, seed: int = 0,
           keep_history: bool = False, on_round: Optional[Callable[[RoundResult], None]] = None,
           state: Optional[dict] = None) -> IMPResult:
    """One row, variant ``l0``: accuracy with the deterministic gates, kept = non-zero gates."""
    model = model_fn(seed)
    gates = HardConcreteGates(model, cfg.scope, init_drop=cfg.init_drop, beta=cfg.beta, gamma=cfg.gamma,
                              zeta=cfg.zeta, generator=generator(seed, "l0-init"))
    if cfg.gate_optimizer == "adam":
        gate_lr = cfg.gate_lr or 1e-3
        gate_opt = mask_optimizer(train_cfg.model_copy(update={"optimizer": "adam"}), gates.score_parameters(),
                                  gate_lr)
    else:
        gate_lr = cfg.gate_lr or train_cfg.lr
        gate_opt = mask_optimizer(train_cfg, gates.score_parameters(), gate_lr)
    follow = FollowSchedule(gate_opt, train_cfg, gate_lr, len(data.train))
    res = train(gates, data, train_cfg, seed=seed, params=gates.weight_parameters(),
                penalty=(lambda m: cfg.penalty * m.expected_l0()) if cfg.penalty else None,
                extra_optimizers=[gate_opt], callbacks=[follow], desc="l0")
    mask = gates.hard_mask().to("cpu")
    if state is not None:
        state["gates"] = gates
    r = RoundResult("l0", 0, mask.kept(), mask.total(), res.final, res.early_stop("val"), mask,
                    res.history if keep_history else [],
                    {"expected_l0_fraction": float(gates.expected_l0().detach()) / mask.total()})
    return single_round(r, on_round)


class L0Procedure(L0Config):
    """Spec kind ``l0``: joint training of weights and hard-concrete gates under an expected-L0 penalty."""

    kind: Literal["l0"] = "l0"

    def trainings(self) -> int:
        return 1

    def run(self, model_fn, data, train_cfg, *, seed, keep_history=False, on_round=None, **_):
        cfg = L0Config(**self.model_dump(exclude={"kind"}))
        return run_l0(model_fn, data, train_cfg, cfg, seed=seed, keep_history=keep_history, on_round=on_round)
