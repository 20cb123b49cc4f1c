"""Iterative magnitude pruning (lottery tickets), its rewinding variants, one-shot pruning and the controls.

Round 0 trains the dense network. Each later round scores the trained weights, removes a fraction of the
remaining ones, resets the survivors (``rewind``) and retrains:

- ``init``: survivors back to their initial values θ0 (Frankle & Carbin);
- ``iteration``: back to θ_k, the weights after ``rewind_iteration`` steps of the dense run, and the
  schedule continues from k (Frankle et al. 2020);
- ``lr``: keep the trained values and replay the learning-rate schedule from the start (Renda et al.);
- ``finetune``: keep the trained values and train with ``finetune`` (a separate TrainConfig).

Controls, trained with the same budget from the same starting point as the ticket of each round, are
registered in :mod:`prunelab.procedures.controls`: ``reinit`` (the ticket's mask on a fresh random
initialisation) and ``random_mask`` (random positions with the ticket's per-layer counts).

Rows: variant ``ticket`` or the control's name; the stage index ``round`` is the IMP round (0 = the dense
training, r = the network after the r-th pruning).

``score_at="early_stop"`` (Zhou et al.'s ``--final_weights_ind``): the round's mask is scored from the weights
at the minimum-validation-loss evaluation of the round's training (kept by :class:`BestValSnapshot`)
instead of the final weights; the trained network itself still continues from its final weights.
"""
from __future__ import annotations

from typing import Callable, ClassVar, Literal, Optional, Union

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from ..primitives.criteria import SINGLE, single_mask
from ..primitives.masks import Mask
from ..primitives.nm import nm_schedule, parse_nm
from ..primitives.schedules import geometric_rate
from ..primitives.weight_actions import (KEPT_ACTIONS, PRUNED_ACTIONS, FrozenWeights, apply_kept_action,
                                         pruned_action)
from ..pruning import prune
from ..seeding import derive_seed, generator
from ..errors import ConfigError
from ..training import TrainConfig, restore, snapshot
from ..training.loop import resolve_device
from .base import ModelFn, Procedure, ProcedureResult, ResultRow, RunContext, register_procedure, run_procedure
from .controls import CONTROLS, ControlStart

REWINDS = ("init", "iteration", "lr", "finetune")
ControlName = Literal[tuple(CONTROLS)]


class _PruneRounds(Procedure):
    """What IMP and one-shot pruning share: how each round scores, selects and resets."""

    allocation: Literal["layerwise", "global"] = "layerwise"
    rounding: Literal["plain", "official"] = "plain"
    score: str = "magnitude"
    scope: Union[str, list[str], None] = None
    ties: Literal["random", "index", "keep"] = "random"
    rewind_iteration: int = Field(0, ge=0)
    controls: tuple[ControlName, ...] = ()
    # which weights of a round's training the mask criterion sees: the last ones, or those at the
    # minimum-validation-loss evaluation (Zhou et al.'s --final_weights_ind; needs a "val" eval split)
    score_at: Literal["final", "early_stop"] = "final"

    def needs_finetune(self) -> bool:
        return self.rewind == "finetune"

    def trainings(self) -> int:
        return 1 + self.rounds * (1 + len(self.controls))


