"""MTP executors: ``dense`` and ``sparse`` plans (``tp_spec.plan.mtp``, which describes the
algorithm) run with the batch innermost.

The batch (in checkpointed chunks only when huge, ``plan.jax_chunk_rows``) is transposed once to
``(features, C, samples)``, so the embedding and the read-out are GEMMs whose long dimension is
``C x samples``, and the ``n x n`` products are :func:`tp_jax._bmm.bmm` (``n`` fused multiply-adds
over whole rows, vectorised along the samples, whose derivatives are again ``bmm``) instead of a
batch of tiny matmuls: the plan's batch-last layout for every ``n`` (``plan.batch_last`` is
torch's choice). One channel reads ``[P, Q]`` (``plan.read_pq``) or, in the transpose regime,
``[X1 X2, X2 X1]`` (``plan.read_tr``) with one GEMM straight into the output. The plan's feature
gathers run as slices of contiguous blocks
(``plan.blocks*``, ``plan.out_blocks``) and one channel's as GEMMs with the gather folded in, so
reverse mode has no scatter: the transposes of slices, reshapes and concatenations are slices,
reshapes and concatenations.

NaN and inf: every matrix entry mixes every coefficient of its parity, so a non-finite input
entry may reach every output of its sample (docs/numerics.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from tp_spec.plan.mtp import DenseMTPPlan, MTPPlan, SparseMTPPlan

from ._bmm import bmm
from ._ops import HIGHEST, const, ix

__all__ = ["RUNNERS", "chunked", "run"]


def run(plan: MTPPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None) -> jax.Array:
    """Either MTP plan: ``x1 (N, dim1)``, ``x2 (N, dim2)``, ``w`` ``None``, ``(numel,)`` or
    ``(N, numel)`` -> ``(N, dim_out)``."""
    s, dt = x1.shape[0], x1.dtype
    if not plan.active:
        return jnp.zeros((s, plan.descriptor.irreps_out.dim), dt)
    mult = None
    if w is not None and plan.w_index1 is not None:
        x1, x2 = x1 * w[..., ix(plan.w_index1)], x2 * w[..., ix(plan.w_index2)]
        mult = w[..., ix(plan.w_index_out)]
    rows = plan.jax_chunk_rows

    def core(a: jax.Array, b: jax.Array) -> jax.Array:
        return _core(plan, a, b)

    out = core(x1, x2) if s <= rows else chunked(jax.checkpoint(core), x1, x2, rows)
    return out if mult is None else out * mult


def chunked(fn, x1: jax.Array, x2: jax.Array, chunk: int) -> jax.Array:
    """``fn`` (row-wise, ``(B, d1), (B, d2) -> (B, d)``) over batch chunks of ``chunk`` rows."""
    n = x1.shape[0]
    if n <= chunk:
        return fn(x1, x2)
    nc = -(-n // chunk)
    pad = nc * chunk - n
    a = jnp.pad(x1, ((0, pad), (0, 0))).reshape(nc, chunk, x1.shape[1])
    b = jnp.pad(x2, ((0, pad), (0, 0))).reshape(nc, chunk, x2.shape[1])
    out = jax.lax.map(lambda ab: fn(*ab), (a, b))
    return out.reshape(nc * chunk, out.shape[-1])[:n]


def _coeffs(xt: jax.Array, blocks, ch: int) -> jax.Array:
    """``xt (dim, S)`` -> ``(K, ch, S)``: blocks ``(offset or None: zeros, degree)`` of
    ``ch x (2l + 1)`` features."""
    s = xt.shape[1]
    rows = [jnp.zeros((2 * l + 1, ch, s), xt.dtype) if o is None else
            jnp.swapaxes(xt[o:o + ch * (2 * l + 1)].reshape(ch, 2 * l + 1, s), 0, 1)
            for o, l in blocks]
    return jnp.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]


def _rows_times(mat: np.ndarray, x: jax.Array) -> jax.Array:
    """``mat (R, dim) @ x (S, dim)^T -> (R, S)`` (the transpose rides on the GEMM)."""
    return jax.lax.dot_general(const(mat, x.dtype), x, (((1,), (1,)), ((), ())),
                               precision=HIGHEST)


def _embed(plan: MTPPlan, x: jax.Array, xt: jax.Array, which: int) -> jax.Array:
    """``x (S, dim)`` (``xt`` its transpose) -> ``(n, n, s, ch, S)``."""
    n, s_ = plan.n, x.shape[0]
    ch = plan.channels if which == 1 else plan.channels2
    emb, blocks = getattr(plan, f"embed{which}"), getattr(plan, f"blocks{which}")
    if isinstance(plan, DenseMTPPlan):
        cs = [_coeffs(xt, b, ch) for b in blocks]  # (K, ch, S) per class
        if plan.pq:
            cs = [cs[0] + cs[1], cs[0] - cs[1]]
        c = jnp.stack(cs, axis=1)  # (K, s, ch, S)
        m = jnp.matmul(const(emb.T, x.dtype), c.reshape(c.shape[0], -1), precision=HIGHEST)
        return m.reshape(n, n, len(cs), ch, s_)
    s = getattr(plan, f"mats{which}")
    wt = emb.reshape(-1, s, n * n).transpose(2, 1, 0).reshape(n * n * s, -1)  # rows (a, b, s)
    if getattr(plan, f"index{which}") is None:
        return _rows_times(wt, x).reshape(n, n, s, 1, s_)
    c = _coeffs(xt, blocks, ch)
    m = jnp.matmul(const(wt, x.dtype), c.reshape(c.shape[0], ch * s_), precision=HIGHEST)
    return m.reshape(n, n, s, ch, s_)


def _core(plan: MTPPlan, x1: jax.Array, x2: jax.Array) -> jax.Array:
    n, s, dt, c = plan.n, x1.shape[0], x1.dtype, plan.channels
    x1t, x2t = x1.T, x2.T
    m1, m2 = _embed(plan, x1, x1t, 1), _embed(plan, x2, x2t, 2)
    if isinstance(plan, SparseMTPPlan) and plan.transpose:
        a, a2 = bmm(m1[:, :, 0], m2[:, :, 0]), bmm(m2[:, :, 0], m1[:, :, 0])
        if plan.read_tr is not None:  # one channel: (rows (a, b, s), S)^T @ read_tr
            z = jnp.stack([a, a2], axis=2)  # (n, n, 2, 1, S)
            return jax.lax.dot_general(
                z.reshape(-1, s), const(plan.read_tr.reshape(2 * n * n, -1), dt),
                (((0,), (0,)), ((), ())), precision=HIGHEST)
        zs = [a + a2 if q == 1 else a - a2 for q in plan.read_classes]
    elif plan.pq:
        z = bmm(m1, m2)  # (n, n, 2, C, S): [P, Q]
        if plan.fused_out:  # (rows (a, b, s), S)^T @ read_pq -> (S, dim_out)
            return jax.lax.dot_general(
                z.reshape(-1, s), const(plan.read_pq.reshape(2 * n * n, -1), dt),
                (((0,), (0,)), ((), ())), precision=HIGHEST)
        zs = [z[:, :, 0] + z[:, :, 1], z[:, :, 0] - z[:, :, 1]]
    else:
        acc: list = [None] * len(plan.classes_out)
        for k1, k2, ko in plan.pairs:
            t = bmm(m1[:, :, k1], m2[:, :, k2])
            acc[ko] = t if acc[ko] is None else acc[ko] + t
        zs = acc
    reads = plan.read if isinstance(plan, SparseMTPPlan) else [plan.read] * len(zs)
    read = [jnp.matmul(const(r.T, dt), z.reshape(n * n, c * s), precision=HIGHEST)
            .reshape(-1, c, s) for r, z in zip(reads, zs, strict=True)]  # (rows, C, S)
    parts = []
    for blk, (mul, ir) in zip(plan.out_blocks, plan.descriptor.irreps_out, strict=True):
        if blk is None:  # no parity pair reaches this output
            parts.append(jnp.zeros((mul * ir.dim, s), dt))
        else:
            k, row, l = blk
            parts.append(jnp.swapaxes(read[k][row:row + 2 * l + 1], 0, 1).reshape(-1, s))
    return (jnp.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]).T


#: tp_spec plan type -> executor.
RUNNERS = {DenseMTPPlan: run, SparseMTPPlan: run}
