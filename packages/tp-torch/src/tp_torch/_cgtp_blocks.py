"""What the CGTP executors share: input blocks, path weights, the connection modes' weighting
and channel contraction, output assembly, and the :class:`CGTPKernel` base."""

from __future__ import annotations

import torch
from tp_spec import CGTPDescriptor, Path

from ._common import Kernel

__all__ = ["CGTPKernel", "add_block", "apply_mode", "assemble", "path_weight"]


def path_weight(p: Path, w: torch.Tensor | None) -> torch.Tensor | None:
    """The path's weight block: ``shape`` (shared) or ``(B, *shape)`` (per sample); None if
    the path is unweighted."""
    if not p.has_weight or w is None:
        return None
    sl = p.weight_slice
    if w.dim() == 1:
        return w[sl].reshape(p.weight_shape)
    return w[:, sl].reshape((w.shape[0],) + p.weight_shape)


def apply_mode(p: Path, s: torch.Tensor, wp: torch.Tensor | None) -> torch.Tensor:
    """Weights and channel contraction of one path.

    ``s``: ``(B, u, v, k)`` (uv modes) or ``(B, u, k)`` (uu modes) holding
    ``sum_ij C[i,j,k] x1[u,i] x2[v,j]``; returns ``(B, mul_out, k)``.
    """
    b = s.shape[0]
    k = s.shape[-1]
    mode = p.mode
    batched = wp is not None and wp.dim() > len(p.weight_shape)
    if mode == "uvw":
        if wp is None:
            return s.sum(dim=(1, 2)).unsqueeze(1).expand(b, p.mul_out, k)
        return torch.einsum("buvk,buvw->bwk" if batched else "buvk,uvw->bwk", s, wp)
    if mode == "uvu":
        if wp is None:
            return s.sum(dim=2)
        return torch.einsum("buvk,buv->buk" if batched else "buvk,uv->buk", s, wp)
    if mode == "uvv":
        if wp is None:
            return s.sum(dim=1)
        return torch.einsum("buvk,buv->bvk" if batched else "buvk,uv->bvk", s, wp)
    if mode == "uvuv":
        if wp is not None:
            s = s * wp.unsqueeze(-1)
        return s.reshape(b, p.mul_out, k)
    if mode == "uuw":
        if wp is None:
            return s.sum(dim=1).unsqueeze(1).expand(b, p.mul_out, k)
        return torch.einsum("buk,buw->bwk" if batched else "buk,uw->bwk", s, wp)
    # uuu
    if wp is None:
        return s
    return s * wp.unsqueeze(-1)


def assemble(
    d: CGTPDescriptor, blocks: dict[int, torch.Tensor], b: int, like: torch.Tensor
) -> torch.Tensor:
    """Concatenate output blocks ``{i_out: (B, mul, 2l+1)}``; missing blocks are zeros."""
    parts = []
    for i, (mul, ir) in enumerate(d.irreps_out):
        t = blocks.get(i)
        if t is None:
            parts.append(like.new_zeros((b, mul * ir.dim)))
        else:
            parts.append(t.reshape(b, mul * ir.dim))
    if not parts:
        return like.new_zeros((b, 0))
    return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]


def add_block(blocks: dict[int, torch.Tensor], i: int, t: torch.Tensor) -> None:
    blocks[i] = t if i not in blocks else blocks[i] + t


class CGTPKernel(Kernel):
    """Base of the CGTP executors: the descriptor ``d`` and its input blocks."""

    def __init__(self, d: CGTPDescriptor) -> None:
        super().__init__()
        self.d = d
        self._slices1 = [(s.start, s.stop) for s in d.irreps_in1.slices()]
        self._slices2 = [(s.start, s.stop) for s in d.irreps_in2.slices()]

    def _blk1(self, x1: torch.Tensor, i: int) -> torch.Tensor:
        a, b = self._slices1[i]
        mul, ir = self.d.irreps_in1[i]
        return x1[:, a:b].reshape(x1.shape[0], mul, ir.dim)

    def _blk2(self, x2: torch.Tensor, i: int) -> torch.Tensor:
        a, b = self._slices2[i]
        mul, ir = self.d.irreps_in2[i]
        return x2[:, a:b].reshape(x2.shape[0], mul, ir.dim)
