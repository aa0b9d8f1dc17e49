"""``bilinear``: a row-wise bilinear product with hand-written transposes, as a JAX primitive.

A tensor product is bilinear, ``y = B(x1, x2)`` row by row. Its two transposes,
``T1(x2, ct) = d <ct, B(x1, x2)> / d x1`` and ``T2(x1, ct) = d <ct, B(x1, x2)> / d x2``, are
bilinear too, and the three close under transposition:

* ``B(x1, x2)``: transposes ``T1(x2, ct)`` (x1) and ``T2(x1, ct)`` (x2);
* ``T1(x2, y)``: transposes ``T2(ct, y)`` (x2) and ``B(ct, x2)`` (y);
* ``T2(x1, y)``: transposes ``T1(ct, y)`` (x1) and ``B(x1, ct)`` (y).

So one primitive with a ``kind`` in ``("B", "T1", "T2")`` and JAX's bilinear rule
(``ad.defbilinear``) gives every order of jvp and vjp through the three functions the caller
writes, never through JAX's transpose of their implementation (where XLA on CPU would run
layout transposes and scatter-adds). The residual-free form also differentiates its
"constant" argument (forward over reverse, double backward), which
``jax.custom_derivatives.linear_call`` does not. Built with JAX's public extension points,
as :mod:`tp_jax._bmm`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

__all__ = ["Bilinear", "bilinear"]


@dataclass(frozen=True, eq=False)
class Bilinear:
    """The three functions of one row-wise bilinear product (hashed by identity: a primitive
    parameter). ``b(x1 (N, dim1), x2 (N, dim2)) -> (N, dim_out)``; ``t1(x2, y) -> (N, dim1)``;
    ``t2(x1, y) -> (N, dim2)``; ``rows_axis`` 1: every array is transposed, ``(dim, N)``."""

    b: Callable[[jax.Array, jax.Array], jax.Array]
    t1: Callable[[jax.Array, jax.Array], jax.Array]
    t2: Callable[[jax.Array, jax.Array], jax.Array]
    dim1: int
    dim2: int
    dim_out: int
    rows_axis: int = 0


bilinear_p = Primitive("tp_jax_bilinear")

#: kind -> (function, output dim attribute, dim attributes of the two operands)
_KINDS = {"B": ("b", "dim_out", ("dim1", "dim2")), "T1": ("t1", "dim1", ("dim2", "dim_out")),
          "T2": ("t2", "dim2", ("dim1", "dim_out"))}


def bilinear(fns: Bilinear, a: jax.Array, b: jax.Array, kind: str = "B") -> jax.Array:
    """The product ``kind`` of ``fns`` on rows ``a (N, .)``, ``b (N, .)`` (module docstring)."""
    _abstract(a, b, fns=fns, kind=kind)  # shape check, also when called eagerly
    return bilinear_p.bind(a, b, fns=fns, kind=kind)


def _impl(a, b, *, fns: Bilinear, kind: str):
    return getattr(fns, _KINDS[kind][0])(a, b)


def _abstract(a, b, *, fns: Bilinear, kind: str):
    _, out, (da, db) = _KINDS[kind]
    want = (getattr(fns, da), getattr(fns, db))
    r, f = fns.rows_axis, 1 - fns.rows_axis
    if a.ndim != 2 or b.ndim != 2 or a.shape[r] != b.shape[r] or (a.shape[f], b.shape[f]) != want \
            or a.dtype != b.dtype:
        shapes = (f"(N, {want[0]}) and (N, {want[1]})" if r == 0 else
                  f"({want[0]}, N) and ({want[1]}, N)")
        raise ValueError(f"bilinear {kind}: expected {shapes} of one dtype, got "
                         f"{a.dtype}{list(a.shape)} and {b.dtype}{list(b.shape)}")
    shape = [0, 0]
    shape[r], shape[f] = a.shape[r], getattr(fns, out)
    return jax.core.ShapedArray(tuple(shape), a.dtype)


# (kind, operand undefined) -> (kind of the transpose, its operands from (ct, a, b))
_TRANSPOSE = {
    ("B", 0): ("T1", lambda ct, a, b: (b, ct)), ("B", 1): ("T2", lambda ct, a, b: (a, ct)),
    ("T1", 0): ("T2", lambda ct, a, b: (ct, b)), ("T1", 1): ("B", lambda ct, a, b: (ct, a)),
    ("T2", 0): ("T1", lambda ct, a, b: (ct, b)), ("T2", 1): ("B", lambda ct, a, b: (a, ct)),
}


def _rule(side: int):
    def rule(ct, a, b, *, fns: Bilinear, kind: str):
        k, operands = _TRANSPOSE[kind, side]
        return bilinear(fns, *operands(ct, a, b), kind=k)
    return rule


def _batch(args, dims, *, fns: Bilinear, kind: str):
    """A mapped axis joins the rows: ``(V, N, d) -> (V * N, d)`` (``(d, V, N) -> (d, V * N)``
    with ``rows_axis`` 1), unmapped operands repeated."""
    size = next(x.shape[d] for x, d in zip(args, dims, strict=True) if d is not None)
    r = fns.rows_axis
    flat = []
    for x, d in zip(args, dims, strict=True):
        x = jnp.broadcast_to(x, (size,) + x.shape) if d is None else jnp.moveaxis(x, d, 0)
        x = x if r == 0 else jnp.moveaxis(x, 0, 1)  # the mapped axis just before the rows
        flat.append(x.reshape((-1,) + x.shape[2:]) if r == 0 else x.reshape(x.shape[0], -1))
    out = bilinear(fns, *flat, kind=kind)
    if r == 0:
        return out.reshape((size, -1) + out.shape[1:]), 0
    return out.reshape(out.shape[0], size, -1), 1


bilinear_p.def_impl(_impl)
bilinear_p.def_abstract_eval(_abstract)
ad.defbilinear(bilinear_p, _rule(0), _rule(1))
batching.primitive_batchers[bilinear_p] = _batch
mlir.register_lowering(bilinear_p, mlir.lower_fun(_impl, multiple_results=False))
