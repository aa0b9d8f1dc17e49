"""tp_jax.linear / indexed_linear and the Flax Linear / IndexedLinear against the tp_spec
reference; jit, grad (against finite differences), bad inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tp_jax
import tp_spec as spec
from tp_spec.errors import DTypeError, IndexRangeError, ShapeError
from tp_spec.linear import apply

CASES = {
    "mul": spec.linear("4x0e + 3x1o + 2x2e", "5x0e + 2x1o + 3x2e"),
    "repeated": spec.linear("2x0e + 3x1o + 1x0e + 2x1o", "3x1o + 2x0e + 1x1o"),
    "missing_out_bias": spec.linear("3x0e + 2x1o", "2x0e + 2x1e + 3x1o + 1x0e", biases=True),
    "explicit_path": spec.linear("3x0e + 2x0e + 2x1o", "3x0e + 2x0e + 2x1o",
                                 instructions=[(0, 0), (1, 1), (0, 1), (2, 2)],
                                 path_normalization="path"),
    "empty": spec.linear("3x0e", "2x1o", instructions=[]),
}


def _inputs(d, batch, lead, rng):
    x = rng.normal(size=batch + (d.irreps_in.dim,))
    w = rng.normal(size=lead + (d.weight_numel,))
    b = rng.normal(size=lead + (d.bias_numel,)) if d.bias_numel else None
    return x, w, b


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_linear_matches_reference(name, per_sample, rng):
    d = CASES[name]
    x, w, b = _inputs(d, (2, 3), (2, 3) if per_sample else (), rng)
    out = tp_jax.linear(d)(x, w, b)
    np.testing.assert_allclose(np.asarray(out), apply(d, x, w, bias=b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_indexed_matches_reference(name, rng):
    d = CASES[name]
    x, w, b = _inputs(d, (7,), (4,), rng)
    idx = rng.integers(0, 4, size=7).astype(np.int32)
    out = tp_jax.indexed_linear(d)(x, w, idx, b)
    np.testing.assert_allclose(np.asarray(out), apply(d, x, w, idx, b), rtol=1e-12, atol=1e-12)


def test_float32(rng):
    d = CASES["mul"]
    x, w, _ = _inputs(d, (5,), (), rng)
    out = tp_jax.linear(d)(x.astype(np.float32), w.astype(np.float32))
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), apply(d, x, w), rtol=1e-5, atol=1e-5)


def test_jit_and_grad_match_finite_differences(rng):
    d = spec.linear("2x0e + 2x1o", "1x0e + 2x1o")
    x, w, _ = _inputs(d, (3,), (3,), rng)
    idx = np.array([2, 0, 2])

    def loss(x, w):
        return jnp.sum(jnp.sin(tp_jax.indexed_linear(d)(x, w, idx)))

    gx, gw = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)

    def ref(x, w):
        return np.sum(np.sin(apply(d, x, w, idx)))

    for arg, g in ((0, gx), (1, gw)):
        args = [x, w]
        fd = np.zeros_like(args[arg])
        for pos in np.ndindex(fd.shape):
            for sign in (1, -1):
                a = [v.copy() for v in args]
                a[arg][pos] += sign * 1e-6
                fd[pos] += sign * ref(*a) / 2e-6
        np.testing.assert_allclose(np.asarray(g), fd, rtol=1e-6, atol=1e-7)
    # shared weights under jit and grad too
    f = jax.jit(jax.grad(lambda x, w: jnp.sum(tp_jax.linear(d)(x, w) ** 2), argnums=1))
    gw = f(x, w[0])
    y = apply(d, x, w[0])
    # d/dw sum(y^2) = 2 sum(y * dy/dw); y is linear in w, so this equals 2 * <y, y(e_k)>
    basis = np.eye(d.weight_numel)
    expected = [2 * np.sum(y * apply(d, x, basis[k])) for k in range(d.weight_numel)]
    np.testing.assert_allclose(np.asarray(gw), expected, rtol=1e-12, atol=1e-12)


def test_traced_out_of_range_indices_give_nan(rng):
    d = spec.linear("2x0e", "2x0e")
    x, w, _ = _inputs(d, (3,), (2,), rng)
    out = jax.jit(tp_jax.indexed_linear(d))(x, w, jnp.array([0, 2, 1]))
    assert np.isnan(np.asarray(out[1])).all() and not np.isnan(np.asarray(out[::2])).any()


def test_flax_modules(rng):
    flax_mod = pytest.importorskip("tp_jax.flax")
    x = jnp.asarray(rng.normal(size=(6, 10)))
    m = flax_mod.Linear("4x0e + 2x1o", "3x0e + 2x1o", biases=True, param_dtype=jnp.float64)
    params = m.init(jax.random.PRNGKey(0), x)
    d = spec.linear("4x0e + 2x1o", "3x0e + 2x1o", biases=True)
    p = params["params"]
    assert p["weights"].shape == (d.weight_numel,) and p["bias"].shape == (3,)
    assert not np.asarray(p["bias"]).any()
    np.testing.assert_allclose(np.asarray(m.apply(params, x)),
                               apply(d, x, p["weights"], bias=p["bias"]), atol=1e-12)
    im = flax_mod.IndexedLinear("4x0e + 2x1o", "3x0e + 2x1o", num_indices=5,
                                param_dtype=jnp.float64)
    idx = jnp.array([0, 4, 1, 1, 3, 0])
    params = im.init(jax.random.PRNGKey(1), x, idx)
    w = params["params"]["weights"]
    assert w.shape == (5, d.weight_numel)
    np.testing.assert_allclose(np.asarray(im.apply(params, x, idx)),
                               apply(spec.linear("4x0e + 2x1o", "3x0e + 2x1o"), x, w, idx),
                               atol=1e-12)


def test_bad_inputs():
    d = spec.linear("2x0e + 1x1o", "1x0e + 1x1o")
    x, w = np.zeros((3, 5)), np.zeros(d.weight_numel)
    with pytest.raises(ShapeError, match="x must be"):
        tp_jax.linear(d)(np.zeros((3, 4)), w)
    with pytest.raises(DTypeError, match="share one dtype"):
        tp_jax.linear(d)(x.astype(np.float32), w)
    with pytest.raises(ShapeError, match="per sample"):
        tp_jax.linear(d)(x, np.zeros((2, d.weight_numel)))
    W = np.zeros((4, d.weight_numel))
    with pytest.raises(IndexRangeError, match=r"\[0, 4\)"):
        tp_jax.indexed_linear(d)(x, W, np.array([0, 4, 1]))
    with pytest.raises(IndexRangeError, match="integer dtype"):
        tp_jax.indexed_linear(d)(x, W, np.zeros(3))
    with pytest.raises(ShapeError, match="batch shape"):
        tp_jax.indexed_linear(d)(x, W, np.zeros(2, np.int32))
