"""First and second derivatives of every method against central finite differences (float64).

The products are bilinear in (x1, x2) and linear in the weights, so along one input at a time
``E = sum(ct * f)`` is linear and ``|dE/dx1|^2`` quadratic: central differences are exact up to
rounding, which makes tight tolerances possible.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tp_torch
from conftest import CASES, NATIVE, random_inputs, tensors
from tp_spec import reference

H = 1e-4


def _cases():
    out = []
    for name, method in NATIVE:
        for per_sample in ([False, True] if CASES[name].weight_numel else [False]):
            out.append((name, method, per_sample))
    return out


def _setup(name, method, per_sample, rng, batch=2):
    d = CASES[name]
    tp = tp_torch.TensorProduct(d, method)
    x1, x2, w = random_inputs(d, (batch,), rng, per_sample)
    ct = rng.normal(size=(batch, d.irreps_out.dim))
    ins = [t for t in tensors(x1, x2, w, grad=True) if t is not None]
    return tp, ins, torch.tensor(ct)


def _tol(tp, k=None):
    """Exact-ish tolerances, except where per-degree weights make E polynomial of degree > 2
    in the perturbed input (GTP/MTP weights enter three times): there central differences
    carry an O(H^2) error."""
    loose = tp.descriptor.kind != "cgtp" and tp.weight_numel and (k is None or k == 2)
    return dict(rtol=1e-5, atol=1e-6) if loose else dict(rtol=1e-7, atol=1e-8)


def _energy(tp, ins, ct):
    return (tp(*ins) * ct).sum()


def _fd(fn, ins, k, direction):
    plus = [t.detach().clone() for t in ins]
    minus = [t.detach().clone() for t in ins]
    plus[k] += H * direction
    minus[k] -= H * direction
    return (fn(plus) - fn(minus)) / (2 * H)


@pytest.mark.parametrize(("name", "method", "per_sample"), _cases())
def test_first_and_second_order(name, method, per_sample, rng, batch=2):
    tp, ins, ct = _setup(name, method, per_sample, rng, batch)
    e = _energy(tp, ins, ct)
    grads = torch.autograd.grad(e, ins, create_graph=True)
    dirs = [torch.tensor(rng.normal(size=t.shape)) for t in ins]

    def energy(ts):
        with torch.no_grad():
            return _energy(tp, ts, ct)

    for k in range(len(ins)):
        fd = _fd(energy, ins, k, dirs[k])
        an = (grads[k] * dirs[k]).sum()
        assert torch.allclose(an.detach(), fd, **_tol(tp, k)), (k, float(an), float(fd))

    # force loss: L = |dE/dx1|^2, gradient by double backward vs finite differences of L
    loss = (grads[0] ** 2).sum()

    def force_loss(ts):
        ts = [t.detach().requires_grad_(True) for t in ts]
        (f,) = torch.autograd.grad(_energy(tp, ts, ct), ts[0])
        return (f ** 2).sum().detach()

    if loss.requires_grad:
        lg = torch.autograd.grad(loss, ins, allow_unused=True, retain_graph=True)
    else:
        lg = [None] * len(ins)
    for k in range(len(ins)):
        g = torch.zeros_like(ins[k]) if lg[k] is None else lg[k]
        fd = _fd(force_loss, ins, k, dirs[k])
        an = (g * dirs[k]).sum()
        assert torch.allclose(an, fd, **_tol(tp, k)), ("force", k, float(an), float(fd))

    # Hessian-vector product of E along all inputs at once vs differences of the gradient
    hv = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, dirs, strict=True)), ins,
                             allow_unused=True)

    def grad_at(ts):
        ts = [t.detach().requires_grad_(True) for t in ts]
        return torch.autograd.grad(_energy(tp, ts, ct), ts)

    plus = [t.detach() + H * v for t, v in zip(ins, dirs, strict=True)]
    minus = [t.detach() - H * v for t, v in zip(ins, dirs, strict=True)]
    gp, gm = grad_at(plus), grad_at(minus)
    for k in range(len(ins)):
        fd = (gp[k] - gm[k]) / (2 * H)
        an = torch.zeros_like(fd) if hv[k] is None else hv[k]
        assert torch.allclose(an, fd, **_tol(tp)), ("hvp", k)


@pytest.mark.parametrize("name", ["mimo", "mimo_split"])
def test_scalar_plan_matvec_gradients(name, rng, monkeypatch):
    """The scalar plan's outer-product gradients as batched matrix-vector products (the branch
    that larger products take): first and second order as in the test above."""
    from conftest import fused_executor, use_fused_tuning
    from tp_spec.plan import Tuning
    from tp_torch._scalar import ScalarExecutor

    tuning = Tuning(matvec_min_entries=0, matvec_t_min_entries=0)
    assert isinstance(fused_executor(CASES[name], tuning), ScalarExecutor)
    use_fused_tuning(monkeypatch, tuning)
    test_first_and_second_order(name, "fused", False, rng)


def _reference_grads(d, x1, x2, w, ct):
    """``dE/dx1, dE/dx2, dE/dw`` of ``E = sum(ct * f)`` from the NumPy reference alone: ``f``
    is linear in each input and affine in the weights (unweighted paths add a constant), so
    each gradient entry is ``E`` with that argument replaced by a unit vector (minus ``E`` at
    zero weights)."""
    def per_sample(a, b, c):
        return (reference.apply(d, a, b, c) * ct).sum(-1)

    def unit(n, i, like):
        return np.broadcast_to(np.eye(n)[i], like.shape)

    g1 = np.stack([per_sample(unit(x1.shape[-1], i, x1), x2, w)
                   for i in range(x1.shape[-1])], -1)
    g2 = np.stack([per_sample(x1, unit(x2.shape[-1], j, x2), w)
                   for j in range(x2.shape[-1])], -1)
    if w is None:
        return g1, g2
    e0 = per_sample(x1, x2, np.zeros_like(w)).sum()
    gw = np.array([per_sample(x1, x2, np.eye(w.shape[0])[k]).sum() - e0
                   for k in range(w.shape[0])])
    return g1, g2, gw


def _check_chunked(name, method, batch, rng):
    """``method`` on ``batch`` rows of case ``name``: the forward and, where the product is
    affine in every argument (a CGTP, or no weights), the first-order gradients against the
    reference; first and second order against finite differences."""
    d = CASES[name]
    x1, x2, w = random_inputs(d, (batch,), rng)
    ins = [t for t in tensors(x1, x2, w, grad=True) if t is not None]
    tp = tp_torch.TensorProduct(d, method)
    y = tp(*ins)
    np.testing.assert_allclose(y.detach().numpy(), reference.apply(d, x1, x2, w),
                               rtol=1e-12, atol=1e-12)
    if w is None or d.kind == "cgtp":
        ct = rng.normal(size=(batch, d.irreps_out.dim))
        grads = torch.autograd.grad((y * torch.tensor(ct)).sum(), ins)
        for g, ref in zip(grads, _reference_grads(d, x1, x2, w, ct), strict=True):
            np.testing.assert_allclose(g.numpy(), ref, rtol=1e-10, atol=1e-10)
    test_first_and_second_order(name, method, False, rng, batch=batch)


@pytest.mark.parametrize("name", ["mimo", "mimo_split"])
def test_scalar_plan_chunks(name, rng, monkeypatch):
    """The scalar plan's CPU row chunks (37 rows as 13 + 13 + 11): forward and first-order
    gradients (the chunked backward) against the reference, double backward (whole batch,
    after a chunked forward) against finite differences."""
    from conftest import use_fused_tuning
    from tp_spec.plan import Tuning
    from tp_torch._common import chunk_rows

    tuning = Tuning(scalar_chunk_entries=1)
    d = CASES[name]
    assert chunk_rows(torch.empty(37, d.irreps_in1.dim), d.irreps_in1.dim,
                      tuning.scalar_chunk_entries, tuning.scalar_chunk_min_rows) == 13
    use_fused_tuning(monkeypatch, tuning)
    _check_chunked(name, "fused", 37, rng)


@pytest.mark.parametrize("name", ["uvu_pad", "uvu_shared_out"])
def test_channelwise_plan_chunks(name, rng, monkeypatch):
    """The channelwise plan's CPU row chunks as torch ops (29 rows as 10 + 10 + 9; the
    compiled CPU kernels, which replace them where Numba is present, turned off), checked as
    above."""
    from conftest import fused_executor, use_fused_tuning
    from tp_spec.plan import Tuning
    from tp_torch import _cpu_kernels
    from tp_torch._channelwise import ChannelwiseExecutor

    monkeypatch.setattr(_cpu_kernels, "available", lambda: False)
    tuning = Tuning(channelwise_chunk_entries=1, channelwise_chunk_min_rows=13)
    d = CASES[name]
    kernel = fused_executor(d, tuning)
    assert isinstance(kernel, ChannelwiseExecutor)
    assert kernel.rows_per_chunk(torch.empty(29, d.irreps_in1.dim)) == 10
    use_fused_tuning(monkeypatch, tuning)
    _check_chunked(name, "fused", 29, rng)


_GTP_CHUNKED = [(n, m) for n in ("gtp_all_pairs", "gtp_given_out", "gtp_broadcast_w")
                for m in ("grid", "fourier")]


_MTP_CHUNKED = [(n, m) for n in ("mtp_all", "mtp_given_out", "mtp_broadcast_w")
                for m in ("dense", "sparse")]


@pytest.mark.parametrize(("name", "method"), _GTP_CHUNKED + _MTP_CHUNKED)
def test_function_product_chunks(name, method, rng, monkeypatch):
    """GTP and MTP in CPU batch chunks (23 rows as 6 + 6 + 6 + 5: the plans built with a small
    ``Tuning``, which every module of the check then uses), checked as above (with per-degree
    weights the product is not affine in them: finite differences only)."""
    from tp_spec import plan as tp_plan
    from tp_torch import _module
    from tp_torch._common import chunk_rows

    tuning = tp_plan.Tuning(function_chunk_entries=1, function_chunk_min_rows=7)
    d = CASES[name]
    p = tp_plan.plan(d, method, tuning)
    assert chunk_rows(torch.empty(23, d.irreps_in1.dim), p.row_entries, 1, 7) == 6
    kernel = _module.EXECUTORS[type(p)](p)
    if getattr(kernel, "one_form", False):  # the per-op path (the form's: test_mtp_form.py)
        kernel.one_form = False
    rows, product = [], type(kernel)._product
    monkeypatch.setattr(type(kernel), "_product",
                        lambda self, a, b: rows.append(a.shape[0]) or product(self, a, b))
    x1, x2, w = tensors(*random_inputs(d, (23,), rng))
    kernel(x1, x2, w)
    assert rows == [6, 6, 6, 5]
    build = _module.build_kernel
    monkeypatch.setattr(_module, "build_kernel", lambda d, m, dev, t=None: build(d, m, dev, tuning))
    _check_chunked(name, method, 23, rng)


@pytest.mark.parametrize("threads", [1, 2])
def test_grid_chunks_over_threads(threads, rng, monkeypatch):
    """The grid GTP's chunk loop (``_GridProduct``) at one torch thread and split over two
    Python threads: the same forward and gradients as the reference, and torch's thread count
    restored afterwards."""
    from tp_spec import plan as tp_plan
    from tp_torch import _module

    tuning = tp_plan.Tuning(function_chunk_entries=1, function_chunk_min_rows=7)
    build = _module.build_kernel
    monkeypatch.setattr(_module, "build_kernel", lambda d, m, dev, t=None: build(d, m, dev, tuning))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _check_chunked("gtp_all_pairs", "grid", 23, rng)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
