"""Physical removal of pruned filters: a filter-masked model becomes a smaller dense model (issue 16).

:func:`export_pruned` takes a model and a filter mask (as built by
:func:`~prunelab.primitives.filters.filter_mask` and used by GST) and returns a new model whose outputs
equal, to float tolerance in eval mode, those of the *masked model*: the model with
:class:`~prunelab.primitives.filters.FilterMasking` applied (``mask_bn=True``, ``mask_shortcuts=True``, the
defaults), where a pruned filter's channel is exactly 0 after its BN and ReLU and a residual block's
shortcut is blocked on the channels its ``conv2`` prunes.

What is removed (reported per layer in ``exported.export_report``, printable with :func:`format_report`):

* plain chains (VGG, Conv-2/4/6, the ``conv1`` of a residual block, a stem feeding a projection): a pruned
  conv loses those output channels, its BN (or bias) those entries, and the next conv / Linear those input
  channels (for a Linear after a flatten, the ``h*w`` columns of each channel);
* residual streams (a stem and the ``conv2`` outputs of the blocks that add into the same tensor, up to the
  next projection or option-A shortcut): a channel is removed only if *every* producer of the stream
  prunes it. Otherwise the channel stays, exactly zero where masked (weights and BN γ/β zeroed); the
  shortcut additions that FilterMasking blocks with a forward hook become explicit: a projection's filter
  and BN entries are zeroed, identity and option-A shortcuts become an :class:`IndexShortcut` (subsample,
  then pick channels, -1 = zero), which also re-maps option A's zero padding after channels were removed.
  A stream's channels are not coupled across stages: an option-A shortcut feeds a stage from the previous
  one, and a removed source channel is just a zero it would have added.

A layer whose filters are all pruned keeps one (zero) channel, so every layer keeps a valid shape.
Only filter masks of ``Conv2d`` weights (shape ``(C_out, 1, 1, 1)``) remove anything; other entries of the
mask (weight-level masks, Linear rows) are applied as zeros and left in place.

Engine: our own small pass over the model's structure, not Torch-Pruning's DependencyGraph
(``torch-pruning`` 1.6.1, evaluated on our models, random 50 % filter masks, eval mode). On plain chains
it was exact (vgg11_bn 7e-8, conv2 1e-7), but it prunes a residual channel from its whole dependency group
(15-20 layers) whenever one layer asks, so unequal masks on a residual stream change the outputs
(resnet18: max |diff| 1.25, resnet20 with projections: 1.79); on option-A shortcuts (``F.pad`` channel
padding) it produced a broken model (resnet20: shape error in ``fc``). It cannot express "keep this channel
but zero this shortcut" either. Exactness on every model here needs the stream rule above, which also
covers the plain chains in a few lines, so prunelab has no dependency on torch-pruning.

Supported structures: models whose leaf modules are registered in forward order (the model-registry
convention) and are plain conv/BN/activation/pool chains ending in Linear layers, and ResNets built of
blocks with ``conv1, bn1, conv2, bn2, shortcut`` children (all registered ResNets). ``check=True`` (the
default) runs the masked and the exported model on one random batch and raises if they differ, so an
unsupported architecture fails loudly instead of exporting a wrong model.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, PrunelabError
from .primitives.enforce import MaskEnforcer
from .primitives.filters import FilterMasking, block_shortcuts, conv_bn_pairs, with_batchnorm
from .primitives.masks import Mask

__all__ = ["IndexShortcut", "LayerChange", "export_pruned", "format_report"]

# Leaf modules that act per channel (or not at all): a pruned channel stays exactly 0 through them.
_PASS_THROUGH = (nn.modules.batchnorm._BatchNorm, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU,
                 nn.Tanh, nn.Hardtanh, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d,
                 nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten)


class IndexShortcut(nn.Module):
    """Parameter-free shortcut: take every ``stride``-th pixel, then output channel k = input channel
    ``index[k]`` (or zeros where ``index[k] == -1``). Replaces identity and option-A shortcuts in an
    exported model."""

    def __init__(self, index: torch.Tensor, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        x = F.pad(x, (0, 0, 0, 0, 0, 1))  # one zero channel at the end, picked by index -1
        return x.index_select(1, torch.where(self.index < 0, x.shape[1] - 1, self.index))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, channels={self.index.numel()}, zero={int((self.index < 0).sum())}"


@dataclass
class LayerChange:
    """What export did to one layer: output/input channel counts before -> after, the channel indices
    (of the original layer) removed, and pruned output channels kept as zeros (residual coupling, or the
    one channel a fully pruned layer keeps)."""
    out_before: int
    out_after: int
    in_before: int
    in_after: int
    removed_out: list[int] = field(default_factory=list)
    removed_in: list[int] = field(default_factory=list)
    zero_kept: list[int] = field(default_factory=list)


def _pruned_filters(mask: Mask, model: nn.Module) -> dict[str, set[int]]:
    """``{conv name: pruned output channels}`` from the conv filter entries of ``mask``."""
    mods = dict(model.named_modules())
    out: dict[str, set[int]] = {}
    for n, m in mask.items():
        conv = n[: -len(".weight")] if n.endswith(".weight") else None
        if conv is None or not isinstance(mods.get(conv), nn.Conv2d):
            continue
        if m.shape[1:] != (1,) * (m.dim() - 1):
            continue  # weight-level entry: zeros, not filters
        out[conv] = set((~m.reshape(-1).bool()).nonzero().flatten().tolist())
    return out


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _idx(keep: list[int], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(keep, dtype=torch.long, device=like.device)


def _slice_conv(conv: nn.Conv2d, out_keep: Optional[list[int]], in_keep: Optional[list[int]]) -> nn.Conv2d:
    if conv.groups != 1:
        raise ConfigError(f"export supports only groups=1 convs, got groups={conv.groups}")
    w = conv.weight.detach()
    if out_keep is not None:
        w = w.index_select(0, _idx(out_keep, w))
    if in_keep is not None:
        w = w.index_select(1, _idx(in_keep, w))
    new = nn.Conv2d(w.shape[1], w.shape[0], conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode,
                    device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if conv.bias is not None:
            b = conv.bias.detach()
            new.bias.copy_(b if out_keep is None else b.index_select(0, _idx(out_keep, b)))
    new.train(conv.training)
    return new


def _slice_bn(bn: nn.modules.batchnorm._BatchNorm, keep: list[int]) -> nn.Module:
    new = copy.deepcopy(bn)
    new.num_features = len(keep)
    with torch.no_grad():
        for name in ("weight", "bias"):
            p = getattr(bn, name)
            if p is not None:
                setattr(new, name, nn.Parameter(p.detach().index_select(0, _idx(keep, p)).clone()))
        for name in ("running_mean", "running_var"):
            b = getattr(bn, name)
            if b is not None:
                setattr(new, name, b.index_select(0, _idx(keep, b)).clone())
    return new


def _slice_linear(lin: nn.Linear, channels: int, in_keep: list[int]) -> tuple[nn.Linear, list[int]]:
    """Drop the input columns of removed channels (``in_features = channels * h * w``, NCHW flatten)."""
    if lin.in_features % channels:
        raise ConfigError(f"a Linear with {lin.in_features} inputs cannot follow a {channels}-channel conv")
    hw = lin.in_features // channels
    cols = [c * hw + i for c in in_keep for i in range(hw)]
    w = lin.weight.detach()
    new = nn.Linear(len(cols), lin.out_features, bias=lin.bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w.index_select(1, _idx(cols, w)))
        if lin.bias is not None:
            new.bias.copy_(lin.bias)
    new.train(lin.training)
    return new, sorted(set(range(lin.in_features)) - set(cols))


def _keep_list(n: int, removed: set[int]) -> tuple[list[int], set[int]]:
    """Kept channels and the removed set; a fully pruned layer keeps its first channel (as zeros)."""
    removed = {c for c in removed if 0 <= c < n}
    if len(removed) >= n:
        removed = removed - {min(removed)}
    return [c for c in range(n) if c not in removed], removed


class _Exporter:
    def __init__(self, model: nn.Module, pruned: dict[str, set[int]]):
        self.model = model
        self.pruned = pruned
        self.mods = dict(model.named_modules())
        self.bn_of = conv_bn_pairs(model)
        self.report: dict[str, LayerChange] = {}

    def change(self, name: str) -> LayerChange:
        if name not in self.report:
            m = self.mods[name]
            o, i = ((m.out_channels, m.in_channels) if isinstance(m, nn.Conv2d)
                    else (m.out_features, m.in_features))
            self.report[name] = LayerChange(o, o, i, i)
        return self.report[name]

    def cut_out(self, conv: str, keep: list[int], removed: set[int]) -> None:
        """Remove output channels of ``conv`` and the same entries of its BN."""
        ch = self.change(conv)
        ch.removed_out = sorted(removed)
        ch.out_after = len(keep)
        ch.zero_kept = sorted(self.pruned.get(conv, set()) - removed)
        if not removed:
            return
        _set_module(self.model, conv, _slice_conv(self.mods[conv], keep, None))
        self.mods[conv] = self.model.get_submodule(conv)
        bn = self.bn_of.get(conv)
        if bn is not None:
            _set_module(self.model, bn, _slice_bn(self.mods[bn], keep))
            self.mods[bn] = self.model.get_submodule(bn)

    def cut_in(self, name: str, channels: int, keep: list[int]) -> None:
        """Remove input channels of the consumer ``name`` (a conv, or a Linear after flatten)."""
        ch = self.change(name)
        if len(keep) == channels:
            return
        m = self.mods[name]
        if isinstance(m, nn.Conv2d):
            new = _slice_conv(m, None, keep)
            ch.removed_in = sorted(set(range(channels)) - set(keep))
        else:
            new, ch.removed_in = _slice_linear(m, channels, keep)
        ch.in_after = new.weight.shape[1]
        _set_module(self.model, name, new)
        self.mods[name] = new

    # --- plain chains -----------------------------------------------------------------------------
    def plain(self, leaves: list[tuple[str, nn.Module]]) -> None:
        """Leaves in forward order; every conv feeds the next conv/Linear through per-channel modules."""
        for i, (name, m) in enumerate(leaves):
            if not isinstance(m, nn.Conv2d):
                continue
            nxt = None
            for name2, m2 in leaves[i + 1:]:
                if isinstance(m2, (nn.Conv2d, nn.Linear)):
                    nxt = name2
                    break
                if not isinstance(m2, _PASS_THROUGH):
                    raise ConfigError(f"export: cannot remove channels of {name!r} through a "
                                      f"{type(m2).__name__} ({name2!r})")
            keep, removed = _keep_list(m.out_channels, self.pruned.get(name, set()) if nxt else set())
            self.cut_out(name, keep, removed)
            if nxt is not None:
                self.cut_in(nxt, m.out_channels, keep)

    # --- residual networks ------------------------------------------------------------------------
    def resnet(self, blocks: dict[str, nn.Module]) -> None:
        names = list(blocks)
        inside = lambda n: any(n == b or n.startswith(b + ".") for b in names)  # noqa: E731
        leaves = [(n, m) for n, m in self.model.named_modules() if not list(m.children())]
        first = next(i for i, (n, _) in enumerate(leaves) if inside(n))
        stem_convs = [n for n, m in leaves[:first] if isinstance(m, nn.Conv2d)]
        if not stem_convs:
            raise ConfigError("export: a residual model needs a conv before its first block")
        if len(stem_convs) > 1:
            raise ConfigError("export: residual models with more than one stem conv are not supported")
        tail = [(n, m) for n, m in leaves if not inside(n) and n not in dict(leaves[:first])]
        heads = [n for n, m in tail if isinstance(m, nn.Linear)]
        if any(isinstance(m, nn.Conv2d) for _, m in tail) or not heads:
            raise ConfigError("export: a residual model must end with pooling and Linear layers")

        # Streams: lists of producers (stem conv / block conv2) adding into the same tensor.
        stem = stem_convs[0]
        streams: list[dict] = [{"producers": [stem], "blocks": [], "width": self.mods[stem].out_channels}]
        for b in names:
            blk = blocks[b]
            if not isinstance(blk.shortcut, nn.Identity):
                streams.append({"producers": [], "blocks": [], "width": blk.conv2.out_channels})
            streams[-1]["producers"].append(f"{b}.conv2")
            streams[-1]["blocks"].append(b)
        keeps = []
        for s in streams:
            common = set.intersection(*(self.pruned.get(p, set()) for p in s["producers"]))
            keeps.append(_keep_list(s["width"], common))

        stem_keep, stem_removed = keeps[0]
        self.cut_out(stem, stem_keep, stem_removed)
        for si, s in enumerate(streams):
            keep, removed = keeps[si]
            in_width, in_keep = (streams[si - 1]["width"], keeps[si - 1][0]) if si else (s["width"], keep)
            for bi, b in enumerate(s["blocks"]):
                blk = blocks[b]
                if bi > 0:
                    in_width, in_keep = s["width"], keep
                # conv1 -> conv2: a plain pair inside the block
                mid = blk.conv1.out_channels
                c1_keep, c1_removed = _keep_list(mid, self.pruned.get(f"{b}.conv1", set()))
                self.cut_in(f"{b}.conv1", in_width, in_keep)
                self.cut_out(f"{b}.conv1", c1_keep, c1_removed)
                self.cut_in(f"{b}.conv2", mid, c1_keep)
                self.cut_out(f"{b}.conv2", keep, removed)
                self.shortcut(b, in_width, in_keep, s["width"], keep)
        last_width, last_keep = streams[-1]["width"], keeps[-1][0]
        self.cut_in(heads[0], last_width, last_keep)

    def shortcut(self, b: str, in_width: int, in_keep: list[int], out_width: int, out_keep: list[int]) -> None:
        """Rebuild block ``b``'s shortcut for the kept channels, zero where ``conv2`` prunes (the hook)."""
        sc = self.model.get_submodule(f"{b}.shortcut")
        blocked = self.pruned.get(f"{b}.conv2", set())
        convs = [(n, m) for n, m in sc.named_modules() if isinstance(m, nn.Conv2d)]
        if convs:  # projection: Sequential(conv[, BN])
            if len(convs) != 1:
                raise ConfigError(f"export: shortcut of {b!r} has {len(convs)} convs; expected one")
            name = f"{b}.shortcut.{convs[0][0]}"
            conv = self.mods[name]
            bn = self.bn_of.get(name)
            with torch.no_grad():  # what FilterMasking's shortcut hook does, as weights
                for c in blocked:
                    conv.weight[c].zero_()
                    if conv.bias is not None:
                        conv.bias[c].zero_()
                    if bn is not None:
                        self.mods[bn].weight[c].zero_()
                        self.mods[bn].bias[c].zero_()
            removed = set(range(out_width)) - set(out_keep)
            self.cut_in(name, in_width, in_keep)
            self.cut_out(name, out_keep, removed)
            self.change(name).zero_kept = sorted((blocked | self.pruned.get(name, set())) - removed)
            return
        if list(sc.parameters()):
            raise ConfigError(f"export: unsupported shortcut {type(sc).__name__} in {b!r}")
        if isinstance(sc, nn.Identity):
            stride, offset = 1, 0
        elif hasattr(sc, "pad_before") and hasattr(sc, "stride"):  # option A (models.resnet.ZeroPadShortcut)
            stride, offset = sc.stride, sc.pad_before
        else:
            raise ConfigError(f"export: unsupported shortcut {type(sc).__name__} in {b!r}")
        pos = {c: i for i, c in enumerate(in_keep)}
        index = [pos.get(o - offset, -1) if o not in blocked else -1 for o in out_keep]
        if stride == 1 and index == list(range(in_width)) and len(out_keep) == in_width:
            return  # unchanged identity
        _set_module(self.model, f"{b}.shortcut", IndexShortcut(torch.tensor(index, dtype=torch.long), stride))


