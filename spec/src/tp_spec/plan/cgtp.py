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

from .. import cost
from ..descriptor import UU_MODES
from .base import Method, Plan, folded_cg, offsets
from .cgtp_numpy import (
    apply_mode_numpy,
    assemble_numpy,
    block,
    path_weight_numpy,
)
from .cueq import cueq_unsupported_reason
from .fused import build_fused, run_fused_numpy

if TYPE_CHECKING:
    from ..descriptor import Path
    from .tuning import Tuning

__all__ = ["METHODS", "DensePlan", "SparsePlan", "apply_mode_numpy"]


def _model(name: str):
    """Per-sample FLOPs of the descriptor-level model ``name`` of :data:`tp_spec.cost.MODELS`."""
    return lambda d: cost.flops(d, 1, name)


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
        s = (np.einsum("bui,buj,ijk->buk", a, v, c) if p.mode in UU_MODES
             else np.einsum("bui,bvj,ijk->buvk", a, v, c))
        y = apply_mode_numpy(p, s, path_weight_numpy(p, w))
        blocks[p.i_out] = blocks[p.i_out] + y if p.i_out in blocks else y
    return assemble_numpy(d, blocks, x1.shape[0])


# ----------------------------------------------------------------------------- sparse
@dataclass(frozen=True, eq=False)
class SparsePlan(Plan):
    """``sparse``: every nonzero term of the product, channels included, as one flat list (the
    paper's sparse variant: fewer FLOPs, more memory traffic). Term ``t`` adds
    ``value[t] * x1[i1[t]] * x2[i2[t]] * [w, 1][widx[t]]`` into column ``out[t]`` (``widx`` is
    ``weight_numel`` for unweighted paths); terms are sorted by ``out``."""

    i1: np.ndarray
    i2: np.ndarray
    out: np.ndarray
    widx: np.ndarray
    value: np.ndarray


def _channel_terms(p: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Path ``p``'s channel combinations ``(u, v, w_out, flat weight index)`` by its mode."""
    m1, m2, mo = p.mul_in1, p.mul_in2, p.mul_out
    if p.mode == "uvw":
        u, v, o = (g.ravel() for g in np.meshgrid(np.arange(m1), np.arange(m2), np.arange(mo),
                                                  indexing="ij"))
        return u, v, o, (u * m2 + v) * mo + o
    if p.mode in ("uvu", "uvv", "uvuv"):
        u, v = (g.ravel() for g in np.meshgrid(np.arange(m1), np.arange(m2), indexing="ij"))
        o = {"uvu": u, "uvv": v, "uvuv": u * m2 + v}[p.mode]
        return u, v, o, u * m2 + v
    if p.mode == "uuw":
        u, o = (g.ravel() for g in np.meshgrid(np.arange(m1), np.arange(mo), indexing="ij"))
        return u, u, o, u * mo + o
    u = np.arange(m1)  # uuu
    return u, u, u, u


def build_sparse(d, tuning: Tuning) -> SparsePlan:
    o1, o2, oo = offsets(d.irreps_in1), offsets(d.irreps_in2), offsets(d.irreps_out)
    terms = []
    for p in d.paths:
        c = folded_cg(p)
        a, b, k = np.nonzero(c)
        if a.size == 0 or p.mul_in1 * p.mul_in2 * p.mul_out == 0:
            continue
        u, v, o, wflat = _channel_terms(p)
        wi = p.weight_offset + wflat if p.has_weight else np.full_like(wflat, d.weight_numel)
        shape = (u.size, a.size)
        terms.append(np.stack([
            (o1[p.i_in1] + u[:, None] * p.ir_in1.dim + a).ravel(),
            (o2[p.i_in2] + v[:, None] * p.ir_in2.dim + b).ravel(),
            (oo[p.i_out] + o[:, None] * p.ir_out.dim + k).ravel(),
            np.broadcast_to(wi[:, None], shape).ravel(),
        ]).astype(np.int64))
        terms.append(np.broadcast_to(c[a, b, k], shape).ravel()[None])
    idx = np.concatenate(terms[0::2], axis=1) if terms else np.zeros((4, 0), np.int64)
    val = np.concatenate(terms[1::2], axis=1)[0] if terms else np.zeros(0)
    order = np.argsort(idx[2], kind="stable")
    idx, val = idx[:, order], val[order]
    return SparsePlan(d, "sparse", tuning, idx[0], idx[1], idx[2], idx[3], val)


def run_sparse_numpy(plan: SparsePlan, x1, x2, w):
    d = plan.descriptor
    prod = x1[:, plan.i1] * x2[:, plan.i2] * plan.value
    if w is not None:
        wext = np.concatenate([w, np.ones(w.shape[:-1] + (1,))], axis=-1)
        prod = prod * wext[..., plan.widx]
    out = np.zeros((x1.shape[0], d.irreps_out.dim))
    np.add.at(out, (slice(None), plan.out), prod)
    return out


METHODS = (
    Method("cgtp", "fused", "whole-product contractions chosen from the descriptor's structure "
           "(scalar, channelwise, folded or grouped regime)", build=build_fused,
           numpy=run_fused_numpy, available=_is_cgtp, flops=_model("fused")),
    Method("cgtp", "dense", "one dense CG contraction per path (the e3nn algorithm)",
           build=build_dense, numpy=run_dense_numpy, available=_is_cgtp, flops=_model("dense")),
    Method("cgtp", "sparse", "gather the nonzero CG entries, multiply, scatter-add",
           build=build_sparse, numpy=run_sparse_numpy, available=_is_cgtp,
           flops=_model("sparse")),
    Method("cgtp", "cueq", "cuEquivariance segmented polynomials, one per connection mode "
           "(naive on CPU, its kernels on NVIDIA GPUs)", available=cueq_unsupported_reason,
           adapter="cuequivariance"),
    Method("cgtp", "oeq", "OpenEquivariance TensorProduct (NVIDIA GPUs only)",
           available=_is_cgtp, frameworks=("torch",), adapter="openequivariance",
           flops=_model("oeq")),
)
