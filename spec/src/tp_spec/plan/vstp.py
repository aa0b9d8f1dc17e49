"""VSTP plan ``grid``: the vector fields of both inputs on a Gauss-Legendre grid, the four
pointwise cross products, the projection back onto the output's vector spherical harmonics
(:mod:`tp_spec.vstp`), plus the scalar CGTP part.

Per channel everything is linear up to the cross product, so the plan folds each step into
one dense matrix: ``to_grid1 (n1, 2 * 3 * npts)`` takes one channel's nonscalar features of
``x1`` to the Cartesian components of its fields ``F_{+1}, F_{-1}`` at the ``npts`` grid
points (the VSH slots of :func:`tp_spec.vsh.embedding` times the spherical harmonics at the
points), likewise ``to_grid2``; ``project (2 * 3 * npts, no)`` takes the output fields
``H_{+1} = F1_+ x F2_+ + F1_- x F2_-`` and ``H_{-1} = F1_+ x F2_- + F1_- x F2_+`` to one
channel's ``no`` output features (quadrature weights, ``1 / 4pi`` and the output slots folded
in). The grid is ``s2grid_for(*d.field_degrees())``: exact. The transforms are dense
(``O(L^4)`` per channel, not the separable ``O(L^3)`` of GTP's grid).

Scalars: ``(0, p1) x (0, p2) -> (0, p1 p2)`` from the gathers ``scalar_index1/2`` (columns
``[0e, 0o]``) through ``scalar_out (2, no)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cost import per_degree_flops
from .base import Method, Plan, chunk_rows
from .gtp import _weight_index, scale_inputs_numpy, with_zero_column_numpy

if TYPE_CHECKING:
    from .tuning import Tuning

__all__ = ["METHODS", "VSTPGridPlan", "build_grid", "cross_last3", "flops_grid"]


def _is_vstp(d) -> str | None:
    return None if d.kind == "vstp" else f"not a VSTP descriptor ({type(d).__name__})"


@dataclass(frozen=True, eq=False)
class VSTPGridPlan(Plan):
    """``grid`` (module docstring).

    ``channels``, ``channels2`` (1: ``x2`` broadcasts); ``weight_index1/2/out``: per flat
    feature, its per-degree weight (``None`` without weights); ``vector``: whether the field
    part computes; ``npts`` grid points (``n_theta * n_phi``); ``index1 (C, n1)``,
    ``index2 (C2, n2)``: gathers of each channel's nonscalar features (entry ``dim``: zero);
    ``to_grid1 (n1, 6 npts)``, ``to_grid2 (n2, 6 npts)``: features -> field values, layout
    ``(P in (+1, -1), component, point)``; ``project (6 npts, no)``: ``[H_+, H_-]`` -> output
    features of one channel; ``scalar``: whether the scalar part computes;
    ``scalar_index1 (C, 2)``, ``scalar_index2 (C2, 2)``: gathers of ``[0e, 0o]`` (``dim``:
    zero); ``scalar_out (2, no)``: ``[0e, 0o]`` products -> output features;
    ``out_index (dim_out,)``: flat output feature -> entry of the ``(C, no)`` product array;
    ``row_entries``: intermediate entries per batch row."""

    channels: int
    channels2: int
    weight_index1: np.ndarray | None
    weight_index2: np.ndarray | None
    weight_index_out: np.ndarray | None
    vector: bool
    n_theta: int
    n_phi: int
    npts: int
    index1: np.ndarray
    index2: np.ndarray
    to_grid1: np.ndarray
    to_grid2: np.ndarray
    project: np.ndarray
    scalar: bool
    scalar_index1: np.ndarray
    scalar_index2: np.ndarray
    scalar_out: np.ndarray
    out_index: np.ndarray
    n_out: int
    row_entries: int

    @property
    def active(self) -> bool:
        """False if the product is zero (no path)."""
        return self.vector or self.scalar

    def chunk_rows(self, batch: int) -> int | None:
        """Rows per chunk of a ``batch`` (``tuning.function_chunk_*``); ``None``: one piece."""
        t = self.tuning
        return chunk_rows(batch, self.row_entries, t.function_chunk_entries,
                          t.function_chunk_min_rows)


def _nonscalar(irreps) -> tuple[list[int], Any]:
    """The nonscalar blocks of ``irreps``: ``(their block indices, their irreps)``."""
    from ..irreps import Irreps

    sel = [i for i, (_, ir) in enumerate(irreps) if ir.l > 0]
    return sel, Irreps([irreps[i] for i in sel])


def _gather(irreps, sel: list[int], channels: int) -> np.ndarray:
    """``(channels, n)``: flat column of channel ``c``'s feature ``k`` of the blocks ``sel``."""
    slices = irreps.slices()
    cols = []
    for c in range(channels):
        row = []
        for i in sel:
            dim = irreps[i].ir.dim
            start = slices[i].start + c * dim
            row.extend(range(start, start + dim))
        cols.append(row)
    return np.asarray(cols, dtype=np.int64).reshape(channels, -1)


