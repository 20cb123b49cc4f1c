"""Layerwise keep-count rules that need no data: smart ratio (Su et al. 2020), ERK (Evci et al. 2020), uniform.

Each rule maps a model (its Conv/Linear weights in ``named_parameters`` order, which is ``modules()``
order for the registry's models) and a target ``sparsity`` to ``{param_name: keep_count}``. Positions are
chosen afterwards by :func:`ratio_mask`: uniformly at random (random tickets) or by largest magnitude of a
given set of weights (hybrid tickets).

Rounding. ``rounding="exact"`` (default) distributes the weights lost to per-layer truncation by the
largest-remainder rule, so the total kept equals N - round(sparsity * N) exactly (at most one weight
more per layer than plain truncation). ``rounding="official"`` (smart ratio only) truncates every layer
as SC's code does, in float32, which reproduces the spec §4.4 test vectors but keeps a few weights fewer
than the target (e.g. 400,474 instead of 400,480 for VGG19 at 98 %).
"""
from __future__ import annotations

import math
from typing import Literal, Mapping, Optional

import torch
from torch import nn

from ..errors import ConfigError, unknown_name
from .allocation import check_sparsity
from .masks import Mask
from .scopes import ScopeLike, resolve_scope
from .scores import compute_scores
from .selection import select_layerwise

SMART_VARIANTS = ("quadratic", "linear_decay", "ascend", "cubic", "uniform")
ARCHS = ("auto", "vgg", "resnet")
ROUNDINGS = ("exact", "official")
RATIO_RULES = ("smart", "erk", "uniform")
FILLS = ("random", "magnitude")



def _layers(model: nn.Module, scope: ScopeLike) -> list[tuple[str, tuple, bool]]:
    """(param name, shape, is_linear) of the prunable weights in order."""
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    out = []
    for n in resolve_scope(model, scope):
        m = modules.get(n.rsplit(".", 1)[0] if "." in n else "")
        out.append((n, tuple(params[n].shape), isinstance(m, nn.Linear)))
    return out


def _target_keep(total: int, sparsity: float) -> int:
    return total - round(sparsity * total)


def round_to_total(exact: Mapping[str, float], sizes: Mapping[str, int], target: int,
                   fixed: Mapping[str, int] | None = None) -> dict[str, int]:
    """Integer counts near ``exact`` (clipped to [0, size]) summing to ``target``: floor, then one more
    weight for the layers with the largest fractional parts (ties: earlier layer first). Layers in
    ``fixed`` keep the given count."""
    fixed = dict(fixed or {})
    counts = {n: fixed.get(n, min(sizes[n], max(0, math.floor(exact[n])))) for n in exact}
    short = target - sum(counts.values())
    free = [n for n in exact if n not in fixed and counts[n] < sizes[n]]
    if short < 0 or short > len(free):
        raise ConfigError(f"cannot round the layer counts to a total of {target}: the floors give "
                          f"{target - short} and only {len(free)} layers can take one more weight")
    order = sorted(free, key=lambda n: -(exact[n] - math.floor(exact[n])))
    for n in order[:short]:
        counts[n] += 1
    return counts


def _resolve_arch(model: nn.Module, arch: str) -> str:
    if arch not in ARCHS:
        raise unknown_name("smart-ratio arch", arch, ARCHS)
    if arch != "auto":
        return arch
    # SC divides by l^2 for every architecture that is not a ResNet
    return "resnet" if "resnet" in type(model).__name__.lower() else "vgg"


def smart_ratio_counts(model: nn.Module, sparsity: float, *, scope: ScopeLike = None,
                       arch: Literal["auto", "vgg", "resnet"] = "auto", variant: str = "quadratic",
                       linear_keep_ratio: float = 0.3, rounding: str = "exact") -> dict[str, int]:
    """Smart-ratio keep counts (spec §4.4, SC pruner/SmartRatio.py), per prunable weight.

    Layer l = 1..L (all Conv/Linear weights of ``scope``) gets the raw score r_l = (L-l+1)^2 + (L-l+1)
    (``variant``: linear_decay L-l+1, ascend l^2+l, cubic (L-l+1)^3; ``uniform``: one ratio for all
    convs), divided by l^2 unless ``arch`` is resnet. Every Linear keeps ``linear_keep_ratio``; the convs
    share the rest of the budget in proportion to r_l; a conv whose ratio exceeds 1 is made dense and its
    excess carried to the next conv layers.
    """
    s = check_sparsity(sparsity)
    if variant not in SMART_VARIANTS:
        raise unknown_name("smart-ratio variant", variant, SMART_VARIANTS)
    if rounding not in ROUNDINGS:
        raise unknown_name("smart-ratio rounding", rounding, ROUNDINGS)
    if not 0.0 <= linear_keep_ratio <= 1.0:
        raise ConfigError(f"linear_keep_ratio {linear_keep_ratio!r} is outside [0, 1] (kept fraction)")
    divide = _resolve_arch(model, arch) == "vgg"
    layers = _layers(model, scope)
    L = len(layers)
    f32 = torch.float32
    sizes = {n: math.prod(shape) for n, shape, _ in layers}
    num = torch.tensor([sizes[n] for n, _, _ in layers], dtype=f32)
    linear = [is_lin for _, _, is_lin in layers]
    raw = torch.empty(L, dtype=f32)
    for i in range(L):
        l, rev = i + 1, L - i
        raw[i] = {"quadratic": rev ** 2 + rev, "uniform": rev ** 2 + rev, "linear_decay": rev,
                  "ascend": l ** 2 + l, "cubic": rev ** 3}[variant]
    # The official code keeps every count in float32 tensors and truncates with int(); following it step
    # by step is what makes the spec's vectors reproduce to the weight.
    total_num = num.sum()
    linear_num = num[torch.tensor(linear)].sum() if any(linear) else torch.zeros((), dtype=f32)
    goal = int(total_num * (1 - s)) - int(linear_num * linear_keep_ratio)
    conv_idx = [i for i in range(L) if not linear[i]]
    if not conv_idx:
        raise ConfigError("smart ratio needs at least one conv layer in the scope")
    denom = sum(int(num[i] * raw[i] / (i + 1) ** 2) if divide else int(num[i] * raw[i]) for i in conv_idx)
    k = goal / denom
    ratio = raw.clone()
    for i in conv_idx:
        ratio[i] = ratio[i] * k / (i + 1) ** 2 if divide else ratio[i] * k
    if variant == "uniform":
        balance = goal / float(total_num - linear_num)
        for i in conv_idx:
            ratio[i] = balance
    extra = 0
    for i in conv_idx:   # overflow: dense layers pass their excess on to the next convs
        if ratio[i] >= 1:
            extra += int((ratio[i] - 1) * num[i])
            ratio[i] = 1.0
        elif extra:
            rest = int((1 - ratio[i]) * num[i])
            if rest >= extra:
                ratio[i] = ratio[i] + extra / num[i]
                extra = 0
            else:
                extra -= rest
                ratio[i] = 1.0
    counts, exact = {}, {}
    for i, (n, _, is_lin) in enumerate(layers):
        if is_lin:
            counts[n] = int(linear_keep_ratio * num[i])
            exact[n] = float(linear_keep_ratio) * sizes[n]
        else:
            counts[n] = sizes[n] if ratio[i] >= 1 else int(ratio[i] * num[i])
            exact[n] = min(float(ratio[i]), 1.0) * sizes[n]
    if rounding == "official":
        return counts
    fixed = {n: counts[n] for n, _, is_lin in layers if is_lin}
    return round_to_total(exact, sizes, _target_keep(sum(sizes.values()), s), fixed)


