"""Continuous sparsification's mask (Savarese et al. 2020, spec §5.1, §5.2b).

One real score s per prunable weight; the weight used in a forward pass is w ⊙ m with

- soft phase (mask search): m = σ(β·s) · c,
- hard phase (ticket):      m = 1[s > 0] · c,

where c = 1/σ(s0) with ``scale=True`` (the official code: every mask is exactly 1 at initialisation) or
c = 1 (the paper's plain form). The same c enters both phases and the L1 penalty, as the official code
does. Weights and scores are trained jointly (the model's parameters stay trainable).
"""
from __future__ import annotations

import math
import torch
from torch import nn

from .learned_mask import LearnedMask
from .masks import Mask
from .scopes import ScopeLike

RESET_RULES = ("paper", "code")
TEMPERATURE_UNITS = ("epoch", "iteration")


class ContinuousSparsificationMask(LearnedMask):
    """Soft masks σ(β s)·c over ``scope`` of ``model``; ``hard`` switches to the binary ticket mask."""

    def __init__(self, model: nn.Module, scope: ScopeLike = None, *, s0: float = 0.0, scale: bool = True):
        super().__init__(model, scope, score_init=s0, train_weights=True)
        self.s0 = float(s0)
        self.c = 1.0 + math.exp(-self.s0) if scale else 1.0   # 1/σ(s0)
        self.beta = 1.0
        self.hard = False

    def soft_mask(self, name: str) -> torch.Tensor:
        s = self.score(name)
        if self.hard:
            return (s.detach() > 0).to(s.dtype) * self.c
        return torch.sigmoid(self.beta * s) * self.c

    def l1(self) -> torch.Tensor:
        """Σ over every masked entry of the current mask values (c included): the CS penalty."""
        return sum(self.soft_mask(n).sum() for n in self.names)

    @torch.no_grad()
    def hard_mask(self) -> Mask:
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
        """Fraction of scores > 0 (the ticket's density if the search stopped now)."""
        kept = sum(int(torch.count_nonzero(self.score(n) > 0)) for n in self.names)
        return kept / sum(self.score(n).numel() for n in self.names)

