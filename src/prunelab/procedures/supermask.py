"""Supermasks (Zhou et al. 2019, spec §3.6): masks that make an *untrained* network accurate.

- :func:`run_criterion_supermask`: train dense once, build one-shot masks with a mask criterion at pruned
  fractions 1 − (1 − rate)^p per layer (p = 0..powers), put them on the untrained weights (optionally as
  signed constants ±std of the layer) and evaluate. No retraining.
- :func:`run_learned_supermask`: freeze the initial weights and train only a Bernoulli mask
  (:class:`~prunelab.primitives.learned_mask.BernoulliSupermask`); the reported accuracy is the mean
  over ``eval_samples`` evaluations, each with freshly sampled masks, as the official code does.

Rows: criterion supermasks give ``dense`` (stage 0) and ``supermask_<weights>`` per power p (stage index
p); the learned supermask gives one row ``supermask`` (stage 0).

``sign_randomize`` (the rebuttal's control): after training, the learned supermask is evaluated once more
(mean over ``eval_samples`` sampled masks) with each frozen weight's sign flipped independently with
probability 1/2 (:func:`randomize_signs`, a seeded generator); magnitudes and the trained scores are
unchanged. The row gains ``sign_randomized_<split>_acc`` / ``_loss`` / ``_acc_samples``; the stored model
keeps the original signs.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Union

import torch
from pydantic import Field

from ..primitives.allocation import LTH_RATES
from ..primitives.criteria import SINGLE, single_mask
from ..primitives.learned_mask import BernoulliSupermask
from ..primitives.masks import Mask
from ..primitives.schedules import powered_rate
from ..pruning import prune
from ..seeding import derive_seed, generator
from ..training import restore, snapshot
from ..training.loop import evaluate, resolve_device
from .base import Procedure, ProcedureResult, RunContext, register_procedure

SUPERMASK_WEIGHTS = ("init", "signed_constant")


@register_procedure("criterion_supermask")
class CriterionSupermaskConfig(Procedure):
    """Zhou et al.'s criterion supermasks: one dense training, then one-shot masks on the untrained
    weights at pruned fractions 1 - (1 - rate)^p, p = 0..powers, evaluated without training."""

    kind: Literal["criterion_supermask"] = "criterion_supermask"
    stage_index: ClassVar[str] = "power p of the pruned fraction 1 - (1 - rate)^p (0 for the dense row)"

    score: str = "large_final_same_sign"
    rate: Union[float, dict[str, float], str] = "lenet300_100"   # per-power rate (an LTH preset by default)
    powers: int = Field(24, ge=0)                                 # p = 0..powers: pruned 1 - (1 - rate)^p
    rounding: Literal["plain", "official"] = "official"
    ties: Literal["random", "index", "keep"] = "random"
    scope: Union[str, list[str], None] = None
    weights: tuple[Literal["init", "signed_constant"], ...] = SUPERMASK_WEIGHTS

    def run(self, ctx: RunContext) -> ProcedureResult:
        return _run_criterion_supermask(self, ctx)


@register_procedure("supermask")
class LearnedSupermaskConfig(Procedure):
    """Zhou et al.'s learned supermask: frozen initial weights, a Bernoulli mask trained with the
    straight-through gradient; accuracy = mean over ``eval_samples`` sampled masks."""

    kind: Literal["supermask"] = "supermask"
    stage_index: ClassVar[str] = "0 (one training run)"

    score_init: float = 0.0               # the official sigmoid_bias: sigmoid(0) = keep probability 0.5
    mode: Literal["sample", "round"] = "sample"
    signed_constant: bool = False
    dynamic_rescale: bool = False
    eval_samples: int = Field(10, ge=1)
    scope: Union[str, list[str], None] = None
    # also evaluate the trained mask on the weights with randomly flipped signs (row: sign_randomized_*)
    sign_randomize: bool = False

    def run(self, ctx: RunContext) -> ProcedureResult:
        return _run_learned_supermask(self, ctx)


def _powered_rate(rate, p: int):
    if isinstance(rate, str):
        from ..errors import unknown_name
        if rate not in LTH_RATES:
            raise unknown_name("rate preset", rate, LTH_RATES)
        rate = LTH_RATES[rate]
    return powered_rate(rate, p)


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


def _run_criterion_supermask(cfg: CriterionSupermaskConfig, ctx: RunContext) -> ProcedureResult:
    """Rows: variant ``dense`` (round 0, the trained network) and, per power p, one row per ``weights``
    choice (variant ``supermask_init`` / ``supermask_signed_constant``, round p)."""
    seed = ctx.seed
    model = ctx.model_fn(seed)
    init_state = snapshot(model)
    ones = Mask.ones(model, cfg.scope)
    ctx.row("dense", 0, ones, ctx.train(model, seed=seed, desc="dense"))
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
            ctx.row(f"supermask_{w}", p, mask, final=ctx.evaluate(model))
    restore(model, final_state)
    ctx.result.model = model
    ctx.result.states["final"] = final_state
    return ctx.result


def evaluate_sampled(model, data, split: str, n_samples: int, *, batch_size: int = 1000) -> dict:
    """Mean loss and accuracy over ``n_samples`` full evaluations of a stochastic model (a new mask is
    drawn at every forward pass); the per-sample accuracies are under ``{split}_acc_samples``."""
    rows = [evaluate(model, data, split, batch_size=batch_size) for _ in range(n_samples)]
    accs = [r[f"{split}_acc"] for r in rows]
    return {f"{split}_acc": sum(accs) / n_samples,
            f"{split}_loss": sum(r[f"{split}_loss"] for r in rows) / n_samples,
            f"{split}_acc_samples": accs}


@torch.no_grad()
def randomize_signs(sm: BernoulliSupermask, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Flip the sign of each frozen weight of ``sm`` independently with probability 1/2, in place; returns
    the flipped positions per weight. Draws ``torch.rand(shape, generator=g) < 0.5`` on the CPU, one tensor
    per weight in ``sm.names`` order; magnitudes and scores are untouched."""
    flips = {}
    for n in sm.names:
        w = sm.base_weight(n)
        flip = torch.rand(w.shape, generator=g) < 0.5
        flips[n] = flip
        sm.set_base_weight(n, torch.where(flip.to(w.device), -w, w))
    return flips


