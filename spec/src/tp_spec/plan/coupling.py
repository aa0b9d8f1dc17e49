"""A CGTP as its nonzero coupling entries: the layout of the compiled coupling kernels
(:mod:`tp_kernels.coupling`), for the products whose paths are all single-channel (the
``"scalar"`` regime) or unweighted ``uuu`` / ``uvuv`` (the ``"outer"`` regime).

The product is a bilinear form of the flat features (trilinear with the weights)::

    out[b, k[e]] += value[e] * [w, 1][widx[e]] * x1[b, i[e]] * x2[b, j[e]]   for every entry e

whose entries are the nonzero Clebsch-Gordan entries of every path (coefficient folded in),
expanded over the channels (``uvuv``: every ``(u, v)``, ``uuu``: every ``u``); ``widx`` is the
path's weight (single-channel weighted paths) or ``weight_numel`` (unweighted: the 1 of
``[w, 1]``). Real CG blocks are sparse (MIMO ``s2(L)`` full product: 20 % of the dense
entries at L = 2, 11 % at L = 6), so a kernel that runs the entries does 5-10x fewer
multiply-adds than a dense GEMM or per-path einsums.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import folded_cg, offsets

__all__ = ["Coupling", "build_coupling", "run_coupling_numpy"]

_I64 = np.zeros(0, np.int64)


class Coupling(NamedTuple):
    """The entries (module doc): int64 ``i``, ``j``, ``k`` (x1, x2 and output features),
    float64 ``value`` (CG x path coefficient) and int64 ``widx`` (the entry's weight in
    ``[w, 1]``), sorted by ``(i, j, k)``: the entries of one input pair are adjacent."""

    i: np.ndarray
    j: np.ndarray
    k: np.ndarray
    value: np.ndarray
    widx: np.ndarray


def build_coupling(d) -> Coupling:
    """The coupling entries of the CGTP descriptor ``d``; every path single-channel, or
    unweighted ``uuu`` / ``uvuv``."""
    off1, off2, offo = offsets(d.irreps_in1), offsets(d.irreps_in2), offsets(d.irreps_out)
    parts = []
    for p in d.paths:
        cg = folded_cg(p)
        i, j, k = np.nonzero(cg)
        d1, d2, d3 = cg.shape
        if p.mul_in1 == p.mul_in2 == p.mul_out == 1:
            a, b, o = off1[p.i_in1] + i, off2[p.i_in2] + j, offo[p.i_out] + k
            c = cg[i, j, k]
        elif p.has_weight or p.mode not in ("uuu", "uvuv"):
            raise ValueError(f"coupling entries: path {p.lll} ({p.mode}, multiplicities "
                             f"{p.mul_in1}, {p.mul_in2}) is neither single-channel nor "
                             "unweighted uuu / uvuv")
        elif p.mode == "uuu":
            u = np.arange(p.mul_in1)[:, None]
            a, b, o = off1[p.i_in1] + u * d1 + i, off2[p.i_in2] + u * d2 + j, \
                offo[p.i_out] + u * d3 + k
            c = np.broadcast_to(cg[i, j, k], a.shape)
        else:  # uvuv: output channel u * mul_in2 + v
            u = np.arange(p.mul_in1)[:, None, None]
            v = np.arange(p.mul_in2)[None, :, None]
            shape = (p.mul_in1, p.mul_in2, len(i))
            a = np.broadcast_to(off1[p.i_in1] + u * d1 + i, shape)
            b = np.broadcast_to(off2[p.i_in2] + v * d2 + j, shape)
            o = offo[p.i_out] + (u * p.mul_in2 + v) * d3 + k
            c = np.broadcast_to(cg[i, j, k], shape)
        w = p.weight_offset if p.has_weight else d.weight_numel
        parts.append(tuple(np.ravel(x) for x in (a, b, o, c)) + (np.full(np.size(c), w),))
    if not parts:
        return Coupling(_I64, _I64, _I64, np.zeros(0), _I64)
    i, j, k, value, widx = (np.concatenate(x) for x in zip(*parts, strict=True))
    order = np.lexsort((k, j, i))
    return Coupling(*(np.ascontiguousarray(x[order], dtype=np.int64) for x in (i, j, k)),
                    np.ascontiguousarray(value[order], dtype=np.float64),
                    np.ascontiguousarray(widx[order], dtype=np.int64))


def run_coupling_numpy(cp: Coupling, x1: np.ndarray, x2: np.ndarray, w: np.ndarray | None,
                       dim_out: int) -> np.ndarray:
    """The product of the entries ``cp``: ``x1 (B, dim1)``, ``x2 (B, dim2)``, shared ``w``
    ``(numel,)`` or None -> ``(B, dim_out)``."""
    numel = int(cp.widx.max(initial=-1))
    ext = np.ones(numel + 1) if w is None else np.concatenate([np.asarray(w, float), [1.0]])
    terms = (cp.value * ext[cp.widx]) * x1[:, cp.i] * x2[:, cp.j]
    out = np.zeros((x1.shape[0], dim_out))
    np.add.at(out.T, cp.k, terms.T)
    return out
