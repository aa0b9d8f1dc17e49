""":class:`tp_kernels.channelwise.ChannelwiseKernels` on NumPy arrays: the forward against the
NumPy reference (every weight layout, chunks and two threads, float32 and float64), and every
gradient by the adjoint identity ``<g, F(.., x_k, ..)> = <grad_k, x_k>`` (the product is linear
in each input; in ``[w, s]`` with ``s`` the unweighted paths' weight)."""

from __future__ import annotations

import numpy as np
import pytest
import tp_spec
from tp_kernels import ChannelwiseKernels, available
from tp_spec import reference
from tp_spec.plan import Tuning

pytestmark = pytest.mark.skipif(not available(), reason="Numba missing")

CASES = {
    "mace_like": tp_spec.cgtp("3x0e+3x1o+3x2e", "0e+1o+2e", "3x0e+3x1o+3x2e", mode="uvu"),
    # two paths into one output block, unweighted paths among weighted ones, an output block
    # no path writes
    "mixed": tp_spec.cgtp("4x0e+4x1o", "0e+1o", "4x0e+4x1o+4x2e", instructions=[
        (0, 0, 0, "uvu", True), (1, 1, 0, "uvu", False), (0, 1, 1, "uvu", False),
        (1, 0, 1, "uvu", True)]),
}
#: chunks of 4 rows; 10 rows or more per thread
SMALL = Tuning(kernel_chunk_entries=1, kernel_chunk_min_rows=4, kernel_thread_min_rows=5)
B = 23


def _inputs(d, dt, per_sample, seed=0):
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal((B, d.irreps_in1.dim)).astype(dt)
    x2 = rng.standard_normal((B, d.irreps_in2.dim)).astype(dt)
    w = rng.standard_normal(((B,) if per_sample else ()) + (d.weight_numel,)).astype(dt)
    return x1, x2, w


def _tol(dt):
    return {"rtol": 2e-5, "atol": 2e-5} if dt == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CASES))
def test_forward_against_reference(name, dt, per_sample, threads):
    d = CASES[name]
    k = ChannelwiseKernels(d, SMALL)
    x1, x2, w = _inputs(d, dt, per_sample)
    want = reference.apply_cgtp(d, x1.astype(np.float64), x2.astype(np.float64),
                                w.astype(np.float64))
    out = k.forward(x1, x2, w, threads)
    assert out.dtype == dt and out.shape == (B, d.irreps_out.dim)
    np.testing.assert_allclose(out, want, **_tol(dt))


def _scaled(w, s):
    return np.concatenate([w, s], axis=-1)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_scaled_weights(name, per_sample):
    """``[w, s]``: scale 1 is the plain product, scale 0 the weighted paths only, any other
    scale (one per row with per-sample weights) the sum of the two."""
    d = CASES[name]
    k = ChannelwiseKernels(d, SMALL)
    x1, x2, w = _inputs(d, np.float64, per_sample)
    full = k.forward(x1, x2, w, 2)
    only = k.forward(x1, x2, w, 2, weighted_only=True)
    shape = (B, 1) if per_sample else (1,)
    np.testing.assert_allclose(k.forward(x1, x2, _scaled(w, np.ones(shape)), 2, scaled=True),
                               full)
    np.testing.assert_allclose(k.forward(x1, x2, _scaled(w, np.zeros(shape)), 2, scaled=True),
                               only, atol=1e-14)
    s = np.random.default_rng(1).standard_normal(shape)
    want = only + (s if per_sample else s[None]) * (full - only)
    np.testing.assert_allclose(k.forward(x1, x2, _scaled(w, s), 2, scaled=True), want,
                               atol=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_backward_adjoint(name, per_sample, threads):
    d = CASES[name]
    k = ChannelwiseKernels(d, SMALL)
    x1, x2, w = _inputs(d, np.float64, per_sample)
    rng = np.random.default_rng(2)
    g = rng.standard_normal((B, d.irreps_out.dim))
    ws = _scaled(w, rng.standard_normal((B, 1) if per_sample else (1,)))
    total = np.vdot(g, k.forward(x1, x2, ws, threads, scaled=True))
    g1, g2, gws = k.backward(x1, x2, ws, g, (True, True, True), threads, scaled=True)
    assert gws.shape == ws.shape
    for grad, x in ((g1, x1), (g2, x2), (gws, ws)):
        np.testing.assert_allclose(np.vdot(grad, x), total, rtol=1e-12)
    # a subset, written into given arrays (whatever they held)
    out1 = np.full_like(x1, np.nan)
    g1_only, none2, nonew = k.backward(x1, x2, ws, g, (True, False, False), threads,
                                       out=(out1, None, None), scaled=True)
    assert g1_only is out1 and none2 is None and nonew is None
    np.testing.assert_allclose(g1_only, g1, atol=1e-12)
    # the plain weights: the gradient of the weighted paths
    gw = k.backward(x1, x2, w, g, (False, False, True), threads)[2]
    assert gw.shape == w.shape
    only = k.forward(x1, x2, w, threads, weighted_only=True)
    np.testing.assert_allclose(np.vdot(gw, w), np.vdot(g, only), rtol=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_backward_dual(name, per_sample, threads):
    """``backward_dual`` is the derivative of ``backward`` along ``v``: the gradients are
    bilinear in the inputs, so ``(backward(x + v) - backward(x - v)) / 2`` is exact, for the
    plain weights and for ``[w, s]``."""
    d = CASES[name]
    k = ChannelwiseKernels(d, SMALL)
    x1, x2, w = _inputs(d, np.float64, per_sample)
    v1, v2, vw = _inputs(d, np.float64, per_sample, seed=7)
    rng = np.random.default_rng(8)
    g = rng.standard_normal((B, d.irreps_out.dim))
    shape = (B, 1) if per_sample else (1,)
    for scaled in (False, True):
        if scaled:
            w, vw = _scaled(w, rng.standard_normal(shape)), _scaled(vw, rng.standard_normal(shape))
        plus = k.backward(x1 + v1, x2 + v2, w + vw, g, (True, True, True), threads,
                          scaled=scaled)
        minus = k.backward(x1 - v1, x2 - v2, w - vw, g, (True, True, True), threads,
                           scaled=scaled)
        got = k.backward_dual(x1, x2, w, g, (v1, v2, vw), (True, True, True), threads,
                              scaled=scaled)
        for a, p_, m in zip(got, plus, minus, strict=True):
            np.testing.assert_allclose(a, (p_ - m) / 2, atol=1e-11)
        one = k.backward_dual(x1, x2, w, g, (v1, v2, vw), (False, True, False), threads,
                              scaled=scaled)
        assert one[0] is None and one[2] is None
        np.testing.assert_allclose(one[1], got[1], atol=1e-12)


def test_needs_channelwise_paths():
    with pytest.raises(ValueError, match="channelwise"):
        ChannelwiseKernels(tp_spec.cgtp("2x0e", "2x0e", "2x0e", mode="uvw"))
