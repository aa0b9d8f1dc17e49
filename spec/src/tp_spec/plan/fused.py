"""CGTP ``fused`` plans: whole-product contractions chosen from the descriptor's structure.

:func:`fused_regime` picks one of four regimes, :func:`build_fused` builds its plan:

* ``"scalar"`` (every block multiplicity 1, e.g. the MIMO workloads), :class:`ScalarPlan`: the
  whole product is ONE matmul ``(x1 (x) x2) @ W`` with the block-sparse
  ``(dim1 * dim2, dim_out)`` matrix ``W`` assembled from the shared weights by one scatter-add
  over the nonzero CG entries (split by parity for large products); per-sample weights: one
  matmul with the stacked CG, then one small batched contraction per output block.
* ``"channelwise"`` (every path ``uvu`` with ``mul_in2 == 1``, the MACE/NequIP shape),
  :class:`ChannelwisePlan`: per x1 block, ``x2`` contracted with all its paths' CG blocks in
  one matmul (``M``, ``(B, kp, S)``); per path one batched matmul ``(B, m1, kp) @ (B, kp, d3)``
  multiplied by the weights into its output block; a path whose x2 block has degree 0 is
  ``c x2_j x1``. The contraction is zero padded (``kp >= d1``) where that moves a small matmul
  from torch's scalar loop to MKL (:func:`pad_to`).
* ``"folded"`` (channelwise with ``1 < C <= tuning.fold_max_channels`` channels, the same in
  every block), :class:`FoldedPlan`: one single-channel ``"scalar"`` product per channel.
* ``"grouped"`` (anything else), :class:`GroupedPlan`: paths sharing the same input pair are
  contracted with their concatenated CG blocks in one go, then the weights are applied per path.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..channel_fold import channel_count, channel_fold
from ..descriptor import UU_MODES
from .base import Plan, folded_cg, offsets
from .cgtp_numpy import apply_mode_numpy, assemble_numpy, block, path_weight_numpy
from .coupling import Coupling, build_coupling
from .order_blocks import OrderBlocks, build_order_blocks
from .outer import OuterPlan, build_outer, is_outer, run_outer_numpy
from .tuning import Tuning

__all__ = ["ChannelwisePlan", "FoldedPlan", "GroupedPlan", "ScalarPlan", "build_fused",
           "fused_regime", "pad_to", "run_fused_numpy"]

_I64 = np.zeros(0, np.int64)


def fused_regime(d, tuning: Tuning) -> str:
    """The regime ``fused`` uses for ``d``: ``"outer"`` (every path unweighted ``uvuv`` /
    ``uuu``, :mod:`tp_spec.plan.outer`), ``"scalar"``, ``"channelwise"``, ``"folded"`` or
    ``"grouped"``."""
    if not d.paths:
        return "grouped"
    if is_outer(d):
        return "outer"
    blocks = list(d.irreps_in1) + list(d.irreps_in2) + list(d.irreps_out)
    if all(mul == 1 for mul, _ in blocks):
        return "scalar"
    if all(p.mode == "uvu" and p.mul_in2 == 1 for p in d.paths):
        c = channel_count(d)
        return "folded" if c is not None and 1 < c <= tuning.fold_max_channels else "channelwise"
    return "grouped"


def build_fused(d, tuning: Tuning) -> Plan:
    """The ``fused`` plan of ``d`` in the regime :func:`fused_regime` picks."""
    return _BUILD[fused_regime(d, tuning)](d, tuning)


def run_fused_numpy(plan: Plan, x1: np.ndarray, x2: np.ndarray, w) -> np.ndarray:
    """Any ``fused`` plan in NumPy: ``x1 (B, dim1)``, ``x2 (B, dim2)`` -> ``(B, dim_out)``."""
    return _RUN[type(plan)](plan, x1, x2, w)


# ----------------------------------------------------------------------------- scalar
#: Largest ``q`` of :attr:`ScalarPlan.x1_scale`: ``x1`` loses bits only below ``2**(q - 126)``
#: in float32 (subnormal after scaling).
MAX_SCALE_SHIFT = 24


@dataclass(frozen=True, eq=False)
class ScalarPlan(Plan):
    """``"scalar"`` regime. Shared / no weights: ``split`` (from ``tuning.split_min_entries``
    dense entries) permutes the features so that blocks of equal parity are adjacent
    (``x1_perm``, ``x2_perm``; the output back by ``out_inv``) and ``W`` splits into at most
    four parity groups ``(a0, a1, j0, j1, q, nk, base)``: ``x1p[:, a0:a1] (x) x2p[:, j0:j1]``
    times ``W[base:base + ni nj nk]`` viewed ``(ni nj, nk)`` adds into output parity part ``q``
    (columns ``out_parts[q] = (k0, k1)`` of the permuted output). ``W`` (``w_total`` entries)
    is the scatter-add of ``[w, 1][w_idx] * w_val`` into ``w_pos`` (``w_full``: ``W`` itself
    when there are no weights). Per-sample weights: ``(x1 (x) x2) @ cg_stack`` ``(B, sum d3)``,
    columns grouped by output block (``out_groups``: ``(i_out, col0, n_paths, d3)``), path
    ``n``'s weight ``[w, 1][cg_stack_w[n]]``. :attr:`order_blocks`: the same product (shared or
    no weights) in the order-blocked layout XLA runs."""

    split: bool
    x1_perm: np.ndarray
    x2_perm: np.ndarray
    out_inv: np.ndarray
    out_parts: tuple[tuple[int, int], ...]
    groups: tuple[tuple[int, int, int, int, int, int, int], ...]
    w_total: int
    w_pos: np.ndarray
    w_idx: np.ndarray
    w_val: np.ndarray
    w_full: np.ndarray | None
    cg_stack: np.ndarray
    cg_stack_w: np.ndarray
    out_groups: tuple[tuple[int, int, int, int], ...]

    @cached_property
    def x1_scale(self) -> float:
        """``2**-q``: the largest power of two at most the smallest nonzero coupling value (CG x
        coefficient, in ``w_val`` and ``cg_stack``), ``q`` in ``[0, MAX_SCALE_SHIFT]``. The
        executors multiply ``x1`` by it and the coupling constants by its inverse, so that a
        product ``x1[i] x2[j]`` is never larger than the terms ``x1[i] x2[j] K`` it feeds:
        float32 inputs whose products overflow while the output does not (``|x| ~ 1e19``) give
        finite outputs. Powers of two scale exactly: in the normal range the numbers are those
        of the unscaled product."""
        values = np.concatenate([self.w_val.ravel(), self.cg_stack.ravel()])
        nonzero = np.abs(values[values != 0])
        if nonzero.size == 0:
            return 1.0
        q = int(-np.floor(np.log2(nonzero.min())))
        return 2.0 ** -min(max(q, 0), MAX_SCALE_SHIFT)

    @cached_property
    def coupling(self) -> Coupling:
        """The product as its nonzero coupling entries (:mod:`tp_spec.plan.coupling`), the
        layout of the compiled CPU kernels. Built on first use."""
        return build_coupling(self.descriptor)

    @cached_property
    def order_blocks(self) -> OrderBlocks:
        """The product in the order-blocked layout (:mod:`tp_spec.plan.order_blocks`: paired
        rows, one small dense GEMM per order group, bucketed into batched GEMMs), built on
        first use: only the executors that run it pay for it."""
        return build_order_blocks(self.descriptor, self.tuning.jax_bucket_slack)

    @cached_property
    def order_blocks_split(self) -> OrderBlocks:
        """:attr:`order_blocks` with each order group cut into its connected blocks (one per
        input pair where the paths write separate outputs, as in the full CGTP)."""
        return build_order_blocks(self.descriptor, self.tuning.jax_bucket_slack, split=True)


def build_scalar(d, tuning: Tuning) -> ScalarPlan:
    dim2, dimo = d.irreps_in2.dim, d.irreps_out.dim
    numel = d.weight_numel
    off1, off2, offo = offsets(d.irreps_in1), offsets(d.irreps_in2), offsets(d.irreps_out)
    # A path couples x1 parity p1 and x2 parity p2 into output parity p1 * p2 only, so with the
    # features permuted so that blocks of equal parity are adjacent, the product is, per output
    # parity p3, sum_{p1 p2 = p3} outer(x1_p1, x2_p2) @ W_(p1,p2): at most four dense matmuls
    # with half the rows and columns of the full matrix. Small products stay one matmul: there
    # the permutations and the four outer products cost more than the quartered multiply-adds.
    split = d.irreps_in1.dim * dim2 * dimo >= tuning.split_min_entries

    def par(ir) -> int:
        return ir.p if split else 1

    def by_parity(irreps, offs):
        ranges, cols, start = {}, [], 0
        for par_ in (1, -1):
            idx = [i for i, (_, ir) in enumerate(irreps) if par(ir) == par_]
            pos = {}
            for i in idx:
                pos[i] = start
                cols.append(np.arange(offs[i], offs[i] + irreps[i].dim))
                start += irreps[i].dim
            ranges[par_] = (min(pos.values()) if pos else start, start, pos)
        return ranges, (np.concatenate(cols) if cols else _I64)

    r1, cols1 = by_parity(d.irreps_in1, off1)
    r2, cols2 = by_parity(d.irreps_in2, off2)
    ro, colso = by_parity(d.irreps_out, offo)
    inv_o = np.empty(dimo, dtype=np.int64)
    inv_o[colso] = np.arange(dimo)
    groups: dict[tuple[int, int], list] = defaultdict(list)
    for p in d.paths:
        groups[(par(p.ir_in1), par(p.ir_in2))].append(p)
    sgroups = []
    pos_l, widx_l, vals_l = [], [], []
    base = 0
    for (q1, q2), ps in sorted(groups.items(), reverse=True):
        a0, a1, pos1 = r1[q1]
        j0, j1, pos2 = r2[q2]
        k0, k1, poso = ro[q1 * q2]
        ni, nj, nk = a1 - a0, j1 - j0, k1 - k0
        for p in ps:
            c = folded_cg(p)
            i, j, k = np.nonzero(c)
            row = (pos1[p.i_in1] + i - a0) * nj + (pos2[p.i_in2] + j - j0)
            pos_l.append(base + row * nk + (poso[p.i_out] + k - k0))
            widx_l.append(np.full(len(i), p.weight_offset if p.has_weight else numel))
            vals_l.append(c[i, j, k])
        sgroups.append((a0, a1, j0, j1, 0 if q1 * q2 == 1 else 1, nk, base))
        base += ni * nj * nk
    pos_a = np.concatenate(pos_l) if pos_l else _I64
    widx_a = np.concatenate(widx_l).astype(np.int64) if widx_l else _I64
    vals_a = np.concatenate(vals_l) if vals_l else np.zeros(0)
    w_full = None
    if numel == 0:
        w_full = np.zeros(base)
        np.add.at(w_full, pos_a, vals_a)
    # per-sample weights: stacked CG, columns grouped by output block
    n = d.irreps_in1.dim * dim2
    by_out: dict[int, list] = defaultdict(list)
    for p in d.paths:
        by_out[p.i_out].append(p)
    stack_cols, out_groups, gw, col = [], [], [], 0
    for io in sorted(by_out):
        ps = by_out[io]
        d3 = d.irreps_out[io].ir.dim
        for p in ps:
            c = folded_cg(p)
            m = np.zeros((d.irreps_in1.dim, dim2, d3))
            m[off1[p.i_in1]:off1[p.i_in1] + c.shape[0],
              off2[p.i_in2]:off2[p.i_in2] + c.shape[1]] = c
            stack_cols.append(m.reshape(n, d3))
            gw.append(p.weight_offset if p.has_weight else numel)
        out_groups.append((io, col, len(ps), d3))
        col += len(ps) * d3
    return ScalarPlan(
        d, "fused", tuning, split, cols1, cols2, inv_o,
        tuple((ro[q][0], ro[q][1]) for q in (1, -1)), tuple(sgroups), base, pos_a, widx_a,
        vals_a, w_full,
        np.concatenate(stack_cols, axis=1) if stack_cols else np.zeros((n, 0)),
        np.array(gw, dtype=np.int64), tuple(out_groups))


def _outer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a[:, :, None] * b[:, None, :]).reshape(a.shape[0], -1)


def run_scalar_numpy(plan: ScalarPlan, x1, x2, w):
    d, b = plan.descriptor, x1.shape[0]
    if w is None or w.ndim == 1:
        if w is None:
            wflat = plan.w_full if plan.w_full is not None else np.zeros(plan.w_total)
        else:
            wflat = np.zeros(plan.w_total)
            np.add.at(wflat, plan.w_pos, np.append(w, 1.0)[plan.w_idx] * plan.w_val)
        x1p = x1[:, plan.x1_perm] if plan.split else x1
        x2p = x2[:, plan.x2_perm] if plan.split else x2
        acc = [np.zeros((b, k1 - k0)) for k0, k1 in plan.out_parts]
        for a0, a1, j0, j1, q, nk, base in plan.groups:
            wg = wflat[base:base + (a1 - a0) * (j1 - j0) * nk].reshape(-1, nk)
            acc[q] += _outer(x1p[:, a0:a1], x2p[:, j0:j1]) @ wg
        out = np.concatenate(acc, axis=1)
        return out[:, plan.out_inv] if plan.split else out
    y = _outer(x1, x2) @ plan.cg_stack
    wext = np.concatenate([w, np.ones((b, 1))], axis=1)[:, plan.cg_stack_w]
    blocks, wcol = {}, 0
    for io, col, npaths, d3 in plan.out_groups:
        yo = y[:, col:col + npaths * d3].reshape(b, npaths, d3)
        blocks[io] = np.einsum("bpk,bp->bk", yo, wext[:, wcol:wcol + npaths])
        wcol += npaths
    return assemble_numpy(d, blocks, b)


# ----------------------------------------------------------------------------- channelwise
def pad_to(mul1: int, d1: int, d3: int, tuning: Tuning) -> int:
    """Contraction size for a ``(mul1, d1) @ (d1, d3)`` batched matmul (see
    ``tuning.bmm_min_macs``); vector factors (``d1 = 1`` or ``d3 = 1``) are broadcast products,
    never padded."""
    macs = mul1 * d1 * d3
    if macs >= tuning.bmm_min_macs or macs < tuning.pad_from_macs or d3 == 1 or d1 == 1:
        return d1
    kp = -(-tuning.bmm_min_macs // (mul1 * d3))
    return kp if kp <= max(tuning.pad_max, d1) else d1


@dataclass(frozen=True, eq=False)
class ChannelwisePlan(Plan):
    """``"channelwise"`` regime. Per-sample weights: ``k[n] (d2, d1 d3)`` per path,
    ``(x2_j @ k[n]).view(B, d1, d3) = sum_j C[i, j, k] x2[j]``. Shared / no weights: paths
    grouped by their x1 block, ``groups[g] = (i1, mul1, kp, s_tot, cols)``: one
    ``M = x2 @ kg[g]`` ``(B, kp, s_tot)`` (rows ``d1..kp`` of ``kg[g]`` zero: padding), and per
    path ``cols = (n, c0, c1, w0, kq, wk0)``: its columns ``c0:c1`` of ``M`` (``-1``: a
    ``scale`` path, not in ``M``), its contraction size ``kq``, and the starts ``w0``/``wk0``
    of its weights in ``widx`` (expanded to the output block ``(m1, d3)``) and ``widx_k`` (to
    the padded x1 block ``(m1, kp)``); ``[w, 1][widx]`` (unweighted paths read the 1).
    ``scale``: path -> ``(x2 column, CG factor)`` for paths with a degree-0 x2 block
    (``y = c x2_j x1``); ``scale_cols``: their x2 columns in ``groups``/``cols`` order;
    ``wpos``: the weight indices of the weighted paths sorted by weight offset.
    ``k_paths (dim2, sum d1 d3)``: every path's ``k[n]`` side by side at its x2 block's rows
    (zero elsewhere), so that one ``x2 @ k_paths`` holds every path's ``(d1, d3)`` matrix per
    row, path ``n`` in the columns ``k_cols[n]:k_cols[n + 1]``."""

    k: tuple[np.ndarray, ...]
    groups: tuple[tuple[int, int, int, int, tuple[tuple[int, int, int, int, int, int], ...]],
                  ...]
    kg: tuple[np.ndarray, ...]
    widx: np.ndarray
    widx_k: np.ndarray
    scale: dict[int, tuple[int, float]]
    scale_cols: np.ndarray
    wpos: np.ndarray
    k_paths: np.ndarray
    k_cols: np.ndarray


def build_channelwise(d, tuning: Tuning) -> ChannelwisePlan:
    dim2 = d.irreps_in2.dim
    off2 = offsets(d.irreps_in2)
    cgs = [folded_cg(p) for p in d.paths]
    # K[j, (i, k)] so that (x2 @ K).view(B, d1, d3) = sum_j C[i, j, k] x2[j]
    k = tuple(np.transpose(c, (1, 0, 2)).reshape(c.shape[1], -1) for c in cgs)
    k_cols = np.cumsum([0] + [kn.shape[1] for kn in k]).astype(np.int64)
    k_paths = np.zeros((dim2, int(k_cols[-1])))
    for n, (p, kn) in enumerate(zip(d.paths, k, strict=True)):
        k_paths[off2[p.i_in2]:off2[p.i_in2] + kn.shape[0], k_cols[n]:k_cols[n + 1]] = kn
    by_x1: dict[int, list[int]] = defaultdict(list)
    for n, p in enumerate(d.paths):
        by_x1[p.i_in1].append(n)
    numel = d.weight_numel
    # Paths with a degree-0 x2 block, whose product is the x1 block times a per-sample scalar,
    # never enter M: flat multiplies instead of batched matmuls with (d1, d1) multiples of the
    # identity (aspirin shape: 0.4-1.1 ms per such bmm at batch 2,000, against ~0.1 ms per flat
    # multiply).
    scale: dict[int, tuple[int, float]] = {}
    for n, (p, c) in enumerate(zip(d.paths, cgs, strict=True)):
        if c.shape[1] == 1 and np.allclose(c[:, 0, :], c[0, 0, 0] * np.eye(c.shape[0])):
            scale[n] = (off2[p.i_in2], float(c[0, 0, 0]))
    groups, kgs, widx_l, widxk_l, wpos_l = [], [], [], [], []
    w0 = wk0 = 0
    for i1, idx in by_x1.items():
        mul1, ir1 = d.irreps_in1[i1]
        d1 = ir1.dim
        in_m = [n for n in idx if n not in scale]  # the paths that use M
        kps = {n: pad_to(mul1, d1, d.paths[n].ir_out.dim, tuning) for n in in_m}
        kp = max(kps.values(), default=d1)
        s_tot = sum(d.paths[n].ir_out.dim for n in in_m)
        kg = np.zeros((dim2, kp, s_tot))
        cols, c0 = [], 0
        for n in idx:
            p, c = d.paths[n], cgs[n]
            d3 = c.shape[2]
            if p.has_weight:  # weight shape (mul1, 1): flat offset + u
                wu = p.weight_offset + np.arange(mul1)
                wpos_l.append((p.weight_offset, wu))
            else:
                wu = np.full(mul1, numel)
            widx_l.append(np.repeat(wu, d3))
            widxk_l.append(np.repeat(wu, kp))
            if n in scale:
                cols.append((n, -1, -1, w0, d1, wk0))
            else:
                kg[off2[p.i_in2]:off2[p.i_in2] + c.shape[1], :d1, c0:c0 + d3] = \
                    np.transpose(c, (1, 0, 2))
                cols.append((n, c0, c0 + d3, w0, kps[n], wk0))
                c0 += d3
            w0 += mul1 * d3
            wk0 += mul1 * kp
        kgs.append(kg.reshape(dim2, kp * s_tot))
        groups.append((i1, mul1, kp, s_tot, tuple(cols)))
    scale_cols = np.array([scale[n][0] for *_, cols in groups for n, *_ in cols if n in scale],
                          dtype=np.int64)
    wpos_l.sort(key=lambda t: t[0])
    return ChannelwisePlan(
        d, "fused", tuning, k, tuple(groups), tuple(kgs),
        np.concatenate(widx_l).astype(np.int64), np.concatenate(widxk_l).astype(np.int64),
        scale, scale_cols, np.concatenate([t for _, t in wpos_l]) if wpos_l else _I64,
        k_paths, k_cols)


def run_channelwise_numpy(plan: ChannelwisePlan, x1, x2, w):
    d, b = plan.descriptor, x1.shape[0]
    off1, offo = offsets(d.irreps_in1), offsets(d.irreps_out)
    out = np.zeros((b, d.irreps_out.dim))
    if w is not None and w.ndim == 2:
        m_all = x2 @ plan.k_paths
        for n, p in enumerate(d.paths):
            d1, d3 = p.ir_in1.dim, p.ir_out.dim
            m = m_all[:, plan.k_cols[n]:plan.k_cols[n + 1]].reshape(b, d1, d3)
            u = block(x1, d.irreps_in1, p.i_in1)
            if p.has_weight:
                u = u * w[:, p.weight_slice].reshape(b, p.mul_in1, 1)
            out[:, offo[p.i_out]:offo[p.i_out] + p.mul_in1 * d3] += (u @ m).reshape(b, -1)
        return out
    wexp = None if w is None else np.append(w, 1.0)[plan.widx]
    for g, (i1, mul1, kp, s_tot, cols) in enumerate(plan.groups):
        m = (x2 @ plan.kg[g]).reshape(b, kp, s_tot)
        u = block(x1, d.irreps_in1, i1)
        u = np.concatenate([u, np.zeros((b, mul1, kp - u.shape[2]))], axis=2)
        for n, c0, c1, w0, kq, _ in cols:
            p = d.paths[n]
            size = mul1 * p.ir_out.dim
            if n in plan.scale:
                j, c = plan.scale[n]
                y = x1[:, off1[i1]:off1[i1] + mul1 * p.ir_in1.dim] * x2[:, j:j + 1] * c
            else:
                y = (u[:, :, :kq] @ m[:, :kq, c0:c1]).reshape(b, size)
            if wexp is not None:
                y = y * wexp[w0:w0 + size]
            out[:, offo[p.i_out]:offo[p.i_out] + size] += y
    return out


# ----------------------------------------------------------------------------- folded
@dataclass(frozen=True, eq=False)
class FoldedPlan(Plan):
    """``"folded"`` regime: per channel ``u``, ``inner`` (the single-channel ``"scalar"`` plan of
    :func:`tp_spec.channel_fold`) on ``x1[:, x1_index].view(B, C, -1)[:, u]``, ``x2`` and
    ``w[..., weight_index[u]]``; the ``(B, C * dim_out_single)`` stacked outputs read back at
    ``out_index``."""

    channels: int
    inner: ScalarPlan
    x1_index: np.ndarray
    weight_index: np.ndarray
    out_index: np.ndarray


def build_folded(d, tuning: Tuning) -> FoldedPlan:
    f = channel_fold(d)
    return FoldedPlan(d, "fused", tuning, f.channels, build_scalar(f.single, tuning),
                      f.x1_index, f.weight_index, f.out_index)


def run_folded_numpy(plan: FoldedPlan, x1, x2, w):
    b, c = x1.shape[0], plan.channels
    x1c = x1[:, plan.x1_index].reshape(b, c, -1)
    ys = [run_scalar_numpy(plan.inner, x1c[:, u], x2,
                           None if w is None else w[..., plan.weight_index[u]])
          for u in range(c)]
    return np.stack(ys, axis=1).reshape(b, -1)[:, plan.out_index]


# ----------------------------------------------------------------------------- grouped
@dataclass(frozen=True, eq=False)
class GroupedPlan(Plan):
    """``"grouped"`` regime: paths sharing ``(i_in1, i_in2, uu mode)``, ``groups[g] =
    ((i1, i2, uu), paths, cols, d1, tot)``: ``(x2 block @ stack[g]).view(B, v, d1, tot)``
    (``stack[g] (d2, d1 tot)``: the paths' CG blocks concatenated along ``k``) contracted with
    the x1 block; path ``paths[t]`` reads columns ``cols[t]`` of ``tot``."""

    groups: tuple[tuple[tuple[int, int, bool], tuple[int, ...], tuple[tuple[int, int], ...],
                        int, int], ...]
    stack: tuple[np.ndarray, ...]


def build_grouped(d, tuning: Tuning) -> GroupedPlan:
    by_pair: dict[tuple[int, int, bool], list[int]] = defaultdict(list)
    for n, p in enumerate(d.paths):
        by_pair[(p.i_in1, p.i_in2, p.mode in UU_MODES)].append(n)
    groups, stacks = [], []
    for key, idx in by_pair.items():
        cs = [folded_cg(d.paths[n]) for n in idx]
        st = np.concatenate(cs, axis=2)  # (d1, d2, sum d3)
        d1, d2, tot = st.shape
        stacks.append(np.transpose(st, (1, 0, 2)).reshape(d2, d1 * tot))
        bounds = np.cumsum([0] + [c.shape[2] for c in cs])
        cols = tuple((int(a), int(e)) for a, e in zip(bounds[:-1], bounds[1:], strict=True))
        groups.append((key, tuple(idx), cols, d1, tot))
    return GroupedPlan(d, "fused", tuning, tuple(groups), tuple(stacks))


def run_grouped_numpy(plan: GroupedPlan, x1, x2, w):
    d, b = plan.descriptor, x1.shape[0]
    blocks: dict[int, np.ndarray] = {}
    for ((i1, i2, uu), idx, cols, d1, tot), st in zip(plan.groups, plan.stack, strict=True):
        a, v = block(x1, d.irreps_in1, i1), block(x2, d.irreps_in2, i2)
        t = (v @ st).reshape(b, v.shape[1], d1, tot)
        s = np.einsum("bui,buix->bux" if uu else "bui,bvix->buvx", a, t)
        for n, (c0, c1) in zip(idx, cols, strict=True):
            p = d.paths[n]
            y = apply_mode_numpy(p, s[..., c0:c1], path_weight_numpy(p, w))
            blocks[p.i_out] = blocks[p.i_out] + y if p.i_out in blocks else y
    return assemble_numpy(d, blocks, b)


def _build_outer_with_scalar(d, tuning: Tuning) -> OuterPlan:
    """The outer plan, carrying the scalar regime's plan of the same product when every block
    has multiplicity 1 and the dense form has at most ``tuning.outer_jax_scalar_max_entries``
    entries (JAX runs that layout there: its reverse mode beats XLA's transpose of the
    per-pair matmuls)."""
    blocks = list(d.irreps_in1) + list(d.irreps_in2) + list(d.irreps_out)
    dense = d.irreps_in1.dim * d.irreps_in2.dim * d.irreps_out.dim
    small = all(mul == 1 for mul, _ in blocks) and dense <= tuning.outer_jax_scalar_max_entries
    return build_outer(d, tuning, build_scalar(d, tuning) if small else None)


_BUILD = {"scalar": build_scalar, "channelwise": build_channelwise, "folded": build_folded,
          "grouped": build_grouped, "outer": _build_outer_with_scalar}
_RUN = {ScalarPlan: run_scalar_numpy, ChannelwisePlan: run_channelwise_numpy,
        FoldedPlan: run_folded_numpy, GroupedPlan: run_grouped_numpy, OuterPlan: run_outer_numpy}