def _scalar_gather(irreps, channels: int) -> np.ndarray:
    """``(channels, 2)``: flat columns of the ``0e`` and ``0o`` features (``dim``: zero)."""
    out = np.full((channels, 2), irreps.dim, dtype=np.int64)
    for (mul, ir), sl in zip(irreps, irreps.slices(), strict=True):
        if ir.l == 0:
            out[:, 0 if ir.p == 1 else 1] = sl.start + np.arange(mul)
    return out


def build_grid(d, tuning: Tuning) -> VSTPGridPlan:
    from ..s2grid import s2grid_for
    from ..spherical_harmonics import spherical_harmonics
    from ..vsh import embedding

    c, cb = d.channels, d.channels_in2
    n1, n2 = len(d.irreps_in1), len(d.irreps_in2)
    w1 = w2 = wo = None
    if d.weight_numel:
        w1 = _weight_index(d.irreps_in1, 0, c)
        w2 = _weight_index(d.irreps_in2, n1 * c, cb)
        wo = _weight_index(d.irreps_out, n1 * c + n2 * cb, c)
    l1, l2, lo = d.field_degrees()
    vector = any(p.ir_in1.l > 0 for p in d.paths)
    scalar = any(p.ir_in1.l == 0 for p in d.paths)
    sel1, ns1 = _nonscalar(d.irreps_in1)
    sel2, ns2 = _nonscalar(d.irreps_in2)
    no = sum(ir.dim for _, ir in d.irreps_out)
    if vector:
        grid = s2grid_for(l1, l2, lo)
        pts = grid.points.reshape(-1, 3)
        npts = len(pts)

        def to_grid(irreps, lmax):  # (n, 2 * 3 * npts)
            y = spherical_harmonics(lmax, pts)  # (npts, (L+1)^2), component
            parts = [np.einsum("fia,pa->fip", embedding(irreps, P, lmax), y) for P in (1, -1)]
            return np.stack(parts, axis=1).reshape(parts[0].shape[0], -1)

        y_out = spherical_harmonics(lo, pts) * (grid.weights.reshape(-1, 1) / (4 * math.pi))
        project = np.stack([np.einsum("fia,pa->ipf",
                                      embedding(d.irreps_out, P, lo, scalars=True), y_out)
                            for P in (1, -1)]).reshape(6 * npts, no)
        t1, t2, nt, nph = to_grid(ns1, l1), to_grid(ns2, l2), grid.n_theta, grid.n_phi
    else:
        npts = nt = nph = 0
        t1, t2, project = np.zeros((0, 0)), np.zeros((0, 0)), np.zeros((0, no))
    scalar_out = np.zeros((2, no))
    off = 0
    for _, ir in d.irreps_out:
        if ir.l == 0:
            scalar_out[0 if ir.p == 1 else 1, off] = 1.0
        off += ir.dim
    out_index = np.zeros(d.irreps_out.dim, dtype=np.int64)
    off = 0
    for (mul, ir), sl in zip(d.irreps_out, d.irreps_out.slices(), strict=True):
        for ch in range(mul):
            out_index[sl.start + ch * ir.dim: sl.start + (ch + 1) * ir.dim] = (
                ch * no + off + np.arange(ir.dim))
        off += ir.dim
    return VSTPGridPlan(
        descriptor=d, method="grid", tuning=tuning, channels=c, channels2=cb,
        weight_index1=w1, weight_index2=w2, weight_index_out=wo, vector=vector,
        n_theta=nt, n_phi=nph, npts=npts,
        index1=_gather(d.irreps_in1, sel1, c), index2=_gather(d.irreps_in2, sel2, cb),
        to_grid1=t1, to_grid2=t2, project=project, scalar=scalar,
        scalar_index1=_scalar_gather(d.irreps_in1, c),
        scalar_index2=_scalar_gather(d.irreps_in2, cb), scalar_out=scalar_out,
        out_index=out_index, n_out=no,
        # both inputs' fields and the two output fields, live together at the products
        row_entries=max(6 * npts * (2 * c + cb), 1),
    )


