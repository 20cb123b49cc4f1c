"""N:M semi-structured masks (issue 16): exact counts, top-N per group, ties by index, IMP, errors, export."""
import pytest
import torch
from torch import nn

from prunelab import IMPConfig, Mask, TrainConfig, run_imp
from prunelab.errors import ConfigError
from prunelab.primitives.nm import is_nm, nm_group_counts, nm_schedule, parse_nm, select_nm, to_semi_structured
from prunelab.pruning import prune

from conftest import tiny_mlp

PATTERNS = [(2, 4), (1, 4), (4, 8)]


def _linear(seed, ties=False):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(16, 6))
    if ties:   # few distinct magnitudes, both signs: many ties inside groups
        with torch.no_grad():
            m[0].weight.copy_(torch.randint(-2, 3, m[0].weight.shape).float())
    return m


def _conv(seed, ties=False):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(8, 5, 3))
    if ties:
        with torch.no_grad():
            m[0].weight.copy_(torch.randint(-2, 3, m[0].weight.shape).float())
    return m


def reference_keep(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Plain loops: for every (out, kh, kw) position and every group of m along `in`, keep the n highest
    scores; among equal scores the lower `in` index is kept."""
    s = score.tolist()
    w4 = score.dim() == 4
    out_c, in_c = score.shape[0], score.shape[1]
    kh, kw = (score.shape[2], score.shape[3]) if w4 else (1, 1)
    keep = torch.zeros(score.shape, dtype=torch.bool)
    for o in range(out_c):
        for y in range(kh):
            for x in range(kw):
                for g in range(in_c // m):
                    entries = []
                    for i in range(g * m, (g + 1) * m):
                        v = s[o][i][y][x] if w4 else s[o][i]
                        entries.append((-v, i))
                    entries.sort()
                    for _, i in entries[:n]:
                        if w4:
                            keep[o, i, y, x] = True
                        else:
                            keep[o, i] = True
    return keep


def _groups_count(keep: torch.Tensor, m: int):
    """Kept count per group with plain loops (independent of the library's reshaping)."""
    counts = []
    w4 = keep.dim() == 4
    kh, kw = (keep.shape[2], keep.shape[3]) if w4 else (1, 1)
    for o in range(keep.shape[0]):
        for y in range(kh):
            for x in range(kw):
                for g in range(keep.shape[1] // m):
                    counts.append(sum(bool(keep[o, i, y, x] if w4 else keep[o, i])
                                      for i in range(g * m, (g + 1) * m)))
    return counts


@pytest.mark.parametrize("make", [_linear, _conv], ids=["linear", "conv2d"])
@pytest.mark.parametrize("n,m", PATTERNS, ids=[f"{n}:{m}" for n, m in PATTERNS])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_nm_mask_is_top_n_per_group(make, n, m, ties):
    model = make(0, ties)
    w = model[0].weight.detach().clone()
    mask = prune(model, pattern=f"{n}:{m}")
    kept = mask.expanded("0.weight")
    assert _groups_count(kept, m) == [n] * (w.numel() // m)
    assert torch.equal(kept, reference_keep(w.abs(), n, m))
    # applied: pruned weights are zero, kept ones untouched
    assert torch.equal(model[0].weight.detach(), torch.where(kept, w, torch.zeros_like(w)))
    assert mask.sparsity() == pytest.approx(1 - n / m)
    assert is_nm(kept, (n, m))


def test_ties_go_to_lower_index():
    model = nn.Sequential(nn.Linear(8, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1., -1., 1., 1., 0., 3., -3., 3.],
                                            [2., 2., 2., 2., 5., 5., 5., 5.]]))
    keep = prune(model, pattern="2:4", apply=False)["0.weight"]
    assert keep.int().tolist() == [[1, 1, 0, 0, 0, 1, 1, 0], [1, 1, 0, 0, 1, 1, 0, 0]]


def test_any_score_and_conv_layout():
    """Other scores rank the same way; a conv group runs along `in` at fixed (out, kh, kw)."""
    model = _conv(1)
    w = model[0].weight.detach()
    scores = {"0.weight": -w.abs()}           # keep the smallest magnitudes
    mask = select_nm(scores, Mask.ones(model), 1, 4)
    assert torch.equal(mask["0.weight"], reference_keep(-w.abs(), 1, 4))
    # a registered score through prune(): small_final is -|w|
    m2 = prune(_conv(1), pattern="1:4", score="small_final", apply=False,
               init_state={k: v.clone() for k, v in _conv(1).state_dict().items()})
    assert m2 == mask
    counts = nm_group_counts(mask["0.weight"], 4)
    assert counts.shape == (5 * 3 * 3 * 2,) and bool((counts == 1).all())
    # a conv weight pruned 2:4 along `in` is not 2:4 along the kernel width
    k = prune(_conv(2), pattern="2:4")["0.weight"]
    assert bool((k.sum(dim=1) == 4).all())    # 8 inputs = 2 groups of 4, 2 kept each


def test_nm_with_existing_mask_never_revives_and_needs_n_per_group():
    model = _linear(3)
    m34 = prune(model, pattern="3:4", apply=False)
    m24 = prune(model, pattern="2:4", mask=m34, apply=False)
    assert (m24 - m34).kept() == 0 and is_nm(m24["0.weight"], "2:4")
    with pytest.raises(ConfigError, match="fewer than 3 unpruned"):
        prune(model, pattern="3:4", mask=m24)


@pytest.mark.parametrize("bad", ["5:4", (3, 2), "0:4", "2-4", "2:0", "a:b"])
def test_bad_patterns_name_the_value(bad):
    with pytest.raises(ConfigError) as e:
        parse_nm(bad)
    assert repr(bad) in str(e.value)
    with pytest.raises(ConfigError, match="N:M pattern"):
        prune(_linear(0), pattern=bad)


def test_input_dim_not_divisible_names_layer_and_shape():
    model = nn.Sequential(nn.Linear(10, 4), nn.ReLU(), nn.Linear(4, 2))
    w = model[0].weight.detach().clone()
    with pytest.raises(ConfigError) as e:
        prune(model, pattern="2:4")
    msg = str(e.value)
    assert "'0.weight'" in msg and "(4, 10)" in msg and "M=4" in msg
    assert torch.equal(model[0].weight.detach(), w)   # nothing pruned
    conv = nn.Sequential(nn.Conv2d(3, 8, 3))
    with pytest.raises(ConfigError, match=r"'0.weight'.*\(8, 3, 3, 3\).*input dimension 3"):
        prune(conv, pattern="2:4")
    # excluding the layer from the scope works
    mask = prune(model, pattern="2:4", scope=["2.weight"])
    assert mask.names() == ["2.weight"] and is_nm(mask["2.weight"], "2:4")


def test_pattern_excludes_sparsity_and_rate():
    with pytest.raises(ConfigError, match="pattern='2:4'"):
        prune(_linear(0), pattern="2:4", sparsity=0.5)
    with pytest.raises(ConfigError, match="pattern='2:4'"):
        prune(_linear(0), pattern="2:4", rate=0.5)


def test_imp_config_pattern_validation_and_defaults():
    assert IMPConfig().pattern is None and "pattern" not in IMPConfig().model_dump(exclude_defaults=True)
    for kw, msg in [(dict(pattern="5:4"), "'5:4'"), (dict(pattern="2:4", rate=0.3), "rate=0.3"),
                    (dict(pattern="2:4", sparsity=0.5), "sparsity=0.5"), (dict(pattern="2:4", rounds=0), "rounds")]:
        with pytest.raises(ValueError, match=msg):
            IMPConfig(**kw)
    # a full dump round-trips (rate at its default is not a conflict)
    imp = IMPConfig(pattern="2:4", rounds=2)
    assert IMPConfig(**imp.model_dump()) == imp
    assert [imp.round_pattern(r) for r in (1, 2)] == ["3:4", "2:4"]


@pytest.mark.parametrize("n,m,rounds", [(2, 4, 1), (2, 4, 2), (2, 4, 3), (1, 4, 3), (4, 8, 3), (2, 4, 5), (3, 8, 4)])
def test_nm_schedule_ends_at_n_and_never_increases(n, m, rounds):
    s = nm_schedule(n, m, rounds)
    assert len(s) == rounds and s[-1] == n and all(a >= b for a, b in zip(s, s[1:])) and s[0] <= m
    assert s[0] < m or rounds > m - n


def test_imp_with_nm_keeps_pattern_after_training(blobs):
    cfg = TrainConfig(optimizer="adam", lr=1e-2, batch_size=32, epochs=2)
    res = run_imp(tiny_mlp, blobs, cfg, IMPConfig(rounds=2, pattern="2:4", controls=("reinit",)), seed=0)
    tickets = [r for r in res.rows if r.variant == "ticket"]
    assert [r.round for r in tickets] == [0, 1, 2]
    for row, n in zip(tickets[1:], (3, 2)):
        for name in row.mask:
            assert is_nm(row.mask.expanded(name), (n, 4)), (row.round, name)
    assert (tickets[2].mask - tickets[1].mask).kept() == 0   # nested
    final = tickets[-1].mask
    assert final.sparsity() == pytest.approx(0.5)
    model = tiny_mlp(0)
    model.load_state_dict(res.states["final"])
    for name, p in model.named_parameters():
        if name in final:
            w = p.detach()
            assert bool((w[~final.expanded(name)] == 0).all()), name        # trained weights stay masked
            assert _groups_count(w != 0, 4) == [2] * (w.numel() // 4), name  # exactly 2 nonzeros per group
    reinit = [r for r in res.rows if r.variant == "reinit"]
    assert all(r.mask == t.mask for r, t in zip(reinit, tickets[1:]))


def test_semi_structured_export_on_cpu_is_a_clear_error():
    model = nn.Sequential(nn.Linear(64, 32))
    prune(model, pattern="2:4")
    with pytest.raises(ConfigError, match="CUDA"):
        to_semi_structured(model[0])
    with pytest.raises(ConfigError, match="nn.Linear"):
        to_semi_structured(nn.Conv2d(4, 4, 1))
    # the dense masked layer is what the semi-structured kernel computes: x @ W_masked.T + b, where
    # W_masked has at most 2 nonzeros in each group of 4 along `in`
    x = torch.randn(5, 64)
    w, b = model[0].weight.detach(), model[0].bias.detach()
    assert is_nm(w != 0, "2:4")
    ref = torch.stack([torch.stack([sum(x[i, j] * w[o, j] for j in range(64) if w[o, j] != 0) + b[o]
                                    for o in range(32)]) for i in range(5)])
    torch.testing.assert_close(model(x).detach(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 0),
                    reason="needs a CUDA GPU with sparse tensor cores")
def test_semi_structured_export_matches_dense_on_gpu():
    model = nn.Sequential(nn.Linear(128, 64)).cuda().half()
    prune(model, pattern="2:4")
    x = torch.randn(64, 128, device="cuda", dtype=torch.float16)
    dense = model(x).detach()
    to_semi_structured(model[0])
    torch.testing.assert_close(model(x).detach(), dense, rtol=1e-2, atol=1e-2)
