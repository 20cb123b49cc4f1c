"""N:M semi-structured masks (2:4, 1:4, 4:8, ...).

Groups: ``M`` consecutive weights along the *input* dimension (dim 1). For a Linear weight ``(out, in)``
a group is ``w[o, g*M:(g+1)*M]``; for a Conv2d weight ``(out, in, kh, kw)`` it is
``w[o, g*M:(g+1)*M, y, x]`` for each ``(o, y, x)`` -- the layout of NVIDIA's sparse tensor cores and of
``torch.sparse.to_sparse_semi_structured`` (2:4 along the rows of a ``(out, in)`` matrix).

Rules:
- Within each group the ``N`` highest scores (magnitude or any registered elementwise/saliency score) are
  kept; among equal scores the *lower* index along the input dimension is kept (a stable descending
  sort). This is fixed: the ``ties`` argument of global/layerwise selection does not apply here.
- Every layer in scope must have ``ndim >= 2`` and an input dimension divisible by ``M``; otherwise a
  :class:`ConfigError` names the layer, its shape and ``M`` (exclude the layer from ``scope``, e.g. a
  first conv with 3 input channels). No layer is silently left dense.
- Pruned weights are never revived: every group needs at least ``N`` unpruned weights, else an error.
  So the result has exactly ``N`` kept weights per group.
- IMP (``IMPConfig(pattern="2:4", rounds=R)``) prunes N:M every round with a decreasing N (see
  :func:`nm_schedule`); the masks are nested, every round's mask is exactly N_r:M and the last round's
  exactly N:M. IMP's ``random_mask`` control keeps the per-layer counts, not the N:M pattern.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence, Union

import torch
from torch import nn

from ..errors import ConfigError
from .masks import Mask

NMLike = Union[str, Sequence[int]]
_PATTERN = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_nm(pattern: NMLike) -> tuple[int, int]:
    """``"2:4"`` or ``(2, 4)`` -> ``(2, 4)``; needs ``1 <= N <= M``."""
    if isinstance(pattern, str):
        match = _PATTERN.match(pattern)
        if match is None:
            raise ConfigError(f"N:M pattern {pattern!r} is not of the form 'N:M' (e.g. '2:4')")
        n, m = int(match.group(1)), int(match.group(2))
    else:
        try:
            n, m = (int(v) for v in pattern)
        except (TypeError, ValueError):
            raise ConfigError(f"N:M pattern {pattern!r} is not 'N:M' or a pair (N, M), e.g. '2:4'") from None
    if m < 1 or not 1 <= n <= m:
        raise ConfigError(f"N:M pattern {pattern!r} has N={n}, M={m}; allowed: 1 <= N <= M "
                          f"(keep N of every M consecutive weights along the input dimension)")
    return n, m


def check_nm_shape(name: str, shape: Sequence[int], m: int) -> None:
    """Raise unless a parameter of ``shape`` can be split into groups of ``m`` along its input dim."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ConfigError(f"N:M pruning needs a weight with an input dimension (ndim >= 2); {name!r} has "
                          f"shape {shape}. Exclude it from the scope")
    if shape[1] % m:
        raise ConfigError(f"N:M pruning with M={m}: layer {name!r} has shape {shape}, whose input dimension "
                          f"{shape[1]} is not divisible by M={m}. Exclude the layer from the scope or pick "
                          f"an M that divides {shape[1]}")


def to_groups(t: torch.Tensor, m: int) -> torch.Tensor:
    """``t`` (out, in, *k) as a ``(groups, m)`` tensor: groups of ``m`` consecutive entries along ``in``."""
    return t.movedim(1, -1).reshape(-1, m)


