"""Flatness measures (spec §2.6) against analytic values and independent computations."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gst_helpers import tiny_convnet, tiny_images
from prunelab.training.flatness import (flatness_measures, grad_cov_trace, hessian_eigs, held_out,
                                        model_hessian_eigs, perturbation_curves)
from prunelab.procedures.stability import FlatnessSpec


def _quadratic(eigs, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_top_eigenvalues_of_a_quadratic_are_analytic(method):
    eigs = [9.0, 5.0, 2.5, 1.0, 0.5, 0.25, 0.1, 0.05]
    A = _quadratic(eigs)
    w = nn.Parameter(torch.randn(8, dtype=torch.float64))
    b = torch.randn(8, dtype=torch.float64)
    # loss = 1/2 wᵀAw + bᵀw, split in two terms to exercise the summation over batches
    loss_fn = lambda: (0.5 * w @ A @ w, b @ w)  # noqa: E731
    vals, vecs = hessian_eigs([w], loss_fn, k=3, method=method, iterations=200, tol=1e-10)
    assert vals.tolist() == pytest.approx([9.0, 5.0, 2.5], rel=1e-6)
    # eigenvectors: A v = λ v (power iteration stops on the eigenvalue, whose error is the square of the
    # vector's, so its vectors are looser)
    for lam, v in zip(vals, vecs):
        assert torch.allclose(A @ v, lam * v, atol=1e-5 if method == "lanczos" else 1e-3)


def test_model_hessian_matches_dense_hessian():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    x, y = torch.randn(20, 4, dtype=torch.float64), torch.randint(0, 3, (20,))
    params = list(lin.parameters())
    sizes = [p.numel() for p in params]

    def loss_of(flat):  # an independent route: the dense Hessian of a functional loss
        ps, i = [], 0
        for p, n in zip(params, sizes):
            ps.append(flat[i:i + n].view_as(p))
            i += n
        h = torch.tanh(x @ ps[0].T + ps[1])
        return F.cross_entropy(h @ ps[2].T + ps[3], y)

    flat = torch.cat([p.detach().reshape(-1) for p in params])
    dense = torch.autograd.functional.hessian(loss_of, flat)
    expect = torch.linalg.eigvalsh(dense).flip(0)[:3]
    vals, _ = model_hessian_eigs(lin, x, y, k=3, batch_size=7, iterations=40)
    assert vals.tolist() == pytest.approx(expect.tolist(), rel=1e-6, abs=1e-9)


def test_grad_cov_trace_equals_per_example_loop():
    model = tiny_convnet(0)
    x, y = held_out(tiny_images(), 10)
    model.train()
    model(x)  # give BN non-trivial running statistics
    got = grad_cov_trace(model, x, y, chunk=4)
    model.eval()
    total = 0.0
    for i in range(len(y)):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        total += sum(float(p.grad.pow(2).sum()) for p in model.parameters())
    assert got == pytest.approx(total / len(y), rel=1e-5)
    assert model.training is False


def test_perturbation_curves_restore_weights():
    model = tiny_convnet(0).eval()
    x, y = held_out(tiny_images(), 12)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n = sum(p.numel() for p in model.parameters())
    v = torch.zeros(1, n)
    v[0, 0] = 1.0
    curves = perturbation_curves(model, x, y, v, [-0.1, 0.0, 0.1])
    with torch.no_grad():
        base = float(F.cross_entropy(model(x), y))
    assert curves[0]["loss"][1] == pytest.approx(base, rel=1e-6)
    assert curves[0]["loss"][0] != curves[0]["loss"][2]
    assert all(torch.equal(before[k], model.state_dict()[k]) for k in before)


def test_flatness_measures_bundle():
    model = tiny_convnet(0)
    out = flatness_measures(model, tiny_images(), FlatnessSpec(images=16, top_k=2, iterations=8,
                                                               perturb_vectors=1, perturb_eps=(-0.1, 0.1)))
    assert len(out["hessian_top"]) == 2 and out["hessian_sum"] == pytest.approx(sum(out["hessian_top"]))
    assert out["trace_ratio"] == pytest.approx(out["grad_cov_trace"] / out["hessian_sum"])
    assert len(out["perturbation"]) == 1 and out["flatness_images"] == 16
