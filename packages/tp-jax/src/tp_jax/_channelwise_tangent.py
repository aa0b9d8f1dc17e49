"""The tangent of the channelwise product (:class:`tp_spec.plan.fused.ChannelwisePlan`), in
the layout its reverse-mode transpose runs fastest in XLA.

The x1 blocks of one group of :attr:`~tp_spec.plan.fused.ChannelwisePlan.tangent_blocks`
(one multiplicity ``U``: "a class") are laid side by side as ``X (B, U, D1)`` (``D1`` the
sum of their ``2l + 1``), every path of the class is a column range of one ``M = x2 @ K``
``(B, D1, S)`` (``S`` the sum of the paths' ``2l_out + 1``; ``K`` zero outside each path's
x1 block and x2 block), and the class's products are
``Y = X @ M`` ``(B, U, S)``, times the weights broadcast to ``W (U, S)`` or ``(B, U, S)``
(ones for unweighted paths). The tangent is

``dY = (dX @ M + X @ (dx2 @ K)) * W + (X @ M) * dW``

(a term is left out where its input tangent is a symbolic zero), cut into the paths' output
blocks. Transposed by JAX this gives per class one concatenation of the output cotangent,
two batched dots (x1 and ``M`` gradients) and one fused reduction (weight gradient): a block
layout with few, larger dots, which on CPU beats one batched dot per x1 block in reverse mode
while the zeros of ``K`` stay few (the plan's grouping; the per-block form stays the primal,
where it is faster).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tp_spec.plan.fused import ChannelwisePlan

from ._fused_blocks import add_block, assemble
from ._ops import const, einsum

__all__ = ["channelwise_tangent"]


def _split(x: jax.Array, sizes: list[int], axis: int = -1) -> list[jax.Array]:
    """``x`` cut along ``axis`` into consecutive pieces of ``sizes`` (which cover it)."""
    if len(sizes) == 1:
        return [x]
    return jnp.split(x, np.cumsum(sizes)[:-1].tolist(), axis=axis)


def _classes(plan: ChannelwisePlan) -> list[tuple[int, list[int], list[int], np.ndarray]]:
    """Per group of :attr:`ChannelwisePlan.tangent_blocks`: ``(U, x1 blocks, paths,
    K (dim2, D1 * S))``."""
    d = plan.descriptor
    off2 = np.concatenate([[0], np.cumsum([ir.dim for _, ir in d.irreps_in2])]).astype(int)
    out = []
    for group in plan.tangent_blocks:
        blocks = list(group)
        dims = [d.irreps_in1[i].ir.dim for i in blocks]
        row = dict(zip(blocks, np.concatenate([[0], np.cumsum(dims)]).astype(int), strict=False))
        paths = [n for n, p in enumerate(d.paths) if p.i_in1 in row]
        cols = np.concatenate([[0], np.cumsum([d.paths[n].ir_out.dim for n in paths])]).astype(int)
        k = np.zeros((d.irreps_in2.dim, sum(dims), int(cols[-1])))
        for c, n in enumerate(paths):
            p = d.paths[n]
            kn = plan.k[n].reshape(-1, p.ir_in1.dim, p.ir_out.dim)
            k[off2[p.i_in2]:off2[p.i_in2] + kn.shape[0], row[p.i_in1]:row[p.i_in1] + p.ir_in1.dim,
              cols[c]:cols[c + 1]] = kn
        out.append((d.irreps_in1[blocks[0]].mul, blocks, paths, k.reshape(k.shape[0], -1)))
    return out


def _x1_pieces(d: Any, x1: jax.Array) -> list[jax.Array]:
    """``x1 (B, dim1)`` cut into its blocks ``(B, mul, 2l + 1)``."""
    b = x1.shape[0]
    return [xb.reshape(b, mul, ir.dim)
            for xb, (mul, ir) in zip(_split(x1, [mul * ir.dim for mul, ir in d.irreps_in1]),
                                     d.irreps_in1, strict=True)]


def _path_weights(d: Any, w: jax.Array) -> dict[int, jax.Array]:
    """Each weighted path's weights ``(..., mul_in1)``: ``w (numel,)`` or ``(B, numel)`` cut
    at the paths' weight offsets."""
    spans = sorted((p.weight_slice.start, p.weight_slice.stop, n)
                   for n, p in enumerate(d.paths) if p.has_weight and p.weight_numel)
    sizes: list[int] = []
    owners: list[int | None] = []
    pos = 0
    for a, e, n in spans:
        if a > pos:
            sizes.append(a - pos)
            owners.append(None)
        sizes += [e - a]
        owners.append(n)
        pos = e
    if pos < w.shape[-1]:
        sizes.append(w.shape[-1] - pos)
        owners.append(None)
    if not sizes:
        return {}
    return {n: piece for n, piece in zip(owners, _split(w, sizes), strict=True) if n is not None}