@register_procedure("imp")
class IMPConfig(_PruneRounds):
    """Iterative magnitude pruning (lottery tickets) with rewinding, weight actions and controls."""

    kind: Literal["imp"] = "imp"
    stage_index: ClassVar[str] = "IMP round (0 = dense training, r = after the r-th pruning)"

    rounds: int = Field(1, ge=0)
    # per-round fraction of remaining weights removed: float, {group or param: rate}, or preset name
    rate: Union[float, dict[str, float], str] = 0.2
    # alternatively a final sparsity reached after `rounds` equal-rate rounds (one-shot: rounds=1)
    sparsity: Optional[float] = Field(None, ge=0, lt=1)
    rewind: Literal["init", "iteration", "lr", "finetune"] = "init"
    # Zhou et al. 2019 (spec §3.4, §3.5): what kept weights restart from, and what pruned weights are
    kept_action: Literal[KEPT_ACTIONS] = "none"
    kept_rescale: bool = False
    pruned_action: Literal[PRUNED_ACTIONS] = "zero"
    # N:M semi-structured masks ("2:4"; replaces rate/sparsity): every round prunes N_r:M along each layer's
    # input dimension, N_r = M - round(r (M - N) / rounds) (halves up), so the last round's mask is exactly N:M
    pattern: Optional[str] = None

    @field_validator("rate")
    @classmethod
    def _rate_range(cls, v):
        vals = [v] if isinstance(v, (int, float)) else (list(v.values()) if isinstance(v, dict) else [])
        for r in vals:
            if not 0 <= r < 1:
                raise ValueError(f"rate {r!r} is outside [0, 1) (fraction of remaining weights removed)")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if self.sparsity is not None and self.rounds < 1:
            raise ValueError("sparsity needs rounds >= 1")
        if self.rewind != "iteration" and self.rewind_iteration:
            raise ValueError(f"rewind_iteration={self.rewind_iteration} needs rewind='iteration', "
                             f"got rewind={self.rewind!r}")
        if self.uses_weight_actions() and self.rewind != "init":
            raise ValueError(f"kept_action={self.kept_action!r} / pruned_action={self.pruned_action!r} "
                             f"act on the round's initial weights and need rewind='init', got {self.rewind!r}")
        if self.pattern is not None:
            parse_nm(self.pattern)
            if self.rounds < 1:
                raise ValueError(f"pattern={self.pattern!r} needs rounds >= 1, got rounds={self.rounds}")
            if self.sparsity is not None or self.rate != type(self).model_fields["rate"].default:
                raise ValueError(f"pattern={self.pattern!r} sets each round's pruning; do not also give "
                                 f"sparsity={self.sparsity!r} or rate={self.rate!r}")
            if self.score in SINGLE:
                raise ValueError(f"pattern={self.pattern!r} needs a ranking score; {self.score!r} is a mask "
                                 f"criterion")
        return self

    def round_pattern(self, rnd: int) -> str:
        """The N:M pattern of IMP round ``rnd`` (1-based) when ``pattern`` is set."""
        n, m = parse_nm(self.pattern)
        return f"{nm_schedule(n, m, self.rounds)[rnd - 1]}:{m}"

    def uses_weight_actions(self) -> bool:
        return self.kept_action != "none" or self.kept_rescale or self.pruned_action != "zero"

    def round_rate(self):
        if self.sparsity is None:
            return self.rate
        return geometric_rate(self.sparsity, self.rounds)

    def run(self, ctx: RunContext) -> ProcedureResult:
        return _run_imp(self, ctx)


@register_procedure("oneshot")
class OneShotConfig(_PruneRounds):
    """Train dense, prune to ``sparsity`` at once, then rewind and retrain (or fine-tune): IMP with one
    round. Rows as IMP's (round 0 dense, round 1 pruned)."""

    kind: Literal["oneshot"] = "oneshot"
    stage_index: ClassVar[str] = "0 = dense training, 1 = the pruned network"
    rounds: ClassVar[int] = 1

    sparsity: float = Field(..., ge=0, lt=1)
    rewind: Literal["init", "iteration", "lr", "finetune"] = "finetune"

    @model_validator(mode="after")
    def _consistent(self):
        if self.rewind != "iteration" and self.rewind_iteration:
            raise ValueError(f"rewind_iteration={self.rewind_iteration} needs rewind='iteration', "
                             f"got rewind={self.rewind!r}")
        return self

    def imp_config(self) -> IMPConfig:
        return IMPConfig(rounds=1, **self.model_dump(exclude={"kind"}))

    def run(self, ctx: RunContext) -> ProcedureResult:
        return _run_imp(self.imp_config(), ctx)


