"""CGTP plans: ``dense``, ``sparse``, ``fused`` and the adapters ``cueq``, ``oeq``.

Every CGTP method adds, for every path ``p``, ``W_p . C_p . x1[i_in1] . x2[i_in2]`` into output
block ``i_out`` (``C_p`` the path's CG block with its coefficient folded in, :func:`folded_cg`),
contracted over channels by the path's connection mode. The plans differ in how the CG
contraction is organised; this module builds them and runs them in NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .base import Method, Plan, folded_cg
from .cgtp_numpy import (
    UU_MODES,
    apply_mode_numpy,
    assemble_numpy,
    block,
    path_weight_numpy,
)
from .fused import build_fused, run_fused_numpy

if TYPE_CHECKING:
    from ..descriptor import Path
    from .tuning import Tuning

__all__ = ["METHODS", "DensePlan", "SparsePlan", "apply_mode_numpy"]


def _is_cgtp(d) -> str | None:
    return None if d.kind == "cgtp" else f"not a CGTP descriptor ({type(d).__name__})"


# ----------------------------------------------------------------------------- dense
@dataclass(frozen=True, eq=False)
class DensePlan(Plan):
    """``dense``: one dense ``(d1, d2, d3)`` contraction per path (the e3nn algorithm).
    ``cg[n]``: path ``n``'s folded CG block."""

    cg: tuple[np.ndarray, ...]


def build_dense(d, tuning: Tuning) -> DensePlan:
    return DensePlan(d, "dense", tuning, tuple(folded_cg(p) for p in d.paths))


def run_dense_numpy(plan: DensePlan, x1, x2, w):
    d = plan.descriptor
    blocks: dict[int, np.ndarray] = {}
    for p, c in zip(d.paths, plan.cg, strict=True):
        a, v = block(x1, d.irreps_in1, p.i_in1), block(x2, d.irreps_in2, p.i_in2)
        s = (np.einsum("bui,bvj,ijk->buk", a, v, c) if p.mode in UU_MODES
             else np.einsum("bui,bvj,ijk->buvk", a, v, c))
        y = apply_mode_numpy(p, s, path_weight_numpy(p, w))
        blocks[p.i_out] = blocks[p.i_out] + y if p.i_out in blocks else y
    return assemble_numpy(d, blocks, x1.shape[0])


# ----------------------------------------------------------------------------- sparse
@dataclass(frozen=True, eq=False)
class SparsePlan(Plan):
    """``sparse``: per path the nonzero CG entries ``(i, j, k, value)``; the product gathers
    ``x1[i]`` and ``x2[j]``, multiplies by the values and scatter-adds into ``k`` (the paper's
    sparse variant: fewer FLOPs, more memory traffic)."""

    entries: tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], ...]


def build_sparse(d, tuning: Tuning) -> SparsePlan:
    entries = []
    for p in d.paths:
        c = folded_cg(p)
        i, j, k = np.nonzero(c)
        entries.append((i, j, k, c[i, j, k]))
    return SparsePlan(d, "sparse", tuning, tuple(entries))


def run_sparse_numpy(plan: SparsePlan, x1, x2, w):
    d = plan.descriptor
    b = x1.shape[0]
    blocks: dict[int, np.ndarray] = {}
    for p, (i, j, k, val) in zip(d.paths, plan.entries, strict=True):
        a = block(x1, d.irreps_in1, p.i_in1)[:, :, i]  # (B, u, nnz)
        v = block(x2, d.irreps_in2, p.i_in2)[:, :, j] * val  # (B, v, nnz)
        if p.mode in UU_MODES:
            s = np.zeros((b, p.mul_in1, p.ir_out.dim))
            np.add.at(s, (slice(None), slice(None), k), a * v)
        else:
            s = np.zeros((b, p.mul_in1, p.mul_in2, p.ir_out.dim))
            np.add.at(s, (slice(None), slice(None), slice(None), k), a[:, :, None] * v[:, None])
        y = apply_mode_numpy(p, s, path_weight_numpy(p, w))
        blocks[p.i_out] = blocks[p.i_out] + y if p.i_out in blocks else y
    return assemble_numpy(d, blocks, b)


METHODS = (
    Method("cgtp", "fused", "whole-product contractions chosen from the descriptor's structure "
           "(scalar, channelwise, folded or grouped regime)", build=build_fused,
           numpy=run_fused_numpy, available=_is_cgtp, cost_model="fused"),
    Method("cgtp", "dense", "one dense CG contraction per path (the e3nn algorithm)",
           build=build_dense, numpy=run_dense_numpy, available=_is_cgtp, cost_model="dense"),
    Method("cgtp", "sparse", "gather the nonzero CG entries, multiply, scatter-add",
           build=build_sparse, numpy=run_sparse_numpy, available=_is_cgtp,
           cost_model="sparse"),
    Method("cgtp", "cueq", "cuEquivariance segmented polynomial (naive on CPU, its kernels on "
           "NVIDIA GPUs)", available=_is_cgtp, adapter="cuequivariance"),
    Method("cgtp", "oeq", "OpenEquivariance TensorProduct (NVIDIA GPUs only)",
           available=_is_cgtp, frameworks=("torch",), adapter="openequivariance",
           cost_model="oeq"),
)