def _weight_layout(d: Any, paths: list[int], mul: int, w: jax.Array, fill: float
                   ) -> jax.Array:
    """The class's weights broadcast to its columns: ``(U, S)`` for ``w (numel,)``,
    ``(B, U, S)`` for ``w (B, numel)``; ``fill`` for unweighted paths."""
    wp = _path_weights(d, w)
    lead = w.shape[:-1]
    parts = []
    for n in paths:
        d3 = d.paths[n].ir_out.dim
        piece = wp.get(n)
        if piece is None:
            parts.append(jnp.full(lead + (mul, d3), fill, w.dtype))
        else:
            parts.append(jnp.broadcast_to(piece[..., None], lead + (mul, d3)))
    return jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]


def _is_zero(t: Any) -> bool:
    return t is None or isinstance(t, jax.custom_derivatives.SymbolicZero)


def channelwise_tangent(plan: ChannelwisePlan, x1: jax.Array, x2: jax.Array,
                        w: jax.Array | None, dx1: Any, dx2: Any, dw: Any) -> jax.Array:
    """The product's tangent ``(B, dim_out)`` at ``(x1, x2, w)`` along ``(dx1, dx2, dw)``;
    a tangent that is ``None`` or a :class:`jax.custom_derivatives.SymbolicZero` is zero."""
    d, b, dt = plan.descriptor, x1.shape[0], x1.dtype
    z1, z2, zw = _is_zero(dx1), _is_zero(dx2), w is None or _is_zero(dw)
    xs = _x1_pieces(d, x1)
    dxs = None if z1 else _x1_pieces(d, dx1)
    blocks: dict[int, jax.Array] = {}
    for mul, i1s, paths, k in _classes(plan):
        d1 = sum(d.irreps_in1[i].ir.dim for i in i1s)
        s_tot = k.shape[1] // d1
        kc = const(k, dt)
        x = jnp.concatenate([xs[i] for i in i1s], axis=2) if len(i1s) > 1 else xs[i1s[0]]
        m = None
        dy = None
        if not z1 or not zw:
            m = einsum("bj,jk->bk", x2, kc).reshape(b, d1, s_tot)
        if not z1:
            dx = (jnp.concatenate([dxs[i] for i in i1s], axis=2) if len(i1s) > 1
                  else dxs[i1s[0]])
            dy = einsum("bui,bis->bus", dx, m)
        if not z2:
            dm = einsum("bj,jk->bk", dx2, kc).reshape(b, d1, s_tot)
            t = einsum("bui,bis->bus", x, dm)
            dy = t if dy is None else dy + t
        if w is not None and dy is not None:
            dy = dy * _weight_layout(d, paths, mul, w, 1.0)
        if not zw:
            t = einsum("bui,bis->bus", x, m) * _weight_layout(d, paths, mul, dw, 0.0)
            dy = t if dy is None else dy + t
        if dy is None:
            continue
        pieces = _split(dy, [d.paths[n].ir_out.dim for n in paths])
        for n, y in zip(paths, pieces, strict=True):
            add_block(blocks, d.paths[n].i_out, y.reshape(b, -1))
    return assemble(d, blocks, b, dt)
