"""Name -> factory registry for models (timm-style `@register_model`).

A factory has the signature `factory(num_classes, input_shape, **options)` and returns an `nn.Module`
whose output layer is the last `nn.Linear` in `named_modules()` order.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from prunelab.errors import ConfigError, unknown_name

from ._common import check_input_shape, check_num_classes

ModelFactory = Callable[..., nn.Module]

_REGISTRY: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering `factory(num_classes, input_shape, **options)` under `name`."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"model name must be a non-empty string, got {name!r}")

    def decorator(factory: ModelFactory) -> ModelFactory:
        previous = _REGISTRY.get(name)
        # Re-registering the same function (e.g. after importlib.reload) is harmless; a different
        # function under an existing name would silently change what a recipe builds.
        if previous is not None and _qualname(previous) != _qualname(factory):
            raise ConfigError(
                f"model name {name!r} is already registered to {_qualname(previous)}; "
                f"cannot register {_qualname(factory)}"
            )
        _REGISTRY[name] = factory
        return factory

    return decorator


def _qualname(fn: Callable) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def list_models() -> list[str]:
    """Sorted names of every registered model."""
    return sorted(_REGISTRY)


def get_model_factory(name: str) -> ModelFactory:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise unknown_name("model", name, list_models()) from None


def model_options(name: str) -> dict[str, Any]:
    """The keyword options a model accepts, with their defaults (for specs and `--help` listings)."""
    params = list(inspect.signature(get_model_factory(name)).parameters.values())[2:]
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p.default for p in params if p.kind in named}


def _accepts_any_option(name: str) -> bool:
    params = inspect.signature(get_model_factory(name)).parameters.values()
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def build_model(
    name: str,
    num_classes: int = 10,
    input_shape: Sequence[int] = (3, 32, 32),
    *,
    seed: int | None = None,
    device: str | torch.device | None = None,
    **options: Any,
) -> nn.Module:
    """Build a registered model.

    seed: if given, the weights are drawn from a CPU generator seeded with it inside `fork_rng`, so two
    builds with the same seed are identical and the caller's global RNG state is left untouched.
    Initialisation always happens on the CPU (the same seed gives the same weights on every machine);
    the model is then moved to `device`.
    """
    factory = get_model_factory(name)
    num_classes = check_num_classes(num_classes)
    input_shape = check_input_shape(input_shape, image=False)
    allowed = model_options(name)
    extra = sorted(set(options) - set(allowed))
    if extra and not _accepts_any_option(name):
        raise ConfigError(
            f"model {name!r} got unknown option(s) {', '.join(map(repr, extra))}; "
            f"allowed: {', '.join(allowed) or '(none)'}"
        )
    if seed is None:
        model = factory(num_classes, input_shape, **options)
    else:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise ConfigError(f"seed must be an integer in [0, 2**64) or None, got {seed!r}")
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            model = factory(num_classes, input_shape, **options)
    model.input_shape = input_shape
    model.num_classes = num_classes
    model.model_name = name
    if device is not None:
        model = model.to(device)
    return model
