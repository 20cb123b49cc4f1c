"""Scores computed at initialisation: SNIP, GraSP (as SC runs them, spec §1.5-1.6) and SynFlow (§4.9).

Registered as scores, so ``prune(model, sparsity=0.9, score="snip", data=ds)`` prunes at init. Context:

- ``data``: a :class:`~prunelab.data.Dataset` (the class-balanced scoring batch is drawn from its train
  split, without augmentation) or an ``(x, y)`` pair of prepared tensors used as the batch itself;
- ``samples_per_class`` (default 10), ``iterations`` (SNIP/GraSP: batches accumulated, default 1);
- the ``generator`` that :func:`~prunelab.pruning.prune` derives from its ``seed`` (or ``seed=`` when a
  score is called directly): which samples are drawn, and GraSP's re-initialisation of the Linear layers.

Every score runs on a deep copy of the model, so the model's weights, BN running statistics and
gradients are left untouched. Higher score = keep. Coarser (filter) masks get the L1 norm of the
per-weight score over the broadcast dimensions.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .masks import Mask
from .scores import _reduce_to_mask, register_score


def class_balanced_batch(data, samples_per_class: int = 10, *, generator: Optional[torch.Generator] = None,
                         split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """``samples_per_class`` random examples of every class, ordered class by class (as SC assembles its
    batch, so GraSP's first half holds the first half of the classes); prepared without augmentation."""
    if samples_per_class < 1:
        raise ConfigError(f"samples_per_class must be >= 1, got {samples_per_class!r}")
    s = data.split(split)
    y = s.y.cpu()
    order = torch.randperm(len(y), generator=generator)
    picks = []
    for c in range(data.num_classes):
        idx = order[y[order] == c][:samples_per_class]
        if len(idx) < samples_per_class:
            raise ConfigError(f"class {c} has only {len(idx)} examples in the {split} split; "
                              f"samples_per_class={samples_per_class} needs that many of every class")
        picks.append(idx)
    idx = torch.cat(picks).to(s.x.device)
    return data.prepare(s.x.index_select(0, idx), augment=False), s.y.index_select(0, idx)


def _batches(data, samples_per_class: int, iterations: int, generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if data is None:
        raise ConfigError("this score needs data: pass data=<Dataset> or data=(x, y)")
    if isinstance(data, (tuple, list)):
        x, y = data
        return [(x, y)] * iterations
    return [class_balanced_batch(data, samples_per_class, generator=generator) for _ in range(iterations)]


def _generator(generator, seed) -> torch.Generator:
    if seed is not None:
        return torch.Generator().manual_seed(int(seed))
    return generator if generator is not None else torch.Generator().manual_seed(0)


def _scoring_copy(model: nn.Module, mask: Mask) -> tuple[nn.Module, list[str], list[nn.Parameter]]:
    net = copy.deepcopy(model)
    net.zero_grad(set_to_none=True)
    mask.apply(net)   # already-pruned weights take no part in the score
    params = dict(net.named_parameters())
    names = list(mask)
    return net, names, [params[n] for n in names]


def _to_mask_shapes(scores: dict[str, torch.Tensor], mask: Mask) -> dict[str, torch.Tensor]:
    return {n: _reduce_to_mask(s, tuple(mask[n].shape)) for n, s in scores.items()}


def _device_batch(x, y, net):
    dev = next(net.parameters()).device
    return x.to(dev), y.to(dev)


@register_score("snip")
def snip(model: nn.Module, mask: Mask, *, data=None, samples_per_class: int = 10, iterations: int = 1,
         seed: Optional[int] = None, generator: Optional[torch.Generator] = None, **_) -> dict[str, torch.Tensor]:
    """SNIP (Lee et al. 2019): |θ ⊙ ∂L/∂θ| on a class-balanced batch (gradients summed over
    ``iterations`` batches), normalised to sum 1 over the scope. The network is in training mode (BN on
    batch statistics), as SC scores it."""
    g = _generator(generator, seed)
    net, names, weights = _scoring_copy(model, mask)
    net.train()
    grads = [torch.zeros_like(w) for w in weights]
    for x, y in _batches(data, samples_per_class, iterations, g):
        x, y = _device_batch(x, y, net)
        loss = F.cross_entropy(net(x), y)
        for acc, gr in zip(grads, torch.autograd.grad(loss, weights)):
            acc += gr
    scores = {n: (w.detach() * gr).abs() for n, w, gr in zip(names, weights, grads)}
    total = sum(s.sum() for s in scores.values())
    scores = {n: s / total for n, s in scores.items()} if total > 0 else scores
    return _to_mask_shapes(scores, mask)


@register_score("grasp")
def grasp(model: nn.Module, mask: Mask, *, data=None, samples_per_class: int = 10, iterations: int = 1,
          temperature: float = 200.0, reinit_linear: bool = True, seed: Optional[int] = None,
          generator: Optional[torch.Generator] = None, **_) -> dict[str, torch.Tensor]:
    """GraSP (Wang et al. 2020) as SC runs it: S = -θ ⊙ (H g) on a copy whose Linear layers are
    re-initialised Xavier-normal (``reinit_linear``), logits divided by ``temperature``; g is the
    gradient summed over the two halves of the batch, Hg the gradient of Σ g_detached · ∇L per half.
    GraSP removes the largest S, so the returned score (higher = keep) is -S / |ΣS|."""
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature!r}")
    g = _generator(generator, seed)
    net, names, weights = _scoring_copy(model, mask)
    if reinit_linear:
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, nn.Linear):
                    w = torch.empty(m.weight.shape)
                    nn.init.xavier_normal_(w, generator=g)
                    m.weight.copy_(w)
        mask.apply(net)
    net.train()
    halves = []
    for x, y in _batches(data, samples_per_class, iterations, g):
        x, y = _device_batch(x, y, net)
        h = x.shape[0] // 2
        if h == 0:
            raise ConfigError("GraSP splits the scoring batch in two halves; it needs at least 2 samples")
        halves += [(x[:h], y[:h]), (x[h:], y[h:])]
    gsum = [torch.zeros_like(w) for w in weights]
    for x, y in halves:
        loss = F.cross_entropy(net(x) / temperature, y)
        for acc, gr in zip(gsum, torch.autograd.grad(loss, weights)):
            acc += gr
    hg = [torch.zeros_like(w) for w in weights]
    for x, y in halves:
        loss = F.cross_entropy(net(x) / temperature, y)
        grads = torch.autograd.grad(loss, weights, create_graph=True)
        z = sum((gd.detach() * gr).sum() for gd, gr in zip(gsum, grads))
        for acc, h in zip(hg, torch.autograd.grad(z, weights)):
            acc += h
    s = {n: -(w.detach() * h) for n, w, h in zip(names, weights, hg)}
    norm = sum(v.sum() for v in s.values()).abs()
    keep_score = {n: -v / norm if norm > 0 else -v for n, v in s.items()}
    return _to_mask_shapes(keep_score, mask)


