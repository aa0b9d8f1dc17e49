"""The convolution: the reference (``tp_spec.reference.conv``) against a per-edge loop, its
equivariance and input checks; the convolution plan run in NumPy against the reference."""

from __future__ import annotations

import numpy as np
import pytest
import tp_spec as spec
from tp_spec import DTypeError, IndexRangeError, ShapeError, cost, reference
from tp_spec.plan import Tuning, conv

DESCRIPTORS = {
    "uvu": lambda: spec.cgtp("3x0e + 2x1o + 2e", "0e + 1o + 2e", mode="uvu"),
    "uvw": lambda: spec.cgtp("2x0e + 1o", "0e + 1o", "2x0e + 2x1o + 1e", mode="uvw"),
    "gtp": lambda: spec.gtp("2x0e + 2x1o", "0e + 1o + 2e"),
    "mtp": lambda: spec.mtp("2x0e + 2x1o", "0e + 1o"),
}


def graph(rng, n_nodes, n_edges):
    """Random edges, unsorted, with repeats and self-loops, and an isolated node."""
    s = rng.integers(0, n_nodes - 1, n_edges)
    r = rng.integers(0, n_nodes - 1, n_edges)
    r[:3] = s[:3]  # self-loops
    s[3], r[3] = s[4], r[4]  # a duplicate edge
    return s, r


def inputs(d, rng, n_nodes=7, n_edges=23, per_edge=True):
    x = rng.standard_normal((n_nodes, d.irreps_in1.dim))
    y = rng.standard_normal((n_edges, d.irreps_in2.dim))
    w = (rng.standard_normal((n_edges, d.weight_numel) if per_edge else d.weight_numel)
         if d.weight_numel else None)
    return x, y, w, *graph(rng, n_nodes, n_edges)


@pytest.mark.parametrize("per_edge", [True, False])
@pytest.mark.parametrize("name", list(DESCRIPTORS))
def test_reference_is_the_sum_of_messages(name, per_edge):
    d = DESCRIPTORS[name]()
    rng = np.random.default_rng(0)
    x, y, w, s, r = inputs(d, rng, per_edge=per_edge)
    expected = np.zeros((x.shape[0], d.irreps_out.dim))
    for e in range(len(s)):  # one product per edge, added into its receiver
        we = None if w is None else (w[e] if per_edge else w)
        expected[r[e]] += reference.apply(d, x[s[e]], y[e], we)
    out = reference.conv(d, x, y, w, s, r)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert np.all(out[x.shape[0] - 1] == 0)  # node n-1 is in no edge


def test_reference_equivariance():
    d = DESCRIPTORS["uvu"]()
    rng = np.random.default_rng(1)
    x, y, w, s, r = inputs(d, rng)
    R = spec.random_rotation(rng) * -1.0  # with inversion
    D1, D2, Do = (spec.wigner_D(ir, R) for ir in (d.irreps_in1, d.irreps_in2, d.irreps_out))
    a = reference.conv(d, x @ D1.T, y @ D2.T, w, s, r)
    b = reference.conv(d, x, y, w, s, r) @ Do.T
    np.testing.assert_allclose(a, b, atol=1e-11)


def test_empty_edges_and_int32():
    d = DESCRIPTORS["uvu"]()
    x = np.ones((4, d.irreps_in1.dim))
    none = np.zeros(0, np.int32)
    out = reference.conv(d, x, np.zeros((0, d.irreps_in2.dim)),
                         np.zeros((0, d.weight_numel)), none, none)
    assert out.shape == (4, d.irreps_out.dim) and not out.any()


def test_bad_inputs():
    d = DESCRIPTORS["uvu"]()
    rng = np.random.default_rng(2)
    x, y, w, s, r = inputs(d, rng)
    bad_hi = r.copy()
    bad_hi[5] = x.shape[0]
    with pytest.raises(IndexRangeError, match="receivers holds the index 7"):
        reference.conv(d, x, y, w, s, bad_hi)
    bad_lo = s.copy()
    bad_lo[0] = -1
    with pytest.raises(IndexRangeError, match="senders holds the index -1"):
        reference.conv(d, x, y, w, bad_lo, r)
    with pytest.raises(IndexRangeError, match="int32 or int64"):
        reference.conv(d, x, y, w, s.astype(np.float64), r)
    with pytest.raises(ShapeError, match="senders must have shape"):
        reference.conv(d, x, y, w, s[:-1], r)
    with pytest.raises(ShapeError, match="x_edges"):
        reference.conv(d, x, y[:, :-1], w, s, r)
    with pytest.raises(ShapeError, match="weights"):
        reference.conv(d, x, y, w[:-1], s, r)
    with pytest.raises(ShapeError, match="x_nodes"):
        reference.conv(d, x[None], y, w, s, r)
    with pytest.raises(DTypeError, match="share one dtype"):
        reference.conv(d, x.astype(np.float32), y, w, s, r)
    with pytest.raises(ShapeError, match="pass weights"):
        reference.conv(d, x, y, None, s, r)


SMALL = Tuning(conv_chunk_entries=1, conv_chunk_min_edges=5)


@pytest.mark.parametrize("tuning", [None, SMALL], ids=["default", "small-chunks"])
@pytest.mark.parametrize("name", list(DESCRIPTORS))
def test_plan_numpy_executor(name, tuning):
    d = DESCRIPTORS[name]()
    p = conv.conv_plan(d, tuning=tuning)
    assert p.message is spec.plan.plan(d, None, tuning)
    rng = np.random.default_rng(3)
    x, y, w, s, r = inputs(d, rng)
    out = conv.run_conv_numpy(p, x, y, w, s, r)
    np.testing.assert_allclose(out, reference.conv(d, x, y, w, s, r), rtol=1e-11, atol=1e-12)


def test_receiver_order_is_stable_csr():
    r = np.array([3, 1, 3, 0, 1, 3])
    order, offsets = conv.receiver_order(r, 5)
    assert order.tolist() == [3, 1, 4, 0, 2, 5]  # ties keep edge order
    assert offsets.tolist() == [0, 1, 3, 3, 6, 6]


def test_cost_model():
    d = DESCRIPTORS["uvu"]()
    n, e = 10, 100
    assert cost.conv_flops(d, n, e) == cost.flops(d, e) + e * d.irreps_out.dim
    fused = cost.conv_bytes_moved(d, n, e, materialized=False)
    mat = cost.conv_bytes_moved(d, n, e, materialized=True)
    assert mat - fused == 4 * e * 2 * (d.irreps_in1.dim + d.irreps_out.dim)
    assert cost.conv_intermediate_bytes(d, e, 8, materialized=False) == 0
    assert cost.conv_intermediate_bytes(d, e, 8, materialized=True) == \
        8 * e * (d.irreps_in1.dim + d.irreps_out.dim)
