"""From a spec file (or dict) to the list of runs it asks for: YAML, ``--set`` overrides, sweeps.

A spec may carry ``sweep: {axes: {"seed": [0, 1, 2], "procedure.rewind": ["init", "lr"]}}``; the cross
product of the axes expands into runs, each a complete :class:`ExperimentSpec` with its own run id.
``sweep.cases`` lists named configurations, each a mapping of paths to values set together (a paper's table
of configurations, e.g. GST's rows); every case runs at every point of the axes. A case's label is its
``label`` entry when it has one (a name only, set nowhere in the spec), else its first entry
(``config=F2_VGG_1``). ``--set`` overrides win over cases and axes.
Everything is validated before anything runs, so a bad value anywhere in a sweep writes nothing.
"""
from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml
from pydantic import ValidationError

from ..errors import ConfigError
from .spec import ExperimentSpec
from .validation import config_error, _hint


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``), as people write it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def parse_yaml(text: str, where: str = "spec") -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(f"{where} is not valid YAML: {e}") from None


@dataclass(frozen=True)
class PlannedRun:
    spec: ExperimentSpec
    label: str
    sweep_values: Mapping[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.spec.run_id()


# --set ---------------------------------------------------------------------------------------------
def parse_overrides(items: Iterable[str]) -> list[tuple[str, Any]]:
    """``["train.lr=0.01", "procedure.controls=[reinit]"]`` -> [(path, YAML-parsed value)]."""
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r} is not of the form key.sub=value (e.g. train.lr=0.01)")
        out.append((key, parse_yaml(raw, f"--set {key}") if raw.strip() else None))
    return out


def _set_path(d: dict, path: str, value: Any) -> None:
    node = d
    parts = path.split(".")
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            node[p] = nxt
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)


def apply_overrides(raw: dict, overrides: Sequence[tuple[str, Any]]) -> dict:
    """Overrides replace values; overriding a sweep axis fixes it (the axis is dropped)."""
    raw = copy.deepcopy(raw)
    for path, value in overrides:
        axes = (raw.get("sweep") or {}).get("axes") if isinstance(raw.get("sweep"), dict) else None
        if isinstance(axes, dict) and path in axes:
            del axes[path]
            if not axes:
                raw["sweep"].pop("axes")
                if not raw["sweep"]:
                    raw.pop("sweep")
        _set_path(raw, path, value)
    return raw


# sweeps --------------------------------------------------------------------------------------------
def _axis_value_text(v: Any) -> str:
    if isinstance(v, dict) and "kind" in v:
        return str(v["kind"])
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"), sort_keys=True)
    return str(v)


def make_label(name: str, values: Mapping[str, Any]) -> str:
    """Human label of a run in a sweep: its non-seed axis values (``rewind=lr``), else the spec name."""
    keys = [k for k in values if k != "seed"]
    if not keys:
        return name
    short = [k.split(".")[-1] for k in keys]
    names = [s if short.count(s) == 1 else k for k, s in zip(keys, short)]
    return ", ".join(f"{n}={_axis_value_text(values[k])}" for n, k in zip(names, keys))


def _check_paths(keys: Iterable[str], what: str) -> None:
    fields = list(ExperimentSpec.model_fields)
    for key in keys:
        top = str(key).split(".")[0]
        if top not in fields:
            raise ConfigError(f"{what} {key!r}: unknown key {top!r}; allowed: {', '.join(fields)}."
                              f"{_hint(top, fields)}")


def _check_sweep(sweep: Any) -> tuple[list[dict], dict[str, list]]:
    allowed = ["axes", "cases"]
    if (not isinstance(sweep, dict) or not sweep or set(sweep) - set(allowed)
            or not isinstance(sweep.get("axes", {}), dict)):
        extra = sorted(set(sweep) - set(allowed)) if isinstance(sweep, dict) else []
        hint = _hint(extra[0], allowed) if extra else ""
        raise ConfigError(f"sweep must be {{axes: {{key: [values, ...]}}, cases: [{{key: value, ...}}, ...]}} "
                          f"(either or both), got {sweep!r}.{hint}")
    axes = sweep.get("axes") or {}
    _check_paths(axes, "sweep axis")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep axis {key!r} must list at least one value, got {values!r}")
    if "cases" not in sweep:
        return [{}], axes
    cases = sweep["cases"]
    if not isinstance(cases, list) or not cases or not all(isinstance(c, dict) and c for c in cases):
        raise ConfigError(f"sweep.cases must list at least one non-empty mapping of key.sub: value, got {cases!r}")
    for c in cases:
        _check_paths([k for k in c if k != "label"], "sweep case key")
        both = sorted(set(c) & set(axes))
        if both:
            raise ConfigError(f"{both[0]!r} is both a sweep axis and set by a case {c!r}; keep it in one place")
    return cases, axes


def _case_label(name: str, case: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    if "label" not in case:
        return make_label(name, {**dict(list(case.items())[:1]), **values})
    rest = make_label("", values)
    return f"{case['label']}, {rest}" if rest else str(case["label"])


def expand(raw: Mapping, overrides: Sequence[tuple[str, Any]] = (), where: str = "spec") -> list[PlannedRun]:
    """Validate ``raw`` (a spec dict, maybe with ``sweep``) and expand it into runs; raises ConfigError."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a spec is a mapping of keys (name, model, dataset, ...), "
                          f"got {type(raw).__name__}")
    raw = apply_overrides(dict(raw), overrides)
    sweep = raw.pop("sweep", None)
    cases, axes = _check_sweep(sweep) if sweep is not None else ([{}], {})
    runs, seen = [], set()
    for case in cases:
        for combo in itertools.product(*axes.values()):
            values = dict(zip(axes, combo))
            d = copy.deepcopy(raw)
            late = [(p, v) for p, v in overrides if p.split(".")[0] != "sweep"]  # --set beats a case
            for path, v in [*((k, v) for k, v in case.items() if k != "label"), *values.items(), *late]:
                _set_path(d, path, v)
            point = {**{k: v for k, v in case.items() if k != "label"}, **values}
            try:
                spec = ExperimentSpec.model_validate(d)
            except ValidationError as e:
                at = where + (f", sweep point {point}" if point else "")
                raise config_error(e, ExperimentSpec, at) from None
            if spec.run_id() in seen:  # two sweep points that only differ in defaults are one run
                continue
            seen.add(spec.run_id())
            runs.append(PlannedRun(spec, _case_label(spec.name, case, values), point))
    return runs


def load_plan(source: str | Path | Mapping | ExperimentSpec, overrides: Iterable[str] = ()) -> list[PlannedRun]:
    """Runs of a spec file, a spec dict or an ExperimentSpec, after ``key=value`` overrides."""
    ovr = parse_overrides(overrides)
    if isinstance(source, ExperimentSpec):
        if not ovr:
            return [PlannedRun(source, source.name)]
        source = source.model_dump(mode="json")
    if isinstance(source, Mapping):
        return expand(source, ovr)
    path = Path(source)
    if not path.is_file():
        from .recipes import find_recipe
        found = find_recipe(str(source))
        if found is None:
            raise ConfigError(f"spec {str(source)!r} is neither a file nor a recipe name "
                              f"(see `prunelab list recipes`)")
        path = found
    return expand(parse_yaml(path.read_text(), str(path)) or {}, ovr, where=str(path))
