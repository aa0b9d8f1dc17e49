"""``row_take``: values, transposes of every order, vmap, and no scatter in reverse mode."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from tp_jax._rows import row_take

jax.config.update("jax_enable_x64", True)

IDX = np.array([2, 0, 2, 4, 1, 2])  # repeats, a zero row (4 == d), row 3 never taken
D = 4


def _x(seed=0, shape=(D, 3)):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def test_values_and_zero_row():
    x = _x()
    want = np.concatenate([np.asarray(x), np.zeros((1, 3))])[IDX]
    np.testing.assert_array_equal(row_take(IDX, D)(x), want)


def test_transpose_sums_repeated_rows():
    f = row_take(IDX, D)
    c = _x(1, (IDX.size, 3))
    (g,) = jax.linear_transpose(f, _x())(c)
    want = np.zeros((D, 3))
    for r, i in enumerate(IDX):
        if i < D:
            want[i] += np.asarray(c)[r]
    np.testing.assert_allclose(g, want, rtol=1e-14)


def test_derivatives_to_third_order():
    f = row_take(IDX, D)
    check_grads(lambda x: jnp.sin(f(x)), (_x(),), order=3, modes=["fwd", "rev"])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_vmap_any_axis_and_its_gradient(axis):
    f = row_take(IDX, D)
    xs = jnp.moveaxis(_x(2, (5, D, 3)), 0, axis)
    out = jax.vmap(f, in_axes=axis)(xs)
    want = jnp.stack([f(x) for x in jnp.moveaxis(xs, axis, 0)])
    np.testing.assert_array_equal(out, want)
    g = jax.grad(lambda a: jnp.sum(jax.vmap(f, in_axes=axis)(a) ** 2))(xs)
    gw = jnp.moveaxis(jnp.stack([jax.grad(lambda x: jnp.sum(f(x) ** 2))(x)
                                 for x in jnp.moveaxis(xs, axis, 0)]), 0, axis)
    np.testing.assert_allclose(g, gw, rtol=1e-14)


def test_reverse_mode_has_no_scatter():
    f = row_take(IDX, D)
    hlo = jax.jit(jax.grad(lambda x: jnp.sum(f(x) ** 2))).lower(_x()).as_text()
    assert "scatter" not in hlo and "gather" in hlo


def test_wrong_row_count_is_refused():
    with pytest.raises(ValueError, match="expected 4 rows"):
        row_take(IDX, D)(_x(0, (3, 3)))
