"""Supermasks (Zhou et al. 2019, spec §3.6): masks that make an *untrained* network accurate.

- :func:`run_criterion_supermask`: train dense once, build one-shot masks with a mask criterion at pruned
  fractions 1 − (1 − rate)^p per layer (p = 0..powers), put them on the untrained weights (optionally as
  signed constants ±std of the layer) and evaluate. No retraining.
- :func:`run_learned_supermask`: freeze the initial weights and train only a Bernoulli mask
  (:class:`~prunelab.primitives.learned_mask.BernoulliSupermask`); the reported accuracy is the mean
  over ``eval_samples`` evaluations, each with freshly sampled masks, as the official code does.

Both return an :class:`~prunelab.procedures.imp.IMPResult` (one row per evaluated mask) so the experiment
store and reports treat them like IMP rounds.
"""
from __future__ import annotations

from typing import Callable, Literal, Optional, Union

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..primitives.allocation import LTH_RATES
from ..primitives.criteria import SINGLE, single_mask
from ..primitives.learned_mask import BernoulliSupermask
from ..primitives.masks import Mask
from ..pruning import prune
from ..seeding import derive_seed
from ..training import TrainConfig, restore, snapshot, train
from ..training.loop import evaluate, resolve_device
from .imp import IMPResult, ModelFn, RoundResult, single_round

SUPERMASK_WEIGHTS = ("init", "signed_constant")


class CriterionSupermaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    score: str = "large_final_same_sign"
    rate: Union[float, dict[str, float], str] = "lenet300_100"   # per-power rate (an LTH preset by default)
    powers: int = Field(24, ge=0)                                 # p = 0..powers: pruned 1 - (1 - rate)^p
    rounding: Literal["plain", "official"] = "official"
    ties: Literal["random", "index", "keep"] = "random"
    scope: Union[str, list[str], None] = None
    weights: tuple[Literal["init", "signed_constant"], ...] = SUPERMASK_WEIGHTS


class LearnedSupermaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    score_init: float = 0.0               # the official sigmoid_bias: sigmoid(0) = keep probability 0.5
    mode: Literal["sample", "round"] = "sample"
    signed_constant: bool = False
    dynamic_rescale: bool = False
    eval_samples: int = Field(10, ge=1)
    scope: Union[str, list[str], None] = None


def _powered_rate(rate, p: int):
    if isinstance(rate, str):
        from ..errors import unknown_name
        if rate not in LTH_RATES:
            raise unknown_name("rate preset", rate, LTH_RATES)
        rate = LTH_RATES[rate]
    if isinstance(rate, (int, float)):
        return 1.0 - (1.0 - float(rate)) ** p
    return {k: 1.0 - (1.0 - float(v)) ** p for k, v in rate.items()}


@torch.no_grad()
def supermask_weights(init_state: dict, mask: Mask, weights: str = "init") -> dict[str, torch.Tensor]:
    """Untrained weights under ``mask``: w_i, or α·sign(w_i) with α the std of the whole layer's w_i."""
    out = {}
    for n in mask:
        w = init_state[n]
        if weights == "signed_constant":
            w = w.std(unbiased=False) * torch.sign(w)
        out[n] = w * mask.expanded(n).to(device=w.device, dtype=w.dtype)
    return out


def _eval_splits(model, data, cfg: TrainConfig) -> dict:
    row = {}
    for split in cfg.eval_splits:
        if split == "val" and getattr(data, "val", None) is None:
            continue
        row.update(evaluate(model, data, split, batch_size=cfg.eval_batch_size))
    return row


def run_criterion_supermask(model_fn: ModelFn, data, train_cfg: TrainConfig, cfg: CriterionSupermaskConfig, *,
                            seed: int = 0, keep_history: bool = False,
                            on_round: Optional[Callable[[RoundResult], None]] = None) -> IMPResult:
    """Rows: variant ``dense`` (round 0, the trained network) and, per power p, one row per ``weights``
    choice (variant ``supermask_init`` / ``supermask_signed_constant``, round p)."""
    out = IMPResult()

    def emit(r):
        out.rounds.append(r)
        if on_round is not None:
            on_round(r)

    model = model_fn(seed)
    init_state = snapshot(model)
    ones = Mask.ones(model, cfg.scope)
    res = train(model, data, train_cfg, seed=seed, desc="dense")
    emit(RoundResult("dense", 0, ones.kept(), ones.total(), res.final, res.early_stop("val"), ones,
                     res.history if keep_history else []))
    final_state = snapshot(model)
    powers = [0] if cfg.score in SINGLE else range(cfg.powers + 1)
    for p in powers:
        restore(model, final_state)
        if cfg.score in SINGLE:
            mask = single_mask(cfg.score, model, ones, init_state=init_state)
        else:
            mask = prune(model, mask=ones, rate=_powered_rate(cfg.rate, p), allocation="layerwise",
                         rounding=cfg.rounding, score=cfg.score, ties=cfg.ties,
                         seed=derive_seed(seed, "supermask-prune", p), apply=False, init_state=init_state)
        for w in cfg.weights:
            restore(model, init_state)
            new = supermask_weights(init_state, mask, w)
            with torch.no_grad():
                params = dict(model.named_parameters())
                for n, v in new.items():
                    params[n].copy_(v)
            row = _eval_splits(model, data, train_cfg)
            emit(RoundResult(f"supermask_{w}", p, mask.kept(), mask.total(), row, {}, mask.clone()))
    restore(model, final_state)
    return out


def evaluate_sampled(model, data, split: str, n_samples: int, *, batch_size: int = 1000) -> dict:
    """Mean loss and accuracy over ``n_samples`` full evaluations of a stochastic model (a new mask is
    drawn at every forward pass); the per-sample accuracies are under ``{split}_acc_samples``."""
    rows = [evaluate(model, data, split, batch_size=batch_size) for _ in range(n_samples)]
    accs = [r[f"{split}_acc"] for r in rows]
    return {f"{split}_acc": sum(accs) / n_samples,
            f"{split}_loss": sum(r[f"{split}_loss"] for r in rows) / n_samples,
            f"{split}_acc_samples": accs}


def run_learned_supermask(model_fn: ModelFn, data, train_cfg: TrainConfig, cfg: LearnedSupermaskConfig, *,
                          seed: int = 0, keep_history: bool = False,
                          on_round: Optional[Callable[[RoundResult], None]] = None) -> IMPResult:
    """Train a Bernoulli supermask over the frozen initial weights; one row, variant ``supermask``."""
    model = model_fn(seed)
    sm = BernoulliSupermask(model, cfg.scope, score_init=cfg.score_init, mode=cfg.mode,
                            signed_constant=cfg.signed_constant, dynamic_rescale=cfg.dynamic_rescale)
    res = train(sm, data, train_cfg, seed=seed, desc="supermask")
    sm.to(resolve_device(train_cfg.device))
    torch.manual_seed(derive_seed(seed, "supermask-eval"))
    row = {"iteration": res.iterations, "expected_density": sm.expected_density()}
    for split in train_cfg.eval_splits:
        if split == "val" and getattr(data, "val", None) is None:
            continue
        row.update(evaluate_sampled(sm, data, split, cfg.eval_samples, batch_size=train_cfg.eval_batch_size))
    hard = sm.hard_mask().to("cpu")
    hard.shapes.update({n: tuple(sm.base_weight(n).shape) for n in sm.names})
    r = RoundResult("supermask", 0, hard.kept(), hard.total(), row, {}, hard,
                    res.history if keep_history else [])
    return single_round(r, on_round)
