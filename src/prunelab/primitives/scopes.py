"""Scopes: which parameters of a model are prunable.

A scope resolves against any ``nn.Module`` to an ordered list of parameter names (the order of
``named_parameters``). Presets cover the papers' choices; a list of names or a callable covers the rest.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence, Union

from torch import nn

from ..errors import ConfigError, unknown_name

_CONV = nn.modules.conv._ConvNd
_BN = nn.modules.batchnorm._NormBase

ScopeLike = Union[str, Sequence[str], Callable[[str, nn.Module, str], bool], None]


def _weight_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (_CONV, nn.Linear))]


def output_layer_name(model: nn.Module) -> str | None:
    """The module whose weight is the network's output layer: the last Linear (else last conv) registered."""
    mods = _weight_modules(model)
    linears = [n for n, m in mods if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1]
    return mods[-1][0] if mods else None


def _is_conv(m: nn.Module) -> bool:
    return isinstance(m, _CONV)


def _is_conv3x3(m: nn.Module) -> bool:
    return isinstance(m, _CONV) and tuple(m.kernel_size) == (3,) * len(m.kernel_size)


def _preset_filters(model: nn.Module) -> dict[str, Callable[[str, nn.Module], bool]]:
    out = output_layer_name(model)
    return {
        "conv_linear": lambda name, m: isinstance(m, (_CONV, nn.Linear)),
        "conv": lambda name, m: _is_conv(m),
        "conv3x3": lambda name, m: _is_conv3x3(m),
        "linear": lambda name, m: isinstance(m, nn.Linear),
        "exclude_output": lambda name, m: isinstance(m, (_CONV, nn.Linear)) and name != out,
    }


PRESETS = ("conv_linear", "conv", "conv3x3", "linear", "exclude_output")
DEFAULT_SCOPE = "conv_linear"


def resolve_scope(model: nn.Module, scope: ScopeLike = None, *, include_bias: bool = False,
                  include_bn: bool = False) -> list[str]:
    """Names of the prunable parameters of ``model`` under ``scope``.

    ``scope`` is a preset name (see ``PRESETS``; default ``conv_linear``: every Conv/Linear weight), an
    explicit list of parameter names, or a callable ``(module_name, module, param_name) -> bool``.
    Biases and BatchNorm parameters join only when ``include_bias`` / ``include_bn`` ask for them.
    """
    params = dict(model.named_parameters())
    if scope is not None and not isinstance(scope, str) and not callable(scope):
        names = list(scope)
        missing = [n for n in names if n not in params]
        if missing:
            raise ConfigError(f"scope names parameters the model does not have: {missing}; "
                              f"allowed: {list(params)}")
        order = {n: i for i, n in enumerate(params)}
        return sorted(dict.fromkeys(names), key=order.__getitem__)

    if callable(scope):
        def keep(mname, m, pname):
            return scope(mname, m, pname)
    else:
        presets = _preset_filters(model)
        key = DEFAULT_SCOPE if scope is None else scope
        if key not in presets:
            raise unknown_name("scope preset", key, PRESETS)
        chosen = presets[key]

        def keep(mname, m, pname):
            if pname == "weight" and chosen(mname, m):
                return True
            if pname == "bias" and include_bias and chosen(mname, m):
                return True
            return include_bn and isinstance(m, _BN) and pname in ("weight", "bias")

    names = []
    for mname, m in model.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            if keep(mname, m, pname):
                names.append(f"{mname}.{pname}" if mname else pname)
    # named_modules de-duplicates shared modules; keep named_parameters order for stability
    order = {n: i for i, n in enumerate(params)}
    names = [n for n in dict.fromkeys(names) if n in order]
    if not names:
        raise ConfigError(f"scope {scope!r} selects no parameters of {type(model).__name__}")
    return sorted(names, key=order.__getitem__)


def layer_groups(model: nn.Module, names: Iterable[str]) -> dict[str, str]:
    """Map each parameter name to its group for per-group rates: 'conv', 'fc' or 'output'."""
    modules = dict(model.named_modules())
    out = output_layer_name(model)
    groups = {}
    for n in names:
        mname = n.rsplit(".", 1)[0] if "." in n else ""
        m = modules.get(mname)
        if mname == out:
            groups[n] = "output"
        elif isinstance(m, _CONV):
            groups[n] = "conv"
        elif isinstance(m, nn.Linear):
            groups[n] = "fc"
        elif isinstance(m, _BN):
            groups[n] = "bn"
        else:
            groups[n] = "other"
    return groups
