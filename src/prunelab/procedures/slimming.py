"""Network slimming (Liu et al. 2017, spec §1.7).

Train with an L1 penalty λ Σ|γ| on every BatchNorm scale, remove the channels whose |γ| is globally
smallest, and fine-tune. A removed channel is *masked*, not cut out: its conv filter (a ``(C, 1, 1, 1)``
mask entry over the conv weight) and its BN γ and β are zero, so the channel outputs exactly zero.
A BN layer is paired with the convolution registered right before it that has as many output channels.
"""
from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from ..errors import ConfigError
from ..primitives.filters import conv_bn_pairs
from ..primitives.masks import Mask
from ..pruning import prune
from ..seeding import derive_seed
from ..training import snapshot
from .base import Procedure, ProcedureResult, RunContext, register_procedure



@register_procedure("slimming")
class SlimmingConfig(Procedure):
    """L1 on BN scales, global channel pruning by |γ|, fine-tuning."""

    kind: Literal["slimming"] = "slimming"
    stage_index: ClassVar[str] = "0 = sparsity training (variant dense), 1 = after pruning and fine-tuning"

    penalty: float = Field(1e-4, ge=0)                  # λ on Σ|γ| (1e-4 VGG, 1e-5 ResNet in the paper)
    channel_sparsity: float = Field(0.7, ge=0, lt=1)    # fraction of all BN channels removed (global |γ|)
    min_channels: int = Field(1, ge=0)                  # floor of channels kept per layer

    def trainings(self) -> int:
        return 2

    def run(self, ctx: RunContext) -> ProcedureResult:
        return _run_slimming(self, ctx)


def slimming_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv module name, BN module name) for every affine BN that directly follows its conv."""
    mods = dict(model.named_modules())
    return [(c, b) for c, b in conv_bn_pairs(model).items() if b is not None and mods[b].affine]


def _p(module_name: str, pname: str) -> str:
    return f"{module_name}.{pname}" if module_name else pname


def bn_l1(model: nn.Module, bn_names: list[str]) -> torch.Tensor:
    mods = dict(model.named_modules())
    return sum(mods[n].weight.abs().sum() for n in bn_names)


def channel_mask(model: nn.Module, pairs: list[tuple[str, str]], channels: Mask) -> Mask:
    """Filter masks for the convs and element masks for BN γ, β from a mask over the BN scales."""
    params = dict(model.named_parameters())
    masks, shapes = {}, {}
    for conv, bn in pairs:
        keep = channels[_p(bn, "weight")].to(torch.bool)
        w = params[_p(conv, "weight")]
        masks[_p(conv, "weight")] = keep.view(-1, *([1] * (w.dim() - 1)))
        shapes[_p(conv, "weight")] = tuple(w.shape)
        for pn in ("weight", "bias"):
            masks[_p(bn, pn)] = keep.clone()
            shapes[_p(bn, pn)] = tuple(params[_p(bn, pn)].shape)
    return Mask(masks, shapes)


def slim(model: nn.Module, channel_sparsity: float, *, min_channels: int = 1, seed: int = 0) -> Mask:
    """The slimming mask of ``model`` (nothing is zeroed here)."""
    pairs = slimming_pairs(model)
    if not pairs:
        raise ConfigError(f"{type(model).__name__} has no convolution followed by an affine BatchNorm; "
                          f"network slimming needs conv + BN layers (e.g. vgg11_bn, resnet20)")
    bn_weights = [_p(bn, "weight") for _, bn in pairs]
    chans = prune(model, sparsity=channel_sparsity, scope=bn_weights, score="magnitude", allocation="global",
                  ties="index", seed=seed, apply=False,
                  min_keep={n: min_channels for n in bn_weights} if min_channels else None)
    return channel_mask(model, pairs, chans)


def _run_slimming(cfg: SlimmingConfig, ctx: RunContext) -> ProcedureResult:
    """Rows: ``dense`` (round 0, trained with the γ penalty) and ``slimmed`` (round 1, after fine-tuning).
    kept/total count the conv weights; ``channel_sparsity`` is the fraction of BN channels removed."""
    seed = ctx.seed
    model = ctx.model_fn(seed)
    pairs = slimming_pairs(model)
    bns = [bn for _, bn in pairs]
    res = ctx.train(model, seed=seed, desc="slimming sparsity training",
                    penalty=(lambda m: cfg.penalty * bn_l1(m, bns)) if cfg.penalty and bns else None)
    mask = slim(model, cfg.channel_sparsity, min_channels=cfg.min_channels, seed=seed)
    convs = Mask({_p(c, "weight"): mask[_p(c, "weight")] for c, _ in pairs},
                 {_p(c, "weight"): mask.shapes[_p(c, "weight")] for c, _ in pairs})
    dense = Mask.ones(model, [_p(c, "weight") for c, _ in pairs])
    ctx.row("dense", 0, dense, res)
    chan_total = sum(mask[_p(bn, "weight")].numel() for bn in bns)
    chan_kept = sum(int(mask[_p(bn, "weight")].sum()) for bn in bns)
    res = ctx.train(model, ctx.finetune or ctx.train_cfg, mask=mask, seed=derive_seed(seed, "slimming-finetune"),
                    desc="slimming fine-tune")
    # the row counts conv weights; the mask also holds BN γ and β
    ctx.row("slimmed", 1, mask, res, extra={"channel_sparsity": 1.0 - chan_kept / chan_total},
            counts=(convs.kept(), convs.total()))
    ctx.result.model = model
    ctx.result.states["final"] = snapshot(model)
    return ctx.result