def _residual_blocks(model: nn.Module) -> dict[str, nn.Module]:
    conv2s = block_shortcuts(model)
    out = {}
    for c2 in conv2s:
        b = c2[: -len(".conv2")] if c2 != "conv2" else ""
        blk = model.get_submodule(b) if b else model
        if not all(isinstance(getattr(blk, a, None), nn.Module) for a in ("conv1", "bn1", "conv2", "bn2")):
            raise ConfigError(f"export: residual block {b!r} is not a conv1/bn1/conv2/bn2/shortcut block")
        out[b] = blk
    return out


def _masked_reference(model: nn.Module, mask: Mask) -> nn.Module:
    ref = copy.deepcopy(model)
    for sc in block_shortcuts(ref).values():
        sc._forward_hooks.clear()
    FilterMasking(ref, mask)
    return ref


def export_pruned(model: nn.Module, mask: Mask, *, check: bool = True, example_input: Optional[torch.Tensor] = None,
                  atol: float = 1e-5) -> nn.Module:
    """A smaller dense copy of ``model`` with the filters pruned by ``mask`` physically removed.

    The result computes what ``model`` computes under ``FilterMasking(model, mask)`` (eval mode, to float
    tolerance); ``model`` itself is not changed (it may have FilterMasking attached: the shortcut hooks are
    replaced by explicit zeros). ``exported.export_report`` is ``{layer: LayerChange}`` for every conv and
    consumer Linear (see :func:`format_report`). With ``check`` one random batch (``example_input``, or 2
    samples of ``model.input_shape``) is compared with the masked model; a mismatch raises PrunelabError.
    """
    mask.check(model)
    out = copy.deepcopy(model)
    for sc in block_shortcuts(out).values():
        sc._forward_hooks.clear()  # FilterMasking's hooks: re-expressed as zero channels below
    MaskEnforcer(out, with_batchnorm(mask, out)).apply()
    pruned = _pruned_filters(mask, out)
    ex = _Exporter(out, pruned)
    blocks = _residual_blocks(out)
    if blocks:
        ex.resnet(blocks)
    else:
        ex.plain([(n, m) for n, m in out.named_modules() if not list(m.children())])
    out.export_report = ex.report
    if check:
        if example_input is None:
            shape = getattr(model, "input_shape", None)
            if shape is None:
                raise ConfigError("export_pruned(check=True) needs example_input or model.input_shape")
            p = next(model.parameters())
            example_input = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0)).to(p.device, p.dtype)
        ref = _masked_reference(model, mask)
        modes = [(m, m.training) for m in out.modules()]
        ref.eval()
        out.eval()
        try:
            with torch.no_grad():
                want, got = ref(example_input), out(example_input)
        finally:
            for m, t in modes:
                m.training = t
        if want.shape != got.shape or not torch.allclose(want, got, atol=atol, rtol=1e-4):
            diff = (want - got).abs().max().item() if want.shape == got.shape else float("nan")
            raise PrunelabError(f"export_pruned: exported model differs from the masked model (max |diff| "
                                f"{diff:.3g}); this architecture is not supported by export")
    return out


