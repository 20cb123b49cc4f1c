"""Continuous sparsification's mask (Savarese et al. 2020, spec §5.1, §5.2b).

One real score s per prunable weight; the weight used in a forward pass is w ⊙ m with

- soft phase (mask search): m = σ(β·s) · c,
- hard phase (ticket):      m = 1[s > 0] · c,

where c = 1/σ(s0) with ``scale=True`` (the official code: every mask is exactly 1 at initialisation) or
c = 1 (the paper's plain form). The same c enters both phases and the L1 penalty, as the official code
does. Weights and scores are trained jointly (the model's parameters stay trainable).

With ``target_sparsity`` x (a toolkit option, off by default) every binarization (the hard forward,
:meth:`hard_mask`, :meth:`density`) keeps instead the round((1 − x)·N) highest scores over the whole scope
(one global threshold, N the scope's entries), so the ticket has exactly the requested sparsity; among
tied scores the lower flat index (scope order, then row-major) is pruned first, the toolkit's ``index`` rule.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError
from .allocation import keep_global
from .learned_mask import LearnedMask
from .masks import Mask
from .scopes import ScopeLike
from .selection import select_global

RESET_RULES = ("paper", "code")
TEMPERATURE_UNITS = ("epoch", "iteration")


def check_target_sparsity(x: Optional[float]) -> Optional[float]:
    """None (binarize at s > 0) or a fraction strictly between 0 and 1; anything else is a ConfigError."""
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0.0 < float(x) < 1.0:
        raise ConfigError(f"target_sparsity {x!r} must be a fraction strictly between 0 and 1 (the share of "
                          f"the CS scope's weights removed, e.g. 0.9 = 90 % zeros), or None for the mask s > 0")
    return float(x)


class ContinuousSparsificationMask(LearnedMask):
    """Soft masks σ(β s)·c over ``scope`` of ``model``; ``hard`` switches to the binary ticket mask
    (1[s > 0], or the top round((1 − x)·N) scores with ``target_sparsity`` x)."""

    def __init__(self, model: nn.Module, scope: ScopeLike = None, *, s0: float = 0.0, scale: bool = True,
                 target_sparsity: Optional[float] = None):
        super().__init__(model, scope, score_init=s0, train_weights=True)
        self.s0 = float(s0)
        self.c = 1.0 + math.exp(-self.s0) if scale else 1.0   # 1/σ(s0)
        self.beta = 1.0
        self.hard = False
        self.target_sparsity = check_target_sparsity(target_sparsity)
        # the thresholded mask and the scores' version counters it was computed from: the hard forward
        # reuses it (no global selection per batch) until a score changes in place
        self._exact: Optional[tuple[tuple, Mask]] = None

    def soft_mask(self, name: str) -> torch.Tensor:
        s = self.score(name)
        if self.hard:
            if self.target_sparsity is not None:
                return self._exact_mask()[name].to(device=s.device, dtype=s.dtype) * self.c
            return (s.detach() > 0).to(s.dtype) * self.c
        return torch.sigmoid(self.beta * s) * self.c

    @torch.no_grad()
    def _exact_mask(self) -> Mask:
        """The top round((1 − x)·N) scores over the scope (ties: lower flat index pruned first)."""
        version = tuple(self.score(n)._version for n in self.names)
        if self._exact is not None and self._exact[0] == version:
            return self._exact[1]
        scores = {n: self.score(n).detach() for n in self.names}
        full = Mask({n: torch.ones_like(s, dtype=torch.bool) for n, s in scores.items()})
        mask = select_global(scores, full, keep_global(full, self.target_sparsity), ties="index")
        self._exact = (version, mask)
        return mask

    def l1(self) -> torch.Tensor:
        """Σ over every masked entry of the current mask values (c included): the CS penalty."""
        return sum(self.soft_mask(n).sum() for n in self.names)

    @torch.no_grad()
    def hard_mask(self) -> Mask:
        if self.target_sparsity is not None:
            return self._exact_mask().clone()
        return Mask({n: self.score(n) > 0 for n in self.names},
                    {n: tuple(self.score(n).shape) for n in self.names})

    @torch.no_grad()
    def reset_scores(self, factor: float) -> None:
        """Between rounds: s ← min(factor·s, s0); factor β_T is the paper's rule, 1 the official code's."""
        for n in self.names:
            s = self.score(n)
            s.copy_(torch.clamp(s * factor, max=self.s0))

    def freeze_scores(self, frozen: bool = True) -> None:
        for p in self.score_parameters():
            p.requires_grad_(not frozen)

    @torch.no_grad()
    def density(self) -> float:
        """Fraction of scores > 0, or 1 − x with ``target_sparsity`` x (the ticket's density if the search
        stopped now)."""
        if self.target_sparsity is not None:
            return self._exact_mask().density()
        kept = sum(int(torch.count_nonzero(self.score(n) > 0)) for n in self.names)
        return kept / sum(self.score(n).numel() for n in self.names)

