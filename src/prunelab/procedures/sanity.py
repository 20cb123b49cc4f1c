"""Sanity-checking pruning methods (Su et al. 2020, spec §4): initial, random, partially-trained and
hybrid tickets, each trained with and without the sanity checks.

One call of :func:`run_sanity` shares what the methods share, as SC's scripts do: one initialisation θ0
for every ticket, and one dense training per data check whose trained weights define the LT / LR-rewinding
/ hybrid masks. Methods:

- ``snip``, ``grasp``, ``synflow``: scores at θ0 (SynFlow iterative, data-free) -> mask -> train from θ0;
- ``lt``: one-shot global magnitude pruning of the trained dense network (SC's version: convs only, the
  Linear dense, ``lt_scope="sc_conv"``), survivors rewound to θ0 ("initial ticket");
- ``lt_rewind``: the same mask, rewound to θ_k (iteration ``rewind_iteration``), schedule continued from k;
- ``lr_rewind``: the same mask on the *trained* weights, retrained with the full schedule (Renda et al.);
- ``random``: layerwise counts from ``ratio`` (smart ratio by default) at random positions, from θ0;
- ``hybrid``: the same counts filled with the largest trained weights per layer, then LR rewinding.

Checks (:mod:`prunelab.primitives.sanity`) run one at a time next to the unchecked ticket: a data check
changes only the data of the pruning step (the scoring batch, or the dense run behind LT/LRR/hybrid masks),
a ticket check changes the ticket (rearranged mask, shuffled surviving weights, re-initialised weights);
the ticket is always trained on the true data with the same budget. Set ``cross_checks`` to also run every
(data check, ticket check) pair, ``checked_methods`` to check only some methods.

Each ticket is one row with ``variant`` = method[/check] and stage index ``round`` = index into
``sparsities``; the dense runs are variants ``dense`` and ``dense/<data check>`` (round 0).

Iterative pruning (``pruning="iterative"``, spec §4.3 "iterative is possible"): the LT family finds its
masks by IMP instead of one magnitude cut. From the shared dense run, ``imp_rounds`` rounds each remove
``imp_rate`` of the remaining weights by magnitude (SC's rule per ``lt_scope``: with ``sc_conv`` every round
removes int(rate·kept) conv weights, the Linear stays dense); between rounds the network is reset per method
and retrained with the mask: ``lt`` to θ0, ``lt_rewind`` to θ_k with the schedule continued from k (late
resetting), ``lr_rewind`` keeps the trained weights and replays the schedule (Renda et al.). Every training
of the pruning phase (the dense run and rounds 1..imp_rounds-1) uses the data check's data; the mask of the
last round is the ticket, and only that final ticket gets the ticket checks and trains on the true data
(``lt_rewind`` from the pruning phase's θ_k, ``lr_rewind`` from the last pruning-phase weights). SNIP /
GraSP / SynFlow, random and hybrid tickets are built once at the sparsity IMP reaches,
1 − (1 − imp_rate)^imp_rounds (each rounding as in one-shot; hybrid from the dense run's weights), so
``sparsities`` is not given. Stage index in this mode: the IMP round — 0 for the dense runs, r for the
pruning-phase training after the r-th pruning (variants ``imp/<method>[/<data check>]``, one per LT-family
method and data check), ``imp_rounds`` for every ticket; ticket rows also carry ``imp_rounds``.
With ``imp_rounds=1`` the iterative tickets (masks, trainings) equal one-shot's at ``sparsities=(imp_rate,)``.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

import torch
from pydantic import Field, field_validator, model_validator

from ..errors import ConfigError
from ..primitives.allocation import check_sparsity
from ..primitives.masks import Mask
from ..primitives.ratios import RATIO_RULES, SMART_VARIANTS, ratio_counts, ratio_mask
from ..primitives.sanity import DATA_CHECKS, SC_LABEL_SEED, TICKET_CHECKS, apply_data_check, apply_ticket_check
from ..primitives.scores import compute_scores
from ..primitives.selection import select_global
from ..pruning import prune
from ..seeding import derive_seed, generator
from ..training import restore, snapshot
from .base import Procedure, ProcedureResult, RunContext, register_procedure

METHODS = ("snip", "grasp", "synflow", "lt", "lt_rewind", "lr_rewind", "random", "hybrid")
INIT_SCORES = ("snip", "grasp", "synflow")
FROM_DENSE = ("lt", "lt_rewind", "lr_rewind", "hybrid")
USES_DATA = ("snip", "grasp", "lt", "lt_rewind", "lr_rewind", "hybrid")   # data checks apply to these
LT_SCOPES = ("sc_conv", "conv_linear")
IMP_METHODS = ("lt", "lt_rewind", "lr_rewind")   # found by IMP with pruning="iterative"
PRUNINGS = ("oneshot", "iterative")
_ONESHOT_SPARSITIES = (0.9,)   # the default of ``sparsities`` (an iterative run may not change it)


@register_procedure("sanity")
class SanityConfig(Procedure):
    """Su et al.'s sanity checks: SNIP / GraSP / SynFlow / LT / LR-rewinding / random / hybrid tickets at
    each sparsity, with data and ticket checks."""

    kind: Literal["sanity"] = "sanity"
    stage_index: ClassVar[str] = ("one-shot: index into sparsities (0 for the dense runs); iterative: IMP round "
                                  "(0 = dense runs, r = pruning-phase training after the r-th pruning, "
                                  "imp_rounds = every ticket)")

    methods: tuple[Literal[METHODS], ...] = ("snip", "grasp", "lt", "lr_rewind", "random", "hybrid")
    sparsities: tuple[float, ...] = _ONESHOT_SPARSITIES
    pruning: Literal[PRUNINGS] = "oneshot"     # how the LT family finds its masks (iterative: IMP)
    imp_rounds: int = Field(1, ge=1)           # iterative only: IMP rounds
    imp_rate: float = Field(0.2, gt=0, lt=1)   # iterative only: fraction of the remaining weights per round
    data_checks: tuple[Literal[DATA_CHECKS], ...] = ()
    ticket_checks: tuple[Literal[TICKET_CHECKS], ...] = ()
    cross_checks: bool = False
    checked_methods: Optional[tuple[Literal[METHODS], ...]] = None   # methods the checks apply to; None: all
    selection: Literal["global", "layerwise"] = "global"      # SNIP / GraSP / SynFlow allocation
    lt_scope: Literal[LT_SCOPES] = "sc_conv"
    ratio: Literal[RATIO_RULES] = "smart"                     # random and hybrid tickets
    smart_variant: Literal[SMART_VARIANTS] = "quadratic"
    smart_arch: Literal["auto", "vgg", "resnet"] = "auto"
    linear_keep_ratio: float = Field(0.3, ge=0, le=1)
    samples_per_class: int = Field(10, ge=1)
    score_iterations: int = Field(1, ge=1)
    grasp_temperature: float = Field(200.0, gt=0)
    synflow_iterations: int = Field(100, ge=1)
    rewind_iteration: int = Field(0, ge=0)
    label_seed: int = Field(SC_LABEL_SEED, ge=0)

    @field_validator("sparsities")
    @classmethod
    def _sparsities(cls, v):
        if not v:
            raise ValueError("give at least one sparsity (fraction removed, e.g. 0.9)")
        for s in v:
            if not 0 <= s < 1:
                raise ValueError(f"sparsity {s!r} is outside [0, 1) (fraction of weights removed)")
        return v

    @model_validator(mode="after")
    def _pruning_mode(self):
        # by value, not by fields set, so a dumped spec (defaults included) validates again
        if self.pruning == "oneshot" and (self.imp_rounds != 1 or self.imp_rate != 0.2):
            raise ValueError(f"imp_rounds={self.imp_rounds} / imp_rate={self.imp_rate} need pruning='iterative'")
        if self.pruning == "iterative" and tuple(self.sparsities) != _ONESHOT_SPARSITIES:
            raise ValueError(f"pruning='iterative' reaches 1 - (1 - imp_rate)^imp_rounds = "
                             f"{self.imp_sparsity():.4f}; leave sparsities={list(self.sparsities)} out "
                             f"(set imp_rounds / imp_rate instead)")
        return self

    def imp_sparsity(self) -> float:
        """The sparsity the IMP rounds reach: 1 − (1 − imp_rate)^imp_rounds (before per-round rounding)."""
        return 1.0 - (1.0 - self.imp_rate) ** self.imp_rounds

    def targets(self) -> tuple[float, ...]:
        """The sparsities tickets are built at: ``sparsities``, or the IMP sparsity when iterative."""
        return (self.imp_sparsity(),) if self.pruning == "iterative" else tuple(self.sparsities)

    def imp_runs(self) -> list[tuple[str, str]]:
        """(LT-family method, data check) pairs that run an IMP pruning phase (iterative only)."""
        if self.pruning != "iterative":
            return []
        out = []
        for m in self.methods:
            if m in IMP_METHODS:
                out += [(m, d) for d in dict.fromkeys(d for d, _ in self.combos(m))]
        return out

    def combos(self, method: str) -> list[tuple[str, str]]:
        """The (data check, ticket check) pairs a method is trained with, the unchecked one first."""
        if self.checked_methods is not None and method not in self.checked_methods:
            return [("none", "none")]
        data = [d for d in self.data_checks if d != "none"] if method in USES_DATA else []
        tick = [t for t in self.ticket_checks if t != "none"]
        out = [("none", "none")] + [(d, "none") for d in data] + [("none", t) for t in tick]
        if self.cross_checks:
            out += [(d, t) for d in data for t in tick]
        return out

    def dense_checks(self) -> list[str]:
        """Data checks that need a dense training (the unchecked one first)."""
        used = {d for m in self.methods if m in FROM_DENSE for d, _ in self.combos(m)}
        return [d for d in ("none", *self.data_checks) if d in used]

    def trainings(self) -> int:
        if self.pruning == "iterative":
            return (len(self.dense_checks()) + (self.imp_rounds - 1) * len(self.imp_runs())
                    + sum(len(self.combos(m)) for m in self.methods))
        return len(self.dense_checks()) + len(self.sparsities) * sum(len(self.combos(m)) for m in self.methods)

    def run(self, ctx: RunContext) -> ProcedureResult:
        return _run_sanity(self, ctx)


def sc_lt_mask(model: torch.nn.Module, sparsity: float, *, generator: Optional[torch.Generator] = None) -> Mask:
    """SC's LT_prune.py: one-shot global magnitude over the conv weights only, removing int(p·N) of the N
    conv+Linear weights so the overall sparsity is p while every Linear stays dense."""
    s = check_sparsity(sparsity)
    full, convs = Mask.ones(model, "conv_linear"), Mask.ones(model, "conv")
    if int(s * full.total()) > convs.total():
        raise ConfigError(f"sparsity {s} removes {int(s * full.total())} weights but the convs hold only "
                          f"{convs.total()}; with lt_scope='sc_conv' the sparsity must be at most "
                          f"{convs.total() / full.total():.4f} (or use lt_scope='conv_linear')")
    return sc_lt_prune(model, full, s, generator=generator)


def sc_lt_prune(model: torch.nn.Module, mask: Mask, rate: float, *,
                generator: Optional[torch.Generator] = None) -> Mask:
    """One more round of SC's LT rule on a pruned network (LT_prune.py applied to a pruned checkpoint):
    of the K conv+Linear weights ``mask`` keeps, int(rate·K) more are removed, all from the kept conv
    weights by global magnitude; the Linear entries stay as in ``mask`` (dense)."""
    r = check_sparsity(rate, "pruning rate")
    conv_names = set(Mask.ones(model, "conv"))
    convs = Mask({n: mask[n] for n in mask if n in conv_names},
                 {n: mask.shapes[n] for n in mask if n in conv_names})
    remove = int(r * mask.kept())
    if remove > convs.kept():
        raise ConfigError(f"this round removes {remove} weights but the convs keep only {convs.kept()}; with "
                          f"lt_scope='sc_conv' use fewer imp_rounds or a smaller imp_rate "
                          f"(or lt_scope='conv_linear')")
    kept = select_global(compute_scores("magnitude", model, convs), convs, convs.kept() - remove,
                         ties="random", generator=generator)
    return Mask({n: kept[n] if n in kept else mask[n] for n in mask}, mask.shapes)


def init_score_mask(model: torch.nn.Module, method: str, sparsity: float, data, *, cfg: SanityConfig,
                    seed: int = 0) -> Mask:
    """The SNIP / GraSP / SynFlow mask of ``model`` (at its current, usually initial, weights)."""
    ctx: dict = {}   # prune() derives the score's generator (batch draw, GraSP re-init) from ``seed``
    if method == "synflow":
        ctx = {"iterations": cfg.synflow_iterations, "target_sparsity": sparsity,
               "input_shape": tuple(data.input_shape)}
    elif method in ("snip", "grasp"):
        ctx.update(data=data, samples_per_class=cfg.samples_per_class, iterations=cfg.score_iterations,
                   temperature=cfg.grasp_temperature)
    else:
        raise ConfigError(f"init_score_mask takes snip, grasp or synflow, got {method!r}")
    return prune(model, sparsity=sparsity, score=method, allocation=cfg.selection, seed=seed, apply=False,
                 **ctx)


def _run_sanity(cfg: SanityConfig, ctx: RunContext) -> ProcedureResult:
    """Train every (method, sparsity, check) ticket of ``cfg``; one row per training."""
    seed, data, train_cfg = ctx.seed, ctx.data, ctx.train_cfg
    model = ctx.model_fn(seed)
    init_state = snapshot(model)
    uses_reinit = any(t == "reinit" for m in cfg.methods for _, t in cfg.combos(m))
    fresh_state = snapshot(ctx.model_fn(derive_seed(seed, "reinit"))) if uses_reinit else None
    k = cfg.rewind_iteration
    needs_rewind = "lt_rewind" in cfg.methods
    checked = {d: apply_data_check(d, data, seed=cfg.label_seed)
               for d in {"none", *cfg.data_checks}}

    dense = {}   # data check -> (trained state, rewind state)
    for d in cfg.dense_checks():
        restore(model, init_state)
        res = ctx.train(model, train_cfg, data=checked[d], seed=derive_seed(seed, "dense", d),
                       checkpoint_at=(k,) if needs_rewind else (), desc=f"dense {d}")
        dense[d] = (snapshot(model), res.checkpoints.get(k))
        full = Mask.ones(model, "conv_linear")
        _row(ctx, "dense" if d == "none" else f"dense/{d}", 0, full, res,
             {"method": "dense", "data_check": d, "ticket_check": "none", "sparsity": 0.0})

    iterative = cfg.pruning == "iterative"
    imp = _imp_phase(cfg, ctx, model, init_state, dense, checked) if iterative else {}
    for r, sparsity in enumerate(cfg.targets()):
        masks: dict[tuple, Mask] = {}   # LT, LT-rewind and LR rewinding share one magnitude mask
        for method in cfg.methods:
            kind = "magnitude" if method in IMP_METHODS else method
            for d, t in cfg.combos(method):
                if iterative and method in IMP_METHODS:
                    masks[method, d] = imp[method, d][0]   # each rewind mode has its own IMP mask
                    kind = method
                if (kind, d) not in masks:
                    masks[kind, d] = _method_mask(method, model, init_state, dense.get(d), checked[d],
                                                  sparsity, cfg, derive_seed(seed, "mask", kind, d, r))
                start, start_it = _start_state(method, init_state, dense.get(d), k)
                if iterative and method == "lr_rewind":
                    start = imp[method, d][1]   # the last pruning-phase weights
                if t == "reinit":
                    start_it = 0   # a fresh initialisation has no θ_k
                g = generator(seed, "ticket-check", method, d, t, r)
                state, mask = apply_ticket_check(t, start, masks[kind, d], generator=g,
                                                 fresh_state=fresh_state)
                restore(model, state)
                res = ctx.train(model, mask=mask, start_iteration=start_it,
                                seed=derive_seed(seed, "ticket", r), desc=f"{method} {d} {t} {sparsity}")
                label = "/".join([method] + [c for c in (d, t) if c != "none"])
                extra = {"method": method, "data_check": d, "ticket_check": t, "sparsity": sparsity}
                if iterative:
                    extra["imp_rounds"] = cfg.imp_rounds
                _row(ctx, label, cfg.imp_rounds if iterative else r, mask, res, extra)
    ctx.result.model = model
    return ctx.result


def _imp_phase(cfg: SanityConfig, ctx: RunContext, model, init_state: dict, dense: dict,
               checked: dict) -> dict[tuple[str, str], tuple[Mask, dict]]:
    """The pruning phase of iterative LT / LT-rewind / LR rewinding: for each (method, data check) of
    :meth:`SanityConfig.imp_runs`, IMP from that check's dense run, every round trained on the checked
    data. Returns (mask after ``imp_rounds`` prunings, weights of the last pruning-phase training)."""
    seed, k, rate = ctx.seed, cfg.rewind_iteration, cfg.imp_rate
    first: dict[str, Mask] = {}   # round 1 prunes the dense run: one mask per data check (as one-shot)
    out = {}
    for method, d in cfg.imp_runs():
        trained, theta_k = dense[d]
        if d not in first:
            first[d] = _method_mask(method, model, init_state, dense[d], checked[d], rate, cfg,
                                    derive_seed(seed, "mask", "magnitude", d, 0))
        mask, state = first[d], trained
        for rnd in range(1, cfg.imp_rounds):
            if method == "lt":
                start, start_it = init_state, 0
            elif method == "lt_rewind":
                start, start_it = theta_k, k
            else:                      # lr_rewind: trained weights, schedule replayed
                start, start_it = state, 0
            start, _ = apply_ticket_check("none", start, mask)
            restore(model, start)
            res = ctx.train(model, mask=mask, data=checked[d], start_iteration=start_it,
                            seed=derive_seed(seed, "round", rnd), desc=f"imp {method} {d} round {rnd}")
            _row(ctx, "/".join(["imp", method] + ([d] if d != "none" else [])), rnd, mask, res,
                 {"method": f"imp/{method}", "data_check": d, "ticket_check": "none",
                  "sparsity": 1.0 - (1.0 - rate) ** rnd, "imp_rounds": cfg.imp_rounds})
            state = snapshot(model)
            g = generator(derive_seed(seed, "mask", method, d, rnd), "select")
            if cfg.lt_scope == "sc_conv":
                mask = sc_lt_prune(model, mask, rate, generator=g)
            else:
                mask = prune(model, mask=mask, rate=rate, scope="conv_linear", score="magnitude",
                             seed=derive_seed(seed, "mask", method, d, rnd), apply=False)
        out[method, d] = (mask, state)
    return out


def _method_mask(method, model, init_state, dense, data, sparsity, cfg: SanityConfig, mseed: int) -> Mask:
    g = generator(mseed, "select")
    if method in INIT_SCORES:
        restore(model, init_state)
        return init_score_mask(model, method, sparsity, data, cfg=cfg, seed=mseed)
    if method == "random":
        restore(model, init_state)
        return ratio_mask(model, _counts(model, sparsity, cfg), fill="random", generator=g)
    trained = dense[0]
    restore(model, trained)
    if method == "hybrid":
        return ratio_mask(model, _counts(model, sparsity, cfg), fill="magnitude", generator=g)
    if cfg.lt_scope == "sc_conv":
        return sc_lt_mask(model, sparsity, generator=g)
    return prune(model, sparsity=sparsity, scope="conv_linear", score="magnitude", seed=mseed, apply=False)


def _counts(model, sparsity: float, cfg: SanityConfig) -> dict[str, int]:
    if cfg.ratio == "smart":
        return ratio_counts(model, sparsity, "smart", variant=cfg.smart_variant, arch=cfg.smart_arch,
                            linear_keep_ratio=cfg.linear_keep_ratio)
    return ratio_counts(model, sparsity, cfg.ratio)


def _start_state(method: str, init_state: dict, dense, k: int) -> tuple[dict, int]:
    if method in ("lr_rewind", "hybrid"):
        return dense[0], 0          # trained weights, full schedule replayed
    if method == "lt_rewind":
        return dense[1], k          # θ_k, schedule continued from k
    return init_state, 0


def _row(ctx: RunContext, variant: str, rnd: int, mask: Mask, res, extra: dict) -> None:
    accs = [h["test_acc"] for h in res.history if "test_acc" in h]
    if accs:
        extra = {**extra, "best_test_acc": max(accs)}
    ctx.row(variant, rnd, mask, res, extra=extra)
