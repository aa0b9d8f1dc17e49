"""Batch shapes, jit without retracing, vmap, grad and second derivatives (finite differences)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tp_jax
import tp_spec as spec
from conftest import random_inputs
from tp_jax._api import TRACE_COUNT

SMALL = {
    "cgtp-fused": (spec.cgtp("2x0e+1x1o", "0e+1o", "2x0e+1x1o+1x1e", mode="uvw"), "fused"),
    "cgtp-mimo-fused": (spec.cgtp("0e+1o", "0e+1o", "0e+1o+1e+2e"), "fused"),
    "cgtp-sparse": (spec.cgtp("2x0e+1x1o", "0e+1o", "2x0e+1x1o+1x1e", mode="uvw"), "sparse"),
    "cgtp-channelwise-fused": (spec.cgtp("2x0e+2x1o", "0e+1o", mode="uvu"), "fused"),
    "gtp-grid": (spec.gtp("2x0e+2x1o+2x1e", "0e+1o", per_degree_weights=True), "grid"),
    "gtp-fourier": (spec.gtp("0e+1o", "0e+1o"), "fourier"),
    "mtp-sparse": (spec.mtp("2x0e+2x1o", "2x0e+2x1o", per_degree_weights=True), "sparse"),
    "mtp-dense": (spec.mtp("0e+1o", "0e+1o"), "dense"),
}


@pytest.mark.parametrize("key", ["cgtp-fused", "cgtp-mimo-fused", "gtp-grid", "mtp-sparse"])
@pytest.mark.parametrize("batch", [(), (0,), (1,), (3, 4)], ids=str)
def test_batch_shapes(key, batch):
    d, method = SMALL[key]
    x1, x2, w = random_inputs(d, batch)
    out = tp_jax.tensor_product(d, method)(x1, x2, w)
    assert out.shape == batch + (d.irreps_out.dim,)
    np.testing.assert_allclose(out, spec.reference.apply(d, x1, x2, w), atol=1e-12)


def test_no_retrace_and_cached_function():
    d = spec.cgtp("3x0e+1x1o", "0e+1o", "2x0e+1x1o", mode="uvw")
    f = tp_jax.tensor_product(d, "fused")
    assert tp_jax.tensor_product(d, "fused") is f
    x1, x2, w = random_inputs(d, (5,))
    key = (d, "fused")
    before = TRACE_COUNT.get(key, 0)
    f(x1, x2, w)
    f(x1 + 1, x2, w)
    tp_jax.tensor_product(d, "fused")(x1, x2 * 2, w)
    assert TRACE_COUNT[key] == before + 1
    g = jax.jit(lambda a, b, c: f(a, b, c) * 2)
    g(x1, x2, w)
    g(x1, x2, w)
    # inside an outer jit the kernel is inlined at most once more (JAX may reuse the trace)
    assert TRACE_COUNT[key] <= before + 2


def test_vmap_matches_batched():
    d, method = SMALL["cgtp-fused"]
    x1, x2, w = random_inputs(d, (6,))
    f = tp_jax.tensor_product(d, method)
    np.testing.assert_allclose(jax.vmap(f)(x1, x2, w), f(x1, x2, w), atol=1e-13)
    # shared weights under vmap over the inputs only
    ws = w[0]
    np.testing.assert_allclose(jax.vmap(f, in_axes=(0, 0, None))(x1, x2, ws), f(x1, x2, ws),
                               atol=1e-13)


def _fd_grad(fun, x, eps=1e-5):
    g = np.zeros_like(x)
    flat = x.reshape(-1)
    for i in range(flat.size):
        e = np.zeros_like(flat)
        e[i] = eps
        g.reshape(-1)[i] = (fun((flat + e).reshape(x.shape)) - fun((flat - e).reshape(x.shape))) \
            / (2 * eps)
    return g


@pytest.mark.parametrize("key", list(SMALL))
def test_second_derivatives_vs_finite_differences(key):
    """grad of the force loss L = |dE/dx1|^2 (double backward) vs central differences of the
    first-order gradient (itself checked against finite differences of E)."""
    d, method = SMALL[key]
    x1, x2, w = random_inputs(d, (2,), seed=5)
    c = np.random.default_rng(6).normal(size=(2, d.irreps_out.dim))
    f = tp_jax.tensor_product(d, method)

    def energy(a, b, ww):
        return jnp.sum(c * f(a, b, ww))

    @jax.jit
    def loss(a, b, ww):
        return jnp.sum(jax.grad(energy)(a, b, ww) ** 2)

    ref_e = lambda a: float(np.sum(c * spec.reference.apply(d, a, x2, w)))  # noqa: E731
    np.testing.assert_allclose(jax.grad(energy)(x1, x2, w), _fd_grad(ref_e, x1), atol=1e-6)
    if w is None:
        g2 = jax.grad(loss, argnums=1)(x1, x2, w)
    else:
        g2, gw = jax.grad(loss, argnums=(1, 2))(x1, x2, w)
        np.testing.assert_allclose(gw, _fd_grad(lambda ww: float(loss(x1, x2, ww)), w),
                                   atol=1e-5)
    np.testing.assert_allclose(g2, _fd_grad(lambda b: float(loss(x1, b, w)), x2), atol=1e-5)
    if key == "cgtp-fused":
        # forward-over-reverse agrees with reverse-over-reverse (hvp)
        v = np.random.default_rng(7).normal(size=x2.shape)
        _, jv = jax.jvp(lambda b: jax.grad(loss, argnums=1)(x1, b, w), (x2,), (v,))
        hv = jax.grad(lambda b: jnp.vdot(jax.grad(loss, argnums=1)(x1, b, w), v))(x2)
        np.testing.assert_allclose(jv, hv, atol=1e-9)


def test_jvp_linear_in_each_input():
    d, method = SMALL["gtp-grid"]
    x1, x2, w = random_inputs(d, (3,))
    f = tp_jax.tensor_product(d, method)
    t = np.random.default_rng(2).normal(size=x1.shape)
    _, jv = jax.jvp(lambda a: f(a, x2, w), (x1,), (t,))
    np.testing.assert_allclose(jv, f(t, x2, w), atol=1e-12)  # bilinear: J_x1 t = f(t, x2)


@pytest.mark.parametrize("n", [5, 300], ids=["one-chunk", "chunked"])
def test_fused_scalar_regime_transforms_match_dense(n):
    """The single-channel ``fused`` kernel with shared weights (custom-transposed row gathers,
    chunked ``lax.map``): gradients, force-loss double backward, jvp-of-grad, vmap of grad and
    grad of vmap agree with the independent ``dense`` method, and reverse mode has no scatter."""
    d = spec.cgtp("0e+1o+2e", "0e+1o+2e", "0e+1o+1e+2e+2o+3o")
    x1, x2, w = random_inputs(d, (n,), shared=True, seed=11)
    assert w is not None and w.ndim == 1
    c = np.random.default_rng(12).normal(size=(n, d.irreps_out.dim))
    v = np.random.default_rng(13).normal(size=x1.shape)

    def losses(method):
        f = tp_jax.tensor_product(d, method)

        def energy(a, b, ww):
            return jnp.sum(c * f(a, b, ww))

        def force_loss(a, b, ww):
            return jnp.sum(jax.grad(energy)(a, b, ww) ** 2)

        return f, energy, force_loss

    (f_fu, e_fu, l_fu), (f_de, e_de, l_de) = losses("fused"), losses("dense")
    args = (x1, x2, w)
    close = dict(atol=1e-9, rtol=1e-9)
    np.testing.assert_allclose(f_fu(*args), f_de(*args), **close)
    for a, b in zip(jax.grad(e_fu, (0, 1, 2))(*args), jax.grad(e_de, (0, 1, 2))(*args),
                    strict=True):
        np.testing.assert_allclose(a, b, **close)
    for a, b in zip(jax.jit(jax.grad(l_fu, (0, 1, 2)))(*args), jax.grad(l_de, (0, 1, 2))(*args),
                    strict=True):
        np.testing.assert_allclose(a, b, **close)
    # forward-over-reverse (hvp) and a plain jvp
    _, hv = jax.jvp(lambda a: jax.grad(e_fu, 1)(a, x2, w), (x1,), (v,))
    _, hv_ref = jax.jvp(lambda a: jax.grad(e_de, 1)(a, x2, w), (x1,), (v,))
    np.testing.assert_allclose(hv, hv_ref, **close)
    _, jv = jax.jvp(lambda a: f_fu(a, x2, w), (x1,), (v,))
    np.testing.assert_allclose(jv, f_de(v, x2, w), **close)
    # vmap over a leading axis, both orders with grad
    xs1, xs2 = x1.reshape(1, n, -1), x2.reshape(1, n, -1)
    gv = jax.vmap(jax.grad(e_fu, 0), in_axes=(0, 0, None))(xs1, xs2, w)
    np.testing.assert_allclose(gv[0], jax.grad(e_de, 0)(*args), **close)
    vg = jax.grad(lambda a: jnp.sum(jax.vmap(e_fu, in_axes=(0, 0, None))(a, xs2, w)))(xs1)
    np.testing.assert_allclose(vg[0], jax.grad(e_de, 0)(*args), **close)
    # reverse mode (first and second order) is built from gathers, not scatter-adds
    for fn in (jax.grad(e_fu, (0, 1, 2)), jax.grad(l_fu, (0, 1, 2))):
        assert "scatter" not in str(jax.make_jaxpr(fn)(*args))


def test_tuning_reaches_the_plan():
    from tp_spec import plan
    from tp_spec.plan import Tuning

    d = spec.mtp("0e+1o+2e+3o", "0e+1o+2e+3o")  # n = 5: below the default transpose regime
    small = Tuning(mtp_transpose_min_n=5)
    assert plan.plan(d, "sparse", small).transpose and not plan.plan(d, "sparse").transpose
    f = tp_jax.tensor_product(d, "sparse", tuning=small)
    assert f is not tp_jax.tensor_product(d, "sparse")
    x1, x2, w = random_inputs(d, (5,))
    np.testing.assert_allclose(f(x1, x2, w), spec.reference.apply(d, x1, x2, w), atol=1e-12)