def run_imp(model_fn: ModelFn, data, train_cfg: TrainConfig, imp: IMPConfig, *, seed: int = 0,
            finetune: Optional[TrainConfig] = None, keep_history: bool = False,
            on_row: Optional[Callable[[ResultRow], None]] = None, checkpoints=None) -> ProcedureResult:
    """Run IMP (and its controls) for ``imp.rounds`` pruning rounds; returns every round's rows.

    ``model_fn(seed)`` builds a freshly initialised model; it is called once for the ticket and once per
    round for the ``reinit`` control (with a different derived seed). ``checkpoints`` (a directory) makes
    the run resumable mid-training (:func:`~prunelab.procedures.base.run_procedure`)."""
    return run_procedure(model_fn, data, train_cfg, imp, seed=seed, finetune=finetune,
                         keep_history=keep_history, on_row=on_row, checkpoints=checkpoints)


def run_oneshot(model_fn: ModelFn, data, train_cfg: TrainConfig, sparsity: float, *,
                rewind: Literal["init", "iteration", "lr", "finetune"] = "finetune",
                finetune: Optional[TrainConfig] = None, seed: int = 0, **imp_kw) -> ProcedureResult:
    """Train dense, prune to ``sparsity`` at once, then retrain (rewind) or fine-tune."""
    return run_imp(model_fn, data, train_cfg, IMPConfig(rounds=1, sparsity=sparsity, rewind=rewind, **imp_kw),
                   seed=seed, finetune=finetune)


class BestValSnapshot:
    """Training callback that keeps the weights at the minimum-validation-loss evaluation: it reads the
    loop's own evaluation rows (``on_eval``), so the kept iteration is :meth:`TrainResult.early_stop`
    ``("val")``'s (first minimum wins, as ``min`` does) at no extra cost. ``state_dict`` /
    ``load_state_dict`` make the snapshot survive resuming."""

    def __init__(self):
        self.best_loss: Optional[float] = None
        self.best_iteration: Optional[int] = None
        self.state: Optional[dict] = None

    def __call__(self, it: int, model: nn.Module) -> None:
        pass   # acts on evaluations only

    def on_eval(self, row: dict, model: nn.Module) -> None:
        loss = row.get("val_loss")
        if loss is not None and (self.best_loss is None or loss < self.best_loss):
            self.best_loss, self.best_iteration, self.state = loss, row["iteration"], snapshot(model)

    def state_dict(self) -> dict:
        return {"best_loss": self.best_loss, "best_iteration": self.best_iteration, "state": self.state}

    def load_state_dict(self, state: dict) -> None:
        self.best_loss, self.best_iteration = state["best_loss"], state["best_iteration"]
        self.state = None if state["state"] is None else dict(state["state"])

    def weights_at(self, res, model: nn.Module) -> dict:
        """The snapshot at ``res.early_stop("val")`` (the model's current state when that is the
        evaluation after the loop, which follows no step)."""
        it = res.early_stop("val").get("iteration")
        if it is not None and it == self.best_iteration:
            return self.state
        if it is not None and it == res.iterations and self.best_iteration is None:
            return snapshot(model)
        raise RuntimeError(f"score_at='early_stop': the kept snapshot is of iteration {self.best_iteration}, "
                           f"the early-stop evaluation is at iteration {it}")


def _check_score_at(imp: IMPConfig, ctx: RunContext) -> None:
    if imp.score_at != "early_stop" or imp.rounds < 1:   # nothing is scored without a pruning round
        return
    cfgs = [ctx.train_cfg] + ([ctx.finetune] if imp.rewind == "finetune" and ctx.finetune is not None else [])
    for cfg in cfgs:
        if "val" not in cfg.eval_splits:
            raise ConfigError(f"score_at='early_stop' needs a 'val' evaluation split; eval_splits is "
                              f"{tuple(cfg.eval_splits)!r}")
    if getattr(ctx.data, "val", None) is None:
        raise ConfigError("score_at='early_stop' needs a validation split, and the data has none "
                          "(use score_at='final')")


