"""Noise instead of removal (Bartoldson et al. §2.5): the filters a pruning event targets are zeroed or
perturbed for a window of forward passes, then train freely again (or get their saved values back).

``spec`` is anything with ``kind`` (one of :data:`NOISE_KINDS`) and ``passes`` (the window length N):

- ``zeroing``: the targeted filters are set to 0 before each of the next N + 1 forward passes (test and
  training batches count), then train freely again (re-entry near zero);
- ``gaussian``: N(0, σ²) is added to them before each of the next N + 1 passes (a random walk), σ = std of
  the layer's first untargeted filter;
- ``cumulative_restore``: every filter targeted so far, with its BN γ and β, is zeroed for N passes; then its
  weights, bias, γ, β and BN running statistics get back the values saved at the event.
"""
from __future__ import annotations

import torch
from torch import nn

from ..seeding import generator
from .filters import conv_bn_pairs
from .masks import Mask

NOISE_KINDS = ("zeroing", "gaussian", "cumulative_restore")


class NoiseInjector:
    """Applies the noise windows of §2.5 from forward pre-hooks on the targeted convs (one call per model
    forward pass, so evaluation and training batches both count)."""

    def __init__(self, model: nn.Module, spec, *, seed: int = 0):
        self.model = model
        self.spec = spec
        self.pairs = conv_bn_pairs(model)
        self.windows: dict[str, list[dict]] = {}
        self.gen = generator(seed, "gst-noise")
        self._hooks = []

    def _hook(self, conv: str):
        mod = self.model.get_submodule(conv)
        if conv not in self.windows:
            self.windows[conv] = []
            self._hooks.append(mod.register_forward_pre_hook(lambda m, inp, c=conv: self._on_pass(c)))
        return mod

    @torch.no_grad()
    def target(self, removed: Mask, current: Mask) -> None:
        """Start windows for an event: ``removed`` = filters newly targeted, ``current`` = still untargeted."""
        for name in removed:
            conv = name[: -len(".weight")]
            if self.spec.kind == "cumulative_restore":
                idx = (~current[name].reshape(-1)).nonzero().flatten()
            else:
                idx = removed[name].reshape(-1).nonzero().flatten()
            if idx.numel() == 0:
                continue
            mod = self._hook(conv)
            w = {"idx": idx, "left": self.spec.passes + (0 if self.spec.kind == "cumulative_restore" else 1),
                 "untargeted": current[name].reshape(-1).nonzero().flatten()}
            if self.spec.kind == "cumulative_restore":
                # a new window over the same filters supersedes the old one (its values are saved anew below
                # only after the old window restored them, so restore it first)
                for old in self.windows[conv]:
                    self._restore(conv, old)
                self.windows[conv] = []
                w["saved"] = self._save(conv, mod, idx)
            self.windows[conv].append(w)

    def _tensors(self, conv: str, mod: nn.Module) -> dict[str, torch.Tensor]:
        out = {"weight": mod.weight}
        if mod.bias is not None:
            out["bias"] = mod.bias
        if self.pairs.get(conv):
            bn = self.model.get_submodule(self.pairs[conv])
            out.update({"bn.weight": bn.weight, "bn.bias": bn.bias, "bn.running_mean": bn.running_mean,
                        "bn.running_var": bn.running_var})
        return {k: v for k, v in out.items() if v is not None}

    def _save(self, conv, mod, idx) -> dict[str, torch.Tensor]:
        return {k: t.detach()[idx].clone() for k, t in self._tensors(conv, mod).items()}

    @torch.no_grad()
    def _restore(self, conv: str, w: dict) -> None:
        if "saved" not in w or w.get("restored"):
            return
        mod = self.model.get_submodule(conv)
        for k, t in self._tensors(conv, mod).items():
            t[w["idx"]] = w["saved"][k].to(t.device)
        w["restored"] = True

    @torch.no_grad()
    def _on_pass(self, conv: str) -> None:
        mod = self.model.get_submodule(conv)
        active = []
        for w in self.windows[conv]:
            if w["left"] == 0:  # a finished cumulative window: its filters come back now
                self._restore(conv, w)
                continue
            idx = w["idx"]
            if self.spec.kind == "gaussian":
                ref = w["untargeted"]
                sigma = float(mod.weight[ref[0]].std()) if ref.numel() else 0.0
                noise = torch.randn((idx.numel(),) + tuple(mod.weight.shape[1:]), generator=self.gen)
                mod.weight[idx] += sigma * noise.to(mod.weight.device, mod.weight.dtype)
            else:
                mod.weight[idx] = 0
                if self.spec.kind == "cumulative_restore" and self.pairs.get(conv):
                    bn = self.model.get_submodule(self.pairs[conv])
                    bn.weight[idx] = 0
                    bn.bias[idx] = 0
            w["left"] -= 1
            if w["left"] > 0 or "saved" in w:
                active.append(w)
        self.windows[conv] = active

    def state_dict(self) -> dict:
        return {"windows": self.windows, "gen": self.gen}

    def load_state_dict(self, state: dict) -> None:
        for conv in state["windows"]:
            self._hook(conv)
        self.windows = {c: [dict(w) for w in ws] for c, ws in state["windows"].items()}
        self.gen.set_state(state["gen"].get_state())

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
