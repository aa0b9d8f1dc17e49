"""``torch.func`` transforms and forward-mode AD on every method: ``vmap``, ``jacrev``,
``jvp``/``jacfwd`` and a Hessian-vector product, against the NumPy reference (the products are
polynomials in their inputs, so the reference's derivatives below are exact differences)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.autograd.forward_ad as fwAD
import tp_spec as spec
import tp_torch
from conftest import CASES
from tp_torch import _cpu_kernels

#: (case, method, compiled kernels on, shared weights): every autograd Function of tp_torch
#: is on some row
ROWS = [("uvu_shared_out", "fused", True, False),   # compiled kernels (custom ops)
        ("uvu_shared_out", "fused", True, True),
        ("uvu_shared_out", "fused", False, True),   # channelwise torch ops (_ChannelwiseFn)
        ("uvu_shared_out", "fused", False, False),
        ("mimo_split", "fused", True, True),        # the scalar regime (_OuterMatmul)
        ("uvw", "dense", True, False),
        ("gtp_broadcast_w", "grid", True, False),
        ("mtp_all", "sparse", True, False),         # batched 2x2..5x5 products (_MatProd)
        ("mtp_broadcast_w", "dense", True, True)]

@pytest.fixture(params=ROWS, ids=[f"{c}-{m}-{'kernels' if k else 'ops'}-"
                                  f"{'shared' if s else 'per_sample'}" for c, m, k, s in ROWS])
def case(request, monkeypatch):
    name, method, kernels, shared = request.param
    if kernels and not _cpu_kernels.available():
        pytest.skip("Numba missing")
    if not kernels:
        monkeypatch.setattr(tp_torch._compiled._cpu_kernels, "available", lambda: False)
    d = CASES[name]
    tp = tp_torch.TensorProduct(d, method)
    if not d.weight_numel:  # no weights: every transform gets tensors
        return d, lambda x1, x2, w=None: tp(x1, x2), shared
    return d, tp, shared


def _inputs(d, b, shared, seed=0):
    g = np.random.default_rng(seed)
    wshape = (d.weight_numel,) if shared else (b, d.weight_numel)
    return (g.standard_normal((b, d.irreps_in1.dim)), g.standard_normal((b, d.irreps_in2.dim)),
            g.standard_normal(wshape) if d.weight_numel else np.zeros((b, 0)))


def _t(*arrays):
    return tuple(torch.tensor(a) for a in arrays)


def _ref(d, x1, x2, w):
    return spec.reference.apply(d, x1, x2, w if d.weight_numel else None)


def _difference(at):
    """``d/dh at(h)`` at 0, exactly for a polynomial of degree at most 6 (seven points). The
    products are polynomials of degree at most 5 in their inputs (GTP with per-degree weights:
    ``w^3 x1 x2``)."""
    return (45 * (at(1.0) - at(-1.0)) - 9 * (at(2.0) - at(-2.0)) + (at(3.0) - at(-3.0))) / 60.0


def _ref_derivative(d, x, t):
    """The directional derivative of the reference at ``x`` along ``t`` (tuples of arrays)."""
    return _difference(lambda h: _ref(d, *(a + h * b for a, b in zip(x, t, strict=True))))


def test_vmap_matches_a_loop(case):
    d, tp, shared = case
    x = [_inputs(d, 3, shared, seed) for seed in range(4)]  # 4 instances of a batch of 3
    stacked = [torch.tensor(np.stack([xi[i] for xi in x])) for i in range(3)]
    out = torch.func.vmap(tp)(*stacked)
    want = np.stack([_ref(d, *xi) for xi in x])
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-10, atol=1e-10)


def test_jacrev_against_reference(case):
    d, tp, shared = case
    x1, x2, w = _inputs(d, 2, shared)
    jac = torch.func.jacrev(lambda a: tp(a, *_t(x2, w)))(torch.tensor(x1))
    # the product is linear in x1: column j of the Jacobian is the product of basis vector j
    eye = np.eye(x1.size).reshape(x1.size, *x1.shape)
    want = np.stack([_ref(d, e, x2, w) for e in eye], axis=-1).reshape(jac.shape)
    np.testing.assert_allclose(jac.numpy(), want, rtol=1e-10, atol=1e-10)


def test_jvp_and_forward_ad_against_reference(case):
    d, tp, shared = case
    x = _inputs(d, 3, shared)
    t = _inputs(d, 3, shared, seed=7)
    want = _ref_derivative(d, x, t)
    _, tangent = torch.func.jvp(tp, _t(*x), _t(*t))
    np.testing.assert_allclose(tangent.numpy(), want, rtol=1e-9, atol=1e-9)
    with fwAD.dual_level():
        duals = [fwAD.make_dual(a, b) for a, b in zip(_t(*x), _t(*t), strict=True)]
        tangent = fwAD.unpack_dual(tp(*duals)).tangent
    assert tangent is not None
    np.testing.assert_allclose(tangent.numpy(), want, rtol=1e-9, atol=1e-9)


def test_forward_over_reverse_hvp(case):
    """``jvp(grad(E))``: the directional derivative of the gradient of ``E = <c, f>``."""
    d, tp, shared = case
    x = _inputs(d, 2, shared)
    t = _inputs(d, 2, shared, seed=3)
    c = np.random.default_rng(9).standard_normal((2, d.irreps_out.dim))

    def grad_x2(a, b, w):
        return torch.func.grad(lambda bb: (tp(a, bb, w) * torch.tensor(c)).sum())(b)

    _, hvp = torch.func.jvp(grad_x2, _t(*x), _t(*t))

    def at(h):
        a, _, w = (u + h * v for u, v in zip(x, t, strict=True))
        return _ref_grad_x2(d, a, w, c)

    want = _difference(at)
    np.testing.assert_allclose(hvp.numpy(), want, rtol=1e-9, atol=1e-9)


def _ref_grad_x2(d, x1, w, c):
    """The gradient of ``<c, f(x1, x2, w)>`` along ``x2`` (it does not depend on ``x2``): row
    ``b``, column ``j`` is ``<c_b, f(x1_b, e_j, w_b)>``."""
    b, n = x1.shape[0], d.irreps_in2.dim
    out = np.empty((b, n))
    for j in range(n):
        e = np.zeros((b, n))
        e[:, j] = 1.0
        out[:, j] = (c * _ref(d, x1, e, w)).sum(axis=1)
    return out
