"""Equivariant linear maps on irreps features, e3nn ``o3.Linear``'s weight layout
(:mod:`tp_spec.linear`), as pure functions: :func:`linear` (shared or per-sample weights) and
:func:`indexed_linear` (one weight row per index, e.g. per chemical species).

Each instruction is one GEMM with the ``2l+1`` components folded into the rows (the input
block ``(N, mul_in, 2l+1)`` read as ``(N * (2l+1), mul_in)``) against the ``alpha``-scaled
``(mul_in, mul_out)`` weight block. The indexed form sorts the samples by index and runs each
instruction as one grouped GEMM (``jax.lax.ragged_dot``) over the index runs.

>>> import jax.numpy as jnp, tp_spec as spec
>>> d = spec.linear("4x0e + 2x1o", "3x0e + 2x1o")
>>> linear(d)(jnp.ones((5, 10)), jnp.ones(d.weight_numel)).shape
(5, 9)
>>> f = indexed_linear(d)
>>> f(jnp.ones((5, 10)), jnp.ones((3, d.weight_numel)), jnp.array([0, 2, 1, 2, 0])).shape
(5, 9)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tp_spec.linear import LinearDescriptor, check_call
from tp_spec.validation import check_index_range

__all__ = ["indexed_linear", "linear"]


def _fold(x: jax.Array, mul: int, dim: int) -> jax.Array:
    """``(N, mul * dim)`` block in ``mul_ir`` layout -> ``(N * dim, mul)``."""
    return x.reshape(-1, mul, dim).transpose(0, 2, 1).reshape(-1, mul)


def _unfold(y: jax.Array, mul: int, dim: int) -> jax.Array:
    """``(N * dim, mul)`` -> ``(N, mul * dim)`` in ``mul_ir`` layout."""
    return y.reshape(-1, dim, mul).transpose(0, 2, 1).reshape(-1, mul * dim)


def _blocks(d: LinearDescriptor, x: jax.Array) -> tuple[list[jax.Array], list[list[Any]]]:
    """The input blocks of ``x (N, dim_in)`` and, per output block, its instructions."""
    xs = [x[:, s] for s in d.irreps_in.slices()]
    into = [[ins for ins in d.instructions if ins.i_out == i and ins.weight_numel]
            for i in range(len(d.irreps_out))]
    return xs, into


def _assemble(d: LinearDescriptor, n: int, dtype: Any, blocks: list[jax.Array | None],
              bias: jax.Array | None) -> jax.Array:
    out = [jnp.zeros((n, mi.dim), dtype) if b is None else b
           for b, mi in zip(blocks, d.irreps_out, strict=True)]
    for i_out, s in d.bias_slices():
        out[i_out] = out[i_out] + bias[..., s]
    return jnp.concatenate(out, axis=1) if out else jnp.zeros((n, 0), dtype)


def _shared(d: LinearDescriptor, x: jax.Array, w: jax.Array, bias: jax.Array | None
            ) -> jax.Array:
    xs, into = _blocks(d, x)
    blocks: list[jax.Array | None] = []
    for mi, instructions in zip(d.irreps_out, into, strict=True):
        y = None
        for ins in instructions:
            W = w[ins.weight_slice].reshape(ins.weight_shape) * ins.alpha
            term = _fold(xs[ins.i_in], ins.mul_in, ins.ir.dim) @ W
            y = term if y is None else y + term
        blocks.append(None if y is None else _unfold(y, mi.mul, mi.ir.dim))
    return _assemble(d, x.shape[0], x.dtype, blocks, bias)


def _per_sample(d: LinearDescriptor, x: jax.Array, w: jax.Array, bias: jax.Array | None
                ) -> jax.Array:
    xs, into = _blocks(d, x)
    n = x.shape[0]
    blocks: list[jax.Array | None] = []
    for mi, instructions in zip(d.irreps_out, into, strict=True):
        y = None
        for ins in instructions:
            W = w[:, ins.weight_slice].reshape((n,) + ins.weight_shape) * ins.alpha
            xb = xs[ins.i_in].reshape(n, ins.mul_in, ins.ir.dim)
            term = jnp.einsum("nui,nuw->nwi", xb, W)
            y = term if y is None else y + term
        blocks.append(None if y is None else y.reshape(n, mi.dim))
    return _assemble(d, n, x.dtype, blocks, bias)


def _indexed(d: LinearDescriptor, x: jax.Array, w: jax.Array, idx: jax.Array,
             bias: jax.Array | None) -> jax.Array:
    """Samples sorted by index (stable), one grouped GEMM per instruction over the runs, then
    put back in order. Rows whose index is out of range (only possible under tracing, where
    the values cannot be checked) come out NaN."""
    num, n = w.shape[0], x.shape[0]
    perm = jnp.argsort(idx, stable=True)
    counts = jnp.bincount(idx, length=num)
    xs, into = _blocks(d, x[perm])
    blocks: list[jax.Array | None] = []
    for mi, instructions in zip(d.irreps_out, into, strict=True):
        y = None
        for ins in instructions:
            W = w[:, ins.weight_slice].reshape((num,) + ins.weight_shape) * ins.alpha
            xf = _fold(xs[ins.i_in], ins.mul_in, ins.ir.dim)
            term = jax.lax.ragged_dot(xf, W, counts * ins.ir.dim)
            y = term if y is None else y + term
        blocks.append(None if y is None else _unfold(y, mi.mul, mi.ir.dim))
    sorted_bias = None if bias is None else bias[idx[perm]]
    out = _assemble(d, n, x.dtype, blocks, sorted_bias)
    out = jnp.zeros_like(out).at[perm].set(out, unique_indices=True)
    valid = (idx >= 0) & (idx < num)
    return jnp.where(valid[:, None], out, jnp.nan)


def _concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _as_array(x: Any) -> Any:
    return x if hasattr(x, "shape") and hasattr(x, "dtype") else np.asarray(x)


@lru_cache(maxsize=256)
def _kernel(d: LinearDescriptor, indexed: bool) -> Callable:
    def kernel(x: jax.Array, w: jax.Array | None, idx: jax.Array | None,
               bias: jax.Array | None) -> jax.Array:
        batch, dtype = x.shape[:-1], x.dtype
        cdt = jnp.float32 if dtype in (jnp.bfloat16, jnp.float16) else dtype
        n = math.prod(batch)
        x2 = x.reshape(n, d.irreps_in.dim).astype(cdt)
        w = jnp.zeros((0,), cdt) if w is None else w.astype(cdt)
        bias = None if bias is None else bias.astype(cdt)
        if indexed:
            out = _indexed(d, x2, w, idx.reshape(n), bias)
        elif w.ndim == 1:
            out = _shared(d, x2, w, bias)
        else:
            out = _per_sample(d, x2, w.reshape(n, d.weight_numel),
                              None if bias is None else bias.reshape(n, d.bias_numel))
        return out.astype(dtype).reshape(batch + (d.irreps_out.dim,))

    return jax.jit(kernel)


def linear(d: LinearDescriptor) -> Callable:
    """A pure function ``f(x, weights=None, bias=None)``: the linear map of ``d``.

    ``f`` takes ``x: [*batch, irreps_in.dim]``, ``weights: [weight_numel]`` shared or
    ``[*batch, weight_numel]`` per sample (``None`` only when ``weight_numel == 0``), ``bias``
    iff ``d.bias_numel``: ``[bias_numel]`` with the leading shape of ``weights``, and returns
    ``[*batch, irreps_out.dim]``. One float dtype for all (float16/bfloat16 compute in
    float32). Safe under ``jit``/``grad``/``vmap``.

    Args:
        d: a :class:`tp_spec.LinearDescriptor` (:func:`tp_spec.linear`).
    """
    kernel = _kernel(d, False)

    def f(x: Any, weights: Any = None, bias: Any = None) -> jax.Array:
        x, weights, bias = (None if a is None else _as_array(a) for a in (x, weights, bias))
        check_call(d, x, weights, None, bias)
        return kernel(x, weights, None, bias)

    f.descriptor = d  # type: ignore[attr-defined]
    return f


def indexed_linear(d: LinearDescriptor) -> Callable:
    """A pure function ``f(x, weights, indices, bias=None)``: the linear map of ``d``, sample
    ``b`` with ``weights[indices[b]]``.

    ``f`` takes ``x: [*batch, irreps_in.dim]``, ``weights: [num_indices, weight_numel]``,
    ``indices: [*batch]`` of an integer dtype, ``bias: [num_indices, bias_numel]`` iff
    ``d.bias_numel``, and returns ``[*batch, irreps_out.dim]``. Concrete indices outside
    ``[0, num_indices)`` raise :class:`tp_spec.IndexRangeError`; traced ones (under ``jit``)
    cannot be checked and give NaN rows.

    Args:
        d: a :class:`tp_spec.LinearDescriptor` (:func:`tp_spec.linear`).
    """
    kernel = _kernel(d, True)

    def f(x: Any, weights: Any, indices: Any, bias: Any = None) -> jax.Array:
        x, weights, indices, bias = (None if a is None else _as_array(a)
                                     for a in (x, weights, indices, bias))
        check_call(d, x, weights, indices, bias)
        if _concrete(indices) and indices.size:
            values = np.asarray(indices)
            check_index_range("indices", int(values.min()), int(values.max()), weights.shape[0],
                              of="weight rows")
        return kernel(x, weights, indices, bias)

    f.descriptor = d  # type: ignore[attr-defined]
    return f
