"""Clebsch-Gordan tensor product kernels: ``dense``, ``sparse`` and ``fused``.

All three compute ``tp_spec.reference.apply`` for any :class:`tp_spec.CGTPDescriptor` (every
connection mode, shared / per-sample / no weights). They differ in how the Clebsch-Gordan
contraction is organised:

* ``dense``: one dense ``(d1, d2, d3)`` contraction per path, as e3nn does.
* ``sparse``: per path, gather the nonzero CG entries ``(i, j, k, c)`` and scatter-add the
  products ``c * x1[i] * x2[j]`` into ``k`` (the paper's sparse variant; fewer FLOPs, more
  memory traffic).
* ``fused``: picks one of four plans from the descriptor's structure at construction. On CPU
  the channelwise and folded plans run compiled kernels instead of torch ops
  (:mod:`tp_torch._cpu_kernels`, :class:`_CompiledChannelwiseFn`) where Numba is present;
  the torch ops below serve GPUs and ``torch.compile``:

  - ``"scalar"`` (every block multiplicity 1, e.g. the MIMO workloads): the whole product is
    ONE matmul ``(x1 (x) x2) @ W`` with the block-sparse ``(dim1*dim2, dim_out)`` matrix ``W``
    assembled from the shared weights by one ``index_add`` over the nonzero CG entries (split
    by parity for large products; on CPU in row chunks that stay in cache, :class:`_OuterMatmul`)
    (per-sample weights: one matmul with the stacked CG, then one small batched contraction
    per output block).
  - ``"channelwise"`` (every path ``uvu`` with ``mul_in2 == 1``, the MACE/NequIP shape): per
    x1 block, contract ``x2`` with all its paths' CG blocks in one matmul (``M``,
    ``(B, kp, S)``); per path one batched matmul ``(B, m1, kp) @ (B, kp, d3)`` whose result is
    multiplied by the weights straight into the output block (a broadcast product where the
    x1 block or the output block is a vector); a path whose x2 block has degree 0 is
    ``c x2_j x1``, flat multiplies in both directions. The contraction is zero padded
    (``kp >= d1``) where that moves a small matmul from torch's scalar loop to MKL
    (:func:`_pad_to`). Shared weights use a hand-written backward (:class:`_ChannelwiseFn`),
    on CPU in row chunks.
  - ``"folded"`` (channelwise with few channels, ``<= _FOLD_MAX``, the same in every block):
    one single-channel ``"scalar"`` product per channel.
  - ``"grouped"`` (anything else): paths sharing the same input pair are contracted with their
    concatenated CG blocks in one go, then the weights are applied per path.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from tp_spec import CGTPDescriptor, Path, channel_fold, clebsch_gordan
from tp_spec.channel_fold import channel_count
from tp_spec.plan.cgtp import DensePlan, SparsePlan

from . import _cpu_kernels
from ._common import Kernel, aligned_empty, chunk_rows

__all__ = ["CGTPFused", "EXECUTORS", "fused_plan"]

_UU = ("uuw", "uuu")
#: fused "scalar" plan: split W by parity from this many dense entries (dim1 * dim2 * dim_out).
#: Measured (one thread, batch 10,000, MIMO, split / one-matmul time, forward / forward+backward):
#: L=2 (3,240 entries) 2.3 / 2.1x, L=3 (21,504) 1.5 / 1.4x, L=4 (90,000) 1.0 / 1.0x, L=5 0.72 /
#: 1.0x, L=6 0.60 / 0.65x.
_SPLIT_MIN = 40_000
#: torch's CPU bmm uses MKL from this many multiply-adds per matrix (k * m * n), a scalar loop
#: below; the fused "channelwise" plan pads the contraction up to it, by at most _PAD_MAX.
_BMM_MIN = 400
_PAD_MAX = 16
#: ... but only for matrices from this many multiply-adds (below, the scalar loop is cheaper
#: than MKL's per-matrix overhead of ~0.2 us).
_PAD_FROM = 64
#: CPU: the channelwise plan runs batches of more than one chunk chunk by chunk, each of about
#: this many output entries and at least _CW_MIN_ROWS rows (fewer rows cost more in per-op
#: overhead than they save). Unchunked, every intermediate of a large batch is a fresh
#: allocation that glibc maps anew (page faults on every use) and streams from memory.
_CW_CHUNK_ENTRIES = 2 ** 21
_CW_MIN_ROWS = 256


def _pad_to(mul1: int, d1: int, d3: int) -> int:
    """Contraction size for a ``(mul1, d1) @ (d1, d3)`` batched matmul (see _BMM_MIN); vector
    factors (``d1 = 1`` or ``d3 = 1``) are broadcast products, never padded."""
    if mul1 * d1 * d3 >= _BMM_MIN or mul1 * d1 * d3 < _PAD_FROM or d3 == 1 or d1 == 1:
        return d1
    kp = -(-_BMM_MIN // (mul1 * d3))
    return kp if kp <= max(_PAD_MAX, d1) else d1


def _cg(p: Path) -> np.ndarray:
    """The path's CG block with its coefficient folded in, float64 ``(d1, d2, d3)``."""
    return p.coefficient * np.asarray(clebsch_gordan(*p.lll), dtype=np.float64)


def _path_weight(p: Path, w: torch.Tensor | None) -> torch.Tensor | None:
    """The path's weight block: ``shape`` (shared) or ``(B, *shape)`` (per sample); None if
    the path is unweighted."""
    if not p.has_weight or w is None:
        return None
    sl = p.weight_slice
    if w.dim() == 1:
        return w[sl].reshape(p.weight_shape)
    return w[:, sl].reshape((w.shape[0],) + p.weight_shape)


def _apply_mode(p: Path, s: torch.Tensor, wp: torch.Tensor | None) -> torch.Tensor:
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