def format_report(report: dict[str, LayerChange]) -> str:
    """A plain-text table of an export report: layer, out and in channels before -> after, counts."""
    rows = [("layer", "out", "in", "removed out", "removed in", "zero kept")]
    for n, c in report.items():
        rows.append((n, f"{c.out_before}->{c.out_after}", f"{c.in_before}->{c.in_after}", str(len(c.removed_out)),
                     str(len(c.removed_in)), str(len(c.zero_kept))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows)


# the files `prunelab export` writes ----------------------------------------------------------------------
def sidecar(path) -> Path:
    """The JSON description beside an exported model's safetensors file."""
    return Path(path).with_suffix(".json")


def _filter_mask_from(model: nn.Module, pruned: dict[str, list[int]]) -> Mask:
    params = dict(model.named_parameters())
    masks, shapes = {}, {}
    for n, chans in pruned.items():
        shape = tuple(params[n].shape)
        m = torch.ones(shape[0], 1, 1, 1, dtype=torch.bool)
        m[list(chans)] = False
        masks[n], shapes[n] = m, shape
    return Mask(masks, shapes)


def load_exported(path) -> nn.Module:
    """The model written by ``prunelab export``: the registry model rebuilt from ``<path>.json``, exported
    again on the recorded filter mask (no check: same structure) and loaded strictly from ``path``."""
    import json

    from .io import load_tensors
    from .models import build_model
    desc = json.loads(sidecar(path).read_text())
    m = desc["model"]
    model = build_model(m["name"], num_classes=m["num_classes"], input_shape=tuple(m["input_shape"]), seed=0,
                        **m["options"])
    exported = export_pruned(model, _filter_mask_from(model, desc["filters_pruned"]), check=False)
    state, _ = load_tensors(path)
    exported.load_state_dict(state, strict=True)
    return exported.eval()
