"""Channel layout shared by the GTP and MTP kernels: per-degree weights and block gathers.

Inputs are ``x1 (N, dim1)`` with blocks ``(C, 2l+1)`` and ``x2 (N, dim2)`` with blocks
``(C2, 2l+1)``, ``C2`` in ``{C, 1}`` (1: broadcast over the channels of ``x1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import tp_spec

from ._ops import const, ix


@dataclass
class ChannelLayout:
    """Static indices of one GTP/MTP descriptor.

    ``w_index1/2/out``: for every feature of ``x1``/``x2``/output, the index of its per-degree
    weight in the flat weight vector (``None`` without weights).
    """

    channels: int
    channels2: int
    w_index1: np.ndarray | None
    w_index2: np.ndarray | None
    w_index_out: np.ndarray | None


def _weight_index(irreps: tp_spec.Irreps, start: int, channels: int) -> np.ndarray:
    idx = []
    for i, (mul, ir) in enumerate(irreps):
        for c in range(mul):
            idx.extend([start + i * channels + c] * ir.dim)
    return np.array(idx, dtype=np.int64)


def channel_layout(d) -> ChannelLayout:
    c, c2 = d.channels, d.channels_in2
    if not d.per_degree_weights:
        return ChannelLayout(c, c2, None, None, None)
    n1, n2 = len(d.irreps_in1), len(d.irreps_in2)
    return ChannelLayout(
        c, c2,
        _weight_index(d.irreps_in1, 0, c),
        _weight_index(d.irreps_in2, n1 * c, c2),
        _weight_index(d.irreps_out, n1 * c + n2 * c2, c),
    )


def scale_inputs(layout: ChannelLayout, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    """Apply ``w1``, ``w2`` to the inputs; return ``(x1, x2, output multiplier or None)``."""
    if w is None or layout.w_index1 is None:
        return x1, x2, None
    return (x1 * w[..., ix(layout.w_index1)], x2 * w[..., ix(layout.w_index2)],
            w[..., ix(layout.w_index_out)])


def block_index(irreps: tp_spec.Irreps, blocks, rows: list[tuple[int, int]], channels: int,
                pad: int) -> np.ndarray:
    """Gather index ``(len(rows), channels)`` into a flat feature vector.

    ``rows``: ``(l, m)`` pairs; each is taken from the block of degree ``l`` among ``blocks``
    (indices into ``irreps``) or ``pad`` (a zero column) if there is none.
    """
    offs = [s.start for s in irreps.slices()]
    by_l = {irreps[i].ir.l: i for i in blocks}
    out = np.full((len(rows), channels), pad, dtype=np.int64)
    for r, (l, m) in enumerate(rows):
        if l in by_l and abs(m) <= l:
            i = by_l[l]
            mul, ir = irreps[i]
            for c in range(channels):
                out[r, c] = offs[i] + (c if mul > 1 else 0) * ir.dim + l + m
    return out


def with_zero_column(x: jax.Array) -> jax.Array:
    """``(N, dim) -> (N, dim + 1)`` with a zero last column (the target of pad indices)."""
    return jnp.concatenate([x, jnp.zeros(x.shape[:-1] + (1,), x.dtype)], axis=-1)


def finish(out: jax.Array, mult: jax.Array | None) -> jax.Array:
    return out if mult is None else out * mult


__all__ = ["ChannelLayout", "block_index", "channel_layout", "const", "finish",
           "scale_inputs", "with_zero_column"]
