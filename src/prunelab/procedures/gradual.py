"""Gradual magnitude pruning (Zhu & Gupta 2017, spec §1.7).

During one training run, at iterations t = t0, t0 + Δt, …, t0 + nΔt the smallest-magnitude weights are
removed until the sparsity is

    s_t = s_f + (s_i − s_f) · (1 − (t − t0) / (nΔt))³,

per layer (each layer reaches s_t of its size) or globally (one threshold). Pruned weights are masked for
the rest of training (no regrowth); training continues after t0 + nΔt with the final mask, which is the
fine-tuning phase of the method.
"""
from __future__ import annotations

from typing import Callable, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from ..primitives.enforce import MaskEnforcer
from ..primitives.masks import Mask
from ..pruning import prune
from ..seeding import derive_seed
from ..training import TrainConfig, train
from .imp import IMPResult, ModelFn, RoundResult, single_round


class GMPConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

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


def cubic_sparsity(t: int, t0: int, n: int, dt: int, s_i: float, s_f: float) -> float:
    """Zhu & Gupta's target sparsity at iteration t (clamped to [t0, t0 + nΔt])."""
    if n == 0 or t >= t0 + n * dt:
        return s_f
    frac = max(0, t - t0) / (n * dt)
    return s_f + (s_i - s_f) * (1.0 - frac) ** 3


def gmp_steps(t0: int, t_end: int, dt: int) -> list[int]:
    """Pruning iterations t0, t0 + Δt, …, t0 + nΔt with n = ⌊(t_end − t0)/Δt⌋."""
    n = (t_end - t0) // dt
    return [t0 + j * dt for j in range(n + 1)]


class GradualPruner:
    """Training callback: prunes on the cubic schedule and keeps pruned weights at zero after each step.

    ``log`` holds (iteration, target sparsity, achieved sparsity) for every pruning step."""

    def __init__(self, model: nn.Module, cfg: GMPConfig, steps: list[int], *, seed: int = 0):
        self.model, self.cfg, self.steps, self.seed = model, cfg, steps, seed
        self.n = len(steps) - 1
        self.dt = steps[1] - steps[0] if len(steps) > 1 else 1
        self.mask = Mask.ones(model, cfg.scope)
        self.enforcer = MaskEnforcer(model, self.mask)
        self.log: list[tuple[int, float, float]] = []
        self._todo = set(steps)
        self._started = False   # train() moves the model (device, channels_last) after we are built

    def _refresh(self) -> None:
        self.enforcer.mask = self.mask.to(next(self.model.parameters()).device)
        self.enforcer.refresh()

    def target(self, t: int) -> float:
        return cubic_sparsity(t, self.steps[0], self.n, self.dt, self.cfg.initial_sparsity,
                              self.cfg.final_sparsity)

    def prune_now(self, t: int) -> None:
        s = self.target(t)
        device = next(self.model.parameters()).device
        self.mask = prune(self.model, sparsity=s, mask=self.mask.to(device), allocation=self.cfg.allocation,
                          ties=self.cfg.ties, seed=derive_seed(self.seed, "gmp", t), apply=True)
        self._refresh()
        self.log.append((t, s, self.mask.sparsity()))
        self._todo.discard(t)

    def __call__(self, it: int, model) -> None:
        if not self._started:
            self._refresh()
            self._started = True
        self.enforcer.apply()
        if it in self._todo:
            self.prune_now(it)


def run_gmp(model_fn: ModelFn, data, train_cfg: TrainConfig, cfg: GMPConfig, *, seed: int = 0,
            keep_history: bool = False, on_round: Optional[Callable[[RoundResult], None]] = None) -> IMPResult:
    """One training run with gradual pruning; one row, variant ``gmp``."""
    model = model_fn(seed)
    n_train = len(data.train)
    per_epoch = train_cfg.iterations_per_epoch(n_train)
    total = train_cfg.total_iterations(n_train)
    t0, t_end = round(cfg.start_epoch * per_epoch), round(cfg.end_epoch * per_epoch)
    if t_end > total:
        from ..errors import ConfigError
        raise ConfigError(f"end_epoch {cfg.end_epoch} is past the end of training "
                          f"({total / per_epoch:g} epochs)")
    steps = gmp_steps(t0, t_end, cfg.frequency or per_epoch)
    pruner = GradualPruner(model, cfg, steps, seed=seed)
    if t0 == 0:
        pruner.prune_now(0)
    res = train(model, data, train_cfg, seed=seed, callbacks=[pruner], desc="gmp")
    mask = pruner.mask.to("cpu")
    r = RoundResult("gmp", 0, mask.kept(), mask.total(), res.final, res.early_stop("val"), mask,
                    res.history if keep_history else [],
                    {"target_sparsity": cfg.final_sparsity, "pruning_steps": len(steps)})
    return single_round(r, on_round)



class GMPProcedure(GMPConfig):
    """Spec kind ``gmp``: one training run with Zhu & Gupta's gradual magnitude pruning."""

    kind: Literal["gmp"] = "gmp"

    def trainings(self) -> int:
        return 1

    def run(self, model_fn, data, train_cfg, *, seed, keep_history=False, on_round=None, **_):
        cfg = GMPConfig(**self.model_dump(exclude={"kind"}))
        return run_gmp(model_fn, data, train_cfg, cfg, seed=seed, keep_history=keep_history, on_round=on_round)
