"""Schedules as small pure functions: how much to prune (or how hard to push a mask) at step t.

- :func:`geometric_rate`: IMP's per-round rate that reaches a final sparsity after ``rounds`` equal rounds;
- :func:`powered_rate`: the pruned fraction after ``p`` rounds at a per-round rate (criterion supermasks);
- :func:`cubic_sparsity` / :func:`gmp_steps`: Zhu & Gupta's gradual magnitude pruning;
- :func:`filter_schedule`: GST's linear decay of a layer's kept filters over its pruning events;
- :func:`temperature`: continuous sparsification's exponential β from 1 to β_T.
"""
from __future__ import annotations

import math
from typing import Union

from ..errors import ConfigError

Rate = Union[float, dict[str, float]]


def geometric_rate(sparsity: float, rounds: int) -> float:
    """Per-round fraction of the remaining weights removed so that ``rounds`` rounds reach ``sparsity``."""
    return 1.0 - (1.0 - sparsity) ** (1.0 / rounds)


def powered_rate(rate: Rate, p: int) -> Rate:
    """Fraction removed after ``p`` rounds at ``rate`` per round: 1 − (1 − rate)^p (per group for a dict)."""
    if isinstance(rate, (int, float)):
        return 1.0 - (1.0 - float(rate)) ** p
    return {k: 1.0 - (1.0 - float(v)) ** p for k, v in rate.items()}


def cubic_sparsity(t: int, t0: int, n: int, dt: int, s_i: float, s_f: float) -> float:
    """Zhu & Gupta's target sparsity at iteration t: s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³, clamped to
    [t0, t0 + nΔt]."""
    if n == 0 or t >= t0 + n * dt:
        return s_f
    frac = max(0, t - t0) / (n * dt)
    return s_f + (s_i - s_f) * (1.0 - frac) ** 3


def gmp_steps(t0: int, t_end: int, dt: int) -> list[int]:
    """Pruning iterations t0, t0 + Δt, …, t0 + nΔt with n = ⌊(t_end − t0)/Δt⌋."""
    n = (t_end - t0) // dt
    return [t0 + j * dt for j in range(n + 1)]


def ceil_count(x: float) -> int:
    # (1 - 0.7) * 10 is 3.0000000000000004 in floats; the intended count is 3, not 4.
    return math.ceil(round(x, 9))


def filter_schedule(filters: int, fraction: float, start: int, end: int, period: int) -> list[tuple[int, int]]:
    """``[(epoch, filters kept after the event), ...]`` for one layer (epochs 0-based, after training):
    events at ``range(start, end + 1, period)``; after event i of N the layer keeps
    ceil(K + (F − K)(N − i)/N) of its F filters, K = ceil((1 − fraction)·F)."""
    if not 0 <= fraction < 1 or filters < 1 or period < 1 or not 0 <= start <= end:
        raise ConfigError(f"bad filter schedule: filters={filters} (>=1), fraction={fraction} ([0, 1)), "
                          f"start={start} <= end={end} (>= 0), period={period} (>= 1)")
    final = ceil_count((1.0 - fraction) * filters)
    epochs = list(range(start, end + 1, period))
    n = len(epochs)
    return [(e, ceil_count(final + (filters - final) * (n - i) / n)) for i, e in enumerate(epochs, 1)]


def temperature(step: int, n_steps: int, beta_final: float) -> float:
    """β = β_T^{step/(n_steps−1)}: 1 at step 0, exactly β_T at the last step (step = n_steps − 1)."""
    if n_steps <= 1 or step >= n_steps - 1:
        return float(beta_final)
    return float(beta_final) ** (step / (n_steps - 1))
