"""Continuous sparsification ticket search (Savarese et al. 2020, spec §5.2, §5.2b).

Search: R rounds of T epochs each train the weights w and the mask scores s jointly on
CE + λ Σ σ(β s)·c, with two optimisers (the weights' with weight decay, the scores' without, both on the
same learning-rate schedule, which restarts every round). The temperature β climbs from 1 to β_T within
each round, per epoch (β = β_T^{e/(T−1)}, the official code) or per iteration (the option). Between rounds
the scores are reset by s ← min(f·s, s0) with f = β_T (``reset="paper"``) or f = 1 (``reset="code"``) and
β returns to 1; the weights are not rewound. The state of the whole network (weights, BN affine parameters
and running statistics) is saved at the start of epoch k of round 0.

Ticket: the binary mask 1[s > 0] (times the same constant c), the network rewound to that epoch-k state,
trained T epochs with a fresh weight optimiser (``final="rewind"``). ``final="finetune"`` keeps the trained
weights and trains with the ``finetune`` config instead (CS used as a pruning method); ``final="none"``
stops after the search. Several s0 values as runs of one sweep are the parallel ticket search.

Two toolkit options, both off by default (neither is in the official code): ``target_sparsity`` x binarizes
by the top round((1 − x)·N) scores over the scope (one global threshold, ties: lower flat index pruned
first) instead of s > 0, everywhere a mask is made binary (each search round's hard evaluation and counts,
the ticket's mask and forward), so the ticket has exactly that sparsity; ``beta_schedule="fixed"`` holds β
at 1 for all of training (the fixed-temperature ablation): no annealing, and the paper's reset multiplies
by the temperature actually reached, 1.

Rows: variant ``search`` (stage index = search round 0..R−1) and ``ticket`` (stage index R). The result
keeps the wrapper (``result.model``), the per-epoch temperatures of each round (``info["temperatures"]``)
and the rewind point (``states["rewind"]``, and ``states["ticket_start"]`` as the ticket starts).
"""
from __future__ import annotations

import math
from typing import ClassVar, Literal, Optional, Union

import torch
from pydantic import Field, field_validator

from ..errors import ConfigError
from ..primitives.schedules import temperature
from ..primitives.soft_mask import (RESET_RULES, TEMPERATURE_UNITS, ContinuousSparsificationMask,
                                     check_target_sparsity)
from ..seeding import derive_seed
from ..training import TrainConfig, restore, snapshot
from ..training.loop import build_optimizer
from .base import Procedure, ProcedureResult, RunContext, register_procedure


@register_procedure("cs")
class ContinuousConfig(Procedure):
    """Continuous sparsification search rounds, then the rewound ticket."""

    kind: Literal["cs"] = "cs"
    stage_index: ClassVar[str] = "search round 0..R-1 (variant search), R for the ticket"

    s0: float = 0.0                       # score initialisation: larger keeps more weights
    scale: bool = True                    # multiply masks by 1/σ(s0) (official code) so they start at 1
    penalty: float = Field(1e-8, ge=0)    # λ of the L1 term on the soft masks
    beta_final: float = Field(200.0, ge=1)
    rounds: int = Field(3, ge=1)          # search rounds
    temperature_unit: Literal[TEMPERATURE_UNITS] = "epoch"
    reset: Literal[RESET_RULES] = "paper"
    rewind_epoch: float = Field(2.0, ge=0)
    final: Literal["rewind", "finetune", "none"] = "rewind"
    mask_lr: Optional[float] = Field(None, gt=0)   # default: the weights' lr
    scope: Union[str, list[str], None] = None     # the paper's: "conv3x3"
    # exact sparsity: binarize by the top (1 − x)·N scores over the scope instead of s > 0 (None: s > 0)
    target_sparsity: Optional[float] = None
    # "fixed": β = 1 for all of training (ablation; beta_final and temperature_unit are then unused)
    beta_schedule: Literal["anneal", "fixed"] = "anneal"

    @field_validator("target_sparsity")
    @classmethod
    def _target_sparsity(cls, v):
        try:
            return check_target_sparsity(v)
        except ConfigError as e:
            raise ValueError(str(e)) from None

    def final_temperature(self) -> float:
        """The temperature each search round ends at: β_T, or 1 with the fixed schedule."""
        return 1.0 if self.beta_schedule == "fixed" else self.beta_final

    def trainings(self) -> int:
        return self.rounds + (self.final != "none")

    def run(self, ctx: RunContext) -> ProcedureResult:
        return _run_continuous(self, ctx)


