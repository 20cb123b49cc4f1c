"""What kept and pruned weights start from (Zhou et al. 2019, spec §3.4 and §3.5).

Kept-weight ("mask-1") actions map a layer's initial values to new ones, per layer tensor. Pruned-weight
("mask-0") actions say what the pruned weights are during training: zero (the usual mask) or frozen at a
value, held bit-identical by :class:`FrozenWeights` after every optimizer step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import torch
from torch import nn

from ..errors import unknown_name
from .masks import Mask

KEPT_ACTIONS = ("none", "reinit", "reshuffle", "constant", "signed_reinit", "signed_reshuffle",
                "signed_constant")
PRUNED_ACTIONS = ("zero", "freeze_init", "freeze_init_zero_mask", "freeze_init_zero_all",
                  "freeze_init_zero_reshuffle", "freeze_init_zero_rev")


def _perm(n: int, generator, device) -> torch.Tensor:
    return torch.randperm(n, generator=generator).to(device)


def kept_action_tensor(action: str, w: torch.Tensor, keep: torch.Tensor, *,
                       generator: torch.Generator | None = None, rescale: bool = False) -> torch.Tensor:
    """New initial values for one layer: ``w`` its current initial values (every entry), ``keep`` the bool
    mask at ``w``'s shape. Kept entries get the action's values; pruned entries keep ``w``'s (they are
    zeroed or frozen by the pruned-weight action).

    - ``none``: w; ``reinit``: the whole layer's values permuted (new signs);
    - ``reshuffle``: the kept values permuted among the kept positions;
    - ``constant``: ±α with random signs, α = std of the whole layer; ``signed_constant``: α·sign(w);
    - ``signed_reinit`` / ``signed_reshuffle``: magnitudes as reinit / reshuffle, signs of w;
    - ``rescale``: multiply the kept values by (layer size / kept count).
    """
    if action not in KEPT_ACTIONS:
        raise unknown_name("kept-weight action", action, KEPT_ACTIONS)
    flat, k = w.reshape(-1), keep.reshape(-1).to(w.device)
    sign = torch.sign(flat)
    if action == "none":
        new = flat.clone()
    elif action in ("reinit", "signed_reinit"):
        new = flat[_perm(flat.numel(), generator, w.device)]
    elif action in ("reshuffle", "signed_reshuffle"):
        new = flat.clone()
        idx = k.nonzero().flatten()
        new[idx] = flat[idx[_perm(idx.numel(), generator, w.device)]]
    else:  # constant, signed_constant
        alpha = flat.std(unbiased=False)
        new = alpha * sign
        if action == "constant":
            new = new[_perm(flat.numel(), generator, w.device)]
    if action.startswith("signed_") and action != "signed_constant":
        new = new.abs() * sign
    if rescale:
        kept = int(k.sum())
        new = new * (flat.numel() / max(kept, 1))
    return torch.where(k, new, flat).view(w.shape)


def apply_kept_action(action: str, init: Mapping[str, torch.Tensor], mask: Mask, *,
                      generator: torch.Generator | None = None, rescale: bool = False) -> dict[str, torch.Tensor]:
    """:func:`kept_action_tensor` on every masked parameter of ``init`` (a state dict)."""
    return {n: kept_action_tensor(action, init[n], mask.expanded(n), generator=generator, rescale=rescale)
            for n in mask}


@dataclass
class PrunedValues:
    """Result of a pruned-weight action: ``frozen`` values of pruned weights (None: zero, the usual mask)
    and, for Variant 2, new initial values ``kept_init`` for kept weights."""
    frozen: Optional[dict[str, torch.Tensor]] = None
    kept_init: Optional[dict[str, torch.Tensor]] = None


def pruned_action(action: str, init: Mapping[str, torch.Tensor], final: Mapping[str, torch.Tensor],
                  mask: Mask, *, generator: torch.Generator | None = None) -> PrunedValues:
    """Values for pruned weights from the round's initial (``init``) and trained (``final``) weights.

    - ``zero``: 0 (the usual mask); ``freeze_init``: frozen at w_i;
    - ``freeze_init_zero_mask`` (Variant 1): frozen at 0 where |w_i| > |w_f| (moved toward zero), else w_i;
    - ``freeze_init_zero_all`` (Variant 2): as Variant 1, and kept weights also start at 0 where
      |w_i| > |w_f|;
    - ``freeze_init_zero_reshuffle`` (control): as many pruned weights as Variant 1 zeroes, at random
      pruned positions, set to 0; the rest frozen at w_i;
    - ``freeze_init_zero_rev`` (control): frozen at 0 where the magnitude increased, else w_i.
    """
    if action not in PRUNED_ACTIONS:
        raise unknown_name("pruned-weight action", action, PRUNED_ACTIONS)
    if action == "zero":
        return PrunedValues()
    frozen, kept_init = {}, None
    for n in mask:
        wi = init[n]
        wf = final[n].to(device=wi.device, dtype=wi.dtype)
        toward_zero = wi.abs() > wf.abs()
        if action == "freeze_init":
            frozen[n] = wi.clone()
        elif action in ("freeze_init_zero_mask", "freeze_init_zero_all"):
            frozen[n] = torch.where(toward_zero, torch.zeros_like(wi), wi)
        elif action == "freeze_init_zero_rev":
            frozen[n] = torch.where(wf.abs() > wi.abs(), torch.zeros_like(wi), wi)
        else:  # freeze_init_zero_reshuffle
            pruned = ~mask.expanded(n).to(wi.device)
            count = int((toward_zero & pruned).sum())
            idx = pruned.reshape(-1).nonzero().flatten()
            chosen = idx[_perm(idx.numel(), generator, wi.device)[:count]]
            f = wi.clone().reshape(-1)
            f[chosen] = 0
            frozen[n] = f.view(wi.shape)
    if action == "freeze_init_zero_all":
        kept_init = {n: torch.where(init[n].abs() > final[n].to(init[n].device).abs(),
                                    torch.zeros_like(init[n]), init[n]) for n in mask}
    return PrunedValues(frozen, kept_init)


class FrozenWeights:
    """Hold pruned weights at fixed values: after every optimizer step, ``w = where(mask, w, frozen)``.

    Whatever the optimizer (momentum, Adam moments, weight decay) did to a frozen entry is overwritten with
    the stored value itself, so frozen weights stay bit-identical. Use :meth:`attach` on an optimizer, or
    pass the object as a ``train(callbacks=[...])`` callback (it runs after every step).
    """

    def __init__(self, model: nn.Module, mask: Mask, frozen: Mapping[str, torch.Tensor]):
        mask.check(model)
        params = dict(model.named_parameters())
        self.params = [params[n] for n in mask]
        self.keep = [mask.expanded(n).to(params[n].device).clone() for n in mask]
        self.values = [frozen[n].detach().to(device=params[n].device, dtype=params[n].dtype).clone()
                       for n in mask]
        self._handles: list = []

    @torch.no_grad()
    def apply(self) -> None:
        for p, k, v in zip(self.params, self.keep, self.values):
            p.copy_(torch.where(k, p, v))

    def __call__(self, *_):
        self.apply()

    def attach(self, optimizer: torch.optim.Optimizer) -> "FrozenWeights":
        self.apply()
        self._handles.append(optimizer.register_step_post_hook(lambda *_: self.apply()))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