def _run_imp(imp: IMPConfig, ctx: RunContext) -> ProcedureResult:
    _check_score_at(imp, ctx)
    seed = ctx.seed
    model = ctx.model_fn(seed)
    mask = Mask.ones(model, imp.scope)
    k = imp.rewind_iteration
    init_state = snapshot(model)
    round_init = init_state
    ckpts = (k,) if imp.rewind == "iteration" else ()
    early = imp.score_at == "early_stop" and imp.rounds >= 1
    best = BestValSnapshot() if early else None
    res = ctx.train(model, mask=mask, seed=seed, checkpoint_at=ckpts, desc="round 0",
                    callbacks=(best,) if best is not None else ())
    rewind_state = res.checkpoints[k] if imp.rewind == "iteration" else init_state
    ctx.row("ticket", 0, mask, res)
    rate = imp.round_rate()
    for rnd in range(1, imp.rounds + 1):
        # criteria compare the trained weights (or those at the early-stop point) with the weights this
        # round's training started from
        trained_state = None
        if best is not None:
            trained_state = snapshot(model)
            scored_state = best.weights_at(res, model)
            restore(model, scored_state)
        if imp.score in SINGLE:
            mask = single_mask(imp.score, model, mask, init_state=round_init)
        elif imp.pattern is not None:
            mask = prune(model, mask=mask, pattern=imp.round_pattern(rnd), score=imp.score,
                         seed=derive_seed(seed, "prune", rnd), apply=False, init_state=round_init)
        else:
            mask = prune(model, mask=mask, rate=rate, allocation=imp.allocation, rounding=imp.rounding,
                         score=imp.score, ties=imp.ties, seed=derive_seed(seed, "prune", rnd), apply=False,
                         init_state=round_init)
        scored = snapshot(model)   # the w_f the criterion saw (pruned actions compare it with w_i too)
        if trained_state is not None:
            restore(model, trained_state)
        cfg, start = ctx.train_cfg, 0
        train_mask, callbacks = mask, ()
        if imp.uses_weight_actions():
            start_state, round_init, frozen = _weight_action_start(imp, round_init, scored, mask,
                                                                   generator(seed, "weight-action", rnd))
            restore(model, start_state)
            if frozen is not None:
                model.to(resolve_device(cfg.device))
                train_mask, callbacks = None, (FrozenWeights(model, mask, frozen),)
        elif imp.rewind in ("init", "iteration"):
            restore(model, rewind_state)
            start = k
        elif imp.rewind == "finetune":
            cfg = ctx.finetune
        best = None
        if early and rnd < imp.rounds:   # the last round's weights are never scored
            best = BestValSnapshot()
            callbacks = (*callbacks, best)
        res = ctx.train(model, cfg, mask=train_mask, seed=derive_seed(seed, "round", rnd),
                        start_iteration=start, callbacks=callbacks, desc=f"round {rnd}")
        ctx.row("ticket", rnd, mask, res)
        trained_state = snapshot(model)
        for name in imp.controls:
            c = ControlStart(ctx.model_fn, model, mask, derive_seed(seed, name, rnd), start, imp.rewind,
                             rewind_state if imp.rewind in ("init", "iteration") else None)
            cmodel, cmask, cstart = CONTROLS[name](c)
            cres = ctx.train(cmodel, cfg, mask=cmask, seed=derive_seed(seed, "round", rnd), start_iteration=cstart,
                             desc=f"{name} {rnd}")
            ctx.row(name, rnd, cmask, cres)
        restore(model, trained_state)
    ctx.result.model = model
    ctx.result.states["final"] = snapshot(model)
    return ctx.result


def _weight_action_start(imp: IMPConfig, round_init: dict, final: dict, mask: Mask, g: torch.Generator):
    """(state to train from, the round's stored initial weights, frozen values or None).

    As the DLT driver does, the kept-weight action transforms the previous round's initial weights, so
    transforming actions compound over rounds while ``none`` always rewinds to the original θ0.
    """
    kept = apply_kept_action(imp.kept_action, round_init, mask, generator=g, rescale=imp.kept_rescale)
    pv = pruned_action(imp.pruned_action, round_init, final, mask, generator=g)
    start, stored = dict(round_init), dict(round_init)
    for n in mask:
        keep = mask.expanded(n).to(kept[n].device)
        kept_vals = pv.kept_init[n] if pv.kept_init is not None else kept[n]
        pruned_vals = pv.frozen[n] if pv.frozen is not None else torch.zeros_like(kept[n])
        start[n] = torch.where(keep, kept_vals, pruned_vals)
        stored[n] = torch.where(keep, kept_vals, round_init[n])
    return start, stored, pv.frozen
