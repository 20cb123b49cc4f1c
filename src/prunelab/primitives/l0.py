"""L0 regularisation with hard-concrete gates (Louizos, Welling & Kingma 2018; spec §1.7).

One gate z per prunable weight with a learned location log α. In training a gate is sampled

    u ~ U(0, 1),  s = σ((log u − log(1 − u) + log α) / β),  z = min(1, max(0, s (ζ − γ) + γ)),

in evaluation it is deterministic, z = min(1, max(0, σ(log α)(ζ − γ) + γ)), and the expected number of
non-zero gates, Σ σ(log α − β log(−γ/ζ)), is the differentiable L0 penalty. Defaults β = 2/3, γ = −0.1,
ζ = 1.1. Weights and gates are trained jointly.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .learned_mask import LearnedMask
from .masks import Mask
from .scopes import ScopeLike


def deterministic_gate(log_alpha: torch.Tensor, gamma: float = -0.1, zeta: float = 1.1) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(log_alpha) * (zeta - gamma) + gamma, 0.0, 1.0)


class HardConcreteGates(LearnedMask):
    """Hard-concrete gates over ``scope``; the scores are log α. ``init_drop`` p sets log α ≈ log((1−p)/p)
    (plus N(0, ``init_std``) noise, as Louizos et al. initialise)."""

    def __init__(self, model: nn.Module, scope: ScopeLike = None, *, init_drop: float = 0.5,
                 init_std: float = 0.01, beta: float = 2.0 / 3.0, gamma: float = -0.1, zeta: float = 1.1,
                 generator: Optional[torch.Generator] = None):
        from ..errors import ConfigError
        if not 0.0 < init_drop < 1.0:
            raise ConfigError(f"init_drop {init_drop!r} is outside (0, 1) (initial drop probability)")
        if not (gamma < 0.0 and zeta > 1.0 and beta > 0.0):
            raise ConfigError(f"hard-concrete needs gamma < 0 < 1 < zeta and beta > 0; got gamma={gamma}, "
                              f"zeta={zeta}, beta={beta}")
        super().__init__(model, scope, score_init=math.log(1.0 - init_drop) - math.log(init_drop),
                         train_weights=True)
        self.beta, self.gamma, self.zeta = float(beta), float(gamma), float(zeta)
        if init_std > 0:
            with torch.no_grad():
                for p in self.score_parameters():
                    noise = torch.randn(p.shape, generator=generator) * init_std
                    p.add_(noise.to(p.device))

    def log_alpha(self, name: str) -> nn.Parameter:
        return self.score(name)

    def soft_mask(self, name: str) -> torch.Tensor:
        la = self.log_alpha(name)
        if not self.training:
            return deterministic_gate(la, self.gamma, self.zeta)
        eps = 1e-6
        u = torch.rand_like(la).clamp_(eps, 1.0 - eps)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + la) / self.beta)
        return torch.clamp(s * (self.zeta - self.gamma) + self.gamma, 0.0, 1.0)

    def expected_l0(self) -> torch.Tensor:
        """Σ P(z ≠ 0) = Σ σ(log α − β log(−γ/ζ)) over every gate."""
        shift = self.beta * math.log(-self.gamma / self.zeta)
        return sum(torch.sigmoid(self.log_alpha(n) - shift).sum() for n in self.names)

    @torch.no_grad()
    def hard_mask(self) -> Mask:
        """The weights whose deterministic test-time gate is non-zero."""
        return Mask({n: deterministic_gate(self.log_alpha(n), self.gamma, self.zeta) > 0 for n in self.names},
                    {n: tuple(self.log_alpha(n).shape) for n in self.names})
