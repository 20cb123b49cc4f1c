"""Flatness of a trained network (GST spec §2.6): Hessian spectrum, gradient covariance, ε-perturbation.

A measurement of a model on data, like :func:`~prunelab.training.evaluate`, so procedures can record it.

Everything works on Hessian-vector products (double backward), so no Hessian is ever formed:

- :func:`hessian_eigs`: top-k eigenvalues/vectors of the Hessian of a loss, by Lanczos with full
  reorthogonalisation (default) or by power iteration with deflation (GST's ``hessian_eigenthings``, which
  finds the eigenvalues of largest magnitude).
- :func:`grad_cov_trace`: the uncentred gradient second moment, mean over examples of ‖∇_w ℓ_i‖², with
  per-example gradients from ``torch.func`` (vmap over examples).
- :func:`perturbation_curves`: loss and accuracy at w* + ε·v for eigenvectors v and a grid of ε.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..seeding import generator

LossFn = Callable[[], Iterable[torch.Tensor]]


def _flat(ts: Sequence[torch.Tensor | None], like: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(t if t is not None else torch.zeros_like(p)).reshape(-1) for t, p in zip(ts, like)])


def _split(v: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    out, i = [], 0
    for p in like:
        out.append(v[i:i + p.numel()].view_as(p))
        i += p.numel()
    return out


def hvp(params: Sequence[torch.Tensor], loss_fn: LossFn, v: torch.Tensor) -> torch.Tensor:
    """H·v for the loss Σ ``loss_fn()`` (an iterable of scalar terms, e.g. one per batch)."""
    vs = _split(v.to(params[0].dtype), params)
    out = torch.zeros_like(v)
    for loss in loss_fn():
        g = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        gv = sum((gi * vi).sum() for gi, vi in zip(g, vs) if gi is not None)
        if not torch.is_tensor(gv) or not gv.requires_grad:
            continue  # the loss is linear in every parameter: H = 0
        hv = torch.autograd.grad(gv, params, allow_unused=True)
        out += _flat(hv, params).to(out.dtype)
    return out


def _lanczos(op, n: int, k: int, steps: int, gen: torch.Generator, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    steps = min(steps, n)
    q = torch.randn(n, generator=gen, dtype=dtype)
    q /= q.norm()
    basis: list[torch.Tensor] = []
    alphas, betas = [], []
    q_prev, b_prev = torch.zeros_like(q), 0.0
    for _ in range(steps):
        w = op(q)
        a = float(w @ q)
        w = w - a * q - b_prev * q_prev
        basis.append(q)
        alphas.append(a)
        Q = torch.stack(basis)
        for _ in range(2):  # full reorthogonalisation, twice: Lanczos vectors lose orthogonality fast
            w = w - Q.T @ (Q @ w)
        b = float(w.norm())
        if b < 1e-10 * max(1.0, abs(a)) or len(basis) == steps:
            break
        betas.append(b)
        q_prev, q, b_prev = q, w / b, b
    m = len(alphas)
    T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if m > 1:
        off = torch.tensor(betas[: m - 1], dtype=torch.float64)
        T += torch.diag(off, 1) + torch.diag(off, -1)
    evals, evecs = torch.linalg.eigh(T)
    order = torch.argsort(evals, descending=True)[:k]
    vecs = (torch.stack(basis).T.double() @ evecs[:, order]).T
    vecs = vecs / vecs.norm(dim=1, keepdim=True)
    return evals[order], vecs.to(dtype)


def _power(op, n: int, k: int, steps: int, tol: float, gen: torch.Generator, dtype):
    vals: list[float] = []
    vecs: list[torch.Tensor] = []
    for _ in range(min(k, n)):
        v = torch.randn(n, generator=gen, dtype=dtype)
        v /= v.norm()
        lam = None
        for _ in range(steps):
            hv = op(v)
            for lj, vj in zip(vals, vecs):  # deflation: remove the eigenpairs found already
                hv = hv - lj * (vj @ v) * vj
            new = float(v @ hv)
            norm = hv.norm()
            if norm == 0:
                lam = 0.0
                break
            v = hv / norm
            if lam is not None and abs(new - lam) <= tol * (abs(lam) + 1e-12):
                lam = new
                break
            lam = new
        vals.append(float(lam))
        vecs.append(v)
    return torch.tensor(vals, dtype=torch.float64), torch.stack(vecs)


def hessian_eigs(params: Sequence[torch.Tensor], loss_fn: LossFn, k: int = 10, *, method: str = "lanczos",
                 iterations: int = 100, tol: float = 1e-4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` Hessian eigenvalues (float64, descending for Lanczos) and unit eigenvectors (k × n, flat
    over ``params``). ``iterations``: Lanczos steps, or power-iteration steps per eigenvalue."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ConfigError("hessian_eigs needs parameters with requires_grad=True")
    n = sum(p.numel() for p in params)
    dtype = params[0].dtype
    gen = generator(seed, "hessian")

    def op(v: torch.Tensor) -> torch.Tensor:
        return hvp(params, loss_fn, v.to(params[0].device)).to("cpu", dtype)

    if method == "lanczos":
        return _lanczos(op, n, k, max(iterations, 2 * k + 1), gen, dtype)
    if method == "power":
        return _power(op, n, k, iterations, tol, gen, dtype)
    raise ConfigError(f"unknown method {method!r}; allowed: lanczos, power")


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    for i in range(0, len(y), batch_size):
        yield x[i:i + batch_size], y[i:i + batch_size]


def cross_entropy_terms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> LossFn:
    """Loss terms whose sum is the mean cross-entropy over (x, y), one term per batch."""
    n = len(y)
    return lambda: (F.cross_entropy(model(xb), yb, reduction="sum") / n for xb, yb in _batches(x, y, batch_size))


def model_hessian_eigs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int = 10, *,
                       batch_size: int = 256, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """Hessian eigenpairs of the mean cross-entropy of ``model`` (eval mode: BN uses running statistics)."""
    was = model.training
    model.eval()
    try:
        return hessian_eigs(list(model.parameters()), cross_entropy_terms(model, x, y, batch_size), k, **kw)
    finally:
        model.train(was)


def grad_cov_trace(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, chunk: int = 64) -> float:
    """Mean over examples of ‖∇_w CE(model(x_i), y_i)‖² (uncentred: the mean gradient is not subtracted)."""
    from torch.func import functional_call, grad, vmap
    was = model.training
    model.eval()
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = dict(model.named_buffers())

    def loss_one(p, xi, yi):
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    per_example = vmap(grad(loss_one), in_dims=(None, 0, 0))
    total = torch.zeros((), dtype=torch.float64)
    try:
        for xb, yb in _batches(x, y, chunk):
            g = per_example(params, xb, yb)
            total += sum(t.double().pow(2).flatten(1).sum(1) for t in g.values()).sum().cpu()
    finally:
        model.train(was)
    return float(total) / len(y)


@torch.no_grad()
def perturbation_curves(model: nn.Module, x: torch.Tensor, y: torch.Tensor, vectors: torch.Tensor,
                        eps: Sequence[float], *, batch_size: int = 256) -> list[dict]:
    """Loss and accuracy at w* + ε·v for each row v of ``vectors`` (flat over the trainable parameters) and
    each ε; the weights are restored after every perturbation."""
    was = model.training
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    out = []
    try:
        for i, v in enumerate(vectors):
            dv = _split(v.to(params[0].device, params[0].dtype), params)
            losses, accs = [], []
            for e in eps:
                for p, s, d in zip(params, saved, dv):
                    p.copy_(s + e * d)
                loss = correct = 0.0
                for xb, yb in _batches(x, y, batch_size):
                    o = model(xb)
                    loss += float(F.cross_entropy(o, yb, reduction="sum"))
                    correct += float((o.argmax(1) == yb).sum())
                losses.append(loss / len(y))
                accs.append(correct / len(y))
            out.append({"vector": i, "eps": list(map(float, eps)), "loss": losses, "acc": accs})
    finally:
        for p, s in zip(params, saved):
            p.copy_(s)
        model.train(was)
    return out


def held_out(data, n: int, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` examples of ``split``, normalised as the model sees them."""
    xs, ys, got = [], [], 0
    for xb, yb in data.batches(split, min(n, 1000), shuffle=False, augment=False):
        xs.append(xb)
        ys.append(yb)
        got += len(yb)
        if got >= n:
            break
    return torch.cat(xs)[:n], torch.cat(ys)[:n]


def flatness_measures(model: nn.Module, data, spec) -> dict:
    """GST's flatness numbers for a :class:`~prunelab.procedures.stability.FlatnessSpec`: top-k Hessian
    eigenvalues and their sum, the gradient-covariance trace and its ratio to that sum, perturbation curves."""
    x, y = held_out(data, spec.images)
    vals, vecs = model_hessian_eigs(model, x, y, spec.top_k, method=spec.method, iterations=spec.iterations,
                                    batch_size=spec.batch_size)
    out = {"hessian_top": [float(v) for v in vals], "hessian_sum": float(vals.sum()), "flatness_images": len(y)}
    if spec.grad_cov:
        out["grad_cov_trace"] = grad_cov_trace(model, x, y)
        out["trace_ratio"] = out["grad_cov_trace"] / out["hessian_sum"] if out["hessian_sum"] else float("nan")
    if spec.perturb_vectors and spec.perturb_eps:
        out["perturbation"] = perturbation_curves(model, x, y, vecs[: spec.perturb_vectors], spec.perturb_eps,
                                                  batch_size=spec.batch_size)
    return out
