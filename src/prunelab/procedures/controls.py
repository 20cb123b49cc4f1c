"""Controls of IMP: what a ticket is compared with, each trained with the ticket's budget.

A control is one registered function. It gets the round's :class:`ControlStart` and returns the network to
train, its mask and the iteration its schedule starts from; IMP trains and reports it under the control's
name. Registering a function makes it a valid entry of ``IMPConfig.controls`` (and of the spec).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from torch import nn

from ..primitives.masks import Mask, random_mask_like
from ..seeding import generator
from ..training import restore

ModelFn = Callable[[int], nn.Module]


@dataclass
class ControlStart:
    model_fn: ModelFn        # a fresh initialisation from a seed
    model: nn.Module         # the ticket's network (its weights may be overwritten)
    mask: Mask               # the ticket's mask this round
    seed: int                # the control's own seed for this round
    start: int               # the iteration the ticket's schedule starts from
    rewind: str              # the ticket's rewind rule
    rewind_state: Optional[dict]   # the weights the ticket starts from (None when it keeps trained values)


Control = Callable[[ControlStart], tuple[nn.Module, Mask, int]]
CONTROLS: dict[str, Control] = {}


def register_control(name: str):
    def deco(fn: Control) -> Control:
        CONTROLS[name] = fn
        return fn
    return deco


@register_control("reinit")
def reinit(c: ControlStart) -> tuple[nn.Module, Mask, int]:
    """The ticket's mask on a fresh random initialisation (Frankle & Carbin's control)."""
    # a fresh init has no θ_k: with rewinding to iteration k it starts its schedule at 0, with the ticket's
    # remaining budget
    return c.model_fn(c.seed), c.mask, 0 if c.rewind == "iteration" else c.start


@register_control("random_mask")
def random_mask(c: ControlStart) -> tuple[nn.Module, Mask, int]:
    """Random positions with the ticket's per-layer counts, from the ticket's starting weights."""
    cmask = random_mask_like(c.mask, generator(c.seed, "mask"))
    if c.rewind_state is not None:
        restore(c.model, c.rewind_state)
    return c.model, cmask, c.start
