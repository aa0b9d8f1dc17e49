"""Block helpers of the CGTP executors: input blocks, path weights, mode contraction, output
assembly (flat ``mul_ir`` layout)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import tp_spec
from tp_spec import CGTPDescriptor
from tp_spec.descriptor import mode_subscripts, mode_weight_shape

from ._ops import einsum

__all__ = ["add_block", "apply_mode", "assemble", "block", "path_weight"]


def block(x: jax.Array, irreps: tp_spec.Irreps, i: int) -> jax.Array:
    """Block ``i`` of ``x (N, irreps.dim)`` as ``(N, mul, 2l+1)``."""
    s = irreps.slices()[i]
    mul, ir = irreps[i]
    return x[:, s].reshape(x.shape[0], mul, ir.dim)


def path_weight(p: tp_spec.Path, w: jax.Array | None, dtype) -> tuple[jax.Array, bool]:
    """The weight block of path ``p``: ``(W, batched)``; ones for unweighted paths (and for a
    path with a zero multiplicity, which has no weights: an empty block)."""
    shape = mode_weight_shape(p.mode, p.mul_in1, p.mul_in2, p.mul_out)
    if not p.has_weight or p.weight_numel == 0:
        return jnp.ones(shape, dtype), False
    blk = w[..., p.weight_slice]
    if w.ndim == 1:
        return blk.reshape(shape), False
    return blk.reshape((w.shape[0],) + shape), True


def assemble(d: CGTPDescriptor, blocks: dict[int, jax.Array], n: int, dtype, in1: bool = False
             ) -> jax.Array:
    """Concatenate per-output-block results ``(N, mul, 2l+1)`` into ``(N, irreps_out.dim)``
    (``in1``: per-x1-block results into ``(N, irreps_in1.dim)``); missing blocks are zero."""
    parts = []
    for i, (mul, ir) in enumerate(d.irreps_in1 if in1 else d.irreps_out):
        if mul * ir.dim == 0:
            continue
        blk = blocks.get(i)
        parts.append(jnp.zeros((n, mul * ir.dim), dtype) if blk is None
                     else blk.reshape(n, mul * ir.dim))
    if not parts:
        return jnp.zeros((n, 0), dtype)
    return jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]


def add_block(blocks: dict[int, jax.Array], i: int, v: jax.Array) -> None:
    """``blocks[i] += v`` (``v`` the first term if there is none yet)."""
    blocks[i] = v if i not in blocks else blocks[i] + v


def apply_mode(p: tp_spec.Path, z: jax.Array, w: jax.Array | None, dtype) -> jax.Array:
    """Channel weights of path ``p`` on ``z``: ``(N, u, v, k)`` or ``(N, u, k)`` (uu modes)."""
    a, b, o, ws = mode_subscripts(p.mode)
    W, batched = path_weight(p, w, dtype)
    zin = "n" + (a if a == b else a + b) + "k"
    res = einsum(f"{zin},{'n' if batched else ''}{ws}->n{o}k", z, W)
    return res.reshape(z.shape[0], p.mul_out, p.ir_out.dim)
