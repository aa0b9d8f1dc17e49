"""Leaf helpers of every JAX executor: exact-precision contractions and trace-time constants."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["HIGHEST", "const", "einsum", "ix"]

#: Matmul precision of every contraction in tp_jax: exact float32 products on GPUs too (XLA's
#: default lets float32 dots run as TF32, ~1e-3 relative error, on NVIDIA Ampere and later).
HIGHEST = jax.lax.Precision.HIGHEST


def einsum(*operands: Any, **kwargs: Any) -> jax.Array:
    """``jnp.einsum`` at :data:`HIGHEST` precision."""
    return jnp.einsum(*operands, precision=HIGHEST, **kwargs)


def const(a: np.ndarray, dtype: Any) -> jax.Array:
    """A NumPy constant as a JAX constant of the compute dtype (trace-time only)."""
    return jnp.asarray(np.asarray(a, dtype=np.dtype(dtype)))


def ix(a: np.ndarray) -> np.ndarray:
    """A static gather/scatter index as int32 (independent of the x64 mode)."""
    return np.asarray(a, dtype=np.int32)
