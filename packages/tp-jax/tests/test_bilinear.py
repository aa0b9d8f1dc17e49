"""``tp_jax._bilinear``: the bilinear primitive's derivatives, through its three hand-written
functions, against JAX's own derivatives of the plain product, in every order users call
(grad, jvp, forward over reverse, reverse over reverse) and under vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tp_jax._bilinear import Bilinear, bilinear

# a row-wise bilinear product, y[n, k] = sum_ij C[i, j, k] a[n, i] b[n, j] (float64: conftest)
_RNG = np.random.default_rng(3)
C = jnp.asarray(_RNG.standard_normal((3, 4, 5)))


def plain(a, b):
    return jnp.einsum("ijk,ni,nj->nk", C, a, b)


# the transposes written by hand, as a caller of ``bilinear`` writes them
FNS = Bilinear(b=plain,
               t1=lambda b, y: jnp.einsum("ijk,nj,nk->ni", C, b, y),
               t2=lambda a, y: jnp.einsum("ijk,ni,nk->nj", C, a, y),
               dim1=3, dim2=4, dim_out=5)


def prim(a, b):
    return bilinear(FNS, a, b)


def _inputs(n=6, seed=0):
    r = np.random.default_rng(seed)
    return (jnp.asarray(r.standard_normal((n, 3))), jnp.asarray(r.standard_normal((n, 4))),
            jnp.asarray(r.standard_normal((n, 5))))


def test_value_and_first_derivatives():
    a, b, c = _inputs()
    np.testing.assert_allclose(prim(a, b), plain(a, b), rtol=1e-13)
    loss = {f: (lambda x, y, f=f: jnp.sum(c * f(x, y))) for f in (prim, plain)}
    for argnums in (0, 1, (0, 1)):
        got = jax.grad(loss[prim], argnums)(a, b)
        want = jax.grad(loss[plain], argnums)(a, b)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-12)
    da, db, _ = _inputs(seed=1)
    np.testing.assert_allclose(jax.jvp(prim, (a, b), (da, db))[1],
                               jax.jvp(plain, (a, b), (da, db))[1], rtol=1e-12)


@pytest.mark.parametrize("order", ["fwd_over_rev", "rev_over_rev"])
def test_second_derivatives(order):
    a, b, c = _inputs()
    v, u, _ = _inputs(seed=2)

    def grad_b(f, x):  # d/db <c, f(x, b)>, a function of x
        return jax.grad(lambda y: jnp.sum(c * f(x, y)))(b)

    for f in (prim, plain):
        if order == "fwd_over_rev":
            out = jax.jvp(lambda x, f=f: grad_b(f, x), (a,), (v,))[1]
        else:
            out = jax.grad(lambda x, f=f: jnp.sum(u * grad_b(f, x)))(a)
        if f is prim:
            got = out
    np.testing.assert_allclose(got, out, rtol=1e-12)


def test_vmap_and_shape_errors():
    a, b, _ = _inputs()
    stack = jnp.stack([a, 2 * a])
    np.testing.assert_allclose(jax.vmap(prim, (0, None))(stack, b),
                               jax.vmap(plain, (0, None))(stack, b), rtol=1e-13)
    with pytest.raises(ValueError, match=r"expected \(N, 3\) and \(N, 4\)"):
        prim(a, a[:, :3].repeat(2, axis=1)[:, :5])
    with pytest.raises(ValueError, match="of one dtype"):
        prim(a, b.astype(jnp.float32))
