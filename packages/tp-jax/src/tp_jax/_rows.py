"""``row_take``: a fixed row gather whose transpose is a gather and a sum, as JAX primitives.

``row_take(idx, d)(x)`` with ``x (d, ...)`` is ``x[idx] (R, ...)`` (``idx == d`` reads a zero
row). Its transpose sums the rows of a cotangent ``c (R, ...)`` that went to each row of ``x``;
JAX's own transpose of a gather is a scatter-add, slow on CPU. Here the transpose is a gather
over a padded ``(d, max count)`` table of the positions of every row and a reshape-sum, and the
transpose of that is the first gather again, so jvp, vjp and every higher order stay
scatter-free.

Two linear primitives, ``gather_rows_p`` and ``sum_rows_p``, each the other's transpose, with
a vmap rule (the rows axis stays first, the mapped axis moves last) and lowered with
``mlir.lower_fun``: JAX's public extension points (``jax.extend.core.Primitive``,
``jax.interpreters.ad/batching/mlir``), as :mod:`tp_jax._bmm`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from ._ops import ix

__all__ = ["col_take", "row_take"]


class _Table:
    """A static index array as a primitive parameter (hashed and compared by identity: one per
    ``row_take``, built once per descriptor)."""

    __slots__ = ("value",)

    def __init__(self, value: np.ndarray) -> None:
        self.value = value


def _gather_rows(x: jax.Array, idx: np.ndarray) -> jax.Array:
    """``x (d, ...) -> (len(idx), ...)``; index ``d`` reads a zero row."""
    x = jnp.concatenate([x, jnp.zeros((1,) + x.shape[1:], x.dtype)], axis=0)
    return jnp.take(x, ix(idx), axis=0, mode="clip", indices_are_sorted=False)


def _sum_rows(c: jax.Array, table: np.ndarray) -> jax.Array:
    """``c (R, ...) -> (d, ...)``: row ``i`` is the sum of the rows ``table[i]`` of ``c``
    (index ``R`` reads a zero row): a gather and a reshape-sum, no scatter."""
    d, m = table.shape
    g = _gather_rows(c, table.reshape(-1))
    return g if m == 1 else g.reshape((d, m) + c.shape[1:]).sum(axis=1)


gather_rows_p = Primitive("tp_jax_gather_rows")
sum_rows_p = Primitive("tp_jax_sum_rows")


def _gather_impl(x, *, idx: _Table, table: _Table, d: int):
    return _gather_rows(x, idx.value)


def _sum_impl(c, *, idx: _Table, table: _Table, d: int):
    return _sum_rows(c, table.value)


def _gather_abstract(x, *, idx: _Table, table: _Table, d: int):
    if x.ndim < 1 or x.shape[0] != d:
        raise ValueError(f"row_take: expected {d} rows, got shape {x.shape}")
    return jax.core.ShapedArray((idx.value.size,) + x.shape[1:], x.dtype)


def _sum_abstract(c, *, idx: _Table, table: _Table, d: int):
    if c.ndim < 1 or c.shape[0] != idx.value.size:
        raise ValueError(f"row_take transpose: expected {idx.value.size} rows, got {c.shape}")
    return jax.core.ShapedArray((d,) + c.shape[1:], c.dtype)


def _batcher(prim: Primitive):
    def rule(args, dims, **params):
        (x,), (bd,) = args, dims
        x = jnp.moveaxis(x, bd, -1)  # the rows axis is first again
        return prim.bind(x, **params), x.ndim - 1
    return rule


for _p, _impl, _abs in ((gather_rows_p, _gather_impl, _gather_abstract),
                        (sum_rows_p, _sum_impl, _sum_abstract)):
    _p.def_impl(_impl)
    _p.def_abstract_eval(_abs)
    batching.primitive_batchers[_p] = _batcher(_p)
    mlir.register_lowering(_p, mlir.lower_fun(_impl, multiple_results=False))
ad.deflinear2(gather_rows_p, lambda ct, x, **p: [sum_rows_p.bind(ct, **p)])
ad.deflinear2(sum_rows_p, lambda ct, c, **p: [gather_rows_p.bind(ct, **p)])


def row_take(idx: np.ndarray, d: int) -> Callable[[jax.Array], jax.Array]:
    """The linear map ``x (d, ...) -> x[idx] (R, ...)`` (``idx == d``: a zero row) whose
    transpose is a gather and a sum (module docstring)."""
    idx = np.asarray(idx, dtype=np.int64)
    r = idx.size
    counts = np.bincount(idx[idx < d], minlength=d)
    table = np.full((d, max(1, int(counts.max(initial=0)))), r, dtype=np.int64)
    order = np.argsort(idx, kind="stable")
    start = 0
    for i in range(d):
        table[i, :counts[i]] = order[start:start + counts[i]]
        start += counts[i]
    params = {"idx": _Table(idx), "table": _Table(table), "d": d}

    def take(x: jax.Array) -> jax.Array:
        _gather_abstract(x, **params)  # shape check, also when called eagerly
        return gather_rows_p.bind(x, **params)

    return take


def col_take(idx: np.ndarray, d: int) -> Callable[[jax.Array], jax.Array]:
    """``x (N, d) -> x[:, idx]`` as :func:`row_take` on ``x.T`` (its transpose a gather and a
    sum, never a scatter-add)."""
    take = row_take(idx, d)
    return lambda x: take(x.T).T