def _run_learned_supermask(cfg: LearnedSupermaskConfig, ctx: RunContext) -> ProcedureResult:
    """Train a Bernoulli supermask over the frozen initial weights; one row, variant ``supermask``."""
    train_cfg = ctx.train_cfg
    model = ctx.model_fn(ctx.seed)
    sm = BernoulliSupermask(model, cfg.scope, score_init=cfg.score_init, mode=cfg.mode,
                            signed_constant=cfg.signed_constant, dynamic_rescale=cfg.dynamic_rescale)
    res = ctx.train(sm, seed=ctx.seed, desc="supermask")
    sm.to(resolve_device(train_cfg.device))
    torch.manual_seed(derive_seed(ctx.seed, "supermask-eval"))
    row = {"iteration": res.iterations, "expected_density": sm.expected_density()}
    for split in train_cfg.eval_splits:
        if split == "val" and getattr(ctx.data, "val", None) is None:
            continue
        row.update(evaluate_sampled(sm, ctx.data, split, cfg.eval_samples, batch_size=train_cfg.eval_batch_size))
    hard = sm.hard_mask().to("cpu")
    hard.shapes.update({n: tuple(sm.base_weight(n).shape) for n in sm.names})
    # the sampled-mask evaluation, not training's last one; its spread and the expected density go in the row
    extra = {k: v for k, v in row.items() if k == "expected_density" or k.endswith("_acc_samples")}
    if cfg.sign_randomize:
        extra.update(_sign_randomized_eval(cfg, ctx, sm))
    ctx.row("supermask", 0, hard, res, final=row, extra=extra)
    ctx.result.model = sm
    ctx.result.states["final"] = snapshot(sm)
    return ctx.result


def _sign_randomized_eval(cfg: LearnedSupermaskConfig, ctx: RunContext, sm: BernoulliSupermask) -> dict:
    """The trained supermask evaluated on randomly sign-flipped weights; the weights are put back after."""
    train_cfg = ctx.train_cfg
    original = {n: sm.base_weight(n).clone() for n in sm.names}
    randomize_signs(sm, generator(ctx.seed, "supermask-sign-flip"))
    torch.manual_seed(derive_seed(ctx.seed, "supermask-sign-flip-eval"))
    out = {}
    try:
        for split in train_cfg.eval_splits:
            if split == "val" and getattr(ctx.data, "val", None) is None:
                continue
            r = evaluate_sampled(sm, ctx.data, split, cfg.eval_samples, batch_size=train_cfg.eval_batch_size)
            out.update({f"sign_randomized_{k}": v for k, v in r.items()})
    finally:
        for n, w in original.items():
            sm.set_base_weight(n, w)
    return out
