"""Flax (linen) module around :func:`tp_jax.tensor_product` (needs the ``flax`` extra).

>>> import jax, jax.numpy as jnp, tp_spec as spec
>>> from tp_jax.flax import TensorProduct
>>> d = spec.cgtp("4x0e + 4x1o", "0e + 1o", "4x0e + 4x1o", mode="uvw")
>>> m = TensorProduct(d)
>>> x1, x2 = jnp.ones((10, 16)), jnp.ones((10, 4))
>>> params = m.init(jax.random.PRNGKey(0), x1, x2)
>>> m.apply(params, x1, x2).shape
(10, 16)

The module holds one shared weight vector ``"weights"`` of shape ``(d.weight_numel,)`` (none
when ``weight_numel == 0``). Default init: standard normal for CGTP (with e3nn's path
normalization baked into the descriptor's coefficients, unit-variance inputs then give outputs
of variance ~1); ones for GTP/MTP per-degree weights (the unweighted operation at init).
Per-sample weights (e.g. from a radial MLP) can be passed to ``__call__`` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from tp_spec import TensorProductDescriptor

from ._api import tensor_product

__all__ = ["TensorProduct"]


def _default_init(d: TensorProductDescriptor) -> Callable:
    if d.kind == "cgtp":
        return jax.nn.initializers.normal(stddev=1.0)
    return jax.nn.initializers.ones


class TensorProduct(nn.Module):
    """``y = TP(x1, x2; weights)`` for a tp_spec descriptor.

    Attributes:
        descriptor: any tp_spec descriptor (cgtp / gtp / mtp).
        method: method name or ``None`` (the CPU default), see :func:`tp_jax.methods`.
        weight_init: initializer of the ``(weight_numel,)`` parameter (default: see module doc).
        param_dtype: dtype of the parameter (float32).

    ``__call__(x1, x2, weights=None)``: ``x1 (*batch, dim1)``, ``x2 (*batch, dim2)``;
    ``weights`` given explicitly (``(numel,)`` or ``(*batch, numel)``) override the parameter.
    Returns ``(*batch, irreps_out.dim)``. Inputs and the parameter must share a dtype.
    """

    descriptor: TensorProductDescriptor
    method: str | None = None
    weight_init: Callable | None = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x1: jax.Array, x2: jax.Array, weights: jax.Array | None = None
                 ) -> jax.Array:
        d = self.descriptor
        f = tensor_product(d, self.method)
        if weights is None and d.weight_numel:
            init = self.weight_init or _default_init(d)
            weights = self.param("weights", init, (d.weight_numel,), self.param_dtype)
        return f(x1, x2, weights)
