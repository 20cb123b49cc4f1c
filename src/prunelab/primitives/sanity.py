"""The sanity checks of Su et al. 2020 (spec §4.2) as transformations.

Data checks return a new :class:`~prunelab.data.Dataset` (the original is never mutated) and are meant
for the *pruning step* only (the SNIP/GraSP scoring batch, or the dense run whose weights define an LT
mask); the ticket is then trained on the true data:

- ``random_labels``: every training label replaced by a uniform random class (fixed once, SC's seed 12345);
- ``random_pixels``: random labels and every image's values permuted, a new permutation per image;
- ``half_data``: the first half of the training split in stored order.

Ticket checks act on a (mask, starting weights) pair:

- ``rearrange``: the mask permuted uniformly within each layer (counts kept), applied to the same weights;
- ``shuffle``: the mask kept, the surviving values permuted among the surviving positions of each layer;
- ``reinit``: the mask kept, the weights taken from a fresh initialisation.
"""
from __future__ import annotations

import copy
from typing import Mapping, Optional

import torch

from ..errors import ConfigError, unknown_name
from .masks import random_mask_like
from .masks import Mask
from .weight_actions import apply_kept_action

DATA_CHECKS = ("none", "random_labels", "random_pixels", "half_data")
TICKET_CHECKS = ("none", "rearrange", "shuffle", "reinit")
SC_LABEL_SEED = 12345


def _with_train(data, x: torch.Tensor, y: torch.Tensor):
    from ..data import Split
    out = copy.copy(data)   # shares val/test and normalisation; only ``train`` is replaced
    out.train = Split(x, y)
    return out


def random_labels(data, seed: int = SC_LABEL_SEED):
    """A copy of ``data`` whose training labels are drawn uniformly from the classes (fixed for all
    epochs). About 1/num_classes of them equal the true label by chance."""
    g = torch.Generator().manual_seed(int(seed))
    y = torch.randint(0, data.num_classes, (len(data.train),), generator=g).to(data.train.y.device)
    return _with_train(data, data.train.x, y)


def random_pixels(data, seed: int = SC_LABEL_SEED):
    """Random labels, and every training image's C·H·W values permuted by its own random permutation."""
    out = random_labels(data, seed)
    x = data.train.x
    g = torch.Generator().manual_seed(int(seed) + 1)
    flat = x.reshape(x.shape[0], -1)
    perms = torch.argsort(torch.rand(flat.shape, generator=g), dim=1).to(x.device)
    return _with_train(out, torch.gather(flat, 1, perms).view(x.shape), out.train.y)


def half_data(data, fraction: float = 0.5):
    """The first ``fraction`` of the training split in stored order (SC: the first 390 batches of 64)."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction {fraction!r} is outside (0, 1]")
    n = max(1, int(len(data.train) * fraction))
    return _with_train(data, data.train.x[:n], data.train.y[:n])


def apply_data_check(check: str, data, *, seed: int = SC_LABEL_SEED):
    if check not in DATA_CHECKS:
        raise unknown_name("data check", check, DATA_CHECKS)
    if check == "none":
        return data
    if check == "random_labels":
        return random_labels(data, seed)
    if check == "random_pixels":
        return random_pixels(data, seed)
    return half_data(data)


def rearrange_mask(mask: Mask, generator: Optional[torch.Generator] = None) -> Mask:
    """Layerwise rearrange: uniformly random positions with each layer's kept count."""
    return random_mask_like(mask, generator)


def shuffle_weights(state: Mapping[str, torch.Tensor], mask: Mask,
                    generator: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
    """Layerwise weight shuffle: a copy of ``state`` whose masked weights are the surviving values
    permuted among the surviving positions (per layer) and zero elsewhere."""
    out = dict(state)
    shuffled = apply_kept_action("reshuffle", state, mask, generator=generator)
    for n in mask:
        out[n] = shuffled[n] * mask.expanded(n).to(device=shuffled[n].device, dtype=shuffled[n].dtype)
    return out


def apply_ticket_check(check: str, state: Mapping[str, torch.Tensor], mask: Mask, *,
                       generator: Optional[torch.Generator] = None,
                       fresh_state: Optional[Mapping[str, torch.Tensor]] = None) -> tuple[dict, Mask]:
    """(starting state, mask) of a ticket after ``check``; ``state`` is the ticket's unmasked starting
    state (initial or trained weights), ``fresh_state`` a new initialisation (``reinit`` only). The
    returned state has the pruned weights zeroed."""
    if check not in TICKET_CHECKS:
        raise unknown_name("ticket check", check, TICKET_CHECKS)
    if check == "reinit":
        if fresh_state is None:
            raise ConfigError("ticket check 'reinit' needs fresh_state= (a freshly initialised state)")
        state = fresh_state
    if check == "rearrange":
        mask = rearrange_mask(mask, generator)
    out = dict(state)
    for n in mask:
        out[n] = state[n] * mask.expanded(n).to(device=state[n].device, dtype=state[n].dtype)
    if check == "shuffle":
        out = shuffle_weights(out, mask, generator)
    return out, mask
