"""Learned masks: a score tensor per weight tensor, turned into a mask at every forward pass.

:class:`LearnedMask` wraps any model without changing it: its forward runs the model through
``torch.func.functional_call`` with each masked weight replaced by ``base ⊙ mask(score) · scale``. The
wrapped model's own parameters are frozen (``requires_grad=False``); the only trainable parameters are the
scores, so any optimizer over ``wrapper.parameters()`` trains the mask alone. With ``train_weights=True``
the mask multiplies the model's own (trainable) parameters instead, for methods that learn both. Subclasses define
:meth:`LearnedMask.soft_mask` (what multiplies the weights in a forward pass) and
:meth:`LearnedMask.hard_mask` (the deterministic mask to export); continuous sparsification and L0 gates
subclass it with their own parameterisations.

:class:`BernoulliSupermask` is Zhou et al.'s learned supermask (spec §3.6): b ~ Bernoulli(σ(s)) drawn fresh
at every forward, in training *and* evaluation, with the straight-through gradient b + σ(s) − sg(σ(s)).
"""
from __future__ import annotations

import abc

from typing import Optional

import torch
from torch import nn
from torch.func import functional_call

from ..errors import ConfigError
from .masks import Mask
from .scopes import ScopeLike, resolve_scope


def _key(name: str) -> str:
    return name.replace(".", "__")


class LearnedMask(nn.Module, abc.ABC):
    """Base class: per-parameter ``scores`` (same shape as the weight) over the parameters in ``scope``."""

    def __init__(self, model: nn.Module, scope: ScopeLike = None, *, score_init: float = 0.0,
                 freeze_model: bool = True, train_weights: bool = False):
        super().__init__()
        self.model = model
        # train_weights: the mask multiplies the model's own parameters, which stay trainable (continuous
        # sparsification, L0 gates learn weights and mask jointly); otherwise frozen buffer copies
        self.train_weights = train_weights
        if freeze_model and not train_weights:
            for p in model.parameters():
                p.requires_grad_(False)
        params = dict(model.named_parameters())
        self.names = list(resolve_scope(model, scope))
        self.scores = nn.ParameterDict({_key(n): nn.Parameter(torch.full_like(params[n].detach(), score_init))
                                        for n in self.names})
        if not train_weights:
            # the weights the mask multiplies: a buffer copy, so the model's parameters are never written
            for n in self.names:
                self.register_buffer("base__" + _key(n), params[n].detach().clone())

    # ------------------------------------------------------------------ to override
    @abc.abstractmethod
    def soft_mask(self, name: str) -> torch.Tensor:
        """The mask (or gate) multiplying weight ``name`` in this forward pass."""

    @abc.abstractmethod
    def hard_mask(self) -> Mask:
        """A deterministic boolean mask of the current scores (for export and counting)."""

    def scale(self, name: str, m: torch.Tensor) -> Optional[torch.Tensor]:
        """Optional factor on the masked weight (e.g. dynamic weight rescaling); None for none."""
        return None

    # ------------------------------------------------------------------ shared
    def score(self, name: str) -> nn.Parameter:
        return self.scores[_key(name)]

    def base_weight(self, name: str) -> torch.Tensor:
        if self.train_weights:
            return self.model.get_parameter(name)
        return getattr(self, "base__" + _key(name))

    @torch.no_grad()
    def set_base_weight(self, name: str, value: torch.Tensor) -> None:
        self.base_weight(name).copy_(value)

    def score_parameters(self) -> list[nn.Parameter]:
        return list(self.scores.parameters())

    def weight_parameters(self) -> list[nn.Parameter]:
        """The wrapped model's parameters (trainable only with ``train_weights``)."""
        return list(self.model.parameters())

    def effective_weights(self) -> dict[str, torch.Tensor]:
        out = {}
        for n in self.names:
            m = self.soft_mask(n)
            w = self.base_weight(n) * m
            s = self.scale(n, m)
            out[n] = w if s is None else w * s
        return out

    def forward(self, *args, **kwargs):
        return functional_call(self.model, self.effective_weights(), args, kwargs, strict=False)


class BernoulliSupermask(LearnedMask):
    """Zhou et al.'s learned supermask over frozen weights.

    ``mode``: ``sample`` (Bernoulli(σ(s)) every forward, straight-through) or ``round`` (b = 1[σ(s) > 0.5],
    straight-through). ``signed_constant`` replaces each weight tensor by std(w)·sign(w) (per layer);
    ``dynamic_rescale`` multiplies each layer's masked weights by size / Σb in every forward pass.
    ``score_init`` is the official ``sigmoid_bias`` (0 ⇒ keep probability 0.5).
    """

    MODES = ("sample", "round")

    def __init__(self, model: nn.Module, scope: ScopeLike = None, *, score_init: float = 0.0,
                 mode: str = "sample", signed_constant: bool = False, dynamic_rescale: bool = False,
                 generator: Optional[torch.Generator] = None):
        if mode not in self.MODES:
            raise ConfigError(f"unknown supermask mode {mode!r}; allowed: {', '.join(self.MODES)}")
        super().__init__(model, scope, score_init=score_init)
        self.mode = mode
        self.dynamic_rescale = dynamic_rescale
        self.generator = generator
        if signed_constant:
            with torch.no_grad():
                for n in self.names:
                    w = self.base_weight(n)
                    self.set_base_weight(n, w.std(unbiased=False) * torch.sign(w))

    def soft_mask(self, name: str) -> torch.Tensor:
        p = torch.sigmoid(self.score(name))
        if self.mode == "sample":
            u = torch.rand(p.shape, generator=self.generator, device="cpu" if self.generator is not None
                           else p.device).to(p.device)
            b = (u < p.detach()).to(p.dtype)
        else:
            b = (p.detach() > 0.5).to(p.dtype)
        return b + p - p.detach()

    def scale(self, name: str, m: torch.Tensor) -> Optional[torch.Tensor]:
        if not self.dynamic_rescale:
            return None
        kept = m.detach().sum().clamp_min(1.0)
        return m.numel() / kept

    @torch.no_grad()
    def hard_mask(self) -> Mask:
        return Mask({n: self.score(n) > 0 for n in self.names})

    @torch.no_grad()
    def expected_density(self) -> float:
        tot = sum(self.score(n).numel() for n in self.names)
        return float(sum(torch.sigmoid(self.score(n)).sum() for n in self.names)) / tot
