"""Mask criteria of Zhou et al. 2019 ("Deconstructing lottery tickets", spec §3.3) as registered scores.

Every criterion is a score M(w_i, w_f) (keep the largest): ``w_f`` is the model's current (trained) weight,
``w_i`` the weight it started from, given as ``init_state`` (a state dict, e.g. ``snapshot(model)`` taken
before training). Used with per-layer allocation at the LTH rates they prune as the official code does;
ties are broken by the selection step (``ties="random"``).

The ``*_single`` variants are not rates but fixed masks (keep exactly the same-/different-sign weights):
:func:`single_mask`.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from ..errors import ConfigError, unknown_name
from .masks import Mask
from .scores import register_score


def _pairs(model: nn.Module, mask: Mask, init_state: Mapping[str, torch.Tensor] | None):
    if init_state is None:
        raise ConfigError("this mask criterion compares initial and final weights: pass init_state= "
                          "(the state dict the weights were trained from)")
    params = dict(model.named_parameters())
    for n in mask:
        if n not in init_state:
            raise ConfigError(f"init_state has no entry {n!r}; it has: {sorted(init_state)[:8]}...")
        if tuple(mask[n].shape) != tuple(params[n].shape):
            raise ConfigError(f"mask criteria score single weights; {n!r} has a coarser mask "
                              f"{tuple(mask[n].shape)} (allowed: the parameter's shape {tuple(params[n].shape)})")
        wf = params[n].detach()
        yield n, init_state[n].detach().to(device=wf.device, dtype=wf.dtype), wf


def _criterion(name: str):
    def deco(fn):
        @torch.no_grad()
        def score(model, mask, *, init_state=None, **_):
            return {n: fn(wi, wf, mask[n]) for n, wi, wf in _pairs(model, mask, init_state)}
        score.__name__ = name
        score.__doc__ = fn.__doc__
        return register_score(name, elementwise=True)(score)
    return deco


def _same_sign(wi, wf):
    return torch.sign(wi) == torch.sign(wf)


@_criterion("large_final")
def _large_final(wi, wf, m):
    """|w_f| (the original lottery ticket)."""
    return wf.abs()


@_criterion("small_final")
def _small_final(wi, wf, m):
    return -wf.abs()


@_criterion("large_init")
def _large_init(wi, wf, m):
    return wi.abs()


@_criterion("small_init")
def _small_init(wi, wf, m):
    return -wi.abs()


@_criterion("magnitude_increase")
def _magnitude_increase(wi, wf, m):
    return wf.abs() - wi.abs()


@_criterion("movement")
def _movement(wi, wf, m):
    return (wf - wi).abs()


@_criterion("large_final_same_sign")
def _lf_same(wi, wf, m):
    """|w_f| where the sign did not change, 0 where it flipped (sign flippers are pruned first)."""
    return torch.where(_same_sign(wi, wf), wf.abs(), torch.zeros_like(wf))


@_criterion("large_final_diff_sign")
def _lf_diff(wi, wf, m):
    return torch.where(_same_sign(wi, wf), torch.zeros_like(wf), wf.abs())


@_criterion("magnitude_increase_same_sign")
def _mi_same(wi, wf, m):
    return torch.where(_same_sign(wi, wf), wf.abs() - wi.abs(), torch.zeros_like(wf))


@_criterion("magnitude_increase_diff_sign")
def _mi_diff(wi, wf, m):
    return torch.where(_same_sign(wi, wf), torch.zeros_like(wf), wf.abs() - wi.abs())


def percentile_rank(x: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Rank of each entry among the ``active`` ones, in (0, 1]: the fraction of active entries <= it.

    Equal values share their highest rank, so "rank > q" is exactly "value above the q-quantile".
    """
    flat, act = x.reshape(-1), active.reshape(-1)
    vals = flat[act]
    out = torch.zeros_like(flat, dtype=torch.float64)
    if vals.numel():
        srt = torch.sort(vals).values
        out[act] = torch.searchsorted(srt, vals, right=True).double() / vals.numel()
    return out.view(x.shape)