def _assemble(
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


def _add(blocks: dict[int, torch.Tensor], i: int, t: torch.Tensor) -> None:
    blocks[i] = t if i not in blocks else blocks[i] + t


class _CGTPKernel(Kernel):
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


class DenseExecutor(_CGTPKernel):
    """``dense`` (:class:`tp_spec.plan.cgtp.DensePlan`): one dense CG contraction per path (the
    e3nn algorithm)."""

    def __init__(self, plan: DensePlan) -> None:
        super().__init__(plan.descriptor)
        for n, c in enumerate(plan.cg):
            self.add_const(f"cg{n}", c)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        b = x1.shape[0]
        blocks: dict[int, torch.Tensor] = {}
        for n, p in enumerate(self.d.paths):
            c = self.const(f"cg{n}", x1.dtype)
            a = self._blk1(x1, p.i_in1)
            v = self._blk2(x2, p.i_in2)
            t = torch.einsum("bvj,ijk->bvik", v, c)
            if p.mode in _UU:
                s = torch.einsum("bui,buik->buk", a, t)
            else:
                s = torch.einsum("bui,bvik->buvk", a, t)
            _add(blocks, p.i_out, _apply_mode(p, s, _path_weight(p, w)))
        return _assemble(self.d, blocks, b, x1)


class SparseExecutor(_CGTPKernel):
    """``sparse`` (:class:`tp_spec.plan.cgtp.SparsePlan`): gather the nonzero CG entries,
    multiply, scatter-add into the output."""

    def __init__(self, plan: SparsePlan) -> None:
        super().__init__(plan.descriptor)
        for n, (i, j, k, v) in enumerate(plan.entries):
            self.add_index(f"i{n}", i)
            self.add_index(f"j{n}", j)
            self.add_index(f"k{n}", k)
            self.add_const(f"v{n}", v)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        b = x1.shape[0]
        blocks: dict[int, torch.Tensor] = {}
        for n, p in enumerate(self.d.paths):
            ii, jj, kk = getattr(self, f"i{n}"), getattr(self, f"j{n}"), getattr(self, f"k{n}")
            vals = self.const(f"v{n}", x1.dtype)
            a = self._blk1(x1, p.i_in1).index_select(-1, ii)  # (B, u, nnz)
            v = self._blk2(x2, p.i_in2).index_select(-1, jj)  # (B, v, nnz)
            d3 = p.ir_out.dim
            if p.mode in _UU:
                prod = a * v * vals
                s = prod.new_zeros((b, p.mul_in1, d3)).index_add(-1, kk, prod)
            else:
                prod = a.unsqueeze(2) * (v * vals).unsqueeze(1)  # (B, u, v, nnz)
                s = prod.new_zeros((b, p.mul_in1, p.mul_in2, d3)).index_add(-1, kk, prod)
            _add(blocks, p.i_out, _apply_mode(p, s, _path_weight(p, w)))
        return _assemble(self.d, blocks, b, x1)


#: Plan type -> executor.
EXECUTORS = {DensePlan: DenseExecutor, SparsePlan: SparseExecutor}


#: ``(B, n, k)`` sizes from which a batched matrix-vector product beats a broadcast multiply and
#: a sum for the outer product's input gradients (CPU, batch 10,000: at 36 x 36 the bmm takes
#: 11 ms, the multiply-sum 44 ms; at 16 x 16 they are equal; summing over the middle axis is
#: cheaper than over the last, so the transposed product switches later).
_MATVEC_MIN = 256
_MATVEC_T_MIN = 576


def _outer_grads(g: torch.Tensor, a: torch.Tensor, b: torch.Tensor, need_a: bool, need_b: bool):
    """Gradients of ``a (x) b`` from ``g (B, n, k)``: ``g @ b (B, n)`` and ``g^T @ a (B, k)``."""
    size = g.shape[1] * g.shape[2]
    ga = gb = None
    if need_a:
        ga = (torch.bmm(g, b.unsqueeze(2)).squeeze(2) if size >= _MATVEC_MIN
              else (g * b.unsqueeze(1)).sum(2))
    if need_b:
        gb = (torch.bmm(g.transpose(1, 2), a.unsqueeze(2)).squeeze(2) if size >= _MATVEC_T_MIN
              else (g * a.unsqueeze(2)).sum(1))
    return ga, gb


def _outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a (B, n) (x) b (B, k) -> (B, n k)``."""
    return (a.unsqueeze(2) * b.unsqueeze(1)).reshape(a.shape[0], a.shape[1] * b.shape[1])


#: CPU: the scalar plan forms its outer products in row chunks of about this many entries,
#: one reused buffer per call, each chunk multiplied while it is in cache. Unchunked, the
#: ``(B, n k)`` outer product is a fresh allocation of tens of MB per call (glibc maps it anew
#: each time, so every page faults) that the matmul then streams from memory. Measured (one
#: thread, batch 10,000, AMD EPYC, one parity group of MIMO L=6, ``n = k = 28``, 85 outputs):
#: forward 34 -> 20 ms, forward+backward 101 -> 63 ms; chunks of 2^17 .. 2^20 entries are
#: within 10 % of each other.
_CHUNK_ENTRIES = 2 ** 19
_CHUNK_MIN_ROWS = 16


class _OuterMatmul(torch.autograd.Function):
    """``(a (x) b) @ w``: ``a (B, n)``, ``b (B, k)``, ``w (n k, o)`` -> ``(B, o)``.

    The scalar plan's product. Autograd of ``(a[:, :, None] * b[:, None, :]) @ w`` gets the
    input gradients from the ``(B, n, k)`` gradient of the outer product by a multiply and a
    sum (three passes over it); here each is one batched matrix-vector product (one pass)
    where that is faster (:func:`_outer_grads`). On CPU the forward and the first-order
    backward run in row chunks (:data:`_CHUNK_ENTRIES`); the outer product is never stored
    for the batch (the weight gradient rebuilds it chunk by chunk).
    When a graph is recorded (``create_graph``) the backward is made of differentiable ops on
    the whole batch, so double backward is exact."""

    @staticmethod
    def forward(ctx, a, b, w):
        ctx.save_for_backward(a, b, w)
        n, k = a.shape[1], b.shape[1]
        rows = chunk_rows(a, n * k, _CHUNK_ENTRIES, _CHUNK_MIN_ROWS)
        if rows is None:
            return _outer(a, b) @ w
        out = aligned_empty(a.shape[0], w.shape[1], a)
        buf = a.new_empty((rows, n, k))
        for s in range(0, a.shape[0], rows):
            e = min(a.shape[0], s + rows)
            o = torch.mul(a[s:e].unsqueeze(2), b[s:e].unsqueeze(1), out=buf[:e - s])
            torch.mm(o.view(e - s, n * k), w, out=out[s:e])
        return out

    @staticmethod
    def backward(ctx, gy):
        a, b, w = ctx.saved_tensors
        need_a, need_b, need_w = ctx.needs_input_grad
        n, k = a.shape[1], b.shape[1]
        rows = (None if torch.is_grad_enabled()
                else chunk_rows(a, n * k, _CHUNK_ENTRIES, _CHUNK_MIN_ROWS))
        if rows is None:
            ga = gb = gw = None
            if need_a or need_b:
                g = (gy @ w.t()).view(a.shape[0], n, k)  # d/d(a (x) b)
                ga, gb = _outer_grads(g, a, b, need_a, need_b)
            if need_w:
                gw = _outer(a, b).t() @ gy
            return ga, gb, gw
        ga = a.new_empty(a.shape) if need_a else None
        gb = b.new_empty(b.shape) if need_b else None
        gw = aligned_empty(w.shape[0], w.shape[1], w).zero_() if need_w else None
        buf = aligned_empty(rows, n * k, a)
        for s in range(0, a.shape[0], rows):
            e = min(a.shape[0], s + rows)
            if need_a or need_b:
                g = torch.mm(gy[s:e], w.t(), out=buf[:e - s]).view(e - s, n, k)
                ga_c, gb_c = _outer_grads(g, a[s:e], b[s:e], need_a, need_b)
                if need_a:
                    ga[s:e] = ga_c
                if need_b:
                    gb[s:e] = gb_c
            if need_w:
                o = torch.mul(a[s:e].unsqueeze(2), b[s:e].unsqueeze(1),
                              out=buf[:e - s].view(e - s, n, k))
                gw.addmm_(o.view(e - s, n * k).t(), gy[s:e])
        return ga, gb, gw


class _ChannelwiseFn(torch.autograd.Function):
    """Channelwise ``fused`` plan (shared or no weights) with a hand-written backward that
    reuses the forward's grouping (:meth:`CGTPFused._cw_backward`). Whole batch: the forward's
    ``M`` and padded x1 blocks are saved for the backward. On CPU a batch of more than one
    chunk (:meth:`CGTPFused._cw_chunk_rows`) runs chunk by chunk in both directions, each
    chunk's intermediates small enough to be reused from the allocator's heap and to stay in
    cache, and only the inputs are saved. The backward is made of differentiable torch ops and
    runs on the whole batch, recomputing what it reuses, when the graph is recorded
    (``create_graph``), so double backward is exact."""

    @staticmethod
    def forward(ctx, x1, x2, w, kernel):
        ctx.kernel = kernel
        ctx.has_w = w is not None
        ctx.rows = rows = kernel._cw_chunk_rows(x1)
        if rows is None:
            out, mus = kernel._cw_forward(x1, x2, w)
        else:
            out, mus = x1.new_empty((x1.shape[0], kernel.d.irreps_out.dim)), []
            for s in range(0, x1.shape[0], rows):
                kernel._cw_forward(x1[s:s + rows], x2[s:s + rows], w, out[s:s + rows])
        ctx.save_for_backward(x1, x2, *(() if w is None else (w,)), *mus)
        return out

    @staticmethod
    def backward(ctx, gout):
        saved = ctx.saved_tensors
        x1, x2 = saved[0], saved[1]
        w = saved[2] if ctx.has_w else None
        mus = list(saved[3 if ctx.has_w else 2:])
        need_w = ctx.needs_input_grad[2]
        kernel, rows = ctx.kernel, ctx.rows
        if rows is None or torch.is_grad_enabled():
            return (*kernel._cw_backward(x1, x2, w, gout, mus, need_w), None)
        g1, g2 = torch.empty_like(x1), torch.empty_like(x2)
        gw = torch.zeros_like(w) if w is not None and need_w else None
        for s in range(0, x1.shape[0], rows):
            e = s + rows
            a, b, c = kernel._cw_backward(x1[s:e], x2[s:e], w, gout[s:e], [], need_w)
            g1[s:e] = a
            g2[s:e] = b
            if gw is not None:
                gw += c
        return g1, g2, gw, None


class _CompiledChannelwiseFn(torch.autograd.Function):
    """Channelwise ``fused`` plan on CPU through the compiled kernels
    (:class:`tp_torch._cpu_kernels.ChannelwiseKernels`); ``weighted_only``: the weighted paths
    alone (see :class:`_CompiledChannelwiseGradFn`). Only the inputs are saved. The backward is
    the compiled backward; when its graph is recorded (``create_graph``) it is
    :class:`_CompiledChannelwiseGradFn`, differentiable to any order."""

    @staticmethod
    def forward(ctx, x1, x2, w, kernel, weighted_only=False):
        ctx.kernel = kernel
        ctx.weighted_only = weighted_only
        ctx.has_w = w is not None
        ctx.save_for_backward(x1, x2, *(() if w is None else (w,)))
        return kernel.cpu_kernels.forward(x1, x2, w, weighted_only)

    @staticmethod
    def backward(ctx, gout):
        saved = ctx.saved_tensors
        x1, x2 = saved[0], saved[1]
        w = saved[2] if ctx.has_w else None
        need = tuple(ctx.needs_input_grad[:3])
        if torch.is_grad_enabled():
            grads = _CompiledChannelwiseGradFn.apply(x1, x2, w, gout, ctx.kernel, need,
                                                     ctx.weighted_only)
        else:
            grads = ctx.kernel.cpu_kernels.backward(x1, x2, w, gout, need, ctx.weighted_only)
        return (*grads, None, None)


class _CompiledChannelwiseGradFn(torch.autograd.Function):
    """``(x1, x2, w, gout) -> (g1, g2, gw)``, the compiled first-order gradients (those in
    ``need``), as a differentiable function. The product ``f`` is linear in ``x1``, ``x2`` and
    in the weights of the weighted paths, so with cotangents ``v1, v2, vw`` of the gradients,
    ``S = <v1, g1> + <v2, g2> + <vw, gw> = <gout, f(v1, x2, w) + f(x1, v2, w) + f_w(x1, x2, vw)>``
    (``f_w``: the weighted paths only, weighted by ``vw``), and every second derivative is a
    compiled forward (``dS/dgout``) or backward (``dS/dx1``, ``dS/dx2``, ``dS/dw``) at
    substituted inputs: three backward calls for a force-training step. With the graph recorded
    again (third order) they run through these same functions."""

    @staticmethod
    def forward(ctx, x1, x2, w, gout, kernel, need, weighted_only):
        ctx.kernel = kernel
        ctx.has_w = w is not None
        ctx.need = need
        ctx.weighted_only = weighted_only
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x1, x2, gout, *(() if w is None else (w,)))
        return kernel.cpu_kernels.backward(x1, x2, w, gout, need, weighted_only)

    @staticmethod
    def backward(ctx, v1, v2, vw):
        saved = ctx.saved_tensors
        x1, x2, gout = saved[:3]
        w = saved[3] if ctx.has_w else None
        n1, n2, nw, ng = ctx.needs_input_grad[:4]
        kernel, only = ctx.kernel, ctx.weighted_only
        v1, v2, vw = (v if n else None for v, n in zip((v1, v2, vw), ctx.need, strict=True))
        if w is None:
            vw = None
        if torch.is_grad_enabled():  # record: the same functions, differentiable again
            def bwd(a, b, c, nd, wo):
                return _CompiledChannelwiseGradFn.apply(a, b, c, gout, kernel, nd, wo)

            def fwd(a, b, c, wo):
                return _CompiledChannelwiseFn.apply(a, b, c, kernel, wo)
        else:
            def bwd(a, b, c, nd, wo):
                return kernel.cpu_kernels.backward(a, b, c, gout, nd, wo)

            def fwd(a, b, c, wo):
                return kernel.cpu_kernels.forward(a, b, c, wo)

        def add(acc, t):
            return t if acc is None else (acc if t is None else acc + t)

        d1 = d2 = dw = dg = None
        if v1 is not None and (n2 or nw):  # S1 = <gout, f(v1, x2, w)>
            _, a, c = bwd(v1, x2, w, (False, n2, nw), only)
            d2, dw = add(d2, a), add(dw, c)
        if v2 is not None and (n1 or nw):  # S2 = <gout, f(x1, v2, w)>
            a, _, c = bwd(x1, v2, w, (n1, False, nw), only)
            d1, dw = add(d1, a), add(dw, c)
        if vw is not None and (n1 or n2):  # S3 = <gout, f_w(x1, x2, vw)>
            a, c, _ = bwd(x1, x2, vw, (n1, n2, False), True)
            d1, d2 = add(d1, a), add(d2, c)
        if ng:
            if v1 is not None:
                dg = add(dg, fwd(v1, x2, w, only))
            if v2 is not None:
                dg = add(dg, fwd(x1, v2, w, only))
            if vw is not None:
                dg = add(dg, fwd(x1, x2, vw, True))
        out = []
        for t, n, like in ((d1, n1, x1), (d2, n2, x2), (dw, nw, w), (dg, ng, gout)):
            out.append(None if not n else (torch.zeros_like(like) if t is None else t))
        return (*out, None, None, None)


def fused_plan(d: CGTPDescriptor) -> str:
    """The plan ``fused`` uses for ``d``: ``"scalar"``, ``"channelwise"``, ``"folded"`` or
    ``"grouped"``."""
    if not d.paths:
        return "grouped"
    blocks = list(d.irreps_in1) + list(d.irreps_in2) + list(d.irreps_out)
    if all(mul == 1 for mul, _ in blocks):
        return "scalar"
    if all(p.mode == "uvu" and p.mul_in2 == 1 for p in d.paths):
        return "folded" if _fold_channels(d) else "channelwise"
    return "grouped"


#: Channelwise products with this many channels or fewer (the same in every block) run as one
#: single-channel ``scalar``-plan product per channel (plan ``"folded"``): with few channels
#: and many paths the per-path batched matmuls of the channelwise plan are tiny and their
#: overhead dominates. Measured (one thread, batch 10,000, channelwise MIMO, channelwise time /
#: folded time, forward / forward+backward): L=3 C=4 1.76 / 2.79x, C=8 0.92 / 1.11x, C=16
#: 0.46 / 0.82x; C=8 at L=1 1.19 / 1.42x, L=2 1.29 / 1.57x. (tp_jax measured the same fold
#: through ``vmap`` slower in reverse mode, 0.43x at L=3 C=4, and does not use it.)
_FOLD_MAX = 8


def _fold_channels(d: CGTPDescriptor) -> int | None:
    """``C`` if the channelwise ``d`` uses the ``folded`` plan (``1 < C <= _FOLD_MAX``)."""
    c = channel_count(d)
    return c if c is not None and 1 < c <= _FOLD_MAX else None


class CGTPFused(_CGTPKernel):
    """``fused``: whole-product contractions chosen from the descriptor's structure."""

    def __init__(self, d: CGTPDescriptor) -> None:
        super().__init__(d)
        self.plan = fused_plan(d)
        getattr(self, f"_init_{self.plan}")()
        #: compiled CPU kernels for channelwise descriptors (:mod:`tp_torch._cpu_kernels`)
        self.cpu_kernels = (_cpu_kernels.ChannelwiseKernels(d)
                            if self.plan in ("channelwise", "folded")
                            and _cpu_kernels.supports(d) else None)

    def uses_cpu_kernels(self, x1: torch.Tensor) -> bool:
        """Whether a call on ``x1`` runs the compiled CPU kernels: a channelwise descriptor they
        support, a CPU tensor, not under ``torch.compile``, Numba present and not turned off
        (``TP_TORCH_CPU_KERNELS=0``)."""
        return (self.cpu_kernels is not None and x1.device.type == "cpu"
                and not torch.compiler.is_compiling() and _cpu_kernels.available())

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        if self.uses_cpu_kernels(x1):
            return _CompiledChannelwiseFn.apply(x1, x2, w, self)
        return self.torch_forward(x1, x2, w)

    def torch_forward(self, x1: torch.Tensor, x2: torch.Tensor,
                      w: torch.Tensor | None) -> torch.Tensor:
        """The plan as torch ops (GPUs, ``torch.compile``, CPU without the compiled
        kernels)."""
        if self.plan == "scalar":
            return self._fwd_scalar(x1, x2, w)
        if self.plan == "channelwise":
            return self._fwd_channelwise(x1, x2, w)
        if self.plan == "folded":
            return self._fwd_folded(x1, x2, w)
        return self._fwd_grouped(x1, x2, w)

    # ------------------------------------------------------------------ scalar plan
    def _init_scalar(self) -> None:
        d = self.d
        dim2, dimo = d.irreps_in2.dim, d.irreps_out.dim
        numel = d.weight_numel
        off1 = [s.start for s in d.irreps_in1.slices()]
        off2 = [s.start for s in d.irreps_in2.slices()]
        offo = [s.start for s in d.irreps_out.slices()]
        # Shared / no weights: W split by parity. A path couples x1 parity p1 and x2 parity p2
        # into output parity p1 * p2 only, so with the features permuted internally so that
        # blocks of equal parity are adjacent, the product is, per output parity p3,
        # sum_{p1 p2 = p3} outer(x1_p1, x2_p2) @ W_(p1,p2): at most four dense matmuls with
        # half the rows and columns of the full (dim1 * dim2, dim_out) matrix.
        # Small products (the whole W under _SPLIT_MIN entries) stay one matmul: there the
        # feature permutations and the four outer products cost more than the quartered
        # multiply-adds (CPU timings, MIMO L <= 3).
        split = d.irreps_in1.dim * dim2 * dimo >= _SPLIT_MIN

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
            return ranges, (np.concatenate(cols) if cols else np.zeros(0, np.int64))

        r1, cols1 = by_parity(d.irreps_in1, off1)
        r2, cols2 = by_parity(d.irreps_in2, off2)
        ro, colso = by_parity(d.irreps_out, offo)
        self._permute = split
        self.add_index("x1_perm", cols1)
        self.add_index("x2_perm", cols2)
        inv_o = np.empty(dimo, dtype=np.int64)
        inv_o[colso] = np.arange(dimo)
        self.add_index("out_inv", inv_o)
        self._out_par = [(ro[q][0], ro[q][1]) for q in (1, -1)]
        groups: dict[tuple[int, int], list[Path]] = defaultdict(list)
        for p in d.paths:
            groups[(par(p.ir_in1), par(p.ir_in2))].append(p)
        self._sgroups: list[tuple[int, int, int, int, int, int, int]] = []
        pos_l, widx_l, vals_l = [], [], []
        base = 0
        for (q1, q2), ps in sorted(groups.items(), reverse=True):
            a0, a1, pos1 = r1[q1]
            j0, j1, pos2 = r2[q2]
            k0, k1, poso = ro[q1 * q2]
            ni, nj, nk = a1 - a0, j1 - j0, k1 - k0
            for p in ps:
                c = _cg(p)
                i, j, k = np.nonzero(c)
                row = (pos1[p.i_in1] + i - a0) * nj + (pos2[p.i_in2] + j - j0)
                pos_l.append(base + row * nk + (poso[p.i_out] + k - k0))
                widx_l.append(np.full(len(i), p.weight_offset if p.has_weight else numel))
                vals_l.append(c[i, j, k])
            self._sgroups.append((a0, a1, j0, j1, 0 if q1 * q2 == 1 else 1, nk, base))
            base += ni * nj * nk
        self._w_total = base
        pos_a = np.concatenate(pos_l) if pos_l else np.zeros(0, np.int64)
        widx_a = np.concatenate(widx_l) if widx_l else np.zeros(0, np.int64)
        vals_a = np.concatenate(vals_l) if vals_l else np.zeros(0)
        self.add_index("w_pos", pos_a)
        self.add_index("w_idx", widx_a)
        self.add_const("w_val", vals_a)
        if numel == 0:
            full = np.zeros(base)
            np.add.at(full, pos_a, vals_a)
            self.add_const("w_full", full)
        n = d.irreps_in1.dim * dim2
        # per-sample weights: stacked CG, columns grouped by output block
        by_out: dict[int, list[Path]] = defaultdict(list)
        for p in d.paths:
            by_out[p.i_out].append(p)
        stack_cols = []
        self._out_groups: list[tuple[int, int, int, int]] = []  # (i_out, col0, n_paths, d3)
        col = 0
        gw = []
        for io in sorted(by_out):
            ps = by_out[io]
            d3 = d.irreps_out[io].ir.dim
            for p in ps:
                c = _cg(p)
                m = np.zeros((d.irreps_in1.dim, dim2, d3))
                m[off1[p.i_in1]:off1[p.i_in1] + c.shape[0],
                  off2[p.i_in2]:off2[p.i_in2] + c.shape[1]] = c
                stack_cols.append(m.reshape(n, d3))
                gw.append(p.weight_offset if p.has_weight else numel)
            self._out_groups.append((io, col, len(ps), d3))
            col += len(ps) * d3
        self.add_const("cg_stack", np.concatenate(stack_cols, axis=1) if stack_cols
                       else np.zeros((n, 0)))
        self.add_index("cg_stack_w", np.array(gw, dtype=np.int64))

    def _fwd_scalar(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None):
        b = x1.shape[0]
        dt = x1.dtype
        d = self.d
        numel = d.weight_numel
        if numel == 0 or w.dim() == 1:
            if numel == 0:
                wflat = self.const("w_full", dt)
            else:
                wext = torch.cat([w, w.new_ones(1)])
                vals = wext.index_select(0, self.w_idx) * self.const("w_val", dt)
                wflat = vals.new_zeros(self._w_total).index_add(0, self.w_pos, vals)
            x1p = x1.index_select(1, self.x1_perm) if self._permute else x1
            x2p = x2.index_select(1, self.x2_perm) if self._permute else x2
            acc: list[torch.Tensor | None] = [None, None]
            for a0, a1, j0, j1, q, nk, base in self._sgroups:
                ni, nj = a1 - a0, j1 - j0
                y = _OuterMatmul.apply(x1p[:, a0:a1], x2p[:, j0:j1],
                                       wflat[base:base + ni * nj * nk].view(ni * nj, nk))
                acc[q] = y if acc[q] is None else acc[q] + y
            parts = []
            for q, (k0, k1) in enumerate(self._out_par):
                if k1 > k0:
                    parts.append(acc[q] if acc[q] is not None else x1.new_zeros((b, k1 - k0)))
            if not parts:
                return x1.new_zeros((b, d.irreps_out.dim))
            out = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
            return out.index_select(1, self.out_inv) if self._permute else out
        outer = (x1.unsqueeze(2) * x2.unsqueeze(1)).reshape(b, x1.shape[1] * x2.shape[1])
        # per-sample weights
        y = outer @ self.const("cg_stack", dt)  # (B, sum_p d3)
        wext = torch.cat([w, w.new_ones((b, 1))], dim=1).index_select(1, self.cg_stack_w)
        blocks: dict[int, torch.Tensor] = {}
        wcol = 0
        for io, col, npaths, d3 in self._out_groups:
            yo = y[:, col:col + npaths * d3].reshape(b, npaths, d3)
            wo = wext[:, wcol:wcol + npaths]
            blocks[io] = torch.einsum("bpk,bp->bk", yo, wo)
            wcol += npaths
        return _assemble(d, blocks, b, x1)

    # ------------------------------------------------------------- channelwise plan
    def _init_channelwise(self) -> None:
        d = self.d
        dim2 = d.irreps_in2.dim
        off2 = [s.start for s in d.irreps_in2.slices()]
        for n, p in enumerate(d.paths):
            c = _cg(p)  # (d1, d2, d3)
            # K[j, (i, k)] so that (x2 @ K).view(B, d1, d3) = sum_j C[i, j, k] x2[j]
            self.add_const(f"k{n}", np.transpose(c, (1, 0, 2)).reshape(c.shape[1], -1))
        # Shared / no weights: paths grouped by their x1 block. Per group one matmul
        # ``M = x2 @ K_g`` -> (B, kp, S) (S = sum of the paths' d3, every x2 block at once);
        # per path one batched matmul ``(B, m1, kp) @ (B, kp, d3)`` writes its output block.
        # Torch's CPU bmm runs matrices under _BMM_MIN multiply-adds in a scalar loop
        # (~4 ns per multiply-add, 10-30x slower than MKL): the contraction dimension is
        # zero padded (x1 block and rows of K_g) from d1 to kp so that every path's matmul
        # reaches MKL; the padding rows of K_g are zero, so the padded x1 values never count.
        groups: dict[int, list[int]] = defaultdict(list)
        for n, p in enumerate(d.paths):
            groups[p.i_in1].append(n)
        numel = d.weight_numel
        self._cw_groups: list[
            tuple[int, int, int, int, list[tuple[int, int, int, int, int, int]]]] = []
        widx_l: list[np.ndarray] = []  # weights expanded to the output blocks (m1, d3)
        widxk_l: list[np.ndarray] = []  # ... and to the padded x1 blocks (m1, kp)
        wpos_l: list[tuple[int, np.ndarray]] = []
        w0 = wk0 = 0
        #: paths with a degree-0 x2 block, whose product is the x1 block times a per-sample
        #: scalar: path -> (x2 column, CG factor). They never enter ``M``: the forward writes
        #: them with two flat multiplies, the backward with flat multiplies and two
        #: matrix-vector products, instead of batched matmuls with ``(d1, d1)`` multiples of
        #: the identity (aspirin shape: 0.4-1.1 ms per such bmm at batch 2,000, against
        #: ~0.1 ms per flat multiply). (An outer-product shortcut for degree-0 x1 blocks was
        #: measured: no faster than the matmul, the broadcast over (channels, d3) does not
        #: vectorise.)
        self._cw_scale: dict[int, tuple[int, float]] = {}
        for n, p in enumerate(d.paths):
            c = _cg(p)
            if c.shape[1] == 1 and np.allclose(c[:, 0, :], c[0, 0, 0] * np.eye(c.shape[0])):
                # x2 block of degree 0: y[b, u, k] = c x1[b, u, k] x2[b, j]
                self._cw_scale[n] = (off2[p.i_in2], float(c[0, 0, 0]))
        for g, (i1, idx) in enumerate(groups.items()):
            mul1, ir1 = d.irreps_in1[i1]
            d1 = ir1.dim
            in_m = [n for n in idx if n not in self._cw_scale]  # the paths that use M
            kps = {n: _pad_to(mul1, d1, d.paths[n].ir_out.dim) for n in in_m}
            kp = max(kps.values(), default=d1)
            s_tot = sum(d.paths[n].ir_out.dim for n in in_m)
            kg = np.zeros((dim2, kp, s_tot))
            cols, c0 = [], 0
            for n in idx:
                p = d.paths[n]
                c = _cg(p)
                d3 = c.shape[2]
                if p.has_weight:  # weight shape (mul1, 1): flat offset + u
                    wu = p.weight_offset + np.arange(mul1)
                    wpos_l.append((p.weight_offset, wu))
                else:
                    wu = np.full(mul1, numel)
                widx_l.append(np.repeat(wu, d3))
                widxk_l.append(np.repeat(wu, kp))
                if n in self._cw_scale:  # no columns in M
                    cols.append((n, -1, -1, w0, d1, wk0))
                else:
                    kg[off2[p.i_in2]:off2[p.i_in2] + c.shape[1], :d1, c0:c0 + d3] = \
                        np.transpose(c, (1, 0, 2))
                    cols.append((n, c0, c0 + d3, w0, kps[n], wk0))
                    c0 += d3
                w0 += mul1 * d3
                wk0 += mul1 * kp
            self.add_const(f"cwk{g}", kg.reshape(dim2, kp * s_tot))
            self._cw_groups.append((i1, mul1, kp, s_tot, cols))
        self.add_index("cw_widx", np.concatenate(widx_l))
        self.add_index("cw_widx_k", np.concatenate(widxk_l))
        # the x2 column of every scale path, in the backward's order (groups, then paths)
        self.add_index("cw_scale_cols", np.array(
            [self._cw_scale[n][0] for *_, cols in self._cw_groups for n, *_ in cols
             if n in self._cw_scale], dtype=np.int64))
        wpos_l.sort(key=lambda t: t[0])
        self.add_index("cw_wpos", np.concatenate([t for _, t in wpos_l]) if wpos_l
                       else np.zeros(0, np.int64))

    def _fwd_channelwise(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None):
        if w is None or w.dim() == 1:
            return _ChannelwiseFn.apply(x1, x2, w, self)
        b = x1.shape[0]
        dt = x1.dtype
        blocks: dict[int, torch.Tensor] = {}
        for n, p in enumerate(self.d.paths):
            a, bb = self._slices2[p.i_in2]
            m = (x2[:, a:bb] @ self.const(f"k{n}", dt)).reshape(b, p.ir_in1.dim, p.ir_out.dim)
            u = self._blk1(x1, p.i_in1)  # (B, m1, d1)
            wp = _path_weight(p, w)
            if wp is not None:  # (B, m1, 1) per sample
                u = u * wp
            _add(blocks, p.i_out, torch.bmm(u, m))
        return _assemble(self.d, blocks, b, x1)

    def _cw_x1(self, x1: torch.Tensor, i1: int, kp: int) -> torch.Tensor:
        """x1 block ``i1`` as ``(B, m1, kp)``, zero padded from ``d1`` to ``kp`` columns."""
        u = self._blk1(x1, i1)
        return u if kp == u.shape[2] else torch.nn.functional.pad(u, (0, kp - u.shape[2]))

    def _cw_wexp(self, w: torch.Tensor | None, index: str = "cw_widx") -> torch.Tensor | None:
        """All paths' weights expanded to their output blocks ``(m1, d3)`` (``cw_widx``) or
        their padded x1 blocks ``(m1, kp)`` (``cw_widx_k``), concatenated in path order (None
        if no weights); unweighted paths read ones."""
        if w is None:
            return None
        return torch.cat([w, w.new_ones(1)]).index_select(0, getattr(self, index))

    def _cw_chunk_rows(self, x1: torch.Tensor) -> int | None:
        """Rows per chunk of the channelwise plan (:func:`chunk_rows`), or None."""
        return chunk_rows(x1, self.d.irreps_out.dim, _CW_CHUNK_ENTRIES, _CW_MIN_ROWS)

    def _cw_forward(self, x1, x2, w, out=None):
        """Forward into ``out`` (a new ``(B, dim_out)`` tensor if None): per x1 block one
        ``M = x2 @ K_g`` ``(B, kp, S)``; per path one product of the x1 block with a column
        slice of ``M`` -> ``(B, m1, d3)``, multiplied by the expanded weights straight into its
        block of the output (one pass over the output). The product is a batched matmul, or
        where a factor is a vector a broadcast: ``d1 = 1`` an outer product, ``d3 = 1`` ``d1``
        multiply-adds (each 2-3x faster than ATen's batched matmul of such shapes, which runs
        a per-matrix loop). Paths with a degree-0 x2 block (``_cw_scale``) are two flat
        multiplies. Returns the output and each group's ``M`` and padded x1 block."""
        d = self.d
        b = x1.shape[0]
        wexp = self._cw_wexp(w)
        offo = [s.start for s in d.irreps_out.slices()]
        if out is None:
            out = x1.new_empty((b, d.irreps_out.dim))
        seen: set[int] = set()
        mus: list[torch.Tensor] = []
        compiling = torch.compiler.is_compiling()  # dynamo refuses a strided out=
        for g, (i1, mul1, kp, s_tot, cols) in enumerate(self._cw_groups):
            m = (x2 @ self.const(f"cwk{g}", x1.dtype)).view(b, kp, s_tot) if s_tot else None
            u = self._cw_x1(x1, i1, kp)
            mus += [x1.new_zeros(0) if m is None else m, u]
            a1, b1 = self._slices1[i1]
            d1 = d.irreps_in1[i1].ir.dim
            for n, c0, c1, w0, kq, _ in cols:
                p = d.paths[n]
                size = mul1 * p.ir_out.dim
                o = out[:, offo[p.i_out]:offo[p.i_out] + size]
                wv = None if wexp is None else wexp[w0:w0 + size]
                sc = self._cw_scale.get(n)
                if sc is not None:
                    j, c = sc
                    s = x2[:, j:j + 1] if c == 1.0 else x2[:, j:j + 1] * c
                    if p.i_out in seen:
                        o.addcmul_(x1[:, a1:b1], s if wv is None else s * wv)
                    elif compiling:
                        o.copy_(x1[:, a1:b1] * s if wv is None else x1[:, a1:b1] * s * wv)
                    else:
                        torch.mul(x1[:, a1:b1], s, out=o)
                        if wv is not None:
                            o.mul_(wv)
                    seen.add(p.i_out)
                    continue
                if d1 == 1:  # outer product (B, m1, 1) x (B, 1, d3)
                    y = (u[:, :, :1] * m[:, :1, c0:c1]).view(b, size)
                elif c1 - c0 == 1:  # matrix-vector product: d1 multiply-adds over (B, m1)
                    y = u[:, :, 0] * m[:, 0, c0:c1]
                    for i in range(1, d1):
                        y = y.addcmul_(u[:, :, i], m[:, i, c0:c1])
                else:
                    y = torch.bmm(u[:, :, :kq], m[:, :kq, c0:c1]).view(b, size)
                if p.i_out in seen:
                    if wv is None:
                        o.add_(y)
                    else:
                        o.addcmul_(y, wv)
                elif wv is None:
                    o.copy_(y)
                elif compiling:
                    o.copy_(y * wv)
                else:
                    torch.mul(y, wv, out=o)
                seen.add(p.i_out)
        for i, s in enumerate(d.irreps_out.slices()):
            if i not in seen:
                out[:, s.start:s.stop] = 0
        return out, mus

    def _cw_backward(self, x1, x2, w, gout, mus, need_w=True):
        """Gradients of the channelwise product, per path reading its output-gradient block
        ``g`` in place. With the path's per-channel weights ``w_u``: ``h = g @ M_p^T``
        ``(B, m1, kp)`` is the x1-side product before weighting, so the x1 gradient is
        ``w_u h`` and the weight gradient ``sum_(b,i) x1 h`` (no forward product is needed);
        ``g_M = x1^T @ (w_u g)``; per x1 block one matmul back to ``x2``. Vector factors
        (``d1 = 1``, ``d3 = 1``) use broadcasts as in the forward. ``mus``: the forward's
        ``M`` and padded x1 blocks, recomputed when empty or when the graph is recorded (so
        that it reaches the inputs). A ``_cw_scale`` path ``y = c x2_j x1`` (flat
        ``t = g * x1``): x1 gradient ``c x2_j w g``, x2_j gradient ``c t . w``, weight gradient
        ``c x2_j^T t``. Differentiable ops only: with ``create_graph`` they are recorded, so
        double backward works."""
        d = self.d
        b = x1.shape[0]
        gout = gout.contiguous()
        offo = [s.start for s in d.irreps_out.slices()]
        wexp = self._cw_wexp(w)
        wexp_k = self._cw_wexp(w, "cw_widx_k")
        recompute = torch.is_grad_enabled() or not mus
        gx1: dict[int, torch.Tensor] = {}
        gx2 = None
        g2cols: list[tuple[int, torch.Tensor]] = []  # (x2 column, (B,)) of the scale paths
        gw_parts: list[tuple[int, torch.Tensor]] = []
        for g, (i1, mul1, kp, s_tot, cols) in enumerate(self._cw_groups):
            d1 = d.irreps_in1[i1].ir.dim
            a1, b1 = self._slices1[i1]
            kg = self.const(f"cwk{g}", x1.dtype)
            if recompute:
                m = (x2 @ kg).view(b, kp, s_tot) if s_tot else None
                u = self._cw_x1(x1, i1, kp)
            else:
                m, u = mus[2 * g], mus[2 * g + 1]
            acc = None  # (B, m1, kp): x1 gradient of the matmul paths
            acc_s = None  # (B, m1 * d1): x1 gradient of the scale paths
            gms = []
            for n, c0, c1, w0, _, wk0 in cols:
                p = d.paths[n]
                d3 = p.ir_out.dim
                size = mul1 * d3
                gp = gout[:, offo[p.i_out]:offo[p.i_out] + size]
                wv = wexp[w0:w0 + size] if wexp is not None and p.has_weight else None
                sc = self._cw_scale.get(n)
                if sc is not None:
                    j, c = sc
                    x2j = x2[:, j:j + 1]
                    t = gp * x1[:, a1:b1]  # (B, m1 d1)
                    if wv is not None and need_w:
                        gw = (x2j.t() @ t).view(mul1, d3).sum(dim=1)
                        gw_parts.append((p.weight_offset, gw * c if c != 1.0 else gw))
                    g2 = (t @ wv if wv is not None else t.sum(dim=1)) * c
                    g2cols.append((j, g2))
                    gpw = gp if wv is None else gp * wv
                    s = x2j if c == 1.0 else x2j * c
                    acc_s = gpw * s if acc_s is None else torch.addcmul(acc_s, gpw, s)
                    continue
                g3 = gp.view(b, mul1, d3)
                # h: x1-side product before weighting, (B, m1, kp) ((B, m1, 1) if d1 = 1)
                if d3 == 1:
                    h = g3 * m[:, :, c0].unsqueeze(1)
                elif d1 == 1:  # matrix-vector product: d3 multiply-adds over (B, m1)
                    h = g3[:, :, 0] * m[:, 0, c0:c0 + 1]
                    for k in range(1, d3):
                        h = h.addcmul_(g3[:, :, k], m[:, 0, c0 + k:c0 + k + 1])
                    h = h.unsqueeze(2)
                else:
                    h = torch.bmm(g3, m[:, :, c0:c1].transpose(1, 2))
                if wv is not None:
                    hf = h.reshape(b, mul1 * kp)
                    if need_w:  # sum over the batch first: column sums of contiguous rows
                        gw = (hf * u.reshape(b, mul1 * kp)).sum(dim=0).view(mul1, kp).sum(1)
                        gw_parts.append((p.weight_offset, gw))
                    h = (hf * wexp_k[wk0:wk0 + mul1 * kp]).view(b, mul1, kp)
                    g3 = (gp * wv).view(b, mul1, d3)
                acc = h if acc is None else acc + h
                gms.append(torch.bmm(u.transpose(1, 2), g3))  # (B, kp, d3)
            if gms:
                gm = torch.cat(gms, dim=2) if len(gms) > 1 else gms[0]
                t2 = gm.reshape(b, kp * s_tot) @ kg.t()
                gx2 = t2 if gx2 is None else gx2 + t2
            if acc is not None:
                gb = acc[:, :, :d1]
                if acc_s is not None:
                    gb = gb + acc_s.view(b, mul1, d1)
            else:
                gb = acc_s.view(b, mul1, d1)
            _add(gx1, i1, gb)
        parts1 = []
        for i, (mul, ir) in enumerate(d.irreps_in1):
            t = gx1.get(i)
            parts1.append(x1.new_zeros((b, mul * ir.dim)) if t is None
                          else t.reshape(b, mul * ir.dim))
        g1 = torch.cat(parts1, dim=1) if len(parts1) > 1 else parts1[0]
        g2 = gx2 if gx2 is not None else torch.zeros_like(x2)
        if g2cols:
            cols2 = torch.stack([t for _, t in g2cols], dim=1)  # (B, n_scale)
            g2 = g2.index_add(1, self.cw_scale_cols, cols2)
        gwt = None
        if w is not None and need_w:
            gwt = torch.zeros_like(w)
            if gw_parts:
                gw_parts.sort(key=lambda t: t[0])
                gwt = gwt.index_add(0, self.cw_wpos, torch.cat([t for _, t in gw_parts]))
        return g1, g2, gwt

    # ------------------------------------------------------------------ folded plan
    def _init_folded(self) -> None:
        fold = channel_fold(self.d)
        self._channels = fold.channels
        #: the single-channel product (``scalar`` plan), run once per channel
        self.inner = CGTPFused(fold.single)
        self.add_index("fold_x1", fold.x1_index)
        self.add_index("fold_w", fold.weight_index)
        self.add_index("fold_out", fold.out_index)

    def _fwd_folded(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None):
        """Per channel ``u``: the single-channel product of ``x1``'s channel ``u`` with ``x2``
        and the ``u``-th weight of every path; the channels stacked back into ``mul_ir``."""
        b, c = x1.shape[0], self._channels
        x1c = x1.index_select(1, self.fold_x1).view(b, c, self.inner.d.irreps_in1.dim)
        outs = []
        for u in range(c):
            wu = None if w is None else w.index_select(w.dim() - 1, self.fold_w[u])
            outs.append(self.inner(x1c[:, u], x2, wu))
        y = torch.stack(outs, dim=1).view(b, c * self.inner.d.irreps_out.dim)
        return y.index_select(1, self.fold_out)

    # ----------------------------------------------------------------- grouped plan
    def _init_grouped(self) -> None:
        groups: dict[tuple[int, int, bool], list[int]] = defaultdict(list)
        for n, p in enumerate(self.d.paths):
            groups[(p.i_in1, p.i_in2, p.mode in _UU)].append(n)
        self._groups = []
        for g, (key, idx) in enumerate(groups.items()):
            cs = [_cg(self.d.paths[n]) for n in idx]
            stack = np.concatenate(cs, axis=2)  # (d1, d2, sum d3)
            d1, d2, tot = stack.shape
            self.add_const(f"g{g}", np.transpose(stack, (1, 0, 2)).reshape(d2, d1 * tot))
            cols, c0 = [], 0
            for c in cs:
                cols.append((c0, c0 + c.shape[2]))
                c0 += c.shape[2]
            self._groups.append((key, idx, cols, d1, tot))

    def _fwd_grouped(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None):
        b = x1.shape[0]
        dt = x1.dtype
        blocks: dict[int, torch.Tensor] = {}
        for g, ((i1, i2, uu), idx, cols, d1, tot) in enumerate(self._groups):
            a = self._blk1(x1, i1)  # (B, u, d1)
            v = self._blk2(x2, i2)  # (B, v, d2)
            t = (v @ self.const(f"g{g}", dt)).reshape(b, v.shape[1], d1, tot)
            if uu:
                s = torch.einsum("bui,buix->bux", a, t)
            else:
                s = torch.einsum("bui,bvix->buvx", a, t)
            for n, (c0, c1) in zip(idx, cols, strict=True):
                p = self.d.paths[n]
                sp = s[..., c0:c1]
                if w is not None and w.dim() > 1 and len(idx) > 1:
                    # per-sample weights: the batched einsum on a strided column slice runs
                    # 1.6x slower than copy + einsum (DiffDock shapes, batch 2,000)
                    sp = sp.contiguous()
                _add(blocks, p.i_out, _apply_mode(p, sp, _path_weight(p, w)))
        return _assemble(self.d, blocks, b, x1)
