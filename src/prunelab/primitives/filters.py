"""Filter (output-channel) masks that silence a channel completely, as GST prunes (spec §2.3).

A filter mask is an ordinary :class:`~prunelab.primitives.masks.Mask` whose conv entries have shape
``(C_out, 1, 1, 1)``. Zeroing a filter alone does not silence its channel: the conv bias and the following
BatchNorm's β (and, in training mode, nothing else) still produce an output. :func:`with_batchnorm` therefore
extends the mask to the BN's γ and β (or to the conv bias when no BN follows), so a pruned channel is exactly
0 after the BN and the ReLU. In ResNet blocks the shortcut would still add into a pruned block-output
channel; :class:`FilterMasking` blocks that addition for channels pruned in a block's ``conv2``.
"""
from __future__ import annotations

import fnmatch
from typing import Iterable

import torch
from torch import nn

from ..errors import ConfigError
from .enforce import MaskEnforcer
from .masks import Mask


def conv_names(model: nn.Module) -> list[str]:
    """Module names of every Conv2d, in registration (= forward for our models) order."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def resolve_convs(model: nn.Module, patterns: Iterable[str]) -> dict[str, str]:
    """Map each pattern to conv module names: ``convN`` (the N-th conv, 1-based), an exact module name, or an
    fnmatch pattern (``layer*.*.conv2``). Returns ``{conv_name: pattern}``; unmatched patterns are errors."""
    convs = conv_names(model)
    out: dict[str, str] = {}
    for pat in patterns:
        if pat.startswith("conv") and pat[4:].isdigit():
            i = int(pat[4:])
            if not 1 <= i <= len(convs):
                raise ConfigError(f"layer {pat!r}: the model has {len(convs)} convs; allowed conv1..conv{len(convs)}")
            hits = [convs[i - 1]]
        else:
            hits = [c for c in convs if fnmatch.fnmatchcase(c, pat)]
        if not hits:
            raise ConfigError(f"layer {pat!r} matches no conv of the model; allowed: convN or a pattern over "
                              f"{convs}")
        for h in hits:
            out.setdefault(h, pat)
    return out


def conv_bn_pairs(model: nn.Module) -> dict[str, str | None]:
    """Each conv's following BatchNorm: the leaf module registered right after it, if it is a BN of the same
    width (true for VGG's conv-bn-relu sequences and ResNet's conv1/bn1, conv2/bn2, shortcut conv/bn), else
    None. The one rule for GST's filter masking, activation scores and network slimming."""
    mods = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    out: dict[str, str | None] = {}
    for i, (n, m) in enumerate(mods):
        if isinstance(m, nn.modules.conv._ConvNd):
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            ok = (nxt is not None and isinstance(nxt[1], nn.modules.batchnorm._BatchNorm)
                  and nxt[1].num_features == m.out_channels)
            out[n] = nxt[0] if ok else None
    return out


def block_shortcuts(model: nn.Module) -> dict[str, nn.Module]:
    """``{conv2 name: shortcut module}`` for residual blocks (modules with conv2 and shortcut children)."""
    out = {}
    for n, m in model.named_modules():
        if isinstance(getattr(m, "conv2", None), nn.Conv2d) and isinstance(getattr(m, "shortcut", None), nn.Module):
            out[f"{n}.conv2" if n else "conv2"] = m.shortcut
    return out


def filter_mask(model: nn.Module, layers: Iterable[str]) -> Mask:
    """An all-kept filter mask over the weights of the convs named by ``layers`` (see :func:`resolve_convs`)."""
    names = [f"{c}.weight" for c in resolve_convs(model, layers)]
    return Mask.ones(model, names, granularity="filter")


def with_batchnorm(mask: Mask, model: nn.Module) -> Mask:
    """``mask`` plus, for each filter-masked conv, the same channels of its BN's γ and β (or of the conv's
    own bias when no BN follows): what must be zero for the channel's output to be exactly 0."""
    pairs = conv_bn_pairs(model)
    params = dict(model.named_parameters())
    masks, shapes = {}, {}
    for n, m in mask.items():
        masks[n], shapes[n] = m, mask.shapes[n]
        conv = n[: -len(".weight")]
        if conv not in pairs or m.shape[1:] != (1,) * (m.dim() - 1):
            continue  # not a conv filter mask: nothing downstream to silence
        chan = m.reshape(-1)
        extra = [f"{pairs[conv]}.weight", f"{pairs[conv]}.bias"] if pairs[conv] else [f"{conv}.bias"]
        for e in extra:
            if e in params:
                masks[e], shapes[e] = chan, tuple(params[e].shape)
    return Mask(masks, shapes)


class FilterMasking:
    """Keeps a filter mask in force on a model during training.

    After every optimizer step call :meth:`apply` (one fused multiply over conv weights, BN γ/β and biases);
    after a pruning event call :meth:`update`. Shortcut additions into channels pruned in a residual block's
    ``conv2`` are blocked by a forward hook on the shortcut: the block computes relu(bn2(..) + shortcut(x)),
    and with bn2's channel already 0 the hook makes the sum 0 too (spec §2.3, GST's shortcut rule).
    """

    def __init__(self, model: nn.Module, mask: Mask, *, mask_bn: bool = True, mask_shortcuts: bool = True):
        self.model = model
        self.mask_bn = mask_bn
        self.mask_shortcuts = mask_shortcuts
        self._hooks: list = []
        self._shortcut_factors: dict[str, torch.Tensor] = {}
        self.update(mask)

    def update(self, mask: Mask) -> None:
        self.mask = mask
        self.full = with_batchnorm(mask, self.model) if self.mask_bn else mask
        self.enforcer = MaskEnforcer(self.model, self.full)
        self._set_shortcuts()
        self.apply()

    def _set_shortcuts(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        if not self.mask_shortcuts:
            return
        for conv2, sc in block_shortcuts(self.model).items():
            name = f"{conv2}.weight"
            if name not in self.mask or bool(self.mask[name].all()):
                continue
            factor = self.mask[name].reshape(1, -1, 1, 1)
            self._hooks.append(sc.register_forward_hook(
                lambda mod, inp, out, f=factor: out * f.to(device=out.device, dtype=out.dtype)))

    @torch.no_grad()
    def apply(self) -> None:
        self.enforcer.apply()

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
