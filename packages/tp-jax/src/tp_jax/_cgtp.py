"""CGTP methods ``dense`` (one einsum per path) and ``sparse`` (one gather-multiply over every
nonzero term); ``fused`` is :mod:`tp_jax._fused`.

Both compute, for every path ``p`` of a :class:`tp_spec.CGTPDescriptor`,
``out[i_out] += coefficient * W . C(l1, l2, l3) . x1[i_in1] . x2[i_in2]`` contracted over the
channels according to the e3nn mode. Unweighted paths use ``W = 1``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from tp_spec.descriptor import mode_subscripts
from tp_spec.plan.cgtp import DensePlan, SparsePlan

from ._fused_blocks import add_block, assemble, block, path_weight
from ._ops import const, einsum, ix


# ----------------------------------------------------------------------------- dense
def _run_dense(plan: DensePlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    """``dense``: one einsum per path with its folded CG block."""
    d, n, dt = plan.descriptor, x1.shape[0], x1.dtype
    blocks: dict[int, jax.Array] = {}
    for p, c in zip(d.paths, plan.cg, strict=True):
        if p.mul_in1 * p.mul_in2 * p.mul_out == 0:
            continue
        a, b, o, ws = mode_subscripts(p.mode)
        W, batched = path_weight(p, w, dt)
        x = block(x1, d.irreps_in1, p.i_in1)
        y = block(x2, d.irreps_in2, p.i_in2)
        spec = f"n{a}i,n{b}j,ijk,{'n' if batched else ''}{ws}->n{o}k"
        z = einsum(spec, x, y, const(c, dt), W, optimize="optimal")
        add_block(blocks, p.i_out, z.reshape(n, p.mul_out, p.ir_out.dim))
    return assemble(d, blocks, n, dt)


# ----------------------------------------------------------------------------- sparse
def _run_sparse(plan: SparsePlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    """``sparse``: one gather-multiply over every nonzero term, one sorted segment sum."""
    n, dt = x1.shape[0], x1.dtype
    dim_out = plan.descriptor.irreps_out.dim
    if plan.value.size == 0:
        return jnp.zeros((n, dim_out), dt)
    prod = x1[:, ix(plan.i1)] * x2[:, ix(plan.i2)] * const(plan.value, dt)
    if w is not None:
        wext = jnp.concatenate([w, jnp.ones(w.shape[:-1] + (1,), dt)], axis=-1)
        prod = prod * wext[..., ix(plan.widx)]
    out_t = jax.ops.segment_sum(prod.T, ix(plan.out), num_segments=dim_out,
                                indices_are_sorted=True)
    return out_t.T


#: tp_spec plan type -> executor (the ``fused`` regimes: :data:`tp_jax._fused.RUNNERS`).
RUNNERS = {DensePlan: _run_dense, SparsePlan: _run_sparse}
