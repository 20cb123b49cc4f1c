import pytest
import torch
from torch import nn

from prunelab import ConfigError, Mask, prune
from prunelab.primitives import select_global, select_layerwise, topk_flat


def test_topk_exact_count_and_tie_rules():
    s = torch.tensor([5.0, 1.0, 3.0, 3.0, 3.0, 0.5])
    act = torch.ones(6, dtype=torch.bool)
    # keep 3: 5.0 sure, then two of the three tied 3.0s
    idx = topk_flat(s, act, 3, ties="index")
    assert idx.tolist() == [True, False, False, True, True, False]  # lower index pruned first
    keep_all = topk_flat(s, act, 3, ties="keep")
    assert keep_all.tolist() == [True, False, True, True, True, False]
    seen = set()
    for seed in range(30):
        r = topk_flat(s, act, 3, ties="random", generator=torch.Generator().manual_seed(seed))
        assert int(r.sum()) == 3 and r[0] and not r[1] and not r[5]
        seen.add(tuple(r.tolist()))
    assert len(seen) == 3  # all three choices of the tied pair occur
    again = topk_flat(s, act, 3, ties="random", generator=torch.Generator().manual_seed(7))
    assert torch.equal(again, topk_flat(s, act, 3, ties="random", generator=torch.Generator().manual_seed(7)))


def test_topk_never_revives_and_checks_range():
    s = torch.tensor([9.0, 8.0, 1.0, 2.0])
    act = torch.tensor([False, True, True, True])
    assert topk_flat(s, act, 2).tolist() == [False, True, False, True]
    with pytest.raises(ConfigError, match="cannot keep 4"):
        topk_flat(s, act, 4)
    with pytest.raises(ConfigError, match="tie rule 'first'"):
        topk_flat(s, act, 1, ties="first")


def test_global_matches_reference_sort():
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(50, 20, generator=g), "b": torch.rand(300, generator=g)}
    mask = Mask({"a": torch.rand(50, 20, generator=g) > 0.2, "b": torch.ones(300, dtype=torch.bool)})
    keep = 400
    got = select_global(scores, mask, keep)
    flat = torch.cat([torch.where(mask[n].flatten(), scores[n].flatten(), torch.tensor(-1.0)) for n in "ab"])
    thr = flat.sort(descending=True).values[keep - 1]
    assert got.kept() == keep
    assert all(torch.equal(got[n], (scores[n] >= thr) & mask[n]) for n in "ab")


def test_global_floor_keeps_small_layer():
    scores = {"big": torch.arange(100.0) + 10, "small": torch.tensor([1.0, 2.0, 3.0, 4.0])}
    mask = Mask({n: torch.ones_like(s, dtype=torch.bool) for n, s in scores.items()})
    plain = select_global(scores, mask, 50)
    assert plain.kept("small") == 0
    floored = select_global(scores, mask, 50, min_keep={"small": 2})
    assert floored.kept("small") == 2 and floored.kept() == 50 and floored["small"].tolist() == [0, 0, 1, 1]


def test_layerwise_counts():
    scores = {"a": torch.tensor([1.0, 4.0, 2.0, 3.0]), "b": torch.tensor([7.0, 6.0])}
    mask = Mask({"a": torch.ones(4, dtype=torch.bool), "b": torch.ones(2, dtype=torch.bool)})
    out = select_layerwise(scores, mask, {"a": 2, "b": 1})
    assert out["a"].tolist() == [False, True, False, True] and out["b"].tolist() == [True, False]


def test_prune_api_global_and_layerwise():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 10))
    mask = prune(m, sparsity=0.9)
    assert mask.kept() == round(0.1 * (600 + 300))
    assert int((m[0].weight != 0).sum() + (m[2].weight != 0).sum()) == mask.kept()
    # the kept weights are the largest magnitudes globally
    allw = torch.cat([m[0].weight.flatten(), m[2].weight.flatten()])
    assert allw.abs().min() == 0
    m2 = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 10))
    lw = prune(m2, rate={"fc": 0.5, "output": 0.1}, allocation="layerwise")
    assert lw.kept("0.weight") == 300 and lw.kept("2.weight") == 270
    with pytest.raises(ConfigError, match=r"1\.5.*\[0, 1\)"):
        prune(m2, sparsity=1.5)
    with pytest.raises(ConfigError, match="-0.1"):
        prune(m2, sparsity=-0.1)
    with pytest.raises(ConfigError, match="allocation 'per_layer'"):
        prune(m2, sparsity=0.5, allocation="per_layer")
    with pytest.raises(ConfigError, match="score"):
        prune(m2, sparsity=0.5, score="snipp")


def test_prune_warns_when_global_ranking_empties_a_layer():
    m = nn.Sequential(nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, 2))
    with torch.no_grad():
        m[2].weight.fill_(1e-6)  # tiny output layer weights: first to go globally
    with pytest.warns(UserWarning, match=r"2\.weight.*min_keep"):
        prune(m, sparsity=0.9)
    m2 = nn.Sequential(nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, 2))
    with torch.no_grad():
        m2[2].weight.fill_(1e-6)
    mask = prune(m2, sparsity=0.9, min_keep={"2.weight": 10})
    assert mask.kept("2.weight") == 10


def test_prune_restores_thread_count_and_matches_reference():
    """prune() runs its selection on one intra-op thread; the caller's setting comes back, even after
    an error, and the mask equals a plain global top-k of |w|."""
    import torch.nn as nn
    from prunelab import prune
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ws = [model[0].weight.detach().abs().flatten(), model[2].weight.detach().abs().flatten()]
        thr = torch.cat(ws).sort(descending=True).values[150 - 1]
        mask = prune(model, sparsity=0.8)
        assert torch.get_num_threads() == 2
        assert mask.kept() == 150 and bool((mask["0.weight"] == (ws[0].view(30, 20) >= thr)).all())
        with pytest.raises(Exception):
            prune(model, sparsity=1.5)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_global_selection_reads_tiled_magnitude_scores_without_copy():
    """magnitude scores come as views of one buffer; global selection ranks that buffer directly and
    must keep exactly what it keeps from separate tensors with the same values."""
    from prunelab.primitives.scores import magnitude
    from prunelab.primitives.selection import _one_vector
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    mask = Mask.ones(model)
    tiled = magnitude(model, mask)
    separate = {n: t.clone() for n, t in tiled.items()}
    flat = _one_vector(list(tiled.values()))
    assert flat is not None and flat.data_ptr() == tiled["0.weight"].data_ptr()
    assert _one_vector(list(separate.values())) is None
    for n, p in model.named_parameters():
        if n in tiled:
            assert torch.equal(tiled[n], p.detach().abs())
    a = select_global(tiled, mask, 500, generator=torch.Generator().manual_seed(0))
    b = select_global(separate, mask, 500, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a[n], b[n]) for n in mask) and a.kept() == 500
