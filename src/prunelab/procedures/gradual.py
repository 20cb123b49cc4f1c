"""Gradual magnitude pruning (Zhu & Gupta 2017, spec §1.7).

During one training run, at iterations t = t0, t0 + Δt, …, t0 + nΔt the smallest-magnitude weights are
removed until the sparsity is

    s_t = s_f + (s_i − s_f) · (1 − (t − t0) / (nΔt))³,

per layer (each layer reaches s_t of its size) or globally (one threshold). Pruned weights are masked for
the rest of training (no regrowth); training continues after t0 + nΔt with the final mask, which is the
fine-tuning phase of the method. The pruning is a :class:`~prunelab.training.MaskSchedule`: the training
loop enforces whatever mask it returns.

One row, variant ``gmp``, stage index 0.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional, Union

from pydantic import Field, model_validator
from torch import nn

from ..errors import ConfigError
from ..primitives.masks import Mask
from ..primitives.schedules import cubic_sparsity, gmp_steps
from ..pruning import prune
from ..seeding import derive_seed
from ..training import MaskSchedule
from .base import Procedure, ProcedureResult, RunContext, register_procedure


@register_procedure("gmp")
class GMPConfig(Procedure):
    """One training run with Zhu & Gupta's gradual magnitude pruning."""

    kind: Literal["gmp"] = "gmp"
    stage_index: ClassVar[str] = "0 (one training run)"

    final_sparsity: float = Field(..., ge=0, lt=1)
    initial_sparsity: float = Field(0.0, ge=0, lt=1)
    start_epoch: float = Field(0.0, ge=0)
    end_epoch: float = Field(..., gt=0)
    frequency: Optional[int] = Field(None, ge=1)   # Δt in iterations; default once per epoch
    allocation: Literal["layerwise", "global"] = "layerwise"
    scope: Union[str, list[str], None] = None
    ties: Literal["random", "index", "keep"] = "random"

    @model_validator(mode="after")
    def _order(self):
        if self.end_epoch < self.start_epoch:
            raise ValueError(f"end_epoch {self.end_epoch} is before start_epoch {self.start_epoch}")
        if self.initial_sparsity > self.final_sparsity:
            raise ValueError(f"initial_sparsity {self.initial_sparsity} exceeds final_sparsity "
                             f"{self.final_sparsity}")
        return self

    def run(self, ctx: RunContext) -> ProcedureResult:
        model = ctx.model_fn(ctx.seed)
        n_train = len(ctx.data.train)
        per_epoch = ctx.train_cfg.iterations_per_epoch(n_train)
        total = ctx.train_cfg.total_iterations(n_train)
        t0, t_end = round(self.start_epoch * per_epoch), round(self.end_epoch * per_epoch)
        if t_end > total:
            raise ConfigError(f"end_epoch {self.end_epoch} is past the end of training "
                              f"({total / per_epoch:g} epochs)")
        steps = gmp_steps(t0, t_end, self.frequency or per_epoch)
        pruner = GradualPruner(model, self, steps, seed=ctx.seed)
        if t0 == 0:
            pruner.prune_now(0, model)
        res = ctx.train(model, seed=ctx.seed, mask_schedule=pruner, desc="gmp")
        ctx.row("gmp", 0, pruner.mask, res,
                extra={"target_sparsity": self.final_sparsity, "pruning_steps": len(steps)})
        ctx.result.model = model
        ctx.result.info["pruning_log"] = pruner.log
        return ctx.result


class GradualPruner(MaskSchedule):
    """Prunes on the cubic schedule at iterations ``steps``; the training loop enforces its mask.

    ``log`` holds (iteration, target sparsity, achieved sparsity) for every pruning step."""

    def __init__(self, model: nn.Module, cfg: GMPConfig, steps: list[int], *, seed: int = 0):
        self.cfg, self.steps, self.seed = cfg, steps, seed
        self.n = len(steps) - 1
        self.dt = steps[1] - steps[0] if len(steps) > 1 else 1
        self.mask = Mask.ones(model, cfg.scope)
        self.log: list[tuple[int, float, float]] = []
        self._todo = set(steps)

    def target(self, t: int) -> float:
        return cubic_sparsity(t, self.steps[0], self.n, self.dt, self.cfg.initial_sparsity,
                              self.cfg.final_sparsity)

    def prune_now(self, t: int, model: nn.Module) -> None:
        s = self.target(t)
        device = next(model.parameters()).device
        self.mask = prune(model, sparsity=s, mask=self.mask.to(device), allocation=self.cfg.allocation,
                          ties=self.cfg.ties, seed=derive_seed(self.seed, "gmp", t), apply=True)
        self.log.append((t, s, self.mask.sparsity()))
        self._todo.discard(t)

    def initial(self, model: nn.Module) -> Mask:
        return self.mask

    def update(self, it: int, model: nn.Module, optimizer) -> Optional[Mask]:
        if it not in self._todo:
            return None
        self.prune_now(it, model)
        return self.mask

    def state_dict(self) -> dict:
        return {"mask": dict(self.mask.items()), "log": [list(e) for e in self.log], "todo": sorted(self._todo)}

    def load_state_dict(self, state: dict) -> None:
        self.mask = Mask(state["mask"], self.mask.shapes)
        self.log = [tuple(e) for e in state["log"]]
        self._todo = set(state["todo"])
