"""Keep pruned weights exactly zero during training, without forward hooks.

After every optimizer step the masked parameters are multiplied by their masks in one fused
``torch._foreach_mul_`` call (an optimizer *post-step* hook, so the forward pass runs the plain dense
module). Whatever momentum, Adam moments or weight decay do to a pruned weight during the step is undone
before the next forward. Optionally gradients are masked too (SC's convention), and
:meth:`MaskEnforcer.reset_optimizer_state` clears optimizer state at pruned positions when a mask changes.
"""
from __future__ import annotations

import torch
from torch import nn

from .masks import Mask


class MaskEnforcer:
    def __init__(self, model: nn.Module, mask: Mask, *, mask_grads: bool = False):
        mask.check(model)
        self.model = model
        self.mask = mask
        self.mask_grads = mask_grads
        self._handles: list = []
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the cached multiplier tensors (call after moving the model or changing memory format)."""
        params = dict(self.model.named_parameters())
        self.params = [params[n] for n in self.mask]
        # zeros_like keeps the parameter's strides (channels_last), so the fused multiply stays contiguous.
        self.factors = []
        for n, p in zip(self.mask, self.params):
            f = torch.zeros_like(p, requires_grad=False)
            f.copy_(self.mask.expanded(n))
            self.factors.append(f)

    def set_mask(self, mask: Mask) -> None:
        """Enforce ``mask`` from now on (a gradual schedule changed it); zeroes newly pruned weights now."""
        mask.check(self.model)
        self.mask = mask
        self.refresh()
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        torch._foreach_mul_(self.params, self.factors)

    @torch.no_grad()
    def apply_to_grads(self) -> None:
        grads, factors = [], []
        for p, f in zip(self.params, self.factors):
            if p.grad is not None:
                grads.append(p.grad)
                factors.append(f)
        if grads:
            torch._foreach_mul_(grads, factors)

    def attach(self, optimizer: torch.optim.Optimizer) -> "MaskEnforcer":
        """Enforce the mask around every ``optimizer.step()``; also zeroes pruned weights now."""
        self.apply()
        self._handles.append(optimizer.register_step_post_hook(lambda *_: self.apply()))
        if self.mask_grads:
            self._handles.append(optimizer.register_step_pre_hook(lambda *_: self.apply_to_grads()))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    @torch.no_grad()
    def reset_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero per-parameter optimizer buffers (momentum, Adam moments) at pruned positions."""
        for p, f in zip(self.params, self.factors):
            state = optimizer.state.get(p, {})
            for v in state.values():
                if torch.is_tensor(v) and v.shape == p.shape:
                    v.mul_(f)
