"""``bmm``: many small matrix products with the batch innermost, as a JAX primitive.

``bmm(a, b)`` with ``a (n, p, *M1)`` and ``b (p, q, *M2)`` is ``(n, q, *M)``,
``out[i, k, ...] = sum_j a[i, j, ...] * b[j, k, ...]`` for every trailing index (``M1`` and
``M2`` have equal rank and broadcast: each trailing size equal or 1).

Why a primitive: for ``n, p, q <~ 12`` XLA:CPU runs ``dot_general`` with trailing batch
dimensions as a batch of tiny GEMMs after two transposes (slow), while ``p`` fused
multiply-adds over whole rows run at memory speed. Written with ``jnp``, the reverse mode of
those multiply-adds becomes slices transposed to pads and reductions over middle axes, 10-100x
slower than the forward. As a bilinear primitive its derivatives are ``bmm`` again
(``da = bmm(ct, b^T)``, ``db = bmm(a^T, ct)``), so every order of jvp, vjp and vmap stays fast.
Built with JAX's public extension points (``jax.extend.core.Primitive``,
``jax.interpreters.ad/batching/mlir``), lowered with ``mlir.lower_fun`` for every platform.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

__all__ = ["bmm"]

bmm_p = Primitive("tp_jax_bmm")


def _out_trailing(m1: tuple[int, ...], m2: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(max(x, y) for x, y in zip(m1, m2, strict=True))


def _check(a, b) -> tuple[int, ...]:
    if a.ndim != b.ndim or a.ndim < 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
        raise ValueError(f"bmm: incompatible operands {a.dtype}{list(a.shape)} and "
                         f"{b.dtype}{list(b.shape)}")
    for x, y in zip(a.shape[2:], b.shape[2:], strict=True):
        if x != y and 1 not in (x, y):
            raise ValueError(f"bmm: trailing shapes {a.shape[2:]} and {b.shape[2:]} do not "
                             "broadcast")
    return (a.shape[0], b.shape[1]) + _out_trailing(a.shape[2:], b.shape[2:])


def bmm(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a (n, p, *M1) @ b (p, q, *M2) -> (n, q, *M)`` per trailing index (module docstring)."""
    _check(a, b)
    return bmm_p.bind(a, b)


def _impl(a: jax.Array, b: jax.Array) -> jax.Array:
    out = a[:, 0, None] * b[None, 0]
    for j in range(1, a.shape[1]):
        out = out + a[:, j, None] * b[None, j]
    return out


def _abstract(a, b):
    return jax.core.ShapedArray(_check(a, b), a.dtype)


def _reduce_to(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Sum ``x`` over the trailing axes that ``shape`` broadcasts (size 1 there)."""
    axes = tuple(i for i, (s, t) in enumerate(zip(x.shape, shape, strict=True)) if t == 1 != s)
    return x.sum(axis=axes, keepdims=True) if axes else x


def _transpose_lhs(ct, a, b):
    return _reduce_to(bmm(ct, jnp.swapaxes(b, 0, 1)), a.aval.shape)


def _transpose_rhs(ct, a, b):
    return _reduce_to(bmm(jnp.swapaxes(a, 0, 1), ct), b.aval.shape)


def _batch(args, dims):
    a, b = args
    moved = []
    for x, d in ((a, dims[0]), (b, dims[1])):
        if d is None:  # not mapped
            moved.append(x[..., None])  # broadcasts against the batched operand
        else:
            moved.append(jnp.moveaxis(x, d, -1))
    return bmm(*moved), moved[0].ndim - 1


bmm_p.def_impl(_impl)
bmm_p.def_abstract_eval(_abstract)
ad.defbilinear(bmm_p, _transpose_lhs, _transpose_rhs)
batching.primitive_batchers[bmm_p] = _batch
mlir.register_lowering(bmm_p, mlir.lower_fun(_impl, multiple_results=False))