@_criterion("large_init_large_final")
def _lilf(wi, wf, m):
    """Keep iff |w_i| and |w_f| are both above the same per-layer percentile p.

    The official code bisects p until the kept count hits the target. The kept sets for every p are
    {min(rank|w_i|, rank|w_f|) > p}, nested in p, so ranking by min of the two percentile ranks and
    keeping the top k gives the bisection's set at zero tolerance (with the exact count).
    """
    return torch.minimum(percentile_rank(wi.abs(), m), percentile_rank(wf.abs(), m))


@_criterion("small_init_small_final")
def _sisf(wi, wf, m):
    """The same construction on -|w_i| and -|w_f|: keep weights small at both times."""
    return torch.minimum(percentile_rank(-wi.abs(), m), percentile_rank(-wf.abs(), m))


@torch.no_grad()
def percentile_bisection(a: torch.Tensor, b: torch.Tensor, active: torch.Tensor, keep: int, *,
                         tol: float = 1e-4, max_iter: int = 200) -> tuple[torch.Tensor, float]:
    """The official code's construction, literally: bisect a percentile p in [0, 100] until the number of
    active entries with both ``a`` and ``b`` above their own p-th percentile (over the active entries)
    equals ``keep``, or the bracket is narrower than ``tol``. Returns (kept bool tensor, p).

    Used by the tests to show that ranking by the minimum percentile rank (the criteria above) keeps
    the same set whenever the bisection hits the count; when it cannot (two entries cross p together)
    the official code keeps an inexact count, while the rank rule keeps exactly ``keep``.
    """
    act = active.reshape(-1)
    va, vb = a.reshape(-1)[act].double(), b.reshape(-1)[act].double()
    n = va.numel()
    if not 0 <= keep <= n:
        raise ConfigError(f"keep={keep} is outside 0..{n} (the active entries)")
    srt_a, srt_b = torch.sort(va).values, torch.sort(vb).values

    def percentile(srt: torch.Tensor, p: float) -> torch.Tensor:
        # numpy's default ("linear") percentile, as the official code computes it
        pos = p / 100.0 * (n - 1)
        i = min(int(pos), n - 1)
        j = min(i + 1, n - 1)
        return srt[i] + (pos - i) * (srt[j] - srt[i])

    def kept_at(p: float) -> torch.Tensor:
        return (va > percentile(srt_a, p)) & (vb > percentile(srt_b, p))

    lo, hi = 0.0, 100.0
    p, sel = 0.0, kept_at(0.0)
    for _ in range(max_iter):
        p = (lo + hi) / 2
        sel = kept_at(p)
        count = int(sel.sum())
        if count == keep or hi - lo < tol:
            break
        if count > keep:
            lo = p
        else:
            hi = p
    out = torch.zeros_like(act)
    out[act] = sel
    return out.view(active.shape), p


# "random" is the registry's uniform random score (fresh per call, seeded by prune's seed).

SINGLE = {"large_final_same_sign_single": "same", "magnitude_increase_same_sign_single": "same",
          "large_final_diff_sign_single": "diff", "magnitude_increase_diff_sign_single": "diff"}

CRITERIA = ("large_final", "small_final", "large_init", "small_init", "large_init_large_final",
            "small_init_small_final", "magnitude_increase", "movement", "random", "large_final_same_sign",
            "large_final_diff_sign", "magnitude_increase_same_sign", "magnitude_increase_diff_sign") \
    + tuple(SINGLE)


@torch.no_grad()
def single_mask(criterion: str, model: nn.Module, mask: Mask, *,
                init_state: Mapping[str, torch.Tensor] | None) -> Mask:
    """The ``*_single`` criteria: keep exactly the (still kept) weights whose sign stayed (``same``) or
    flipped (``diff``) between ``init_state`` and now; no pruning rate."""
    if criterion not in SINGLE:
        raise unknown_name("single-mask criterion", criterion, SINGLE)
    want_same = SINGLE[criterion] == "same"
    out = {}
    for n, wi, wf in _pairs(model, mask, init_state):
        same = _same_sign(wi, wf)
        out[n] = mask[n] & (same if want_same else ~same)
    return Mask(out, mask.shapes)
