"""Scores rank weights: higher = more important. A score is a function registered by name:

    score_fn(model, mask, **context) -> {param_name: tensor shaped like mask[param_name]}

``context`` carries what some scores need (``init_state``, ``data``, ``generator``); scores ignore the rest.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import unknown_name
from .masks import Mask

ScoreFn = Callable[..., dict]
_SCORES: dict[str, ScoreFn] = {}
_ELEMENTWISE: set[str] = set()


def register_score(name: str, *, elementwise: bool = False):
    """Register ``fn`` under ``name``. ``elementwise`` marks scores that are a few memory-bound passes
    over the weights (magnitude, criteria of init/final values), with no forward or backward pass:
    :func:`prunelab.prune` computes those on one CPU thread with the selection."""
    def deco(fn: ScoreFn) -> ScoreFn:
        _SCORES[name] = fn
        if elementwise:
            _ELEMENTWISE.add(name)
        else:
            _ELEMENTWISE.discard(name)
        return fn
    return deco


def is_elementwise(name: str) -> bool:
    return name in _ELEMENTWISE


def list_scores() -> list[str]:
    return sorted(_SCORES)


def get_score(name: str) -> ScoreFn:
    if name not in _SCORES:
        raise unknown_name("score", name, _SCORES)
    return _SCORES[name]


def compute_scores(name: str, model: nn.Module, mask: Mask, **context) -> dict[str, torch.Tensor]:
    return get_score(name)(model, mask, **context)


def _reduce_to_mask(t: torch.Tensor, mask_shape: tuple, p: float = 1.0) -> torch.Tensor:
    """Reduce a full-shape score to a coarser mask shape by an Lp norm over the broadcast dims."""
    if tuple(t.shape) == tuple(mask_shape):
        return t
    dims = tuple(i for i, (a, b) in enumerate(zip(mask_shape, t.shape)) if a == 1 and b != 1)
    return t.abs().pow(p).sum(dim=dims, keepdim=True).pow(1.0 / p)


@register_score("magnitude", elementwise=True)
@torch.no_grad()
def magnitude(model: nn.Module, mask: Mask, **_) -> dict[str, torch.Tensor]:
    """|w| for single weights; the L1 norm for coarser (filter/channel) masks."""
    params = dict(model.named_parameters())
    ps = [params[n] for n in mask]
    if ps and all(tuple(mask[n].shape) == tuple(p.shape) for n, p in zip(mask, ps)) \
            and len({(p.dtype, p.device) for p in ps}) == 1:
        return _abs_in_one_buffer(list(mask), ps)
    return {n: _reduce_to_mask(params[n].detach().abs(), tuple(mask[n].shape)) for n in mask}


def _abs_in_one_buffer(names: list[str], ps: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    # Consecutive views of one vector: global selection ranks it as is, with no concatenated copy
    # (ResNet-50 size: one 100 MB pass and allocation fewer).
    flat = torch.empty(sum(p.numel() for p in ps), dtype=ps[0].dtype, device=ps[0].device)
    out, i = {}, 0
    for n, p in zip(names, ps):
        k = p.numel()
        torch.abs(p.detach().reshape(-1), out=flat[i:i + k])
        out[n] = flat[i:i + k].view(p.shape)
        i += k
    return out


@register_score("l2", elementwise=True)
@torch.no_grad()
def l2_norm(model: nn.Module, mask: Mask, **_) -> dict[str, torch.Tensor]:
    """|w| for single weights; the L2 norm for filter/channel masks (GST's default filter score)."""
    params = dict(model.named_parameters())
    return {n: _reduce_to_mask(params[n].detach().abs(), tuple(mask[n].shape), 2.0) for n in mask}


@register_score("random", elementwise=True)
def random_score(model: nn.Module, mask: Mask, *, generator: torch.Generator | None = None, **_):
    """Uniform random scores: selecting with them gives a random mask with the same counts."""
    return {n: torch.rand(mask[n].shape, generator=generator).to(mask[n].device) for n in mask}
