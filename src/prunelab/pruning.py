"""One-call pruning of any ``nn.Module``: score, allocate, select, apply."""
from __future__ import annotations

import contextlib
import warnings
from typing import Literal, Mapping, Optional

import torch
from torch import nn

from .errors import ConfigError
from .primitives.allocation import (RateSpec, check_sparsity, keep_global, keep_global_rate,
                                    keep_per_layer_rates, keep_uniform, resolve_rates)
from .primitives.masks import Mask
from .primitives.nm import NMLike, check_nm_mask, parse_nm, select_nm
from .primitives.scopes import ScopeLike
from .primitives.scores import compute_scores, is_elementwise
from .primitives.selection import select_global, select_layerwise
from .seeding import generator as make_generator

ALLOCATIONS = ("global", "layerwise")


@contextlib.contextmanager
def _one_intra_op_thread(model: nn.Module):
    """Pruning on CPU is a few hundred short memory-bound kernels (one or two per layer). With several
    OpenMP threads each kernel ends at a barrier, and on a busy machine (other processes, a cluster node
    shared with other jobs) a descheduled worker stalls every one of them: measured 3-5 s instead of 0.6 s
    for ResNet-50-sized weights at load 4 on 2 cores. One thread does not wait for anyone."""
    p = next(model.parameters(), None)
    n = torch.get_num_threads()
    if p is None or p.device.type != "cpu" or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def prune(model: nn.Module, *, sparsity: Optional[float] = None, rate: Optional[RateSpec] = None,
          mask: Optional[Mask] = None, scope: ScopeLike = None, score: str = "magnitude",
          allocation: Literal["global", "layerwise"] = "global", rounding: str = "plain",
          ties: str = "random", seed: int = 0, min_keep: Optional[Mapping[str, int]] = None,
          apply: bool = True, pattern: Optional[NMLike] = None, **score_context) -> Mask:
    """Prune ``model`` and return the new mask.

    Give either ``sparsity`` (final fraction of the scope removed, e.g. 0.9) or ``rate`` (fraction of the
    *remaining* weights removed now: a float, a per-layer/per-group mapping, or a preset such as
    ``"lenet300_100"``). ``mask`` is the current mask (default: everything in ``scope`` kept); pruned
    weights are never revived. ``allocation`` is ``global`` (one threshold over all layers) or
    ``layerwise`` (each layer by itself). With ``apply`` the pruned weights are zeroed in ``model``.

    ``pattern`` (``"2:4"``, ``(1, 4)``, ...) prunes N:M semi-structured instead of ``sparsity``/``rate``:
    in every group of M consecutive weights along each layer's input dimension the N highest scores stay,
    ties to the lower index (see :mod:`prunelab.primitives.nm`; ``allocation``/``ties``/``rounding``
    do not apply).
    """
    nm = None
    if pattern is not None:
        if sparsity is not None or rate is not None:
            raise ConfigError(f"pattern={pattern!r} fixes the sparsity at 1 - N/M; do not also give "
                              f"sparsity={sparsity!r} or rate={rate!r}")
        nm = parse_nm(pattern)
    elif (sparsity is None) == (rate is None):
        raise ConfigError(f"give exactly one of sparsity={sparsity!r} or rate={rate!r}")
    if allocation not in ALLOCATIONS:
        raise ConfigError(f"unknown allocation {allocation!r}; allowed: {', '.join(ALLOCATIONS)}")
    if mask is None:
        with _one_intra_op_thread(model):
            mask = Mask.ones(model, scope)
    mask.check(model)
    if nm is not None:
        check_nm_mask(mask, nm[1])   # before any (possibly costly) scoring
    scores = None
    if not is_elementwise(score):   # forward/backward passes (SNIP, GraSP, ...) use every thread
        scores = compute_scores(score, model, mask, generator=make_generator(seed, "score"), **score_context)
    with _one_intra_op_thread(model):
        if scores is None:
            scores = compute_scores(score, model, mask, generator=make_generator(seed, "score"), **score_context)
        if nm is not None:
            new = select_nm(scores, mask, *nm)
            if apply:
                new.apply(model)
            return new
        return _select_and_apply(model, sparsity, rate, mask, scores, allocation, rounding, ties, seed,
                                 min_keep, apply)


def _select_and_apply(model, sparsity, rate, mask, scores, allocation, rounding, ties, seed, min_keep,
                      apply) -> Mask:
    g = make_generator(seed, "selection")
    if allocation == "global":
        if sparsity is not None:
            keep = keep_global(mask, check_sparsity(sparsity))
        else:
            if not isinstance(rate, (int, float)):
                raise ConfigError(f"global allocation takes one rate, got {rate!r}")
            keep = keep_global_rate(mask, float(rate), rounding)
        new = select_global(scores, mask, keep, ties=ties, generator=g, min_keep=min_keep)
        emptied = [n for n in new if not bool(new[n].any()) and bool(mask[n].any())]
        if emptied:
            warnings.warn(f"global pruning removed every weight of {emptied}; the network may be "
                          f"disconnected. Pass min_keep={{name: count}} to keep a floor per layer.",
                          stacklevel=3)
    else:
        if sparsity is not None:
            counts = keep_uniform(mask, check_sparsity(sparsity))
        else:
            counts = keep_per_layer_rates(mask, resolve_rates(model, mask, rate), rounding)
        new = select_layerwise(scores, mask, counts, ties=ties, generator=g)
    if apply:
        new.apply(model)
    return new
