"""Allocation: how many weights each layer keeps.

Conventions: ``sparsity`` is the fraction removed (0.9 = 90 % zeros); ``rate`` is the fraction of the
*remaining* weights removed in one pruning round (IMP).
"""
from __future__ import annotations

import math
from typing import Mapping, Union

from torch import nn

from ..errors import ConfigError, unknown_name
from .masks import Mask
from .scopes import layer_groups

ROUNDINGS = ("plain", "official")

# Frankle & Carbin's per-round rates (spec §1.2), by layer group.
LTH_RATES: dict[str, dict[str, float]] = {
    "lenet300_100": {"fc": 0.2, "output": 0.1},
    "conv2": {"conv": 0.1, "fc": 0.2, "output": 0.1},
    "conv4": {"conv": 0.1, "fc": 0.2, "output": 0.1},
    "conv6": {"conv": 0.15, "fc": 0.2, "output": 0.1},
}

RateSpec = Union[float, Mapping[str, float], str]


def _count(m) -> int:
    import torch
    return int(torch.count_nonzero(m))


def check_sparsity(sparsity: float, what: str = "sparsity") -> float:
    s = float(sparsity)
    if not (0.0 <= s < 1.0) or math.isnan(s):
        raise ConfigError(f"{what} {sparsity!r} is outside the allowed range [0, 1) "
                          f"(fraction of weights removed; 0.9 = 90 % zeros)")
    return s


def prune_count(remaining: int, rate: float, rounding: str = "plain") -> int:
    """How many of ``remaining`` weights one round at ``rate`` removes.

    ``plain``: floor(remaining * rate). ``official``: the DLT/LTH code's float64 percentage,
    ``int(remaining * ((1 - keep) * 100) / 100)`` with keep = 1 - rate, which prunes one weight fewer
    whenever the count divides exactly (spec §1.2 table).
    """
    if rounding == "plain":
        return math.floor(remaining * rate + 1e-9)
    if rounding == "official":
        keep_fraction = 1.0 - rate
        pct = (1.0 - keep_fraction) * 100.0
        return int(remaining * pct / 100)
    raise ConfigError(f"unknown rounding {rounding!r}; allowed: {', '.join(ROUNDINGS)}")


def resolve_rates(model: nn.Module, mask: Mask, rates: RateSpec) -> dict[str, float]:
    """Per-parameter rates from a float (every layer), a preset name of ``LTH_RATES``, or a mapping whose
    keys are parameter names or layer groups ('conv', 'fc', 'output')."""
    if isinstance(rates, str):
        if rates not in LTH_RATES:
            raise unknown_name("rate preset", rates, LTH_RATES)
        rates = LTH_RATES[rates]
    if isinstance(rates, (int, float)):
        out = {n: float(rates) for n in mask}
    else:
        groups = layer_groups(model, mask.names())
        out = {}
        for n in mask:
            if n in rates:
                out[n] = float(rates[n])
            elif groups[n] in rates:
                out[n] = float(rates[groups[n]])
            else:
                raise ConfigError(f"no rate given for {n!r} (group {groups[n]!r}); given keys: "
                                  f"{sorted(rates)}; allowed keys: parameter names or groups conv/fc/output")
    for n, r in out.items():
        check_sparsity(r, f"pruning rate for {n!r}")
    return out


def keep_per_layer_rates(mask: Mask, rates: Mapping[str, float], rounding: str = "plain") -> dict[str, int]:
    """Keep-counts (in mask elements) after removing ``rates[name]`` of each layer's remaining weights."""
    out = {}
    for n in mask:
        remaining = _count(mask[n])
        out[n] = remaining - prune_count(remaining, rates.get(n, 0.0), rounding)
    return out


def keep_uniform(mask: Mask, sparsity: float) -> dict[str, int]:
    """Each layer ends at the same ``sparsity`` of its *total* size (never reviving pruned weights)."""
    check_sparsity(sparsity)
    out = {}
    for n in mask:
        total = mask[n].numel()
        out[n] = min(_count(mask[n]), total - round(sparsity * total))
    return out


def keep_global(mask: Mask, sparsity: float) -> int:
    """Mask elements to keep over all layers so that ``sparsity`` of the whole scope is removed."""
    check_sparsity(sparsity)
    total = sum(mask[n].numel() for n in mask)
    return min(sum(_count(mask[n]) for n in mask), total - round(sparsity * total))


def keep_global_rate(mask: Mask, rate: float, rounding: str = "plain") -> int:
    """Mask elements to keep after removing ``rate`` of the remaining ones globally."""
    check_sparsity(rate, "pruning rate")
    remaining = sum(_count(mask[n]) for n in mask)
    return remaining - prune_count(remaining, rate, rounding)