def from_groups(g: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`to_groups` for a parameter of ``shape``."""
    shape = tuple(shape)
    moved = (shape[0],) + shape[2:] + (shape[1],)
    return g.reshape(moved).movedim(-1, 1)


def nm_keep(scores: torch.Tensor, active: torch.Tensor, n: int, m: int, name: str = "weight") -> torch.Tensor:
    """Bool tensor (shape of ``scores``) keeping the ``n`` highest scores of each group of ``m`` among
    ``active`` entries; ties go to the lower input index."""
    check_nm_shape(name, tuple(scores.shape), m)
    if active.shape != scores.shape:
        raise ConfigError(f"N:M pruning of {name!r}: scores have shape {tuple(scores.shape)}, the mask "
                          f"{tuple(active.shape)}; both must be the weight's shape")
    s = to_groups(scores.detach(), m)
    s = s.to(torch.float64 if s.dtype == torch.float64 else torch.float32)
    a = to_groups(active, m).to(s.device)
    if torch.isnan(s[a]).any():
        raise ConfigError(f"scores of {name!r} contain NaN; a score must be a real number for every "
                          f"unpruned weight")
    short = torch.count_nonzero(a, dim=1) < n
    if bool(short.any()):
        g = int(short.nonzero()[0])
        raise ConfigError(f"N:M pruning to {n}:{m}: layer {name!r} (shape {tuple(scores.shape)}) has "
                          f"{int(short.sum())} group(s) with fewer than {n} unpruned weights (first: group "
                          f"{g}, {int(a[g].sum())} unpruned); pruned weights are never revived")
    s = torch.where(a, s, torch.tensor(float("-inf"), dtype=s.dtype, device=s.device))
    order = torch.sort(s, dim=1, descending=True, stable=True).indices[:, :n]  # stable: lower index first
    keep = torch.zeros_like(a)
    keep.scatter_(1, order, True)
    return from_groups(keep, scores.shape).contiguous().to(active.device)


def select_nm(scores: Mapping[str, torch.Tensor], mask: Mask, n: int, m: int) -> Mask:
    """Per layer of ``mask``, keep ``n`` of every ``m`` weights along the input dimension."""
    check_nm_mask(mask, m)
    out = {name: nm_keep(scores[name], mask.expanded(name), n, m, name) for name in mask}
    return Mask(out, mask.shapes)


def check_nm_mask(mask: Mask, m: int) -> None:
    """Raise (naming the first bad layer) unless every layer of ``mask`` can take groups of ``m``."""
    for name in mask:
        check_nm_shape(name, mask.shapes[name], m)
        if tuple(mask[name].shape) != tuple(mask.shapes[name]):
            raise ConfigError(f"N:M pruning needs a per-weight mask; {name!r} has a structured mask of shape "
                              f"{tuple(mask[name].shape)} for weight shape {tuple(mask.shapes[name])}")


def nm_group_counts(t: torch.Tensor, m: int) -> torch.Tensor:
    """Nonzeros in each group of ``m`` along the input dimension of ``t``, shape ``(groups,)``."""
    return torch.count_nonzero(to_groups(t, m), dim=1)


def is_nm(t: torch.Tensor, pattern: NMLike, *, exact: bool = True) -> bool:
    """Whether ``t`` (a weight or a mask) has exactly (``exact``) or at most N nonzeros per group."""
    n, m = parse_nm(pattern)
    if t.dim() < 2 or t.shape[1] % m:
        return False
    c = nm_group_counts(t, m)
    return bool((c == n).all()) if exact else bool((c <= n).all())


def nm_schedule(n: int, m: int, rounds: int) -> list[int]:
    """N kept per group after each of ``rounds`` IMP rounds: ``N_r = M - round(r * (M - N) / rounds)``,
    halves rounded up.

    Non-increasing, ends exactly at ``N``; with more rounds than ``M - N`` some rounds prune nothing (2:4
    in 2 rounds: 3, 2; in 3 rounds: 3, 3, 2; 1:4 in 3 rounds: 3, 2, 1)."""
    if rounds < 1:
        raise ConfigError(f"an N:M schedule needs rounds >= 1, got {rounds}")
    return [m - (2 * r * (m - n) + rounds) // (2 * rounds) for r in range(1, rounds + 1)]


SEMI_STRUCTURED_DTYPES = (torch.float16, torch.bfloat16, torch.int8)


def to_semi_structured(linear: nn.Linear) -> nn.Linear:
    """Replace a 2:4-masked ``nn.Linear``'s weight by ``torch.sparse.to_sparse_semi_structured`` (in place;
    returns the layer). Needs a CUDA device with sparse tensor cores (compute capability >= 8.0), a
    float16/bfloat16/int8 weight on it, and the 2:4 pattern (at most 2 nonzeros in every 4 consecutive
    weights of a row). The shape limits of torch's kernels apply (e.g. rows a multiple of 32 and columns of
    64 for float16). The dense masked layer is the exact reference of what it computes."""
    if not isinstance(linear, nn.Linear):
        raise ConfigError(f"to_semi_structured takes an nn.Linear, got {type(linear).__name__}")
    w = linear.weight
    if w.device.type != "cuda" or not torch.cuda.is_available():
        raise ConfigError(f"semi-structured (2:4) sparse weights need a CUDA GPU with sparse tensor cores; "
                          f"the weight is on {w.device.type!r}"
                          f"{'' if torch.cuda.is_available() else ' and CUDA is not available'}. Move the "
                          f"layer to a CUDA device (compute capability >= 8.0), or keep the dense masked "
                          f"layer, which computes the same")
    cap = torch.cuda.get_device_capability(w.device)
    if cap < (8, 0):
        raise ConfigError(f"semi-structured (2:4) sparse weights need compute capability >= 8.0; "
                          f"{torch.cuda.get_device_name(w.device)} has {cap[0]}.{cap[1]}")
    if w.dtype not in SEMI_STRUCTURED_DTYPES:
        raise ConfigError(f"semi-structured (2:4) sparse weights need dtype float16, bfloat16 or int8; the "
                          f"weight is {w.dtype}. Convert the layer first, e.g. layer.half()")
    if not is_nm(w.detach(), (2, 4), exact=False):
        raise ConfigError(f"the weight (shape {tuple(w.shape)}) is not 2:4 sparse along its input "
                          f"dimension; prune it with pattern='2:4' first")
    from torch.sparse import to_sparse_semi_structured
    try:
        sparse = to_sparse_semi_structured(w.detach())
    except RuntimeError as e:
        raise ConfigError(f"torch.sparse.to_sparse_semi_structured rejected the weight of shape "
                          f"{tuple(w.shape)}, dtype {w.dtype}: {e}") from e
    linear.weight = nn.Parameter(sparse, requires_grad=False)
    return linear
