"""The ``fused`` CGTP runner of the ``"scalar"`` regime (:class:`tp_spec.plan.fused.ScalarPlan`,
every block multiplicity 1).

Shared or no weights: the plan's order-blocked layout (:mod:`tp_spec.plan.order_blocks`): ``K``
(CG x coefficient x weight of every path, weights folded in at run time by one gather of a
constant-size array), paired rows ``x1[i] x2[j] + s x1[i'] x2[j']``, one batched GEMM per
bucket of order groups. The batch runs through ``lax.map`` in chunks of
``tuning.jax_scalar_chunk_rows`` rows, transposed to ``(features, rows)``, so that the products
of one chunk stay in cache (that, not the MACs, bounds the speed on CPU). Reverse mode: every
fixed row gather is a ``row_take`` (:mod:`tp_jax._rows`) whose transpose is a gather +
reshape-sum, not a scatter-add, and the chunk step is ``jax.checkpoint``ed (the backward
recomputes a chunk's products in cache instead of storing them for the batch).

No weights (the full and elementwise CGTP): the chunk product is a :mod:`tp_jax._multilinear`
primitive. Its forward runs the split order blocks
(:attr:`~tp_spec.plan.fused.ScalarPlan.order_blocks_split`: each order group cut into its
connected blocks, one per input pair when every path writes its own output; 5-30x fewer
multiply-adds for the full CGTP), its transposes JAX's of the unsplit layout (fewer, larger
GEMMs, faster in reverse mode), so neither derivative recomputes the forward.

Per-sample weights: ``(x1 (x) x2) @ cg_stack``, then one small weighted sum per output block.

Without weights or with shared weights on every path, the whole product is one multilinear
primitive (:mod:`tp_jax._coupling`) whose functions are, on CPU, the compiled coupling kernels
through XLA's FFI, and elsewhere (and with ``TP_JAX_CPU_KERNELS=0``) this module's code and
JAX's transposes of it.

Range: ``x1`` enters scaled by ``plan.x1_scale`` and the coupling constants by its inverse
(:attr:`tp_spec.plan.fused.ScalarPlan.x1_scale`), so float32 inputs whose products overflow
while the output does not give finite outputs.

NaN and inf: ``K`` holds the structural zeros between blocks, and ``NaN x 0`` is NaN, so a
non-finite entry of one input block may reach every output of its sample (never another
sample; docs/numerics.md). The folded regime runs this per channel, with the same contract.
"""

from __future__ import annotations

from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
from tp_spec.plan.fused import ScalarPlan

from . import _coupling
from ._fused_blocks import assemble
from ._multilinear import Multilinear, Slot, multilinear
from ._ops import const, einsum, ix
from ._rows import row_take

__all__ = ["run_scalar"]


@lru_cache(maxsize=64)
def _takes(plan: ScalarPlan, split: bool = False):
    """The ``row_take`` maps of ``plan``'s order blocks (``split``: the split layout; built
    once per plan): per bucket ``(x1 rows, x2 rows)`` (``[i; j]`` for paired rows), per ``K``
    layer the weight gather, and the output gather."""
    ob, d = plan.order_blocks_split if split else plan.order_blocks, plan.descriptor
    z1, z2, numel = d.irreps_in1.dim, d.irreps_in2.dim, d.weight_numel
    rows = []
    for b in ob.buckets:
        r = b.rows
        rows.append((row_take(np.concatenate([r[0], r[2]]) if b.paired else r[0], z1),
                     row_take(np.concatenate([r[1], r[3]]) if b.paired else r[1], z2)))
    layers = [row_take(wix, numel) for _, wix in ob.k_layers]
    return rows, layers, row_take(ob.out_index, ob.out_size)


def _k_flat(plan: ScalarPlan, ob, w: jax.Array | None, layers, dt) -> jax.Array:
    """The flat ``K`` of the order blocks ``ob`` with the shared weights ``w`` folded in."""
    inv = 1.0 / plan.x1_scale
    if ob.k_const is not None:
        return const(ob.k_const * inv, dt)
    numel = plan.descriptor.weight_numel
    kflat = None
    for (val, wix), take in zip(ob.k_layers, layers, strict=True):
        part = const(val * inv, dt) * take(w[:, None])[:, 0]
        if np.any(wix == numel):  # unweighted entries read the zero row: add their values
            part = part + const(np.where(wix == numel, val * inv, 0.0), dt)
        kflat = part if kflat is None else kflat + part
    return kflat


def _body(plan: ScalarPlan, w: jax.Array | None, dt, split: bool = False):
    """The product of one batch chunk, transposed: ``(d1, B), (d2, B) -> (dim_out, B)``
    (``split``: the split order blocks)."""
    ob = plan.order_blocks_split if split else plan.order_blocks
    rows, layers, out_take = _takes(plan, split)
    kflat = _k_flat(plan, ob, w, layers, dt)
    ks = [kflat[b.k_start:b.k_start + b.n_groups * b.n_cols * b.n_rows]
          .reshape(b.n_groups, b.n_cols, b.n_rows) for b in ob.buckets]

    def body(x1t: jax.Array, x2t: jax.Array) -> jax.Array:
        bsz = x1t.shape[1]
        parts = []
        for b, k, (take1, take2) in zip(ob.buckets, ks, rows, strict=True):
            a1, a2 = take1(x1t), take2(x2t)
            nrow = b.rows.shape[1]
            if b.paired:
                r = a1[:nrow] * a2[:nrow] + const(b.sign, dt)[:, None] * (a1[nrow:] * a2[nrow:])
            else:
                r = a1 * a2
            y = einsum("gcr,grb->gcb", k, r.reshape(b.n_groups, b.n_rows, bsz))
            parts.append(y.reshape(b.n_groups * b.n_cols, bsz))
        if not parts:
            return jnp.zeros((plan.descriptor.irreps_out.dim, bsz), dt)
        return out_take(jnp.concatenate(parts, axis=0) if len(parts) > 1 else parts[0])

    return body


