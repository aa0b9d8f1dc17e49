"""The ``fused`` CGTP runner of the ``"outer"`` regime (:class:`tp_spec.plan.outer.OuterPlan`:
every path unweighted ``uvuv`` / ``uuu``, the full CGTP).

XLA on CPU runs gathers over the plan's sparse entries ~10x slower than dense matmuls (MIMO
L=4, batch 10,000: 3.7 s against 0.1 s), so the product runs dense: per input block pair one
matmul of the outer product ``(B, [u v,] d1 d2)`` with the pair's CG blocks stacked along ``k``
(:attr:`OuterPlan.pairs`), each path's columns added into its output block; derivatives are
JAX's. Single-channel products of at most ``tuning.outer_jax_scalar_max_entries`` dense
entries run the ``"scalar"`` regime's order-blocked layout instead
(:func:`tp_jax._scalar.run_scalar`): its reverse mode is faster than JAX's transpose of the
pair matmuls (see the threshold's measurements).
"""

from __future__ import annotations

import jax
from tp_spec.plan.outer import OuterPlan

from ._fused_blocks import add_block, assemble, block
from ._ops import const, einsum
from ._scalar import run_scalar

__all__ = ["run_outer"]


def run_outer(plan: OuterPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None) -> jax.Array:
    """``x1 (B, dim1)``, ``x2 (B, dim2)`` -> ``(B, dim_out)`` (``w`` is None: no weights)."""
    d, b, dt = plan.descriptor, x1.shape[0], x1.dtype
    if plan.scalar is not None:  # small single-channel products (the plan decides)
        return run_scalar(plan.scalar, x1, x2, None)
    blocks: dict[int, jax.Array] = {}
    for i1, i2, uu, st, outs in plan.pairs:
        xa, xb = block(x1, d.irreps_in1, i1), block(x2, d.irreps_in2, i2)  # (B, u, d1), (B, v, d2)
        k = xa.shape[2] * xb.shape[2]
        if uu:
            o = (xa[:, :, :, None] * xb[:, :, None, :]).reshape(b, xa.shape[1], k)
        else:
            o = (xa[:, :, None, :, None] * xb[:, None, :, None, :]).reshape(
                b, xa.shape[1] * xb.shape[1], k)
        t = einsum("bnk,kc->bnc", o, const(st, dt))
        for io, c0, c1 in outs:
            add_block(blocks, io, t[..., c0:c1])
    return assemble(d, blocks, b, dt)
