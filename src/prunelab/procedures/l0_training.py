"""Training with L0 regularisation through hard-concrete gates (Louizos et al. 2018, spec §1.7).

Weights and gate locations log α are trained jointly on CE + λ · E[‖z‖₀] (gates sampled per forward pass);
the weights' optimiser has the config's weight decay, the gates' none, and both follow the same
learning-rate schedule. The reported network uses the deterministic test-time gates; its sparsity is the
fraction of gates that are exactly zero. Row variant ``l0`` (ℓ0, plain), stage index 0; with
``fixed_mask="none"`` (the default) it is the only row and ``result.model`` holds the gated network.

``fixed_mask`` ≠ ``"none"`` is ℓ0 as the CS authors' rebuttal ran it (spec §5.5): after the gate training a
binary mask is taken from the gates and **fixed**, the gates leave the forward pass, and the plain network's
trained weights, times that mask, are fine-tuned with the run's ``finetune`` training config (the main one
when none is given); pruned weights are exactly zero and stay so. The mask is

- ``"threshold"``: Louizos et al.'s test-time estimator, kept where the deterministic gate
  min(1, max(0, σ(log α)(ζ − γ) + γ)) is non-zero (log α > log(−γ/ζ)) — the mask the ``l0`` row counts, so
  both rows have the same kept count and differ only in the gates being removed and the fine-tuning;
- ``"sample"``: one hard-concrete sample of every gate, u drawn with the seeded generator
  ``generator(seed, "l0-fixed-mask")``, kept where z > 0 (each weight kept with probability
  σ(log α − β log(−γ/ζ)), the term of the expected-L0 penalty).

The fine-tuning is the run's second resumable stage (seed ``derive_seed(seed, "l0-finetune")``) and adds a
row of variant ``l0_fixed`` (ℓ0, fixed mask, fine-tuned), stage index 1, with the network's evaluation
before fine-tuning (``start_*``) among its extras; ``result.model`` is then the fine-tuned plain network,
``states["gated"]`` the gate-trained wrapper (weights and log α) and ``states["final"]`` the fine-tuned
network.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional, Union

from pydantic import Field

from ..primitives.l0 import HardConcreteGates
from ..seeding import derive_seed, generator
from ..training import snapshot
from .base import Procedure, ProcedureResult, RunContext, register_procedure
from .continuous import FollowSchedule, mask_optimizer

FIXED_MASKS = ("none", "sample", "threshold")
VARIANT_NAMES = {"l0": "ℓ0 (plain)", "l0_fixed": "ℓ0 (fixed mask, fine-tuned)"}   # for tables


@register_procedure("l0")
class L0Config(Procedure):
    """Joint training of weights and hard-concrete gates under an expected-L0 penalty; optionally a fixed
    mask taken from the gates, then fine-tuning of the weights under it."""

    kind: Literal["l0"] = "l0"
    stage_index: ClassVar[str] = ("0 (gate training, variant l0); 1 (fine-tuning under the fixed mask, "
                                  "variant l0_fixed, when fixed_mask is not 'none')")

    penalty: float = Field(1e-5, ge=0)         # λ on the expected number of non-zero gates
    init_drop: float = Field(0.5, gt=0, lt=1)  # initial drop probability: log α = log((1 - p)/p)
    # Louizos et al. train everything with Adam; with SGD the tiny per-gate penalty barely moves log α
    gate_optimizer: Literal["same", "adam"] = "same"   # "same": the weights' optimiser type, no decay
    gate_lr: Optional[float] = Field(None, gt=0)       # default: the weights' lr ("same") or 1e-3 (adam)
    beta: float = Field(2.0 / 3.0, gt=0)
    gamma: float = Field(-0.1, lt=0)
    zeta: float = Field(1.1, gt=1)
    scope: Union[str, list[str], None] = None
    # "none": plain ℓ0; else a binary mask from the trained gates, fixed, then fine-tuning (module docstring)
    fixed_mask: Literal[FIXED_MASKS] = "none"

    def trainings(self) -> int:
        return 1 + (self.fixed_mask != "none")

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
        if self.fixed_mask == "none":
            return ctx.result
        return self._fixed_mask_finetune(ctx, gates, mask)

    def _fixed_mask_finetune(self, ctx: RunContext, gates: HardConcreteGates, test_time_mask) -> ProcedureResult:
        fixed = (test_time_mask.clone() if self.fixed_mask == "threshold"
                 else gates.sampled_mask(generator(ctx.seed, "l0-fixed-mask")))
        ctx.result.states["gated"] = ctx.result.states.pop("final")
        net = gates.model            # the plain network: the gates leave the forward pass
        fixed.apply(net)             # its trained weights times the mask
        ft_cfg = ctx.finetune or ctx.train_cfg
        start = ctx.evaluate(net, ft_cfg, precision=ft_cfg.precision)
        res = ctx.train(net, ft_cfg, mask=fixed, seed=derive_seed(ctx.seed, "l0-finetune"),
                        desc="l0 fixed-mask finetune")
        agree = 1.0 - (fixed ^ test_time_mask).kept() / fixed.total() if fixed.total() else 1.0
        ctx.row("l0_fixed", 1, fixed, res,
                extra={"fixed_mask": self.fixed_mask, "test_time_mask_agreement": agree,
                       **{f"start_{k}": v for k, v in start.items()}})
        ctx.result.model = net
        ctx.result.states["final"] = snapshot(net)
        return ctx.result