def _synflow_once(net: nn.Module, names: list[str], weights: list[nn.Parameter], input_shape) -> dict:
    x = torch.ones((1, *input_shape), dtype=torch.float64, device=weights[0].device)
    r = net(x).sum()
    grads = torch.autograd.grad(r, weights)
    scores = {n: (w.detach() * gr).abs() for n, w, gr in zip(names, weights, grads)}
    # R grows like the product of the layer norms: scale to max 1 so float32 selection cannot overflow
    top = max(float(v.max()) for v in scores.values())
    return {n: v / top for n, v in scores.items()} if top > 0 else scores


@register_score("synflow")
def synflow(model: nn.Module, mask: Mask, *, input_shape=None, iterations: int = 1,
            target_sparsity: Optional[float] = None, generator: Optional[torch.Generator] = None,
            **_) -> dict[str, torch.Tensor]:
    """SynFlow (Tanaka et al. 2020): |θ ⊙ ∂R/∂θ| with R the summed output of the network whose
    parameters and buffers are replaced by their absolute values, on an all-ones float64 input, in eval
    mode. Data-free: ``input_shape`` (default ``model.input_shape``) is all it needs.

    With ``iterations`` > 1 (SynFlow's 100) and ``target_sparsity``, the copy is pruned globally to
    density d^(k/iterations) at k = 1..iterations-1, re-scoring the masked network each time; the
    returned scores are those of the last iteration with the weights pruned on the way set to -inf, so
    selecting at ``target_sparsity`` yields SynFlow's final mask.
    """
    from .allocation import keep_global
    from .selection import select_global

    shape = tuple(input_shape or getattr(model, "input_shape", ()) or ())
    if not shape:
        raise ConfigError("synflow needs input_shape= (the shape of one input sample)")
    if iterations < 1:
        raise ConfigError(f"iterations must be >= 1, got {iterations!r}")
    if iterations > 1 and target_sparsity is None:
        raise ConfigError("iterative synflow (iterations > 1) needs target_sparsity= (fraction removed)")
    net = copy.deepcopy(model).double()
    net.eval()
    with torch.no_grad():
        for v in net.state_dict().values():
            if v.is_floating_point():
                v.abs_()
    params = dict(net.named_parameters())
    names = list(mask)
    weights = [params[n] for n in names]
    with torch.no_grad():
        originals = [w.detach().clone() for w in weights]
    current = mask.clone()
    density = 1.0 - (target_sparsity or 0.0)
    for k in range(1, iterations):
        with torch.no_grad():
            for n, w, w0 in zip(names, weights, originals):
                w.copy_(w0 * current.expanded(n).to(w.device))
        scores = _to_mask_shapes(_synflow_once(net, names, weights, shape), current)
        keep = min(keep_global(mask, 1.0 - density ** (k / iterations)),
                   sum(int(torch.count_nonzero(current[n])) for n in names))
        current = select_global(scores, current, keep, ties="random", generator=generator)
    with torch.no_grad():
        for n, w, w0 in zip(names, weights, originals):
            w.copy_(w0 * current.expanded(n).to(w.device))
    scores = _to_mask_shapes(_synflow_once(net, names, weights, shape), current)
    out = {}
    for n, s in scores.items():
        s = s.float()
        out[n] = torch.where(current[n].to(s.device), s, torch.full_like(s, float("-inf")))
    return out
