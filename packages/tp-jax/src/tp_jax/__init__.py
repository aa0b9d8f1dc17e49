"""tp_jax: the JAX backend of tp-spec (CGTP, Gaunt TP, matrix TP).

>>> import tp_spec as spec, tp_jax, jax.numpy as jnp
>>> d = spec.cgtp("0e + 1o", "0e + 1o", "0e + 1o + 1e", mode="uvw")
>>> f = tp_jax.tensor_product(d)            # method=None: the CPU default ("fused")
>>> f(jnp.ones((5, 4)), jnp.ones((5, 4)), jnp.ones(d.weight_numel)).shape
(5, 7)

``tensor_product(d, method)`` returns a jitted pure function ``f(x1, x2, weights=None)``;
``methods(d)`` lists the methods of ``d``'s family with ``None`` (runs) or a skip reason.
``tp_jax.flax.TensorProduct`` is a Flax (linen) module holding the weights (needs ``flax``).
"""

from __future__ import annotations

import logging

from ._api import default_method, methods, tensor_product
from ._conv import tensor_product_conv
from .linear import indexed_linear, linear

__version__ = "0.1.0"

# The modules log to "tp_jax.<module>" (method choice, plan builds, traces, cache clears);
# silent unless the application configures logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["default_method", "indexed_linear", "linear", "methods", "tensor_product"]
__all__ += ["tensor_product_conv"]


def __getattr__(name: str):  # lazy: tp_jax imports without flax
    if name == "flax":
        import importlib

        return importlib.import_module(".flax", __name__)
    raise AttributeError(f"module 'tp_jax' has no attribute {name!r}")