@lru_cache(maxsize=128)
def _unweighted(plan: ScalarPlan, dt) -> Multilinear:
    """The unweighted chunk product (transposed layout) as a :mod:`tp_jax._multilinear`
    primitive: the forward in the split order blocks (fewer multiply-adds), its transposes
    JAX's of the unsplit layout (fewer, larger GEMMs), neither recomputing the forward."""
    d = plan.descriptor
    dims = (d.irreps_in1.dim, d.irreps_in2.dim, d.irreps_out.dim)

    def fwd(x1t: jax.Array, x2t: jax.Array) -> jax.Array:  # the tables built per trace
        return _body(plan, None, dt, split=True)(x1t, x2t)

    def transpose(side: int, other: jax.Array, ct: jax.Array) -> jax.Array:
        unsplit = _body(plan, None, dt)
        shape = jax.ShapeDtypeStruct((dims[side], ct.shape[1]), ct.dtype)
        f = (lambda x: unsplit(x, other)) if side == 0 else (lambda x: unsplit(other, x))
        return jax.linear_transpose(f, shape)(ct)[0]

    return Multilinear(fns=(lambda x2, ct: transpose(0, x2, ct),
                            lambda x1, ct: transpose(1, x1, ct), fwd),
                       slots=tuple(Slot(n, rows_axis=1) for n in dims))


def _run_blocks(plan: ScalarPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    n, dt = x1.shape[0], x1.dtype
    if w is None and plan.descriptor.weight_numel == 0:
        body = step_body = partial(multilinear, _unweighted(plan, jnp.dtype(dt)))  # residuals:
        # the chunk's inputs already, no checkpoint needed
    else:
        body = _body(plan, w, dt)
        # checkpoint: reverse mode recomputes a chunk's products (cheap, in cache) instead of
        # stacking them for the whole batch as scan residuals (memory bound)
        step_body = jax.checkpoint(body)

    chunk = plan.tuning.jax_scalar_chunk_rows
    if n <= chunk:
        return body(x1.T, x2.T).T
    nc = -(-n // chunk)
    pad = nc * chunk - n
    a = jnp.pad(x1, ((0, pad), (0, 0))).reshape(nc, chunk, -1).transpose(0, 2, 1)
    b = jnp.pad(x2, ((0, pad), (0, 0))).reshape(nc, chunk, -1).transpose(0, 2, 1)
    out = jax.lax.map(lambda ab: step_body(*ab), (a, b))  # (nc, dim_out, chunk)
    return out.transpose(0, 2, 1).reshape(nc * chunk, -1)[:n]


def _run_stacked(plan: ScalarPlan, x1: jax.Array, x2: jax.Array, w: jax.Array):
    """Per-sample weights ``w (B, numel)``."""
    d, b, dt = plan.descriptor, x1.shape[0], x1.dtype
    outer = (x1[:, :, None] * x2[:, None, :]).reshape(b, -1)
    y = einsum("bn,nk->bk", outer, const(plan.cg_stack / plan.x1_scale, dt))  # (B, sum d3)
    wext = jnp.concatenate([w, jnp.ones((b, 1), dt)], axis=1)[:, ix(plan.cg_stack_w)]
    blocks, wcol = {}, 0
    for io, col, npaths, d3 in plan.out_groups:
        yo = y[:, col:col + npaths * d3].reshape(b, npaths, d3)
        blocks[io] = einsum("bpk,bp->bk", yo, wext[:, wcol:wcol + npaths])
        wcol += npaths
    return assemble(d, blocks, b, dt)


def run_scalar(plan: ScalarPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    """``x1 (B, dim1)``, ``x2 (B, dim2)``, ``w`` None / ``(numel,)`` / ``(B, numel)`` ->
    ``(B, dim_out)``."""
    if _coupling.applies(plan, x1.dtype, w):  # range-scaled by the kernels themselves
        return _coupling.run(plan, x1, x2, w, _run_scaled)
    scale = plan.x1_scale
    if w is not None and w.ndim == 2:
        return _run_stacked(plan, _scaled(x1, scale), x2, w)
    return _run_blocks(plan, _scaled(x1, scale), x2, w)


def _scaled(x1: jax.Array, scale: float) -> jax.Array:
    return x1 * jnp.asarray(scale, x1.dtype) if scale != 1.0 else x1


def _run_scaled(plan: ScalarPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    """:func:`_run_blocks` of unscaled ``x1`` (the XLA code of :mod:`tp_jax._coupling`)."""
    return _run_blocks(plan, _scaled(x1, plan.x1_scale), x2, w)
