"""The mask: which weights of a model exist.

A :class:`Mask` maps parameter names to boolean tensors. Each tensor *broadcasts* to its parameter's
shape, which is how granularity is expressed without a second mask type: a full-shape tensor masks single
weights, a ``(C_out, 1, 1, 1)`` tensor masks whole conv filters, ``(1, C_in, 1, 1)`` input channels.
"""
from __future__ import annotations

import math
from typing import Iterator, Mapping

import torch
from torch import nn

from ..errors import ConfigError
from ..io import load_tensors, save_tensors
from .scopes import ScopeLike, resolve_scope


def _check_broadcast(name: str, mask_shape: tuple, param_shape: tuple) -> None:
    ok = len(mask_shape) == len(param_shape) and all(m in (1, p) for m, p in zip(mask_shape, param_shape))
    if not ok:
        raise ConfigError(f"mask for {name!r} has shape {tuple(mask_shape)}, which does not fit parameter "
                          f"shape {tuple(param_shape)}; allowed: the parameter's shape, or that shape with "
                          f"some dimensions set to 1 (structured granularity)")


class Mask:
    """Boolean masks keyed by parameter name, with the parameter shapes they apply to."""

    def __init__(self, masks: Mapping[str, torch.Tensor], shapes: Mapping[str, tuple] | None = None):
        self._masks: dict[str, torch.Tensor] = {}
        self.shapes: dict[str, tuple] = {}
        for name, m in masks.items():
            m = torch.as_tensor(m)
            if m.dtype != torch.bool:
                m = m != 0
            shape = tuple(shapes[name]) if shapes is not None else tuple(m.shape)
            _check_broadcast(name, tuple(m.shape), shape)
            self._masks[name] = m
            self.shapes[name] = shape

    # construction -------------------------------------------------------------------------------
    @classmethod
    def ones(cls, model: nn.Module, scope: ScopeLike = None, *, granularity: str = "weight",
             **scope_kw) -> "Mask":
        """An all-kept mask over ``scope``. ``granularity``: 'weight' (default) or 'filter' (output channels)."""
        params = dict(model.named_parameters())
        names = resolve_scope(model, scope, **scope_kw)
        masks, shapes = {}, {}
        for n in names:
            p = params[n]
            shapes[n] = tuple(p.shape)
            masks[n] = torch.ones(_granular_shape(tuple(p.shape), granularity), dtype=torch.bool,
                                  device=p.device)
        return cls(masks, shapes)

    @classmethod
    def from_weights(cls, model: nn.Module, scope: ScopeLike = None, **scope_kw) -> "Mask":
        """The mask of the weights that are currently non-zero."""
        params = dict(model.named_parameters())
        names = resolve_scope(model, scope, **scope_kw)
        return cls({n: params[n].detach() != 0 for n in names})

    # mapping protocol ---------------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def __contains__(self, name: object) -> bool:
        return name in self._masks

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def names(self) -> list[str]:
        return list(self._masks)

    def items(self):
        return self._masks.items()

    def expanded(self, name: str) -> torch.Tensor:
        """The mask of ``name`` at its parameter's full shape (a view, no copy)."""
        return self._masks[name].expand(self.shapes[name])

    # bookkeeping --------------------------------------------------------------------------------
    def _per_element(self, name: str) -> int:
        return math.prod(self.shapes[name]) // self._masks[name].numel()

    def kept(self, name: str | None = None) -> int:
        """Number of weights kept in one layer, or over the whole mask."""
        if name is None:
            return sum(self.kept(n) for n in self._masks)
        return int(torch.count_nonzero(self._masks[name])) * self._per_element(name)  # bool sum() widens: slow

    def total(self, name: str | None = None) -> int:
        if name is None:
            return sum(self.total(n) for n in self._masks)
        return math.prod(self.shapes[name])

    def density(self, name: str | None = None) -> float:
        total = self.total(name)
        return self.kept(name) / total if total else 1.0

    def sparsity(self, name: str | None = None) -> float:
        """Fraction of weights removed (0.9 = 90 % zeros)."""
        return 1.0 - self.density(name)

    def layer_sparsity(self) -> dict[str, float]:
        return {n: self.sparsity(n) for n in self._masks}

    def layer_counts(self) -> dict[str, tuple[int, int]]:
        """``{name: (kept, total)}``."""
        return {n: (self.kept(n), self.total(n)) for n in self._masks}

    # set operations -----------------------------------------------------------------------------
    def _combine(self, other: "Mask", op) -> "Mask":
        if set(self._masks) != set(other._masks):
            raise ConfigError(f"masks cover different parameters: {sorted(set(self) ^ set(other))}")
        out = {}
        for n in self._masks:
            a, b = self._masks[n], other._masks[n]
            if a.shape != b.shape:  # mixed granularity: combine at full shape
                a, b = self.expanded(n), other.expanded(n)
            out[n] = op(a, b.to(a.device))
        return Mask(out, self.shapes)

    def __and__(self, other: "Mask") -> "Mask":
        return self._combine(other, torch.logical_and)

    def __or__(self, other: "Mask") -> "Mask":
        return self._combine(other, torch.logical_or)

    def __sub__(self, other: "Mask") -> "Mask":
        """Kept here and pruned in ``other``."""
        return self._combine(other, lambda a, b: a & ~b)

    def __xor__(self, other: "Mask") -> "Mask":
        return self._combine(other, torch.logical_xor)

    def __invert__(self) -> "Mask":
        return Mask({n: ~m for n, m in self._masks.items()}, self.shapes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mask) or set(self) != set(other) or self.shapes != other.shapes:
            return False
        return all(torch.equal(self.expanded(n).cpu(), other.expanded(n).cpu()) for n in self._masks)

    def __hash__(self):  # masks are mutable containers of tensors
        return None  # type: ignore[return-value]

    def overlap(self, other: "Mask") -> float:
        """Fraction of this mask's kept weights that ``other`` also keeps."""
        kept = self.kept()
        return (self & other).kept() / kept if kept else 1.0

    # moving, applying ---------------------------------------------------------------------------
    def to(self, device: str | torch.device) -> "Mask":
        return Mask({n: m.to(device) for n, m in self._masks.items()}, self.shapes)

    def clone(self) -> "Mask":
        return Mask({n: m.clone() for n, m in self._masks.items()}, self.shapes)

    def check(self, model: nn.Module) -> None:
        """Raise if a masked name is missing from ``model`` or its shape does not fit."""
        params = dict(model.named_parameters())
        for n in self._masks:
            if n not in params:
                raise ConfigError(f"mask names parameter {n!r}, which the model does not have; "
                                  f"model parameters: {list(params)}")
            if tuple(params[n].shape) != self.shapes[n]:
                raise ConfigError(f"mask for {n!r} was made for shape {self.shapes[n]}, but the model's "
                                  f"parameter has shape {tuple(params[n].shape)}")

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero the pruned weights of ``model`` in place."""
        self.check(model)
        params = dict(model.named_parameters())
        for n, m in self._masks.items():
            p = params[n]
            p.mul_(m.to(p.device))  # float *= bool: no float copy of the mask

    # persistence --------------------------------------------------------------------------------
    def save(self, path, metadata: Mapping | None = None) -> None:
        meta = dict(metadata or {})
        meta["shapes"] = {n: list(s) for n, s in self.shapes.items()}
        meta["order"] = list(self._masks)
        save_tensors(path, self._masks, meta)

    @classmethod
    def load(cls, path, device: str | torch.device = "cpu") -> "Mask":
        tensors, meta = load_tensors(path, device)
        shapes = {n: tuple(s) for n, s in meta.get("shapes", {}).items()} or None
        order = meta.get("order", list(tensors))
        return cls({n: tensors[n] for n in order}, shapes)

    # display ------------------------------------------------------------------------------------
    def summary(self) -> str:
        rows = [(n, str(list(self.shapes[n])), self.kept(n), self.total(n)) for n in self._masks]
        rows.append(("total", "", self.kept(), self.total()))
        w = max(len(r[0]) for r in rows)
        ws = max(len(r[1]) for r in rows + [("", "shape")])
        lines = [f"{'parameter':<{w}}  {'shape':<{ws}}  {'kept':>11}  {'total':>11}  {'sparsity':>8}"]
        lines.append("-" * len(lines[0]))
        for n, s, k, t in rows:
            if n == "total":
                lines.append("-" * len(lines[0]))
            sp = 100.0 * (1 - k / t) if t else 0.0
            lines.append(f"{n:<{w}}  {s:<{ws}}  {k:>11,}  {t:>11,}  {sp:>7.2f}%")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Mask({len(self)} tensors, {self.kept():,}/{self.total():,} kept, sparsity {self.sparsity():.4f})"


def _granular_shape(shape: tuple, granularity: str) -> tuple:
    if granularity == "weight":
        return shape
    if granularity == "filter":
        return (shape[0],) + (1,) * (len(shape) - 1)
    if granularity == "channel":
        if len(shape) < 2:
            raise ConfigError(f"granularity 'channel' needs a parameter with >= 2 dims, got shape {shape}")
        return (1, shape[1]) + (1,) * (len(shape) - 2)
    raise ConfigError(f"unknown granularity {granularity!r}; allowed: weight, filter, channel")


def random_mask_like(mask: Mask, generator: torch.Generator | None = None) -> Mask:
    """A mask with the same kept count in every layer, at uniformly random positions."""
    out = {}
    for n, m in mask.items():
        k = int(m.sum())
        order = torch.randperm(m.numel(), generator=generator)
        flat = torch.zeros(m.numel(), dtype=torch.bool)
        flat[order[:k]] = True
        out[n] = flat.view(m.shape).to(m.device)
    return Mask(out, mask.shapes)
