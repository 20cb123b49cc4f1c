"""Pruning during training and its (in)stability: Bartoldson et al. 2020, the generalization-stability
tradeoff (spec §2).

Selected convs lose whole filters on a per-layer schedule while the network trains (§2.3): a layer with F
filters and final fraction f keeps K = ceil((1 − f)·F); pruning events happen after the training of epochs
``range(start, end + 1, retrain_period)``, and after event i of N the layer keeps
ceil(K + (F − K)·(N − i)/N) filters (a linear decay of the kept count). Each event removes the lowest
(``small``, Prune_S), highest (``large``, Prune_L) or random (``random``, Prune_R) scoring unpruned filters;
ties go by channel index. A pruned channel outputs exactly 0 (filter, BN γ and β masked; residual shortcuts
blocked, :class:`~prunelab.primitives.filters.FilterMasking`). ``scratch`` prunes every layer to its final
fraction before training.

One epoch, in order (§2.3b): train; if a layer prunes now, test accuracy → acc_pre; prune; the epoch's test
evaluation → acc_post. instability = (acc_pre − acc_post)/acc_pre, stability = 100·(1 − instability) (§2.2).

``noise`` replaces removal by noise on the same targets (§2.5): nothing is masked, and

- ``zeroing``: the filters targeted at an event are set to 0 before each of the next N + 1 forward passes
  (test and training batches count), then train freely again (re-entry near zero);
- ``gaussian``: N(0, σ²) is added to them before each of the next N + 1 passes (a random walk), σ = std of
  the layer's first untargeted filter;
- ``cumulative_restore``: every filter targeted so far, with its BN γ and β, is zeroed for N passes; then its
  weights, bias, γ, β and BN running statistics get back the values saved at the event.
"""
from __future__ import annotations

import math
from typing import ClassVar, Literal, Optional

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from ..errors import ConfigError, unknown_name
from ..primitives.filter_scores import ActivationTracker
from ..primitives.filters import FilterMasking, filter_mask, resolve_convs
from ..primitives.masks import Mask
from ..primitives.noise import NOISE_KINDS, NoiseInjector
from ..primitives.schedules import ceil_count, filter_schedule
from ..primitives.scores import compute_scores
from ..primitives.selection import FILTER_TARGETS, select_filters
from ..seeding import generator
from ..training import MaskSchedule, TrainConfig, evaluate, snapshot
from ..training.loop import _has_conv2d, resolve_device
from .base import Procedure, ProcedureResult, RunContext, register_procedure
from .gst_metrics import instability, stability, summarize_run  # noqa: F401 (also the module's API)

TARGETS = FILTER_TARGETS


class LayerSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    fraction: float = Field(..., ge=0, lt=1)   # final fraction of the layer's filters removed
    start: int = Field(0, ge=0)                # first pruning epoch (0-based, after its training)
    end: int = Field(0, ge=0)                  # last epoch that may hold an event

    @model_validator(mode="after")
    def _order(self):
        if self.end < self.start:
            raise ValueError(f"end={self.end} is before start={self.start}")
        return self


class NoiseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal[NOISE_KINDS]
    passes: int = Field(..., ge=0)   # N: forward passes (test and training batches) the noise lasts


