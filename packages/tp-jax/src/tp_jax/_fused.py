"""The ``fused`` CGTP runners, one per regime plan of :mod:`tp_spec.plan.fused` (the regime is
the plan's: :func:`tp_spec.plan.fused.fused_regime`, the same in every framework).

``"scalar"``: :mod:`tp_jax._scalar`; ``"channelwise"``: :mod:`tp_jax._channelwise`;
``"folded"`` and ``"grouped"`` here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from tp_spec.plan.fused import ChannelwisePlan, FoldedPlan, GroupedPlan, ScalarPlan

from ._channelwise import run_channelwise
from ._fused_blocks import add_block, apply_mode, assemble, block
from ._ops import const, einsum, ix
from ._scalar import run_scalar

__all__ = ["RUNNERS", "run_folded", "run_grouped"]


def run_grouped(plan: GroupedPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    """``"grouped"``: per input pair ``(x2 block @ stack).view(B, v, d1, tot)`` contracted with
    the x1 block, then each path's columns weighted by mode."""
    d, b, dt = plan.descriptor, x1.shape[0], x1.dtype
    blocks: dict[int, jax.Array] = {}
    for ((i1, i2, uu), idx, cols, d1, tot), st in zip(plan.groups, plan.stack, strict=True):
        a = block(x1, d.irreps_in1, i1)  # (B, u, d1)
        v = block(x2, d.irreps_in2, i2)  # (B, v, d2)
        t = einsum("bvj,jk->bvk", v, const(st, dt)).reshape(b, v.shape[1], d1, tot)
        s = einsum("bui,buix->bux" if uu else "bui,bvix->buvx", a, t)
        for n, (c0, c1) in zip(idx, cols, strict=True):
            p = d.paths[n]
            add_block(blocks, p.i_out, apply_mode(p, s[..., c0:c1], w, dt))
    return assemble(d, blocks, b, dt)


def run_folded(plan: FoldedPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    """``"folded"``: the single-channel scalar product of every channel ``u`` (``x1``'s channel
    ``u``, ``x2``, the ``u``-th weight of every path), mapped over the channels; the channels
    stacked back into ``mul_ir``."""
    b, c = x1.shape[0], plan.channels
    x1c = x1[:, ix(plan.x1_index)].reshape(b, c, -1)
    if w is None:
        ys = jax.vmap(lambda a: run_scalar(plan.inner, a, x2, None), in_axes=1, out_axes=1)(x1c)
    else:
        wc = jnp.moveaxis(w[..., ix(plan.weight_index)], -2, 0)  # (C, [B,] numel_single)
        ys = jax.vmap(lambda a, ww: run_scalar(plan.inner, a, x2, ww), in_axes=(1, 0),
                      out_axes=1)(x1c, wc)
    return ys.reshape(b, -1)[:, ix(plan.out_index)]


#: ``fused`` plan type -> runner.
RUNNERS = {ScalarPlan: run_scalar, ChannelwisePlan: run_channelwise, FoldedPlan: run_folded,
           GroupedPlan: run_grouped}
