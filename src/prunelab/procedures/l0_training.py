"""Training with L0 regularisation through hard-concrete gates (Louizos et al. 2018, spec §1.7).

Weights and gate locations log α are trained jointly on CE + λ · E[‖z‖₀] (gates sampled per forward pass);
the weights' optimiser has the config's weight decay, the gates' none, and both follow the same
learning-rate schedule. The reported network uses the deterministic test-time gates; its sparsity is the
fraction of gates that are exactly zero. One row, variant ``l0``, stage index 0; ``result.model`` holds the
gated network.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional, Union

from pydantic import Field

from ..primitives.l0 import HardConcreteGates
from ..seeding import generator
from ..training import snapshot
from .base import Procedure, ProcedureResult, RunContext, register_procedure
from .continuous import FollowSchedule, mask_optimizer


@register_procedure("l0")
class L0Config(Procedure):
    """Joint training of weights and hard-concrete gates under an expected-L0 penalty."""

    kind: Literal["l0"] = "l0"
    stage_index: ClassVar[str] = "0 (one training run)"

    penalty: float = Field(1e-5, ge=0)         # λ on the expected number of non-zero gates
    init_drop: float = Field(0.5, gt=0, lt=1)  # initial drop probability: log α = log((1 - p)/p)
    # Louizos et al. train everything with Adam; with SGD the tiny per-gate penalty barely moves log α
    gate_optimizer: Literal["same", "adam"] = "same"   # "same": the weights' optimiser type, no decay
    gate_lr: Optional[float] = Field(None, gt=0)       # default: the weights' lr ("same") or 1e-3 (adam)
    beta: float = Field(2.0 / 3.0, gt=0)
    gamma: float = Field(-0.1, lt=0)
    zeta: float = Field(1.1, gt=1)
    scope: Union[str, list[str], None] = None

    def run(self, ctx: RunContext) -> ProcedureResult:
        train_cfg = ctx.train_cfg
        model = ctx.model_fn(ctx.seed)
        gates = HardConcreteGates(model, self.scope, init_drop=self.init_drop, beta=self.beta, gamma=self.gamma,
                                  zeta=self.zeta, generator=generator(ctx.seed, "l0-init"))
        if self.gate_optimizer == "adam":
            gate_lr = self.gate_lr or 1e-3
            gate_opt = mask_optimizer(train_cfg.model_copy(update={"optimizer": "adam"}),
                                      gates.score_parameters(), gate_lr)
        else:
            gate_lr = self.gate_lr or train_cfg.lr
            gate_opt = mask_optimizer(train_cfg, gates.score_parameters(), gate_lr)
        follow = FollowSchedule(gate_opt, train_cfg, gate_lr, len(ctx.data.train))
        res = ctx.train(gates, seed=ctx.seed, params=gates.weight_parameters(),
                        penalty=(lambda m: self.penalty * m.expected_l0()) if self.penalty else None,
                        extra_optimizers=[gate_opt], callbacks=[follow], desc="l0")
        mask = gates.hard_mask()
        ctx.row("l0", 0, mask, res,
                extra={"expected_l0_fraction": float(gates.expected_l0().detach()) / mask.total()})
        ctx.result.model = gates
        ctx.result.states["final"] = snapshot(gates)
        return ctx.result
