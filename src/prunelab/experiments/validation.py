"""Turn pydantic's validation errors into messages a user can act on.

Each line names the key as written in the spec (``train.lr``), the bad value and what is allowed: the
allowed range of a number, the allowed keys with a did-you-mean hint for a misspelled key, the allowed
values of a choice.
"""
from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any, Optional

import annotated_types as at
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError

_RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _unwrap(tp):
    """Strip Annotated/Optional; returns (origin-or-type, args)."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_members(tp) -> Optional[list]:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return [_unwrap(a) for a in typing.get_args(tp) if a is not type(None)]
    return None


def _is_model(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _tag_of(cls) -> Optional[str]:
    f = cls.model_fields.get("kind")
    if f is None:
        return None
    args = typing.get_args(f.annotation)
    return args[0] if args else None


class _Where:
    """What the walk along an error location found."""

    def __init__(self):
        self.path: list[str] = []
        self.owner: Optional[type] = None      # model class holding the last key
        self.field = None                      # its FieldInfo
        self.complete = True                   # False when the walk left the typed part
        self.branch = None                     # union member the error is about: "model" or "other"


def _walk(root: type, loc: tuple) -> _Where:
    w = _Where()
    tp: Any = root
    for item in loc:
        tp = _unwrap(tp)
        members = _union_members(tp)
        if members is not None:
            models = [m for m in members if _is_model(m)]
            if len(models) > 1 and isinstance(item, str):   # discriminated union: the item is the tag
                chosen = [m for m in models if _tag_of(m) == item]
                if chosen:
                    tp = chosen[0]
                    continue
            # pydantic names the member it tried in the location: 'AugmentSpec', 'bool', 'dict[str,float]'
            named = [m for m in models if m.__name__ == item]
            if named:
                tp = named[0]
                w.branch = w.branch or "model"
                continue
            if isinstance(item, str) and not (len(models) == 1 and item in models[0].model_fields):
                w.branch = w.branch or "other"
                w.complete = False
                continue
            if len(models) == 1:
                tp = models[0]
                continue
        if _is_model(tp):
            w.owner = tp
            w.field = tp.model_fields.get(item) if isinstance(item, str) else None
            w.path.append(str(item))
            tp = w.field.annotation if w.field is not None else Any
            continue
        origin = typing.get_origin(tp)
        if origin in (dict, typing.Mapping) or tp is dict:
            w.path.append(str(item))
            args = typing.get_args(tp)
            tp = args[1] if len(args) == 2 else Any
        elif origin in (list, tuple, set) or isinstance(item, int):
            w.path[-1:] = [f"{w.path[-1] if w.path else ''}[{item}]"]
            args = typing.get_args(tp)
            tp = args[0] if args else Any
            w.field = None
        else:
            w.complete = False
            w.field = None
    return w


def _interval(field) -> Optional[str]:
    lo = hi = None
    lo_open = hi_open = True
    for m in getattr(field, "metadata", ()):
        if isinstance(m, at.Gt):
            lo, lo_open = m.gt, True
        elif isinstance(m, at.Ge):
            lo, lo_open = m.ge, False
        elif isinstance(m, at.Lt):
            hi, hi_open = m.lt, True
        elif isinstance(m, at.Le):
            hi, hi_open = m.le, False
    if lo is None and hi is None:
        return None
    return (f"{'(' if lo_open or lo is None else '['}{'-inf' if lo is None else lo}, "
            f"{'inf' if hi is None else hi}{')' if hi_open or hi is None else ']'}")


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


def _hint(word: str, allowed) -> str:
    allowed = [str(a) for a in allowed]
    close = difflib.get_close_matches(str(word), allowed, n=1)
    if not close:  # 'crop' for 'crop_padding': too short for difflib's ratio, still the obvious match
        close = [a for a in allowed if a.startswith(str(word)) or str(word).startswith(a)][:1]
    return f" Did you mean {close[0]!r}?" if close else ""


def describe_error(err: dict, root: type) -> str:
    """One readable line for one pydantic error dict."""
    w = _walk(root, tuple(err["loc"]))
    path = ".".join(w.path) or "(top level)"
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = list(w.owner.model_fields) if w.owner is not None else []
        key = w.path[-1] if w.path else path
        return (f"unknown key {path!r}; allowed keys here: {', '.join(allowed)}.{_hint(key, allowed)}")
    if kind == "missing":
        return f"{path}: required key missing"
    if kind in _RANGE_ERRORS:
        rng = _interval(w.field) if w.field is not None else None
        if rng is None:
            bound = next(iter(ctx.values()), "?")
            rng = {"greater_than": f"({bound}, inf)", "greater_than_equal": f"[{bound}, inf)",
                   "less_than": f"(-inf, {bound})", "less_than_equal": f"(-inf, {bound}]"}[kind]
        return f"{path} = {_short(value)} is outside the allowed range {rng}"
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return (f"{path} = {_short(value)} is not allowed; allowed: {', '.join(allowed)}."
                f"{_hint(value, allowed)}")
    if kind == "union_tag_invalid":
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        return (f"{path}.kind = {ctx.get('tag')!r} is not a known procedure; allowed: {', '.join(allowed)}."
                f"{_hint(ctx.get('tag'), allowed)}")
    if kind == "union_tag_not_found":
        from .spec import PROCEDURE_KINDS
        return f"{path}: needs a 'kind' key; allowed kinds: {', '.join(PROCEDURE_KINDS)}"
    msg = err["msg"]
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        return f"{path}: {msg}" if w.path else msg
    return f"{path} = {_short(value)}: {msg}"


def config_error(exc: ValidationError, root: type, where: str = "") -> ConfigError:
    errors = exc.errors()
    branches = [_walk(root, tuple(e["loc"])).branch for e in errors]
    if "model" in branches:
        # a mapping given for a field that is "a flag or a sub-spec": only the sub-spec's complaints matter
        errors = [e for e, b in zip(errors, branches)
                  if not (b == "other" and isinstance(e.get("input"), dict))]
    lines, seen = [], set()
    for err in errors:
        line = describe_error(err, root)
        if line not in seen:
            seen.add(line)
            lines.append(line)
    head = f"invalid spec{f' ({where})' if where else ''}: "
    if len(lines) == 1:
        return ConfigError(head + lines[0])
    return ConfigError(head + f"{len(lines)} problems\n  - " + "\n  - ".join(lines))
