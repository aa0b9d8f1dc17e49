"""The conformance Backend object and the Flax module."""

from __future__ import annotations

import numpy as np
import pytest
import tp_spec as spec
from conftest import random_inputs
from tp_jax._backend import backend
from tp_spec.backend import Backend, load_backends
from tp_spec.errors import DeviceError, DTypeError, InstructionError

D = spec.cgtp("2x0e+1x1o", "0e+1o", "2x0e+1x1o+1x1e", mode="uvw")


def _unit_grad(fun, x):
    """Exact gradient of a function affine in each coordinate (unit central differences)."""
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = 1.0
        g.reshape(-1)[i] = 0.5 * (fun(x + e.reshape(x.shape)) - fun(x - e.reshape(x.shape)))
    return g


def test_protocol_and_entry_point():
    assert isinstance(backend, Backend)
    assert load_backends()["tp_jax"] is not None
    assert backend.devices()[0] == "cpu"
    assert backend.methods(D)["fused"] is None
    assert all(v is not None for v in backend.methods(D, "tpu").values())


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-11), ("float32", 2e-5)])
def test_apply_vjp_force(dtype, tol):
    x1, x2, w = (a.astype(dtype) for a in random_inputs(D, (2,)))
    c = np.random.default_rng(9).normal(size=(2, D.irreps_out.dim))
    out = backend.apply(D, "fused", x1, x2, w, dtype=dtype)
    assert out.dtype == np.dtype(dtype)
    ref = spec.reference.apply(D, x1, x2, w)
    assert np.max(np.abs(out - ref)) < tol * np.max(np.abs(ref))
    g1, g2, gw = backend.vjp(D, "dense", x1, x2, w, c, dtype=dtype)

    def e(a, b, ww):
        return float(np.sum(c * spec.reference.apply(D, a, b, ww)))

    for got, want in ((g1, _unit_grad(lambda a: e(a, x2, w), x1)),
                      (g2, _unit_grad(lambda b: e(x1, b, w), x2)),
                      (gw, _unit_grad(lambda ww: e(x1, x2, ww), w))):
        np.testing.assert_allclose(got, want, atol=tol * 10 * np.max(np.abs(want)))
    f1, f2, fw = backend.force_loss_grad(D, "sparse", x1, x2, w, c, dtype=dtype)
    assert np.all(f1 == 0)  # the force does not depend on x1 (bilinear)

    def loss(b, ww):
        return float(np.sum(_unit_grad(lambda a: e(a, b, ww), x1) ** 2))

    # L is quadratic in each coordinate of x2 and w: unit central differences are exact
    np.testing.assert_allclose(f2, _unit_grad(lambda b: loss(b, w), x2),
                               atol=tol * 100 * np.max(np.abs(f2)))
    np.testing.assert_allclose(fw, _unit_grad(lambda ww: loss(x2, ww), w),
                               atol=tol * 100 * np.max(np.abs(fw)))
    h = backend.hvp(D, "fused", x1, x2, w, c, (x1 * 0, x2, w * 0), dtype=dtype)
    assert h[0].shape == x1.shape and h[2].shape == w.shape


def test_unweighted_and_errors():
    d = spec.mtp("0e+1o", "0e+1o")
    x1, x2, _ = random_inputs(d, (3,))
    c = np.ones((3, d.irreps_out.dim))
    g = backend.vjp(d, "sparse", x1, x2, None, c)
    assert g[2] is None
    assert backend.force_loss_grad(d, "dense", x1, x2, None, c)[2] is None
    with pytest.raises(InstructionError):
        backend.apply(d, "fused", x1, x2)
    with pytest.raises(DTypeError):
        backend.apply(d, "dense", x1.astype(np.float32), x2)
    with pytest.raises(DTypeError, match="no silent casts"):
        backend.apply(d, "dense", x1, x2, dtype="float32")
    with pytest.raises(DTypeError):
        backend.apply(d, "dense", x1, x2, dtype="float16")
    with pytest.raises(DeviceError):
        backend.apply(d, "dense", x1, x2, device="tpu")


def test_flax_module():
    pytest.importorskip("flax")
    import jax
    import jax.numpy as jnp
    from tp_jax.flax import TensorProduct

    d = spec.cgtp("8x0e+8x1o", "0e+1o", "8x0e+8x1o", mode="uvw")
    m = TensorProduct(d)
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    x1 = jax.random.normal(k1, (3000, d.irreps_in1.dim), jnp.float32)
    x2 = jax.random.normal(k2, (3000, d.irreps_in2.dim), jnp.float32)
    params = m.init(jax.random.PRNGKey(1), x1, x2)
    assert params["params"]["weights"].shape == (d.weight_numel,)
    y = m.apply(params, x1, x2)
    assert 0.7 < float(jnp.var(y)) < 1.3  # normal init + e3nn normalization: variance ~1
    ref = spec.reference.apply(d, np.asarray(x1[:3]), np.asarray(x2[:3]),
                               np.asarray(params["params"]["weights"]))
    np.testing.assert_allclose(y[:3], ref, rtol=1e-4, atol=1e-5)
    grads = jax.grad(lambda p: jnp.sum(m.apply(p, x1[:8], x2[:8]) ** 2))(params)
    assert grads["params"]["weights"].shape == (d.weight_numel,)
    # a GTP without weights has no parameters
    g = TensorProduct(spec.gtp("0e+1o", "0e+1o"))
    assert not g.init(jax.random.PRNGKey(0), jnp.ones((2, 4)), jnp.ones((2, 4)))


def test_batch_shapes_share_one_executable():
    """Leading batch dims are flattened and padded to a power of two (>= 8): batch shapes
    (), (5,) and (2, 3) reuse one compiled forward; (9,) needs the next bucket."""
    from tp_jax._backend import _compiled, bucket

    assert [bucket(n) for n in (0, 1, 8, 9, 16, 17)] == [8, 8, 8, 16, 16, 32]
    d = spec.cgtp("2x0e+1o", "0e+1o", "0e+1o+1e", mode="uvu")
    fn = _compiled(d, "dense", "apply", "batched")
    for batch in ((), (5,), (2, 3), (0,), (9,)):
        x1, x2, w = random_inputs(d, batch)
        out = backend.apply(d, "dense", x1, x2, w)
        assert out.shape == batch + (d.irreps_out.dim,)
        np.testing.assert_allclose(out, spec.reference.apply(d, x1, x2, w), atol=1e-12)
    assert fn._cache_size() == 2


def test_live_executables_are_bounded():
    """Beyond MAX_LIVE_PAIRS (descriptor, method) pairs every cache is dropped, so a long run
    (the conformance suite) does not accumulate executables (each holds memory mappings)."""
    from tp_jax import _backend as b

    d0 = spec.cgtp("0e+1o", "0e+1o", "0e+1o", mode="uvw")
    x1, x2, w = random_inputs(d0, (2,))
    b.backend.apply(d0, "dense", x1, x2, w)
    assert (d0, "dense") in b._LIVE_PAIRS
    for k in range(b.MAX_LIVE_PAIRS):
        d = spec.cgtp(f"{k + 2}x0e", "0e", "0e", mode="uvw")
        x1, x2, w = random_inputs(d, (2,))
        out = b.backend.apply(d, "dense", x1, x2, w)
        np.testing.assert_allclose(out, spec.reference.apply(d, x1, x2, w), atol=1e-12)
    assert len(b._LIVE_PAIRS) <= b.MAX_LIVE_PAIRS
    assert (d0, "dense") not in b._LIVE_PAIRS
    assert b._compiled.cache_info().currsize <= b.MAX_LIVE_PAIRS * 4 * 3
