"""tp_jax.tensor_product_conv against tp_spec.reference.conv (the NumPy definition), finite
differences (first and second order) and its input checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tp_jax
import tp_spec as spec
from tp_spec import IndexRangeError, ShapeError, reference
from tp_spec.plan import Tuning

DESCRIPTORS = {
    "uvu": (lambda: spec.cgtp("3x0e + 2x1o + 2e", "0e + 1o + 2e", mode="uvu"), None),
    "uvw": (lambda: spec.cgtp("2x0e + 1o", "0e + 1o", "2x0e + 2x1o + 1e", mode="uvw"), None),
    "gtp_grid": (lambda: spec.gtp("2x0e + 2x1o", "0e + 1o + 2e"), "grid"),
    "mtp": (lambda: spec.mtp("2x0e + 2x1o", "0e + 1o"), None),
}

#: Forces the chunked path on small graphs: chunks of 5 edges (the last one padded).
CHUNKED = Tuning(conv_chunk_entries=1, conv_chunk_min_edges=5)


def graph(rng, n_nodes, n_edges, dtype=np.int64):
    """Random unsorted edges with self-loops, a duplicate edge and an isolated node
    (``n_nodes - 1``)."""
    s = rng.integers(0, n_nodes - 1, n_edges)
    r = rng.integers(0, n_nodes - 1, n_edges)
    if n_edges > 4:
        r[:3] = s[:3]
        s[3], r[3] = s[4], r[4]
    return s.astype(dtype), r.astype(dtype)


def inputs(d, rng, n_nodes=7, n_edges=23, per_edge=True, dtype=np.float64, index=np.int64):
    x = rng.standard_normal((n_nodes, d.irreps_in1.dim)).astype(dtype)
    y = rng.standard_normal((n_edges, d.irreps_in2.dim)).astype(dtype)
    w = None
    if d.weight_numel:
        w = rng.standard_normal((n_edges, d.weight_numel) if per_edge
                                else (d.weight_numel,)).astype(dtype)
    return x, y, w, *graph(rng, n_nodes, n_edges, index)


@pytest.mark.parametrize("tuning", [None, CHUNKED], ids=["one_chunk", "chunked"])
@pytest.mark.parametrize("per_edge", [True, False], ids=["per_edge", "shared"])
@pytest.mark.parametrize("name", list(DESCRIPTORS))
def test_equals_reference(name, per_edge, tuning):
    build, method = DESCRIPTORS[name]
    d = build()
    x, y, w, s, r = inputs(d, np.random.default_rng(0), per_edge=per_edge)
    out = tp_jax.tensor_product_conv(d, method, tuning=tuning)(x, y, w, s, r)
    expected = reference.conv(d, x, y, w, s, r)
    assert out.shape == expected.shape and out.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-11, atol=1e-11)
    assert np.all(np.asarray(out)[-1] == 0)  # the isolated node


@pytest.mark.parametrize("name", ["uvu", "gtp_grid", "mtp"])
def test_every_method(name):
    """Every method tp_jax runs (adapters such as ``cueq`` included) gives the reference."""
    d = DESCRIPTORS[name][0]()
    x, y, w, s, r = inputs(d, np.random.default_rng(9))
    expected = reference.conv(d, x, y, w, s, r)
    usable = [m for m, reason in tp_jax.methods(d).items() if reason is None and m != "s2fft"]
    assert len(usable) >= 2
    for method in usable:
        out = tp_jax.tensor_product_conv(d, method)(x, y, w, s, r)
        np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-10, atol=1e-10,
                                   err_msg=method)


@pytest.mark.parametrize("index", [np.int32, np.int64])
def test_index_dtypes_and_float32(index):
    d = DESCRIPTORS["uvu"][0]()
    x, y, w, s, r = inputs(d, np.random.default_rng(1), dtype=np.float32, index=index)
    f = tp_jax.tensor_product_conv(d)
    for tuning in (None, CHUNKED):
        out = tp_jax.tensor_product_conv(d, tuning=tuning)(x, y, w, s, r)
        assert out.dtype == jnp.float32
        expected = reference.conv(d, x.astype(np.float64), y.astype(np.float64),
                                  w.astype(np.float64), s, r)
        err = np.abs(np.asarray(out, np.float64) - expected).max()
        assert err <= 2e-5 * np.abs(expected).max()
    # jnp index arrays work the same as NumPy ones
    np.testing.assert_array_equal(np.asarray(f(x, y, w, jnp.asarray(s), jnp.asarray(r))),
                                  np.asarray(f(x, y, w, s, r)))


def test_empty_edge_list_and_no_incoming_edges():
    d = DESCRIPTORS["uvu"][0]()
    x, y, w, s, r = inputs(d, np.random.default_rng(2), n_edges=0)
    f = tp_jax.tensor_product_conv(d)
    out = f(x, y, w, s, r)
    assert out.shape == (7, d.irreps_out.dim) and np.all(np.asarray(out) == 0)
    gx = jax.grad(lambda a: jnp.sum(f(a, y, w, s, r) ** 2))(jnp.asarray(x))
    assert gx.shape == x.shape and np.all(np.asarray(gx) == 0)


def test_deterministic():
    d = DESCRIPTORS["uvu"][0]()
    x, y, w, s, r = inputs(d, np.random.default_rng(3), n_edges=40)
    for tuning in (None, CHUNKED):
        f = tp_jax.tensor_product_conv(d, tuning=tuning)
        np.testing.assert_array_equal(np.asarray(f(x, y, w, s, r)), np.asarray(f(x, y, w, s, r)))


def test_jit_and_vmap():
    d = DESCRIPTORS["uvw"][0]()
    rng = np.random.default_rng(4)
    graphs = [inputs(d, rng) for _ in range(3)]
    stacked = [np.stack(a) for a in zip(*graphs, strict=True)]
    f = tp_jax.tensor_product_conv(d, tuning=CHUNKED)
    out = jax.jit(jax.vmap(f))(*stacked)
    for k, g in enumerate(graphs):
        np.testing.assert_allclose(np.asarray(out[k]), reference.conv(d, *g), rtol=1e-11,
                                   atol=1e-11)


def _fd_check(fun, args, rng, h=1e-5, rtol=1e-6):
    """``grad(fun)`` along each array argument in a random direction against central
    differences (``None`` arguments skipped)."""
    ks = tuple(k for k, a in enumerate(args) if a is not None)
    args = [None if a is None else jnp.asarray(a) for a in args]
    grads = jax.jit(jax.grad(fun, argnums=ks))(*args)
    fun = jax.jit(fun)
    for k, g in zip(ks, grads, strict=True):
        v = rng.standard_normal(args[k].shape)
        plus, minus = list(args), list(args)
        plus[k], minus[k] = args[k] + h * v, args[k] - h * v
        fd = (fun(*plus) - fun(*minus)) / (2 * h)
        np.testing.assert_allclose(float(jnp.sum(g * v)), float(fd), rtol=rtol, atol=1e-8)


@pytest.mark.parametrize("tuning", [None, CHUNKED], ids=["one_chunk", "chunked"])
@pytest.mark.parametrize("name", ["uvu", "gtp_grid"])
def test_gradients_first_and_second_order(name, tuning):
    build, method = DESCRIPTORS[name]
    # fewer paths than DESCRIPTORS["uvu"]: the second-order graph compiles in seconds
    d = spec.cgtp("2x0e + 1o", "0e + 1o", mode="uvu") if name == "uvu" else build()
    rng = np.random.default_rng(5)
    x, y, w, s, r = inputs(d, rng, n_edges=13)
    f = tp_jax.tensor_product_conv(d, method, tuning=tuning)

    def energy(x_, y_, w_):
        return jnp.sum(jnp.sin(f(x_, y_, w_, s, r)))

    def force_loss(x_, y_, w_):  # a training loss on "forces": grad of a function of grad
        return jnp.sum(jax.grad(energy)(x_, y_, w_) ** 2)

    for fun in (energy, force_loss):
        _fd_check(fun, (x, y, w), rng)


def test_out_of_range_indices_raise_eagerly():
    d = DESCRIPTORS["uvu"][0]()
    x, y, w, s, r = inputs(d, np.random.default_rng(6))
    f = tp_jax.tensor_product_conv(d)
    bad_r, bad_s = r.copy(), s.copy()
    bad_r[5], bad_s[2] = 7, -1
    with pytest.raises(IndexRangeError, match="receivers holds the index 7"):
        f(x, y, w, s, bad_r)
    with pytest.raises(IndexRangeError, match="senders holds the index -1"):
        f(x, y, w, jnp.asarray(bad_s), r)
    with pytest.raises(IndexRangeError, match="int32 or int64"):
        f(x, y, w, s.astype(np.float64), r)
    with pytest.raises(ShapeError):
        f(x, y, w, s[:-1], r[:-1])


@pytest.mark.parametrize("tuning", [None, CHUNKED], ids=["one_chunk", "chunked"])
def test_out_of_range_indices_under_jit_give_nan(tuning):
    d = DESCRIPTORS["uvu"][0]()
    x, y, w, s, r = inputs(d, np.random.default_rng(7))
    g = jax.jit(tp_jax.tensor_product_conv(d, tuning=tuning))
    assert np.all(np.isfinite(np.asarray(g(x, y, w, s, r))))
    for bad_s, bad_r in ((-1, None), (7, None), (None, 7), (None, -3)):
        s2, r2 = s.copy(), r.copy()
        if bad_s is not None:
            s2[4] = bad_s
        if bad_r is not None:
            r2[4] = bad_r
        assert np.all(np.isnan(np.asarray(g(x, y, w, s2, r2))))


def test_flax_module_shared_and_per_edge_weights():
    flax_mod = pytest.importorskip("tp_jax.flax")
    d = DESCRIPTORS["uvw"][0]()
    x, y, w, s, r = inputs(d, np.random.default_rng(8))
    m = flax_mod.TensorProductConv(d, param_dtype=jnp.float64)
    params = m.init(jax.random.PRNGKey(0), x, y, s, r)
    shared = np.asarray(params["params"]["weights"])
    assert shared.shape == (d.weight_numel,)
    np.testing.assert_allclose(np.asarray(m.apply(params, x, y, s, r)),
                               reference.conv(d, x, y, shared, s, r), rtol=1e-11, atol=1e-11)
    # per-edge weights at call replace the parameter (none is made)
    assert m.init(jax.random.PRNGKey(0), x, y, s, r, w) == {}
    np.testing.assert_allclose(np.asarray(m.apply({}, x, y, s, r, w)),
                               reference.conv(d, x, y, w, s, r), rtol=1e-11, atol=1e-11)
