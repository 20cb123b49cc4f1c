"""Argument checks and weight initialisers shared by the model factories.

Every initialiser draws from the global torch RNG, so `build_model(seed=...)` (which forks and seeds it)
controls all of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from prunelab.errors import ConfigError

# Keras' VarianceScaling(distribution="truncated_normal") divides the target std by this constant, the std
# of a unit normal truncated to [-2, 2], so that the *truncated* samples have the intended std.
_TRUNC2_STD = 0.87962566103423978


def check_num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    return num_classes


def check_input_shape(input_shape: object, *, image: bool) -> tuple[int, ...]:
    """Return `input_shape` as a tuple of positive ints; image models need exactly (C, H, W)."""
    ok = isinstance(input_shape, Sequence) and not isinstance(input_shape, str) and len(input_shape) > 0
    if ok:
        ok = all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape)
    if ok and image:
        ok = len(input_shape) == 3
    if not ok:
        want = "(channels, height, width) of positive ints" if image else "a sequence of positive ints"
        raise ConfigError(f"input_shape must be {want}, got {input_shape!r}")
    return tuple(input_shape)


def check_width(width: object) -> float:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise ConfigError(f"width must be a finite number > 0, got {width!r}")
    return float(width)


def scaled(channels: int, width: float) -> int:
    """Channel count after the width multiplier; never below 1 so tiny multipliers still build."""
    return max(1, int(round(channels * width)))


def check_choice(option: str, value: object, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ConfigError(f"{option} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value  # type: ignore[return-value]


def pooled_size(size: int, n_pools: int, model: str, input_shape: tuple[int, ...]) -> int:
    """Spatial size after `n_pools` 2x2/stride-2 max-pools (floor), refusing inputs that vanish."""
    for _ in range(n_pools):
        size //= 2
        if size == 0:
            need = 2**n_pools
            raise ConfigError(
                f"input_shape {input_shape!r} is too small for {model!r}: {n_pools} 2x2 poolings need "
                f"height and width >= {need}"
            )
    return size


# --- initialisers -------------------------------------------------------------------------------------


def glorot_normal_(weight: torch.Tensor, *, truncated: bool) -> torch.Tensor:
    """Glorot/Xavier normal with std sqrt(2 / (fan_in + fan_out)).

    truncated=True reproduces TF1 Keras `glorot_normal` (used by the DLT code): a normal cut at +-2 of its
    pre-truncation std, that std enlarged by 1/0.8796 so the samples end with the Glorot std.
    """
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
    std = math.sqrt(2.0 / (fan_in + fan_out))
    if not truncated:
        return nn.init.normal_(weight, 0.0, std)
    raw = std / _TRUNC2_STD
    return nn.init.trunc_normal_(weight, 0.0, raw, -2.0 * raw, 2.0 * raw)


def reset_batchnorm_(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def zero_bias_(module: nn.Module) -> None:
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
