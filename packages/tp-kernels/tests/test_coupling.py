""":class:`tp_kernels.coupling.CouplingKernels` on NumPy arrays: the forward against the NumPy
reference (no weights and shared weights, a batch of several chunks with a partial last one,
one and two threads, float32 and float64), and every gradient by the adjoint identity
``<ct, F(.., v, ..)> = <grad, v>`` (the product is linear in each input and in the weights)."""

from __future__ import annotations

import numpy as np
import pytest
import tp_spec
from tp_kernels import available
from tp_kernels.coupling import ROWS, CouplingKernels
from tp_spec import reference
from tp_spec.plan import DEFAULT_TUNING
from tp_spec.plan.coupling import Coupling
from tp_spec.plan.fused import ScalarPlan, build_fused
from tp_spec.plan.outer import OuterPlan

pytestmark = pytest.mark.skipif(not available(), reason="Numba missing")

CASES = {
    "full": tp_spec.cgtp("0e+1o+2e", "0e+1o+2e", mode="full"),
    "uvw": tp_spec.cgtp("0e+1o+2e", "0e+1o+2e", "0e+1o+1e+2e+2o+3o+4e", mode="uvw"),
    # an input block without paths (its gradient is zero), an output no path writes
    "sparse": tp_spec.cgtp("0e+1o+2e", "1o+3o", "0e+1e+2e+5e", mode="uvw"),
}
#: two threads of more than two chunks each, the last chunk partial
B = 2 * (2 * ROWS + 7)


def _kernels(d) -> CouplingKernels:
    plan = build_fused(d, DEFAULT_TUNING)
    plan = plan.scalar if isinstance(plan, OuterPlan) else plan
    assert isinstance(plan, ScalarPlan)
    return CouplingKernels(plan.coupling, (d.irreps_in1.dim, d.irreps_in2.dim,
                                           d.irreps_out.dim), min_rows=ROWS)


def _inputs(d, dt, seed=0):
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal((B, d.irreps_in1.dim)).astype(dt)
    x2 = rng.standard_normal((B, d.irreps_in2.dim)).astype(dt)
    w = rng.standard_normal(d.weight_numel).astype(dt) if d.weight_numel else None
    return x1, x2, w


def _tol(dt):
    return {"rtol": 2e-5, "atol": 2e-5} if dt == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("key", CASES)
def test_forward_matches_reference(key, dt, threads):
    d = CASES[key]
    k = _kernels(d)
    x1, x2, w = _inputs(d, dt)
    out = k.forward(x1, x2, k.coefficients(w, dt), threads)
    want = reference.apply(d, x1.astype(np.float64), x2.astype(np.float64),
                           None if w is None else w.astype(np.float64))
    np.testing.assert_allclose(out, want, **_tol(dt))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("key", CASES)
def test_gradients_by_adjoint_identity(key, dt, threads):
    d = CASES[key]
    k = _kernels(d)
    x1, x2, w = _inputs(d, dt, 1)
    rng = np.random.default_rng(2)
    ct = rng.standard_normal((B, d.irreps_out.dim)).astype(dt)
    v1, v2 = (rng.standard_normal(x.shape).astype(dt) for x in (x1, x2))
    c = k.coefficients(w, dt)
    g1, g2, ge = k.backward(x1, x2, c, ct, (True, True, w is not None), threads)

    def loss(a, b, coef):  # <ct, F(a, b)> in float64
        f64 = np.float64
        return float(np.sum(ct.astype(f64) * k.forward(a.astype(f64), b.astype(f64),
                                                       coef.astype(f64), 1)))

    tol = 1e-4 if dt == np.float32 else 1e-11
    for g, v, want in ((g1, v1, loss(v1, x2, c)), (g2, v2, loss(x1, v2, c))):
        np.testing.assert_allclose(float(np.sum(g.astype(np.float64) * v)), want, rtol=tol)
    if w is not None:
        gw = k.weight_grad(ge.astype(np.float64), d.weight_numel)
        assert gw.shape == (d.weight_numel + 1,) and gw[-1] == 0  # every path weighted
        vw = rng.standard_normal(d.weight_numel)
        want = loss(x1, x2, k.coefficients(vw, np.float64))
        np.testing.assert_allclose(float(gw[:-1] @ vw), want, rtol=tol)
    # one gradient at a time, into given arrays: the same values
    for need, got in (((True, False, False), g1), ((False, True, False), g2)):
        out = np.full_like(got, np.nan)
        res = k.backward(x1, x2, c, ct, need, threads, out=(out, None, None) if need[0]
                         else (None, out, None))
        assert res[need.index(True)] is out
        np.testing.assert_allclose(out, got, **_tol(dt))


