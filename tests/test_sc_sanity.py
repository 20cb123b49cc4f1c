"""Each sanity check really changes what it claims to change, and nothing else (spec §4.2)."""
import pytest
import torch
from torch import nn

from prunelab.data import Dataset, Split
from prunelab.errors import ConfigError, UnknownNameError
from prunelab.primitives import Mask
from prunelab.primitives.sanity import (apply_data_check, apply_ticket_check, half_data, random_labels,
                                        random_pixels, rearrange_mask, shuffle_weights)


def _images(n=400, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randint(0, 256, (n, 3, 4, 4), generator=g, dtype=torch.uint8)
    s = Split(x, y)
    t = Split(x[:50].clone(), y[:50].clone())
    return Dataset("img", train=s, val=None, test=t, num_classes=classes, input_shape=(3, 4, 4),
                   mean=(0.5,) * 3, std=(0.25,) * 3)


def test_random_labels_change_labels_not_images_nor_the_original():
    ds = _images()
    x0, y0 = ds.train.x.clone(), ds.train.y.clone()
    rl = random_labels(ds)
    assert torch.equal(ds.train.x, x0) and torch.equal(ds.train.y, y0)   # original untouched
    assert rl.train.x is ds.train.x and rl.test is ds.test                # images and other splits shared
    agree = (rl.train.y == y0).float().mean().item()
    assert agree < 0.2     # about 1/10 by chance
    assert set(rl.train.y.tolist()) == set(range(10))
    assert torch.equal(random_labels(ds).train.y, rl.train.y)          # fixed seed: the same labels
    assert not torch.equal(random_labels(ds, seed=1).train.y, rl.train.y)


def test_random_pixels_permute_each_image_separately():
    ds = _images()
    rp = random_pixels(ds)
    assert torch.equal(rp.train.y, random_labels(ds).train.y)
    a, b = ds.train.x.reshape(len(ds.train), -1), rp.train.x.reshape(len(ds.train), -1)
    assert torch.equal(a.sort(dim=1).values, b.sort(dim=1).values)    # same values per image
    moved = (a != b).float().mean().item()
    assert moved > 0.9
    # a different permutation per image: the position each image's first pixel lands on varies
    first = [int((b[i] == a[i, 0]).nonzero()[0]) for i in range(40)]
    assert len(set(first)) > 5
    assert torch.equal(ds.train.x.reshape(len(ds.train), -1), a)


def test_half_data_keeps_the_first_half_in_order():
    ds = _images(n=401)
    h = half_data(ds)
    assert len(h.train) == 200 and len(ds.train) == 401
    assert torch.equal(h.train.x, ds.train.x[:200]) and torch.equal(h.train.y, ds.train.y[:200])
    assert apply_data_check("none", ds) is ds
    assert len(apply_data_check("half_data", ds).train) == 200
    with pytest.raises(UnknownNameError, match="random_labels"):
        apply_data_check("random_label", ds)
    with pytest.raises(ConfigError, match="fraction 0"):
        half_data(ds, 0)


def _mask_and_state(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 5))
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    mask = Mask({"0.weight": torch.rand(8, 3, 3, 3, generator=g) < 0.3,
                 "2.weight": torch.rand(5, 8, generator=g) < 0.5})
    return state, mask


def test_rearrange_keeps_counts_moves_positions():
    state, mask = _mask_and_state()
    new_state, new_mask = apply_ticket_check("rearrange", state, mask, generator=torch.Generator().manual_seed(1))
    assert new_mask.layer_counts() == mask.layer_counts()
    for n in mask:
        assert not torch.equal(new_mask[n], mask[n])
        # the same initial weights, now under the new mask: other values survive
        assert torch.equal(new_state[n], state[n] * new_mask[n])
    assert torch.equal(new_state["0.bias"], state["0.bias"])
    assert rearrange_mask(mask, torch.Generator().manual_seed(2)).layer_counts() == mask.layer_counts()


def test_shuffle_keeps_mask_and_per_layer_multiset_moves_values():
    state, mask = _mask_and_state()
    new_state, new_mask = apply_ticket_check("shuffle", state, mask, generator=torch.Generator().manual_seed(1))
    assert new_mask == mask
    for n in mask:
        kept_old = (state[n] * mask[n])[mask[n]]
        kept_new = new_state[n][mask[n]]
        assert torch.equal(kept_old.sort().values, kept_new.sort().values)   # same values in the layer
        assert not torch.equal(kept_old, kept_new)                         # at other positions
        assert bool((new_state[n][~mask[n]] == 0).all())
    direct = shuffle_weights(state, mask, torch.Generator().manual_seed(1))
    assert all(torch.equal(direct[n], new_state[n]) for n in mask)


def test_reinit_and_none():
    state, mask = _mask_and_state(0)
    fresh, _ = _mask_and_state(7)
    new_state, new_mask = apply_ticket_check("reinit", state, mask, fresh_state=fresh)
    assert new_mask is mask
    for n in mask:
        assert torch.equal(new_state[n], fresh[n] * mask[n])
        assert not torch.equal(new_state[n], state[n] * mask[n])
    plain, same = apply_ticket_check("none", state, mask)
    assert same is mask and all(torch.equal(plain[n], state[n] * mask[n]) for n in mask)
    with pytest.raises(ConfigError, match="fresh_state"):
        apply_ticket_check("reinit", state, mask)
    with pytest.raises(UnknownNameError, match="rearrange"):
        apply_ticket_check("shufle", state, mask)
