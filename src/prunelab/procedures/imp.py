"""Iterative magnitude pruning (lottery tickets), its rewinding variants, one-shot pruning and the controls.

Round 0 trains the dense network. Each later round scores the trained weights, removes a fraction of the
remaining ones, resets the survivors (``rewind``) and retrains:

- ``init``: survivors back to their initial values θ0 (Frankle & Carbin);
- ``iteration``: back to θ_k, the weights after ``rewind_iteration`` steps of the dense run, and the
  schedule continues from k (Frankle et al. 2020);
- ``lr``: keep the trained values and replay the learning-rate schedule from the start (Renda et al.);
- ``finetune``: keep the trained values and train with ``finetune`` (a separate TrainConfig).

Controls, trained with the same budget from the same starting point as the ticket of each round:
``reinit`` (the ticket's mask on a fresh random initialisation) and ``random_mask`` (random positions with
the ticket's per-layer counts).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Optional, Sequence, Union

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from ..primitives.actions import random_mask_like
from ..primitives.criteria import SINGLE, single_mask
from ..primitives.weight_actions import (KEPT_ACTIONS, PRUNED_ACTIONS, FrozenWeights, apply_kept_action,
                                         pruned_action)
from ..primitives.masks import Mask
from .resume import RoundStore
from ..pruning import prune
from ..seeding import derive_seed, generator
from ..training import TrainConfig, TrainResult, restore, snapshot, train

REWINDS = ("init", "iteration", "lr", "finetune")
CONTROLS = ("reinit", "random_mask")


class IMPConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rounds: int = Field(1, ge=0)
    # per-round fraction of remaining weights removed: float, {group or param: rate}, or preset name
    rate: Union[float, dict[str, float], str] = 0.2
    # alternatively a final sparsity reached after `rounds` equal-rate rounds (one-shot: rounds=1)
    sparsity: Optional[float] = Field(None, ge=0, lt=1)
    allocation: Literal["layerwise", "global"] = "layerwise"
    rounding: Literal["plain", "official"] = "plain"
    score: str = "magnitude"
    scope: Union[str, list[str], None] = None
    ties: Literal["random", "index", "keep"] = "random"
    rewind: Literal["init", "iteration", "lr", "finetune"] = "init"
    rewind_iteration: int = Field(0, ge=0)
    controls: tuple[Literal["reinit", "random_mask"], ...] = ()
    # Zhou et al. 2019 (spec §3.4, §3.5): what kept weights restart from, and what pruned weights are
    kept_action: Literal[KEPT_ACTIONS] = "none"
    kept_rescale: bool = False
    pruned_action: Literal[PRUNED_ACTIONS] = "zero"

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
        return self

    def uses_weight_actions(self) -> bool:
        return self.kept_action != "none" or self.kept_rescale or self.pruned_action != "zero"

    def round_rate(self):
        if self.sparsity is None:
            return self.rate
        return 1.0 - (1.0 - self.sparsity) ** (1.0 / self.rounds)


@dataclass
class RoundResult:
    variant: str          # "ticket", "reinit", "random_mask"
    round: int
    kept: int
    total: int
    final: dict           # last evaluation row
    early_stop: dict      # row of minimum validation loss (empty without a validation split)
    mask: Mask
    history: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)   # procedure-specific numbers (stability, flatness, ...)

    @property
    def density(self) -> float:
        # An empty mask (e.g. GST's unpruned configs) prunes nothing: the network is fully dense.
        return self.kept / self.total if self.total else 1.0

    def row(self) -> dict:
        out = {"variant": self.variant, "round": self.round, "kept": self.kept, "total": self.total,
               "remaining_pct": 100.0 * self.density}
        for k in ("test_acc", "test_loss", "val_acc", "val_loss"):
            if k in self.final:
                out[k] = self.final[k]
        if self.early_stop:
            out["early_stop_iteration"] = self.early_stop["iteration"]
            if "test_acc" in self.early_stop:
                out["early_stop_test_acc"] = self.early_stop["test_acc"]
        out.update(self.extra)
        return out


@dataclass
class IMPResult:
    rounds: list[RoundResult] = field(default_factory=list)

    def table(self):
        import pandas as pd
        return pd.DataFrame([r.row() for r in self.rounds])

    def masks(self, variant: str = "ticket") -> list[Mask]:
        return [r.mask for r in self.rounds if r.variant == variant]


ModelFn = Callable[[int], nn.Module]


def single_round(r: RoundResult, on_round=None) -> IMPResult:
    """The result of a procedure with one row (one training run): reported, then wrapped."""
    if on_round is not None:
        on_round(r)
    return IMPResult([r])


def _record(variant, rnd, mask, res: TrainResult, keep_history) -> RoundResult:
    return RoundResult(variant, rnd, mask.kept(), mask.total(), res.final, res.early_stop("val"),
                       mask.clone(), res.history if keep_history else [])


_ROW_FIELDS = ("variant", "round", "kept", "total", "final", "early_stop", "history", "extra")


def _save_round(store, rnd, results: list[RoundResult], states) -> None:
    rows = [{f: getattr(r, f) for f in _ROW_FIELDS} for r in results]
    store.save(rnd, rows, {r.variant: r.mask for r in results}, states)


def _load_rounds(store, upto: int, device) -> tuple[list[RoundResult], dict]:
    results, states = [], {}
    for rnd in range(upto + 1):
        rows, masks, st = store.load(rnd, device)
        results += [RoundResult(mask=masks[r["variant"]], **r) for r in rows]
        states.update(st)
    return results, states


def run_imp(model_fn: ModelFn, data, train_cfg: TrainConfig, imp: IMPConfig, *, seed: int = 0,
            finetune: Optional[TrainConfig] = None, keep_history: bool = False,
            on_round: Optional[Callable[[RoundResult], None]] = None, resume=None) -> IMPResult:
    """Run IMP (and its controls) for ``imp.rounds`` pruning rounds; returns every round's results.

    ``model_fn(seed)`` builds a freshly initialised model; it is called once for the ticket and once per
    round for the ``reinit`` control (with a different derived seed). ``resume`` (a
    :class:`~prunelab.procedures.resume.RoundStore` or a directory) checkpoints every finished round; a run
    started again with the same arguments continues after the last intact round and gives the same
    results as an uninterrupted run. ``on_round`` is called for rounds computed now, not for restored ones.
    """
    if imp.rewind == "finetune" and finetune is None:
        from ..errors import ConfigError
        raise ConfigError("rewind='finetune' needs a finetune TrainConfig")
    if resume is not None and not isinstance(resume, RoundStore):
        resume = RoundStore(resume)
    model = model_fn(seed)
    mask = Mask.ones(model, imp.scope)
    k = imp.rewind_iteration
    out = IMPResult()

    def emit(r: RoundResult):
        out.rounds.append(r)
        if on_round is not None:
            on_round(r)

    last = resume.latest() if resume is not None else None
    if last is not None:
        out.rounds, states = _load_rounds(resume, last, "cpu")
        init_state, rewind_state = states["init"], states["rewind"]
        round_init = states.get("round_init", init_state)
        restore(model, states["model"])
        mask = next(r.mask for r in out.rounds if r.variant == "ticket" and r.round == last)
        first = last + 1
    else:
        init_state = snapshot(model)
        round_init = init_state
        ckpts = (k,) if imp.rewind == "iteration" else ()
        res = train(model, data, train_cfg, mask=mask, seed=seed, checkpoint_at=ckpts, desc="round 0")
        rewind_state = res.checkpoints[k] if imp.rewind == "iteration" else init_state
        emit(_record("ticket", 0, mask, res, keep_history))
        if resume is not None:
            _save_round(resume, 0, out.rounds[-1:], {"init": init_state, "rewind": rewind_state,
                                                     "model": snapshot(model)})
        first = 1
    rate = imp.round_rate()
    for rnd in range(first, imp.rounds + 1):
        n_before = len(out.rounds)
        # criteria compare the trained weights with the weights this round's training started from
        if imp.score in SINGLE:
            mask = single_mask(imp.score, model, mask, init_state=round_init)
        else:
            mask = prune(model, mask=mask, rate=rate, allocation=imp.allocation, rounding=imp.rounding,
                         score=imp.score, ties=imp.ties, seed=derive_seed(seed, "prune", rnd), apply=False,
                         init_state=round_init)
        cfg, start = train_cfg, 0
        train_mask, callbacks = mask, ()
        if imp.uses_weight_actions():
            start_state, round_init, frozen = _weight_action_start(imp, round_init, snapshot(model), mask,
                                                                   generator(seed, "weight-action", rnd))
            restore(model, start_state)
            if frozen is not None:
                from ..training.loop import resolve_device
                model.to(resolve_device(cfg.device))
                train_mask, callbacks = None, (FrozenWeights(model, mask, frozen),)
        elif imp.rewind in ("init", "iteration"):
            restore(model, rewind_state)
            start = k
        elif imp.rewind == "finetune":
            cfg = finetune
        res = train(model, data, cfg, mask=train_mask, seed=derive_seed(seed, "round", rnd),
                    start_iteration=start, callbacks=callbacks, desc=f"round {rnd}")
        emit(_record("ticket", rnd, mask, res, keep_history))
        trained_state = snapshot(model)
        for control in imp.controls:
            emit(_run_control(control, model_fn, model, data, cfg, mask, seed, rnd, start,
                              rewind_state if imp.rewind in ("init", "iteration") else None,
                              imp.rewind, keep_history))
        restore(model, trained_state)
        if resume is not None:
            states = {"model": trained_state}
            if imp.uses_weight_actions():
                states["round_init"] = round_init
            _save_round(resume, rnd, out.rounds[n_before:], states)
    return out


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


def _run_control(control, model_fn, model, data, cfg, mask, seed, rnd, start, rewind_state, rewind,
                 keep_history) -> RoundResult:
    cseed = derive_seed(seed, control, rnd)
    if control == "reinit":
        fresh = model_fn(cseed)
        cmask = mask
        if rewind == "iteration":
            # a fresh init has no θ_k: start its schedule at 0, with the ticket's remaining budget
            start = 0
        cmodel = fresh
    else:
        cmask = random_mask_like(mask, generator(cseed, "mask"))
        cmodel = model
        if rewind_state is not None:
            restore(cmodel, rewind_state)
    res = train(cmodel, data, cfg, mask=cmask, seed=derive_seed(seed, "round", rnd), start_iteration=start,
                desc=f"{control} {rnd}")
    return _record(control, rnd, cmask, res, keep_history)


def run_oneshot(model_fn: ModelFn, data, train_cfg: TrainConfig, sparsity: float, *,
                rewind: Literal["init", "iteration", "lr", "finetune"] = "finetune",
                finetune: Optional[TrainConfig] = None, seed: int = 0, **imp_kw) -> IMPResult:
    """Train dense, prune to ``sparsity`` at once, then retrain (rewind) or fine-tune."""
    return run_imp(model_fn, data, train_cfg, IMPConfig(rounds=1, sparsity=sparsity, rewind=rewind, **imp_kw),
                   seed=seed, finetune=finetune)