def test_unused_input_block_has_zero_gradient():
    d = CASES["sparse"]
    k = _kernels(d)
    x1, x2, w = _inputs(d, np.float64)
    ct = np.ones((B, d.irreps_out.dim))
    g1, _, _ = k.backward(x1, x2, k.coefficients(w, np.float64), ct, (True, False, False), 1)
    unused = [s for s, (_, ir) in zip(d.irreps_in1.slices(), d.irreps_in1, strict=True)
              if not any(p.ir_in1 == ir for p in d.paths)]
    assert unused and all(np.all(g1[:, s] == 0) for s in unused)


def test_refuses_unsorted_entries_and_bad_arrays():
    d = CASES["full"]
    plan = build_fused(d, DEFAULT_TUNING)
    plan = plan.scalar if isinstance(plan, OuterPlan) else plan
    cp = plan.coupling
    dims = (d.irreps_in1.dim, d.irreps_in2.dim, d.irreps_out.dim)
    rev = Coupling(*(a[::-1] for a in cp))
    with pytest.raises(ValueError, match="sorted"):
        CouplingKernels(rev, dims)
    k = CouplingKernels(cp, dims)
    x1, x2, _ = _inputs(d, np.float32)
    c = k.coefficients(None, np.float32)
    with pytest.raises(ValueError, match="float32 or float64"):
        k.forward(x1.astype(np.float16), x2.astype(np.float16), c.astype(np.float16), 1)
    with pytest.raises(ValueError, match="C-contiguous"):
        k.forward(np.asfortranarray(x1), x2, c, 1)
    with pytest.raises(ValueError, match="one dtype"):
        k.forward(x1, x2.astype(np.float64), c, 1)


def test_float32_products_that_overflow_while_the_terms_do_not():
    """|x| ~ 1e19: ``x1 x2`` overflows float32 while many terms ``value x1 x2`` do not; the
    kernels form the pair product range-scaled, so every output whose terms sum below the
    float32 maximum is finite and equals the float64 result."""
    d = CASES["full"]
    k = _kernels(d)
    rng = np.random.default_rng(5)
    x1, x2 = (rng.choice([-1, 1], (B, n)) * rng.uniform(1e19, 2.5e19, (B, n))
              for n in (d.irreps_in1.dim, d.irreps_in2.dim))
    x1, x2 = x1.astype(np.float32), x2.astype(np.float32)
    with np.errstate(over="ignore"):
        assert np.isinf(np.abs(x1[:, :1]) * np.abs(x2[:, :1])).any()  # products overflow
    want = reference.apply(d, x1.astype(np.float64), x2.astype(np.float64))
    cp = build_fused(d, DEFAULT_TUNING)
    cp = (cp.scalar if isinstance(cp, OuterPlan) else cp).coupling
    terms = np.zeros_like(want)  # the sum of |term| into each output
    for i, j, kk, v in zip(cp.i, cp.j, cp.k, cp.value, strict=True):
        terms[:, kk] += np.abs(v * x1[:, i].astype(np.float64) * x2[:, j])
    safe = terms < np.finfo(np.float32).max
    assert 0.1 < safe.mean() < 1  # a fifth of the outputs here
    out = k.forward(x1, x2, k.coefficients(None, np.float32), 1)
    assert np.isfinite(out[safe]).all()
    # float32 rounding of the terms (a sum may cancel: relative to the terms, not the sum)
    assert np.all(np.abs(out[safe] - want[safe]) <= 1e-6 * terms[safe])
