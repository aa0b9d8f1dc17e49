"""``TensorProductConv`` (:mod:`tp_torch._conv`, :mod:`tp_torch._conv_kernels`): the
convolution against ``tp_spec.reference.conv`` through both executors (compiled indexed
kernels, chunked torch ops), every weight layout and graph edge case, determinism across
thread counts, first and second derivatives against finite differences, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tp_spec as spec
from tp_spec import DTypeError, IndexRangeError, ShapeError, reference
from tp_spec.plan import Tuning
from tp_torch import TensorProductConv, _cpu_kernels

DESCRIPTORS = {
    "uvu": lambda: spec.cgtp("3x0e + 3x1o + 2x2e", "0e + 1o + 2e + 3o", mode="uvu"),
    "uvu_shared_out": lambda: spec.cgtp(
        "4x0e + 4x1o", "0e + 1o", "4x0e + 4x1o + 4x2e",
        instructions=[(0, 0, 0, "uvu", True), (1, 1, 0, "uvu", False),
                      (0, 1, 1, "uvu", False), (1, 0, 1, "uvu", True)]),
    "uvw": lambda: spec.cgtp("2x0e + 1o", "0e + 1o", "2x0e + 2x1o + 1e", mode="uvw"),
    "gtp": lambda: spec.gtp("2x0e + 2x1o", "0e + 1o + 2e"),
    "mtp": lambda: spec.mtp("2x0e + 2x1o", "0e + 1o"),
}
#: Chunks of ~4 edges, two threads from 5 edges each: both reached on small graphs.
SMALL = Tuning(conv_kernel_chunk_edges=4, kernel_thread_min_rows=5, conv_chunk_entries=1,
               conv_chunk_min_edges=4)
kernels_on = pytest.mark.skipif(not _cpu_kernels.available(), reason="Numba missing")


def graph(rng, n_nodes=9, n_edges=41):
    """Unsorted edges with self-loops, a duplicate, a node with many edges and an isolated
    node (the last)."""
    s = rng.integers(0, n_nodes - 1, n_edges)
    r = rng.integers(0, n_nodes - 1, n_edges)
    r[:3] = s[:3]
    s[3], r[3] = s[4], r[4]
    r[5:15] = 2  # more incoming edges than a chunk
    return s, r


def arrays(d, rng, n_nodes=9, n_edges=41, weights="edge"):
    x = rng.standard_normal((n_nodes, d.irreps_in1.dim))
    y = rng.standard_normal((n_edges, d.irreps_in2.dim))
    w = None
    if d.weight_numel:
        w = rng.standard_normal((n_edges, d.weight_numel) if weights == "edge"
                                else d.weight_numel)
    return x, y, w, *graph(rng, n_nodes, n_edges)


def t(a, dtype=torch.float64):
    return None if a is None else torch.tensor(a, dtype=dtype)


@pytest.mark.parametrize("tuning", [None, SMALL], ids=["default", "small"])
@pytest.mark.parametrize("weights", ["edge", "shared"])
@pytest.mark.parametrize("name", list(DESCRIPTORS))
def test_forward_against_reference(name, weights, tuning):
    d = DESCRIPTORS[name]()
    rng = np.random.default_rng(0)
    x, y, w, s, r = arrays(d, rng, weights=weights)
    m = TensorProductConv(d, tuning=tuning)
    if name.startswith("uvu") and _cpu_kernels.available():
        assert m.conv_kernels is not None
    out = m(t(x), t(y), t(w), torch.tensor(s), torch.tensor(r, dtype=torch.int32))
    np.testing.assert_allclose(out.numpy(), reference.conv(d, x, y, w, s, r), rtol=1e-11,
                               atol=1e-12)
    assert not out[-1].any()  # the isolated node


@kernels_on
@pytest.mark.parametrize("name", ["uvu", "uvu_shared_out"])
def test_compiled_equals_chunked_float32(name):
    d = DESCRIPTORS[name]()
    rng = np.random.default_rng(1)
    x, y, w, s, r = arrays(d, rng)
    args = (t(x, torch.float32), t(y, torch.float32), t(w, torch.float32), torch.tensor(s),
            torch.tensor(r))
    compiled = TensorProductConv(d, tuning=SMALL)(*args)
    chunked = TensorProductConv(d, "dense")(*args)
    ref = reference.conv(d, x.astype(np.float32), y.astype(np.float32),
                         w.astype(np.float32), s, r)
    for out in (compiled, chunked):
        assert out.dtype == torch.float32
        np.testing.assert_allclose(out.numpy(), ref, rtol=2e-5, atol=2e-5 * np.abs(ref).max())


def test_empty_edge_list_and_gradients():
    d = DESCRIPTORS["uvu"]()
    for method in ("fused", "dense"):
        m = TensorProductConv(d, method)
        x = torch.randn(4, d.irreps_in1.dim, dtype=torch.float64, requires_grad=True)
        none = torch.zeros(0, dtype=torch.int64)
        out = m(x, torch.zeros(0, d.irreps_in2.dim, dtype=torch.float64),
                torch.zeros(0, d.weight_numel, dtype=torch.float64), none, none)
        assert out.shape == (4, d.irreps_out.dim) and not out.any()
        out.sum().backward()
        assert x.grad is not None and not x.grad.any()


@kernels_on
@pytest.mark.parametrize("weights", ["edge", "shared"])
def test_bit_identical_across_runs_and_threads(weights):
    d = DESCRIPTORS["uvu"]()
    rng = np.random.default_rng(2)
    x, y, w, s, r = arrays(d, rng, n_nodes=30, n_edges=400, weights=weights)
    m = TensorProductConv(d, tuning=SMALL)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 2, 1):
            torch.set_num_threads(n)
            xs = [t(a, torch.float32).requires_grad_() for a in (x, y, w)]
            out = m(*xs, torch.tensor(s), torch.tensor(r))
            grads = torch.autograd.grad((out * out).sum(), xs)
            results.append([out.detach().numpy()] + [g.numpy() for g in grads])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert np.array_equal(a, b)


SMALL_DESCRIPTORS = {
    "uvu": lambda: spec.cgtp("2x0e + 2x1o", "0e + 1o + 2e", mode="uvu"),
    "uvu_shared_out": DESCRIPTORS["uvu_shared_out"],
    "uvw": DESCRIPTORS["uvw"],
    "gtp": lambda: spec.gtp("2x0e + 2x1o", "0e + 1o"),
}


@pytest.mark.parametrize("tuning", [None, SMALL], ids=["default", "small"])
@pytest.mark.parametrize("weights", ["edge", "shared"])
@pytest.mark.parametrize("name", list(SMALL_DESCRIPTORS))
def test_first_and_second_order_against_finite_differences(name, weights, tuning):
    """gradcheck / gradgradcheck in fast mode: the derivative along random directions against
    central differences."""
    d = SMALL_DESCRIPTORS[name]()
    rng = np.random.default_rng(3)
    x, y, w, s, r = arrays(d, rng, n_nodes=5, n_edges=12, weights=weights)
    m = TensorProductConv(d, tuning=tuning)
    st, rt = torch.tensor(s), torch.tensor(r)
    ins = tuple(t(a).requires_grad_() for a in (x, y, w) if a is not None)

    def f(*a):
        return m(a[0], a[1], a[2] if len(a) > 2 else None, st, rt)

    assert torch.autograd.gradcheck(f, ins, fast_mode=True)
    assert torch.autograd.gradgradcheck(f, ins, fast_mode=True)


@kernels_on
def test_force_training_step_matches_chunked():
    """Forces (gradient of an energy w.r.t. the edge features, graph kept) and the gradient of
    a force loss, compiled kernels against the chunked torch ops."""
    d = DESCRIPTORS["uvu"]()
    rng = np.random.default_rng(4)
    x, y, w, s, r = arrays(d, rng)
    res = []
    for method in ("fused", "dense"):
        m = TensorProductConv(d, method, tuning=SMALL)
        xs = [t(a).requires_grad_() for a in (x, y, w)]
        energy = m(*xs, torch.tensor(s), torch.tensor(r)).sin().sum()
        (forces,) = torch.autograd.grad(energy, xs[1], create_graph=True)
        res.append(torch.autograd.grad(forces.square().sum(), [xs[0], xs[2]]))
    for a, b in zip(*res, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


@kernels_on
@pytest.mark.parametrize("weights", ["edge", "shared"])
@pytest.mark.parametrize("name", ["uvu", "uvu_shared_out"])
def test_double_backward_along_every_input_matches_chunked(name, weights):
    """A Hessian-vector product along the nodes, edges and weights at once (the one-pass
    ``bwd_dual_ix`` kernels, used from two directions on) against the chunked torch ops."""
    d = DESCRIPTORS[name]()
    rng = np.random.default_rng(5)
    x, y, w, s, r = arrays(d, rng, weights=weights)
    dirs = [rng.standard_normal(a.shape) for a in (x, y, w)]
    res = []
    for method in ("fused", "dense"):
        m = TensorProductConv(d, method, tuning=SMALL)
        xs = [t(a).requires_grad_() for a in (x, y, w)]
        grads = torch.autograd.grad(m(*xs, torch.tensor(s), torch.tensor(r)).sum(), xs,
                                    create_graph=True)
        hv = sum((g * t(v)).sum() for g, v in zip(grads, dirs, strict=True))
        res.append(torch.autograd.grad(hv, xs))
    for a, b in zip(*res, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


def test_half_precision_computed_in_float32():
    d = DESCRIPTORS["uvu"]()
    rng = np.random.default_rng(5)
    x, y, w, s, r = arrays(d, rng)
    m = TensorProductConv(d)
    out = m(t(x, torch.bfloat16), t(y, torch.bfloat16), t(w, torch.bfloat16),
            torch.tensor(s), torch.tensor(r))
    assert out.dtype == torch.bfloat16
    exact = m(t(x, torch.bfloat16).float(), t(y, torch.bfloat16).float(),
              t(w, torch.bfloat16).float(), torch.tensor(s), torch.tensor(r))
    assert torch.equal(out, exact.to(torch.bfloat16))


def test_bad_inputs_raise_before_compute():
    d = DESCRIPTORS["uvu"]()
    rng = np.random.default_rng(6)
    x, y, w, s, r = arrays(d, rng)
    m = TensorProductConv(d)
    X, Y, W, S, R = t(x), t(y), t(w), torch.tensor(s), torch.tensor(r)
    bad = R.clone()
    bad[7] = x.shape[0]
    with pytest.raises(IndexRangeError, match="receivers holds the index 9"):
        m(X, Y, W, S, bad)
    with pytest.raises(IndexRangeError, match="senders holds the index -2"):
        m(X, Y, W, S - 2 * (S == S.min()), R)
    with pytest.raises(IndexRangeError, match="int32 or int64"):
        m(X, Y, W, S.double(), R)
    with pytest.raises(ShapeError, match="receivers must have shape"):
        m(X, Y, W, S, R[:-1])
    with pytest.raises(ShapeError, match="weights"):
        m(X, Y, W[:-1], S, R)
    with pytest.raises(DTypeError, match="share one dtype"):
        m(X.float(), Y, W, S, R)
    with pytest.raises(DTypeError, match="torch.Tensor"):
        m(x, Y, W, S, R)


@pytest.mark.parametrize("weights", ["edge", "shared"])
def test_cueq_indexed_polynomial(weights):
    """``cueq``: cuEquivariance gathers the senders and scatters into the receivers itself."""
    pytest.importorskip("cuequivariance_torch")
    d = DESCRIPTORS["uvu"]()
    rng = np.random.default_rng(7)
    x, y, w, s, r = arrays(d, rng, weights=weights)
    m = TensorProductConv(d, "cueq")
    xs = [t(a).requires_grad_() for a in (x, y, w)]
    out = m(*xs, torch.tensor(s), torch.tensor(r))
    np.testing.assert_allclose(out.detach().numpy(), reference.conv(d, x, y, w, s, r),
                               rtol=1e-11, atol=1e-12)
    ref = TensorProductConv(d, "dense")(*xs, torch.tensor(s), torch.tensor(r))
    cot = torch.tensor(rng.standard_normal(out.shape))
    for a, b in zip(torch.autograd.grad(out, xs, cot), torch.autograd.grad(ref, xs, cot),
                    strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)