class TemperatureSchedule:
    """Callback keeping ``cs.beta`` at β_T^{e/(T−1)} in epoch e (or ^{t/(N−1)} at iteration t).

    ``per_epoch[e]`` is the temperature used throughout epoch e (the first value within it for the
    per-iteration schedule)."""

    def __init__(self, cs: ContinuousSparsificationMask, beta_final: float, unit: str, iters_per_epoch: int,
                 total_iterations: int):
        self.cs, self.beta_final, self.unit = cs, beta_final, unit
        self.per_epoch_its = iters_per_epoch
        self.total = total_iterations
        self.n_epochs = math.ceil(total_iterations / iters_per_epoch)
        self.per_epoch: list[float] = []
        self.set(0)

    def value(self, it: int) -> float:
        if self.unit == "epoch":
            return temperature(it // self.per_epoch_its, self.n_epochs, self.beta_final)
        return temperature(it, self.total, self.beta_final)

    def set(self, it: int) -> None:
        self.cs.beta = self.value(it)
        if it % self.per_epoch_its == 0 and it < self.total:
            self.per_epoch.append(self.cs.beta)

    def __call__(self, it: int, model) -> None:
        self.set(it)

    def state_dict(self) -> dict:
        return {"beta": self.cs.beta, "per_epoch": list(self.per_epoch)}

    def load_state_dict(self, state: dict) -> None:
        self.cs.beta = state["beta"]
        self.per_epoch = list(state["per_epoch"])


class FollowSchedule:
    """Callback giving an extra optimiser (mask scores, gates) the weights' learning-rate schedule."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: TrainConfig, base_lr: float, n_train: int):
        self.optimizer, self.cfg, self.base_lr, self.n_train = optimizer, cfg, base_lr, n_train
        self(0, None)

    def __call__(self, it: int, model) -> None:
        lr = self.base_lr * self.cfg.lr_factor(it, self.n_train)
        for g in self.optimizer.param_groups:
            g["lr"] = lr


def mask_optimizer(cfg: TrainConfig, params, lr: Optional[float] = None) -> torch.optim.Optimizer:
    """The weights' optimiser type and momentum for mask parameters, without weight decay."""
    return build_optimizer(cfg.model_copy(update={"weight_decay": 0.0, "lr": lr or cfg.lr}), params)


def _epochs(cfg: TrainConfig, n_train: int) -> float:
    return cfg.total_iterations(n_train) / cfg.iterations_per_epoch(n_train)


@torch.no_grad()
def _exact_extra(cfg: ContinuousConfig, cs: ContinuousSparsificationMask) -> dict:
    """With a target sparsity: the target and how many weights s > 0 would have kept (none otherwise, so
    the default rows are unchanged)."""
    if cfg.target_sparsity is None:
        return {}
    return {"target_sparsity": cfg.target_sparsity,
            "kept_s_positive": sum(int(torch.count_nonzero(cs.score(n) > 0)) for n in cs.names)}


def _run_continuous(cfg: ContinuousConfig, ctx: RunContext) -> ProcedureResult:
    seed, train_cfg, data = ctx.seed, ctx.train_cfg, ctx.data
    model = ctx.model_fn(seed)
    cs = ContinuousSparsificationMask(model, cfg.scope, s0=cfg.s0, scale=cfg.scale,
                                      target_sparsity=cfg.target_sparsity)
    beta_t = cfg.final_temperature()
    n_train = len(data.train)
    per_epoch = train_cfg.iterations_per_epoch(n_train)
    total = train_cfg.total_iterations(n_train)
    k_it = round(cfg.rewind_epoch * per_epoch)
    if cfg.final == "rewind" and k_it > total:
        raise ConfigError(f"rewind_epoch {cfg.rewind_epoch} is past the end of a round "
                          f"({_epochs(train_cfg, n_train):g} epochs)")
    # created once: the score optimiser's momentum carries over between rounds, as in the official code
    score_opt = mask_optimizer(train_cfg, cs.score_parameters(), cfg.mask_lr)
    # and so does the weight optimiser's (spec §5.2b); the ticket gets a fresh one
    weight_opt = build_optimizer(train_cfg, cs.weight_parameters())
    temps = []
    epochs_spent = 0.0
    rewind = None
    for rnd in range(cfg.rounds):
        cs.beta = 1.0
        sched = TemperatureSchedule(cs, beta_t, cfg.temperature_unit, per_epoch, total)
        res = ctx.train(cs, seed=derive_seed(seed, "cs-round", rnd), optimizer=weight_opt,
                        penalty=(lambda m: cfg.penalty * m.l1()) if cfg.penalty else None,
                        extra_optimizers=[score_opt], checkpoint_at=(k_it,) if rnd == 0 else (),
                        callbacks=[sched, FollowSchedule(score_opt, train_cfg, cfg.mask_lr or train_cfg.lr, n_train)],
                        desc=f"cs round {rnd}")
        if rnd == 0 and k_it in res.checkpoints:   # the wrapped network's state at the start of epoch k
            rewind = {n[len("model."):]: v for n, v in res.checkpoints[k_it].items() if n.startswith("model.")}
        epochs_spent += _epochs(train_cfg, n_train)
        temps.append(list(sched.per_epoch))
        hard = cs.hard_mask()
        cs.hard = True
        hard_row = ctx.evaluate(cs, precision=train_cfg.precision)
        cs.hard = False
        ctx.row("search", rnd, hard, res, extra={"s0": cfg.s0, "beta": cs.beta, "epochs_spent": epochs_spent,
                                                 **{f"hard_{k}": v for k, v in hard_row.items()},
                                                 **_exact_extra(cfg, cs)})
        if rnd < cfg.rounds - 1:
            cs.reset_scores(beta_t if cfg.reset == "paper" else 1.0)
    cs.beta = 1.0
    ctx.result.model = cs
    ctx.result.info["temperatures"] = temps
    if rewind is not None:
        ctx.result.states["rewind"] = rewind
    if cfg.final == "none":
        return ctx.result
    mask = cs.hard_mask()
    cs.hard = True
    cs.freeze_scores()
    ft_cfg = train_cfg
    if cfg.final == "rewind":
        restore(model, rewind)
        ctx.result.states["ticket_start"] = snapshot(model)
    else:
        ft_cfg = ctx.finetune or train_cfg
    res = ctx.train(cs, ft_cfg, seed=derive_seed(seed, "cs-ticket"), params=cs.weight_parameters(),
                    desc="cs ticket")
    epochs_spent += _epochs(ft_cfg, n_train)
    ctx.row("ticket", cfg.rounds, mask, res, extra={"s0": cfg.s0, "epochs_spent": epochs_spent,
                                                    "final": cfg.final, **_exact_extra(cfg, cs)})
    ctx.result.states["final"] = snapshot(cs)
    return ctx.result
