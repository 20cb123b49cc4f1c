"""Filter scores of GST (spec §2.3, appendix B); higher = more important, shaped like the filter mask.

The L1 and L2 filter norms are the registered ``magnitude`` and ``l2`` scores (they reduce to a filter's
norm when the mask entry is ``(C_out, 1, 1, 1)``); ``l1`` is registered as an alias of ``magnitude``.
Registered here:

- ``ebn``: the expected post-ReLU output of the conv's BN channel, E = (1 − Φ(α))·β + |γ|·φ(α) with
  α = −β/|γ| (BN output ~ N(β, γ²)); 0 where 1 − Φ(α) is 0 or the value is NaN.
- ``ebn_signed``: the same with the signed γ (GST's ``EBN_alt``).
- ``activations``: a running mean of each channel's mean |activation| (the BN output, before the ReLU; for a
  residual block's conv2, BN2's output plus the (masked) shortcut, before the block's final ReLU, as GST's
  ResNet-18 code takes it), kept by an :class:`ActivationTracker` passed as ``activations=``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .filters import block_shortcuts, conv_bn_pairs
from .masks import Mask
from .scores import magnitude, register_score

register_score("l1")(magnitude)


def _bn_of(model: nn.Module, param: str) -> nn.BatchNorm2d:
    conv = param[: -len(".weight")]
    bn = conv_bn_pairs(model).get(conv)
    if bn is None:
        raise ConfigError(f"the E[BN] score needs a BatchNorm2d after conv {conv!r}; none follows it")
    return model.get_submodule(bn)


def expected_bn_relu(gamma: torch.Tensor, beta: torch.Tensor, signed: bool = False) -> torch.Tensor:
    """E[relu(y)] for y ~ N(β, γ²) per channel (GST appendix B); ``signed`` keeps γ's sign (EBN_alt)."""
    g = gamma.double() if signed else gamma.double().abs()
    b = beta.double()
    alpha = -b / g
    normal = torch.distributions.Normal(torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64))
    z = 1.0 - normal.cdf(alpha)
    e = z * b + g * torch.exp(normal.log_prob(alpha))
    return torch.where((z == 0) | torch.isnan(e), torch.zeros_like(e), e)


def _ebn(model: nn.Module, mask: Mask, signed: bool) -> dict[str, torch.Tensor]:
    out = {}
    for n in mask:
        bn = _bn_of(model, n)
        e = expected_bn_relu(bn.weight.detach(), bn.bias.detach(), signed)
        out[n] = e.to(bn.weight.dtype).view(mask[n].shape)
    return out


@register_score("ebn")
@torch.no_grad()
def ebn(model: nn.Module, mask: Mask, **_) -> dict[str, torch.Tensor]:
    return _ebn(model, mask, signed=False)


@register_score("ebn_signed")
@torch.no_grad()
def ebn_signed(model: nn.Module, mask: Mask, **_) -> dict[str, torch.Tensor]:
    return _ebn(model, mask, signed=True)