def cross_last3(a, b, xp: Any = np):
    """Cross product over axis ``-2`` of ``(..., 3, npts)`` arrays (``xp``: the array
    namespace whose ``stack`` to use)."""
    a0, a1, a2 = a[..., 0, :], a[..., 1, :], a[..., 2, :]
    b0, b1, b2 = b[..., 0, :], b[..., 1, :], b[..., 2, :]
    return xp.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-2)


def _product(p: VSTPGridPlan, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Weighted inputs ``(B, dim1)``, ``(B, dim2)`` -> the product array ``(B, C, no)``."""
    b = x1.shape[0]
    x1z, x2z = with_zero_column_numpy(x1), with_zero_column_numpy(x2)
    z = np.zeros((b, p.channels, p.n_out))
    if p.vector:
        f1 = (x1z[:, p.index1] @ p.to_grid1).reshape(b, p.channels, 2, 3, p.npts)
        f2 = (x2z[:, p.index2] @ p.to_grid2).reshape(b, p.channels2, 2, 3, p.npts)
        h_plus = cross_last3(f1[:, :, 0], f2[:, :, 0]) + cross_last3(f1[:, :, 1], f2[:, :, 1])
        h_minus = cross_last3(f1[:, :, 0], f2[:, :, 1]) + cross_last3(f1[:, :, 1], f2[:, :, 0])
        h = np.stack([h_plus, h_minus], axis=2).reshape(b, p.channels, 6 * p.npts)
        z = z + h @ p.project
    if p.scalar:
        s1, s2 = x1z[:, p.scalar_index1], x2z[:, p.scalar_index2]  # (B, C or C2, 2)
        se = s1[..., 0] * s2[..., 0] + s1[..., 1] * s2[..., 1]
        so = s1[..., 0] * s2[..., 1] + s1[..., 1] * s2[..., 0]
        z = z + np.stack([se, so], axis=-1) @ p.scalar_out
    return z


def run_grid_numpy(p: VSTPGridPlan, x1, x2, w) -> np.ndarray:
    """Weights, the product of every chunk of :meth:`VSTPGridPlan.chunk_rows`, the output
    index and weights: ``(B, dim_out)``."""
    b = x1.shape[0]
    if not p.active:
        return np.zeros((b, p.descriptor.irreps_out.dim))
    x1, x2, mult = scale_inputs_numpy(p, x1, x2, w)
    rows = p.chunk_rows(b) or max(b, 1)
    z = np.concatenate([_product(p, x1[i:i + rows], x2[i:i + rows]).reshape(-1, p.channels
                                                                             * p.n_out)
                        for i in range(0, max(b, 1), rows)])[:b]
    z = z[:, p.out_index]
    return z if mult is None else z * mult


def flops_grid(d: Any) -> float:
    """Per-sample FLOPs of the ``grid`` plan: the two field GEMMs ``2 n * 6 npts`` per channel
    (``C``, resp. ``C2``), four cross products ``4 * 3 * 3 * npts`` and two sums ``2 * 3 *
    npts`` per channel, the projection GEMM ``2 * 6 npts * no`` per channel, the scalar part
    ``6`` per channel, per-degree weights."""
    l1, l2, lo = d.field_degrees()
    c, c2 = d.channels, d.channels_in2
    total = 0.0
    if any(p.ir_in1.l > 0 for p in d.paths):
        npts = ((l1 + l2 + lo + 2) // 2) * (l1 + l2 + lo + 1)  # s2grid_for(l1, l2, lo)
        n1 = sum(ir.dim for _, ir in d.irreps_in1 if ir.l > 0)
        n2 = sum(ir.dim for _, ir in d.irreps_in2 if ir.l > 0)
        no = sum(ir.dim for _, ir in d.irreps_out)
        total += 2 * n1 * 6 * npts * c + 2 * n2 * 6 * npts * c2
        total += c * (4 * 9 * npts + 2 * 3 * npts + 2 * 6 * npts * no)
    if any(p.ir_in1.l == 0 for p in d.paths):
        total += 6 * c
    return total + per_degree_flops(d)


METHODS = (
    Method("vstp", "grid", "vector fields on a Gauss-Legendre grid (dense GEMMs), four "
           "pointwise cross products, projection back onto vector spherical harmonics",
           build=build_grid, numpy=run_grid_numpy, available=_is_vstp, flops=flops_grid),
)
