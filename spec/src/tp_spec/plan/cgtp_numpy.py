"""NumPy helpers shared by the NumPy executors of the CGTP plans: input blocks, path weights,
the connection modes' weighting and channel contraction, output assembly."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..descriptor import Path

__all__ = ["apply_mode_numpy", "assemble_numpy", "block", "path_weight_numpy"]


def block(x: np.ndarray, irreps, i: int) -> np.ndarray:
    """Block ``i`` of ``x (B, irreps.dim)`` as ``(B, mul, 2l + 1)``."""
    s = irreps.slices()[i]
    mul, ir = irreps[i]
    return x[:, s].reshape(x.shape[0], mul, ir.dim)


def path_weight_numpy(p: Path, w: np.ndarray | None) -> np.ndarray | None:
    """Path ``p``'s weight block: ``weight_shape`` (shared) or ``(B, *weight_shape)``; None if
    the path is unweighted."""
    if not p.has_weight:
        return None
    blk = w[..., p.weight_slice]
    return blk.reshape(blk.shape[:-1] + p.weight_shape)


def apply_mode_numpy(p: Path, s: np.ndarray, wp: np.ndarray | None) -> np.ndarray:
    """Weights and channel contraction of one path: ``s`` is ``(B, u, v, k)`` (``uv`` modes) or
    ``(B, u, k)`` (``uu`` modes) holding ``sum_ij C[i,j,k] x1[u,i] x2[v,j]``; returns
    ``(B, mul_out, k)``."""
    b, k = s.shape[0], s.shape[-1]
    wb = wp if wp is None or wp.ndim > len(p.weight_shape) else wp[None]
    if p.mode == "uvw":
        if wb is None:
            return np.broadcast_to(s.sum(axis=(1, 2))[:, None], (b, p.mul_out, k))
        return np.einsum("buvk,buvw->bwk", s, np.broadcast_to(wb, (b,) + wb.shape[1:]))
    if p.mode in ("uvu", "uvv"):
        if wb is not None:
            s = s * wb[..., None]
        return s.sum(axis=2 if p.mode == "uvu" else 1)
    if p.mode == "uvuv":
        if wb is not None:
            s = s * wb[..., None]
        return s.reshape(b, p.mul_out, k)
    if p.mode == "uuw":
        if wb is None:
            return np.broadcast_to(s.sum(axis=1)[:, None], (b, p.mul_out, k))
        return np.einsum("buk,buw->bwk", s, np.broadcast_to(wb, (b,) + wb.shape[1:]))
    return s if wb is None else s * wb[..., None]  # uuu


def assemble_numpy(d, blocks: dict[int, np.ndarray], b: int) -> np.ndarray:
    """Output blocks ``{i_out: (B, mul, 2l + 1)}`` -> ``(B, dim_out)``; missing blocks zero."""
    out = np.zeros((b, d.irreps_out.dim))
    for i, s in enumerate(d.irreps_out.slices()):
        if i in blocks:
            out[:, s] = blocks[i].reshape(b, -1)
    return out