class ActivationTracker:
    """Running mean of each channel's mean |activation| for chosen convs, updated from forward hooks.

    The activation of a conv is its BN's output (before any ReLU), or, for a residual block's ``conv2``, the
    sum bn2(conv2(..)) + shortcut(x) the block computes *before its final ReLU*, with the shortcut as the
    block adds it (after any masking hook, so a channel whose shortcut is blocked gets BN2's output alone):
    GST's ResNet-18 ``activations`` score (models.py, resnet18's ``_mask_shortcuts_forward_C``) updates
    conv2's running mean between the shortcut add and ``F.relu``. Updates happen in training mode every
    ``every``-th forward pass with EMA weight ``momentum`` (GST: every 10 batches, 0.1); the first update
    sets the value.
    """

    def __init__(self, model: nn.Module, convs, *, every: int = 10, momentum: float = 0.1):
        if every < 1 or not 0 < momentum <= 1:
            raise ConfigError(f"every={every} must be >= 1 and momentum={momentum} in (0, 1]")
        self.every, self.momentum = every, momentum
        self.values: dict[str, torch.Tensor] = {}
        self._calls: dict[str, int] = {}
        self._device = next(model.parameters()).device
        self._hooks = []
        # residual conv2s being captured in the current forward pass: {conv: (one-shot handles, outputs)}
        self._pending: dict[str, tuple[list, dict[str, torch.Tensor]]] = {}
        pairs = conv_bn_pairs(model)
        shortcuts = block_shortcuts(model)
        block_of = {c2: c2.rsplit(".", 1)[0] if "." in c2 else "" for c2 in shortcuts}
        for conv in convs:
            conv = conv[: -len(".weight")] if conv.endswith(".weight") else conv
            self._calls[conv] = 0
            main = model.get_submodule(pairs[conv]) if pairs.get(conv) else model.get_submodule(conv)
            if conv in block_of:
                block = model.get_submodule(block_of[conv]) if block_of[conv] else model
                self._hooks.append(block.register_forward_pre_hook(
                    lambda m, i, c=conv, mn=main, sc=shortcuts[conv]: self._arm(c, m, mn, sc)))
                self._hooks.append(block.register_forward_hook(lambda m, i, o, c=conv: self._block_done(c)))
            else:
                self._hooks.append(main.register_forward_hook(lambda m, i, o, c=conv: self._update(c, m, o)))

    def _due(self, conv: str, module: nn.Module) -> bool:
        if not module.training:
            return False
        self._calls[conv] += 1
        return (self._calls[conv] - 1) % self.every == 0

    def _disarm(self, conv: str) -> dict[str, torch.Tensor]:
        handles, got = self._pending.pop(conv, ([], {}))
        for h in handles:
            h.remove()
        return got

    def _arm(self, conv: str, block: nn.Module, main: nn.Module, shortcut: nn.Module) -> None:
        """Before a residual block runs: when an update is due, capture BN2's and the shortcut's outputs with
        hooks registered now, i.e. after any others (a masking hook on the shortcut has already run when ours
        sees its output), so their sum is exactly the block's pre-ReLU tensor."""
        self._disarm(conv)  # a forward that raised may have left hooks behind
        if not self._due(conv, block):
            return
        got: dict[str, torch.Tensor] = {}
        handles = [mod.register_forward_hook(lambda m, i, o, k=k: got.__setitem__(k, o.detach()))
                   for k, mod in (("main", main), ("shortcut", shortcut))]
        self._pending[conv] = (handles, got)

    def _block_done(self, conv: str) -> None:
        got = self._disarm(conv)
        if "main" in got and "shortcut" in got:
            self._record(conv, got["main"] + got["shortcut"])

    def _update(self, conv: str, module: nn.Module, out: torch.Tensor) -> None:
        if self._due(conv, module):
            self._record(conv, out)

    @torch.no_grad()
    def _record(self, conv: str, out: torch.Tensor) -> None:
        a = out.detach().float().abs().mean(dim=(0, 2, 3))
        old = self.values.get(conv)
        self.values[conv] = a if old is None else (1 - self.momentum) * old + self.momentum * a

    def state_dict(self) -> dict:
        return {"values": dict(self.values), "calls": dict(self._calls)}

    def load_state_dict(self, state: dict) -> None:
        self.values = {c: v.to(self._device) for c, v in state["values"].items()}
        self._calls = dict(state["calls"])

    def remove(self) -> None:
        for conv in list(self._pending):
            self._disarm(conv)
        for h in self._hooks:
            h.remove()
        self._hooks.clear()


@register_score("activations")
def activations(model: nn.Module, mask: Mask, *, activations: ActivationTracker | None = None, **_):
    if activations is None:
        raise ConfigError("score 'activations' needs activations=ActivationTracker(model, convs) in the "
                          "pruning context, tracking the masked convs during training")
    out = {}
    for n in mask:
        conv = n[: -len(".weight")]
        if conv not in activations.values:
            raise ConfigError(f"no activation statistics for {conv!r} yet; tracked: "
                              f"{sorted(activations.values)} (train at least one batch first)")
        out[n] = activations.values[conv].to(mask[n].device).view(mask[n].shape)
    return out

