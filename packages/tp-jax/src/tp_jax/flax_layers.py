"""Flax (linen) modules of MACE's product basis and its Gaunt variant (needs ``flax``).

>>> import jax, jax.numpy as jnp
>>> m = SymmetricContraction("4x0e+4x1o", "4x0e+4x1o", correlation=3, num_species=2)
>>> x, z = jnp.ones((5, 16)), jnp.zeros(5, int)
>>> params = m.init(jax.random.PRNGKey(0), x, z)
>>> m.apply(params, x, z).shape
(5, 16)
"""

from __future__ import annotations

import importlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from .symmetric_contraction import gaunt_symmetric_contraction, symmetric_contraction

_sc = importlib.import_module("tp_spec.symmetric_contraction")

__all__ = ["GauntSymmetricContraction", "SymmetricContraction"]


class SymmetricContraction(nn.Module):
    """MACE's ``SymmetricContraction``: ``__call__(x (n, irreps_in.dim), species (n,) ints)``
    -> ``(n, irreps_out.dim)``.

    Parameters ``"weights_{i}_{nu}"`` of MACE's shapes ``(num_species, K, k)`` (output ``i``,
    order ``nu``), initialized like MACE (standard normal / K).
    """

    irreps_in: Any
    irreps_out: Any
    correlation: int
    num_species: int
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, species: jax.Array) -> jax.Array:
        d = _sc.symmetric_contraction(self.irreps_in, self.irreps_out, self.correlation,
                                      self.num_species)
        blocks = []
        for i, shapes in enumerate(d.weight_shapes):
            for nu, (S, K, k) in enumerate(shapes, start=1):

                def init(key, shape, dtype, K=K):
                    return jax.random.normal(key, shape, dtype) / max(K, 1)

                w = self.param(f"weights_{i}_{nu}", init, (S, K, k), self.param_dtype)
                blocks.append(w.reshape(S, -1))
        return symmetric_contraction(d)(x, jnp.concatenate(blocks, axis=1), species)


class GauntSymmetricContraction(nn.Module):
    """The Gaunt variant (:mod:`tp_spec.symmetric_contraction`): parameters ``"u"``
    ``(num_species, correlation, len(irreps_in), k)`` and ``"v"`` ``(num_species,
    correlation, len(irreps_out), k)``, standard normal."""

    irreps_in: Any
    irreps_out: Any
    correlation: int
    num_species: int
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, species: jax.Array) -> jax.Array:
        d = _sc.gaunt_symmetric_contraction(self.irreps_in, self.irreps_out, self.correlation,
                                            self.num_species)
        S, c, k = d.num_species, d.correlation, d.mul
        normal = jax.nn.initializers.normal(1.0)
        u = self.param("u", normal, (S, c, len(d.irreps_in), k), self.param_dtype)
        v = self.param("v", normal, (S, c, len(d.irreps_out), k), self.param_dtype)
        w = jnp.concatenate([u.reshape(S, -1), v.reshape(S, -1)], axis=1)
        return gaunt_symmetric_contraction(d)(x, w, species)
