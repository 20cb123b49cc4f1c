"""L0 regularisation with hard-concrete gates (Louizos, Welling & Kingma 2018; spec §1.7).

One gate z per prunable weight with a learned location log α. In training a gate is sampled

    u ~ U(0, 1),  s = σ((log u − log(1 − u) + log α) / β),  z = min(1, max(0, s (ζ − γ) + γ)),

in evaluation it is deterministic, z = min(1, max(0, σ(log α)(ζ − γ) + γ)), and the expected number of
non-zero gates, Σ σ(log α − β log(−γ/ζ)), is the differentiable L0 penalty. Defaults β = 2/3, γ = −0.1,
ζ = 1.1. Weights and gates are trained jointly.

Binary masks from trained gates: :meth:`HardConcreteGates.hard_mask` keeps the weights whose deterministic
test-time gate is non-zero (σ(log α)(ζ − γ) + γ > 0, i.e. log α > log(−γ/ζ));
:meth:`HardConcreteGates.sampled_mask` keeps those whose gate is non-zero in one hard-concrete sample drawn
with a given generator (each gate kept with probability P(z ≠ 0) = σ(log α − β log(−γ/ζ)), the term of the
penalty).
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


def sampled_gate(log_alpha: torch.Tensor, u: torch.Tensor, beta: float = 2.0 / 3.0, gamma: float = -0.1,
                 zeta: float = 1.1) -> torch.Tensor:
    """The hard-concrete gate of uniform noise ``u`` (in (0, 1)): min(1, max(0, s (ζ − γ) + γ)) with
    s = σ((log u − log(1 − u) + log α) / β)."""
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / beta)
    return torch.clamp(s * (zeta - gamma) + gamma, 0.0, 1.0)


class HardConcreteGates(LearnedMask):
    """Hard-concrete gates over ``scope``; the scores are log α. ``init_drop`` p sets log α ≈ log((1−p)/p)
    (plus N(0, ``init_std``) noise, as Louizos et al. initialise)."""

    EPS = 1e-6   # the uniform noise u is clamped to [EPS, 1 − EPS]

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
        u = torch.rand_like(la).clamp_(self.EPS, 1.0 - self.EPS)
        return sampled_gate(la, u, self.beta, self.gamma, self.zeta)

    def expected_l0(self) -> torch.Tensor:
        """Σ P(z ≠ 0) = Σ σ(log α − β log(−γ/ζ)) over every gate."""
        shift = self.beta * math.log(-self.gamma / self.zeta)
        return sum(torch.sigmoid(self.log_alpha(n) - shift).sum() for n in self.names)

    @torch.no_grad()
    def hard_mask(self) -> Mask:
        """The weights whose deterministic test-time gate is non-zero."""
        return Mask({n: deterministic_gate(self.log_alpha(n), self.gamma, self.zeta) > 0 for n in self.names},
                    {n: tuple(self.log_alpha(n).shape) for n in self.names})

    @torch.no_grad()
    def sampled_mask(self, generator: Optional[torch.Generator] = None) -> Mask:
        """The weights whose gate is non-zero in one hard-concrete sample: u ~ U(0, 1) drawn on the CPU with
        ``generator``, one tensor per gated weight in ``names`` order (clamped as in training)."""
        out = {}
        for n in self.names:
            la = self.log_alpha(n)
            u = torch.rand(la.shape, generator=generator, dtype=la.dtype).clamp_(self.EPS, 1.0 - self.EPS)
            out[n] = sampled_gate(la, u.to(la.device), self.beta, self.gamma, self.zeta) > 0
        return Mask(out, {n: tuple(self.log_alpha(n).shape) for n in self.names})