class FlatnessSpec(BaseModel):
    """Flatness measures (§2.6) after training, on the first ``images`` test images, model in eval mode."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    images: int = Field(512, ge=1)
    top_k: int = Field(10, ge=1)
    method: Literal["lanczos", "power"] = "lanczos"
    iterations: int = Field(100, ge=1)
    batch_size: int = Field(256, ge=1)
    grad_cov: bool = True
    perturb_vectors: int = Field(0, ge=0)   # eigenvectors to perturb along (GST: top 10)
    perturb_eps: tuple[float, ...] = ()      # GST: -0.40, -0.39, ..., 0.40


@register_procedure("stability")
class StabilityConfig(Procedure):
    """Pruning during training (§2.3) or its noise variants (§2.5). ``config`` is only a name: the row of
    spec §2.4 the run reproduces, used as its variant. The rows themselves are recipe data
    (``recipes/stability/*.yaml``, one ``sweep.cases`` entry per row; ``load_plan`` gives their configs).
    ``schedule_scale`` multiplies every epoch of the schedule (start, end, retrain period)."""

    kind: Literal["stability"] = "stability"
    stage_index: ClassVar[str] = "0 (one training run)"

    config: Optional[str] = None
    layers: dict[str, LayerSchedule] = Field(default_factory=dict)  # convN, module name or fnmatch pattern
    retrain_period: int = Field(40, ge=1)
    schedule_scale: float = Field(1.0, gt=0)
    # multiplies every layer's final pruned fraction: at reduced width GST's fractions leave too few filters
    fraction_scale: float = Field(1.0, gt=0)
    target: Literal[TARGETS] = "large"     # GST's default (target_large=True)
    score: str = "l2"
    ties: Literal["index", "random"] = "index"
    scratch: bool = False
    mask_bn: bool = True
    noise: Optional[NoiseSpec] = None
    flatness: Optional[FlatnessSpec] = None
    activation_every: int = Field(10, ge=1)
    activation_momentum: float = Field(0.1, gt=0, le=1)

    @model_validator(mode="after")
    def _consistent(self):
        if self.noise is not None and self.scratch:
            raise ValueError("noise replaces pruning events during training; scratch pruning has none")
        from ..primitives.scores import list_scores
        if self.score not in list_scores():
            raise ValueError(str(unknown_name("score", self.score, list_scores())))
        too_big = {k: v.fraction for k, v in self.layers.items() if v.fraction * self.fraction_scale >= 1}
        if too_big:
            raise ValueError(f"fraction_scale={self.fraction_scale} makes the pruned fraction of {too_big} "
                             f"reach 1; allowed: fraction * fraction_scale < 1")
        return self

    def fraction(self, pattern: str) -> float:
        return self.layers[pattern].fraction * self.fraction_scale

    def scaled(self, epoch: int) -> int:
        return int(round(epoch * self.schedule_scale))

    def layer_plan(self, model: nn.Module) -> dict[int, dict[str, int]]:
        """``{epoch: {conv weight name: filters kept after that epoch's event}}``."""
        plan: dict[int, dict[str, int]] = {}
        convs = resolve_convs(model, self.layers)
        period = max(1, self.scaled(self.retrain_period))
        for conv, pattern in convs.items():
            s = self.layers[pattern]
            f = model.get_submodule(conv).out_channels
            for e, kept in filter_schedule(f, self.fraction(pattern), self.scaled(s.start), self.scaled(s.end),
                                           period):
                plan.setdefault(e, {})[f"{conv}.weight"] = kept
        return dict(sorted(plan.items()))

    def run(self, ctx: RunContext) -> ProcedureResult:
        return _run_stability(self, ctx)

    def final_counts(self, model: nn.Module) -> dict[str, int]:
        out = {}
        for conv, pattern in resolve_convs(model, self.layers).items():
            f = model.get_submodule(conv).out_channels
            out[f"{conv}.weight"] = ceil_count((1.0 - self.fraction(pattern)) * f)
        return out


# the procedure ---------------------------------------------------------------------------------------
def _variant(cfg: StabilityConfig) -> str:
    if cfg.config:
        return cfg.config
    if not cfg.layers:
        return "no_pruning"
    if cfg.scratch:
        return "scratch"
    name = {"small": "prune_S", "large": "prune_L", "random": "prune_R"}[cfg.target]
    return f"{cfg.noise.kind}{cfg.noise.passes}_{name}" if cfg.noise else name


class FilterPruning(MaskSchedule):
    """GST's pruning events as a mask schedule: after the training of each planned epoch, test accuracy
    (acc_pre), then prune the layers due and return the new mask (with BN γ/β) for the loop to enforce; with
    ``noise`` the targeted filters get noise windows instead and nothing is masked."""

    def __init__(self, model: nn.Module, data, cfg: StabilityConfig, fmask: Mask, plan: dict, per_epoch: int,
                 eval_kw: dict, seed: int):
        self.model, self.data, self.cfg, self.plan, self.per_epoch = model, data, cfg, plan, per_epoch
        self.eval_kw, self.seed = eval_kw, seed
        self.mask = fmask
        self.tracker = (ActivationTracker(model, [n[:-7] for n in fmask], every=cfg.activation_every,
                                          momentum=cfg.activation_momentum) if cfg.score == "activations" else None)
        self.masking = (FilterMasking(model, fmask, mask_bn=cfg.mask_bn) if cfg.noise is None and len(fmask)
                        else None)
        self.noise = NoiseInjector(model, cfg.noise, seed=seed) if cfg.noise is not None else None
        self.g_sel = generator(seed, "gst-selection")
        self.events: list[dict] = []

    def prune_now(self, counts: dict[str, int]) -> dict:
        cur = self.mask
        scores = compute_scores(self.cfg.score, self.model, cur, activations=self.tracker,
                                generator=generator(self.seed, "score"))
        new = select_filters(scores, cur, counts, self.cfg.target, ties=self.cfg.ties, generator=self.g_sel)
        removed = cur - new
        means = [float(scores[n][removed[n]].float().mean()) for n in counts if bool(removed[n].any())]
        self.mask = new
        if self.masking is not None:
            self.masking.update(new)
        if self.noise is not None:
            self.noise.target(removed, new)
        return {"pruned_score": sum(means) / len(means) if means else -1.0,
                "kept": {n: int(new[n].sum()) for n in counts}}

    def initial(self, model: nn.Module) -> Optional[Mask]:
        return self.masking.full if self.masking is not None else None

    def update(self, it: int, model: nn.Module, optimizer) -> Optional[Mask]:
        if it % self.per_epoch:
            return None
        epoch = it // self.per_epoch - 1
        if epoch not in self.plan:
            return None
        pre = evaluate(model, self.data, "test", **self.eval_kw)
        info = self.prune_now(self.plan[epoch])
        self.events.append({"epoch": epoch, "iteration": it, "acc_pre": pre["test_acc"],
                            "loss_pre": pre["test_loss"], **info})
        return self.initial(model)

    def state_dict(self) -> dict:
        return {"mask": dict(self.mask.items()), "events": self.events, "g_sel": self.g_sel,
                "tracker": self.tracker.state_dict() if self.tracker is not None else None,
                "noise": self.noise.state_dict() if self.noise is not None else None}

    def load_state_dict(self, state: dict) -> None:
        device = next(self.model.parameters()).device
        self.mask = Mask(state["mask"], self.mask.shapes).to(device)
        if self.masking is not None:
            self.masking.update(self.mask)
        self.events = [dict(e) for e in state["events"]]
        self.g_sel.set_state(state["g_sel"].get_state())
        if self.tracker is not None:
            self.tracker.load_state_dict(state["tracker"])
        if self.noise is not None:
            self.noise.load_state_dict(state["noise"])

    def remove(self) -> None:
        for h in (self.masking, self.noise, self.tracker):
            if h is not None:
                h.remove()


def _run_stability(cfg: StabilityConfig, ctx: RunContext) -> ProcedureResult:
    """Train one network while pruning it on ``cfg``'s schedule; one row whose ``extra`` holds
    mean_stability, best_test_acc, gen_gap, the events and (with ``cfg.flatness``) flatness measures."""
    train_cfg, data, seed = ctx.train_cfg, ctx.data, ctx.seed
    if "test" not in train_cfg.eval_splits:
        raise ConfigError(f"stability is measured on the test split; eval_splits={train_cfg.eval_splits} "
                          f"must include 'test'")
    cfg_t = train_cfg.model_copy(update={"eval_every": None})  # one evaluation per epoch: acc_post
    device = resolve_device(cfg_t.device)
    model = ctx.model_fn(seed).to(device)
    fmask = filter_mask(model, cfg.layers) if cfg.layers else Mask({}, {})
    plan = cfg.layer_plan(model) if cfg.layers and not cfg.scratch else {}
    n_train = len(data.train)
    per_epoch = cfg_t.iterations_per_epoch(n_train)
    epochs = math.ceil(cfg_t.total_iterations(n_train) / per_epoch)
    late = [e for e in plan if e >= epochs]
    if late:
        raise ConfigError(f"pruning epochs {late} are past the last epoch ({epochs - 1}); shorten the schedule "
                          f"(schedule_scale={cfg.schedule_scale}) or train longer")
    channels_last = cfg_t.channels_last if cfg_t.channels_last is not None else _has_conv2d(model)
    eval_kw = dict(batch_size=cfg_t.eval_batch_size, precision=cfg_t.precision, channels_last=channels_last)
    pruning = FilterPruning(model, data, cfg, fmask, plan, per_epoch, eval_kw, seed)
    scratch_kept = pruning.prune_now(cfg.final_counts(model))["kept"] if cfg.scratch and len(fmask) else None
    try:
        res = ctx.train(model, cfg_t, seed=seed, mask_schedule=pruning, desc=f"stability {_variant(cfg)}")
    finally:
        pruning.remove()
    if pruning.masking is not None:
        pruning.masking.apply()  # GST zeroes masked weights once more before the final evaluation
    events = pruning.events
    extra = summarize_run(res.history, events, scratch=cfg.scratch)
    extra["events"] = events
    if scratch_kept is not None:
        extra["scratch_kept"] = scratch_kept
    if cfg.flatness is not None:
        from ..training.flatness import flatness_measures
        extra.update(flatness_measures(model, data, cfg.flatness))
    # an empty mask (unpruned configs) counts 0 of 0: the row reports that as fully dense
    ctx.row(_variant(cfg), 0, pruning.mask, res, extra=extra)
    ctx.result.model = model
    ctx.result.states["final"] = snapshot(model)
    return ctx.result
