"""Edge embeddings of an interatomic potential: spherical harmonics of the edge vectors, the
Bessel radial basis with MACE's polynomial cutoff, and the radial MLP giving per-edge weights.

:func:`spherical_harmonics` is tp_spec's :func:`tp_spec.spherical_harmonics` (e3nn's basis and
layout) in JAX: each degree ``l`` is the homogeneous polynomial ``|v|^l Y^l(v / |v|)``, whose
monomial coefficients are solved once in NumPy from tp_spec's values, then evaluated at the unit
vectors. Smooth (differentiable) wherever ``v != 0``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import tp_spec
from tp_spec import ShapeError

__all__ = ["RadialMLP", "bessel_basis", "polynomial_cutoff", "spherical_harmonics"]


@functools.lru_cache(maxsize=16)
def _monomial_table(lmax: int, normalization: str) -> tuple[np.ndarray, np.ndarray]:
    """Exponents ``(M, 3)`` of every monomial of degree ``<= lmax`` and coefficients
    ``(M, (lmax + 1)**2)`` with ``Y(v) = monomials(v) @ coeff`` for ``|v| = 1``."""
    exps, cols = [], []
    rng = np.random.default_rng(0)
    for l in range(lmax + 1):
        e = np.array([(a, b, l - a - b) for a in range(l + 1) for b in range(l + 1 - a)])
        pts = rng.normal(size=(4 * len(e) + 8, 3))
        vals = tp_spec.spherical_harmonics([l], pts, normalization=normalization, normalize=False)
        mono = np.prod(pts[:, None, :] ** e[None], axis=-1)
        c, *_ = np.linalg.lstsq(mono, vals, rcond=None)
        if np.max(np.abs(mono @ c - vals)) > 1e-9 * max(1.0, np.max(np.abs(vals))):
            raise ArithmeticError(f"degree {l}: spherical harmonics fit is not exact")
        exps.append(e)
        cols.append(c)
    n = sum(len(e) for e in exps)
    coeff = np.zeros((n, (lmax + 1) ** 2))
    row = 0
    for l, (e, c) in enumerate(zip(exps, cols, strict=True)):
        coeff[row : row + len(e), l**2 : (l + 1) ** 2] = c
        row += len(e)
    return np.concatenate(exps), coeff


def spherical_harmonics(lmax: int, vectors: jax.Array, normalization: str = "component"
                        ) -> jax.Array:
    """``Y^0 .. Y^lmax`` of ``vectors (..., 3)`` normalized to unit length -> ``(...,
    (lmax + 1)**2)`` in e3nn's layout, the dtype of ``vectors``."""
    if vectors.ndim == 0 or vectors.shape[-1] != 3:
        raise ShapeError(f"vectors must have shape (..., 3), got {tuple(vectors.shape)}")
    exps, coeff = _monomial_table(int(lmax), normalization)
    u = vectors / jnp.linalg.norm(vectors, axis=-1, keepdims=True)
    powers = [jnp.ones_like(u)]
    for _ in range(lmax):
        powers.append(powers[-1] * u)
    p = jnp.stack(powers, axis=-2)  # (..., lmax + 1, 3)
    mono = p[..., exps[:, 0], 0] * p[..., exps[:, 1], 1] * p[..., exps[:, 2], 2]
    return mono @ jnp.asarray(coeff, vectors.dtype)


def bessel_basis(r: jax.Array, r_max: float, num_basis: int) -> jax.Array:
    """``sqrt(2 / r_max) sin(n pi r / r_max) / r`` for ``n = 1..num_basis``: ``r (E,)`` ->
    ``(E, num_basis)``."""
    n = jnp.arange(1, num_basis + 1, dtype=r.dtype)
    return math.sqrt(2.0 / r_max) * jnp.sin(n * jnp.pi * r[:, None] / r_max) / r[:, None]


def polynomial_cutoff(r: jax.Array, r_max: float, p: int = 6) -> jax.Array:
    """MACE's envelope ``1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)``, ``x =
    r / r_max``, zero from ``r_max`` on: ``r (E,)`` -> ``(E,)``; smooth to second order."""
    x = r / r_max
    f = (1.0 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1)
         - p * (p + 1) / 2 * x ** (p + 2))
    return f * (x < 1.0)


class RadialMLP(nn.Module):
    """Per-edge weights from edge lengths: ``r (E,)`` -> ``(E, num_out)``.

    Bessel basis times the polynomial cutoff, then bias-free dense layers with SiLU (LeCun
    normal init: unit-variance preactivations), the last one linear.
    """

    r_max: float
    num_basis: int
    hidden: Sequence[int]
    num_out: int
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, r: jax.Array) -> jax.Array:
        """``r [E]`` edge lengths -> ``[E, num_out]``."""
        h = bessel_basis(r, self.r_max, self.num_basis) * polynomial_cutoff(r, self.r_max)[:, None]
        for width in self.hidden:
            h = jax.nn.silu(nn.Dense(width, use_bias=False, param_dtype=self.param_dtype,
                                     dtype=r.dtype)(h))
        return nn.Dense(self.num_out, use_bias=False, param_dtype=self.param_dtype,
                        dtype=r.dtype)(h)