def erk_counts(model: nn.Module, sparsity: float, *, scope: ScopeLike = None, power: float = 1.0,
               rounding: str = "exact") -> dict[str, int]:
    """Erdős–Rényi-Kernel keep counts (Evci et al. 2020; spec §4.9): density_l = ε·Σdims/Πdims (for a
    Linear (n_out + n_in)/(n_out·n_in), plain Erdős–Rényi), ε solved so the total matches; layers that
    would exceed density 1 are made dense and ε solved again for the rest. ``power`` scales the raw
    density (RigL's ``erk_power_scale``; 1 is the paper's rule)."""
    s = check_sparsity(sparsity)
    if rounding not in ROUNDINGS:
        raise unknown_name("ERK rounding", rounding, ROUNDINGS)
    layers = _layers(model, scope)
    sizes = {n: math.prod(shape) for n, shape, _ in layers}
    raw = {n: (sum(shape) / math.prod(shape)) ** power for n, shape, _ in layers}
    target = _target_keep(sum(sizes.values()), s)
    dense: set[str] = set()
    while True:
        budget = target - sum(sizes[n] for n in dense)
        free = [n for n in sizes if n not in dense]
        eps = budget / sum(raw[n] * sizes[n] for n in free) if free else 0.0
        over = [n for n in free if eps * raw[n] > 1.0]
        if not over:
            break
        dense.update(over)
    exact = {n: (sizes[n] if n in dense else eps * raw[n] * sizes[n]) for n in sizes}
    if rounding == "official":
        return {n: min(sizes[n], int(exact[n])) for n in sizes}
    return round_to_total(exact, sizes, target, {n: sizes[n] for n in dense})


def uniform_counts(model: nn.Module, sparsity: float, *, scope: ScopeLike = None) -> dict[str, int]:
    """The same density in every layer; the total hits N - round(sparsity·N) exactly."""
    s = check_sparsity(sparsity)
    sizes = {n: math.prod(shape) for n, shape, _ in _layers(model, scope)}
    return round_to_total({n: (1 - s) * v for n, v in sizes.items()}, sizes,
                          _target_keep(sum(sizes.values()), s))


def ratio_counts(model: nn.Module, sparsity: float, rule: str = "smart", *, scope: ScopeLike = None,
                 **options) -> dict[str, int]:
    """Keep counts by rule name: ``smart`` (options of :func:`smart_ratio_counts`), ``erk``, ``uniform``."""
    if rule == "smart":
        return smart_ratio_counts(model, sparsity, scope=scope, **options)
    if rule == "erk":
        return erk_counts(model, sparsity, scope=scope, **options)
    if rule == "uniform":
        if options:
            raise ConfigError(f"ratio rule 'uniform' takes no options, got {sorted(options)}")
        return uniform_counts(model, sparsity, scope=scope)
    raise unknown_name("ratio rule", rule, RATIO_RULES)


def ratio_mask(model: nn.Module, counts: Mapping[str, int], *, fill: str = "random",
               weights: Optional[Mapping[str, torch.Tensor]] = None,
               generator: Optional[torch.Generator] = None) -> Mask:
    """A mask with ``counts[name]`` kept weights per layer at positions chosen by ``fill``: ``random``
    (uniform; SC's random tickets) or ``magnitude`` (largest |w| of ``weights``, default the model's own;
    SC's hybrid tickets)."""
    if fill not in FILLS:
        raise unknown_name("ratio fill", fill, FILLS)
    mask = Mask.ones(model, list(counts))
    if fill == "random":
        scores = compute_scores("random", model, mask, generator=generator)
    else:
        src = weights if weights is not None else dict(model.named_parameters())
        scores = {n: src[n].detach().abs().to(mask[n].device) for n in mask}
    return select_layerwise(scores, mask, counts, ties="random", generator=generator)
