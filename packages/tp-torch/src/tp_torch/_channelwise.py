"""The ``fused`` CGTP executor of the ``"channelwise"`` regime
(:class:`tp_spec.plan.fused.ChannelwisePlan`: every path ``uvu`` with ``mul_in2 == 1``, the
MACE/NequIP shape). On CPU it runs the compiled kernels (:mod:`tp_torch._compiled`) where Numba
is present; the torch ops here serve GPUs and ``torch.compile``: per x1 block one
``M = x2 @ K_g`` ``(B, kp, S)``, per path one batched matmul ``(B, m1, kp) @ (B, kp, d3)``
multiplied by the weights straight into its output block (a broadcast product where the x1
block or the output block is a vector); a path whose x2 block has degree 0 is ``c x2_j x1``,
flat multiplies in both directions. Shared weights use a hand-written backward
(:class:`_ChannelwiseFn`), on CPU in row chunks.
"""

from __future__ import annotations

import torch
from tp_spec.plan.fused import ChannelwisePlan

from ._cgtp_blocks import CGTPKernel, add_block, assemble, path_weight
from ._common import chunk_rows, plain_autograd
from ._compiled import CompiledChannelwise

__all__ = ["ChannelwiseExecutor"]


class _ChannelwiseFn(torch.autograd.Function):
    """Channelwise regime (shared or no weights) with a hand-written backward that reuses the
    forward's grouping (:meth:`ChannelwiseExecutor.gradients`). Whole batch: the forward's ``M``
    and padded x1 blocks are saved for the backward. On CPU a batch of more than one chunk
    (:meth:`ChannelwiseExecutor.rows_per_chunk`) runs chunk by chunk in both directions, each
    chunk's intermediates small enough to be reused from the allocator's heap and to stay in
    cache, and only the inputs are saved. The backward is made of differentiable torch ops and
    runs on the whole batch, recomputing what it reuses, when the graph is recorded
    (``create_graph``), so double backward is exact. ``kernel``: the executor."""

    @staticmethod
    def forward(ctx, x1, x2, w, kernel):
        ctx.kernel = kernel
        ctx.has_w = w is not None
        ctx.rows = rows = kernel.rows_per_chunk(x1)
        if rows is None:
            out, mus = kernel.product(x1, x2, w)
        else:
            out, mus = x1.new_empty((x1.shape[0], kernel.d.irreps_out.dim)), []
            for s in range(0, x1.shape[0], rows):
                kernel.product(x1[s:s + rows], x2[s:s + rows], w, out[s:s + rows])
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
            return (*kernel.gradients(x1, x2, w, gout, mus, need_w), None)
        g1, g2 = torch.empty_like(x1), torch.empty_like(x2)
        gw = torch.zeros_like(w) if w is not None and need_w else None
        for s in range(0, x1.shape[0], rows):
            e = s + rows
            a, b, c = kernel.gradients(x1[s:e], x2[s:e], w, gout[s:e], [], need_w)
            g1[s:e] = a
            g2[s:e] = b
            if gw is not None:
                gw += c
        return g1, g2, gw, None


class ChannelwiseExecutor(CompiledChannelwise, CGTPKernel):
    """``fused``, ``"channelwise"`` regime (:class:`tp_spec.plan.fused.ChannelwisePlan`)."""

    def __init__(self, plan: ChannelwisePlan) -> None:
        CGTPKernel.__init__(self, plan.descriptor)
        self.tuning = plan.tuning
        self.init_compiled(plan.descriptor, plan.tuning)
        for n, k in enumerate(plan.k):
            self.add_const(f"k{n}", k)
        #: per x1 block ``(i1, mul1, kp, s_tot, cols)`` (see the plan)
        self.groups = plan.groups
        #: paths with a degree-0 x2 block: path -> (x2 column, CG factor)
        self.scale = plan.scale
        for g, kg in enumerate(plan.kg):
            self.add_const(f"cwk{g}", kg)
        self.add_index("cw_widx", plan.widx)
        self.add_index("cw_widx_k", plan.widx_k)
        self.add_index("cw_scale_cols", plan.scale_cols)
        self.add_index("cw_wpos", plan.wpos)

    def torch_forward(self, x1: torch.Tensor, x2: torch.Tensor,
                      w: torch.Tensor | None) -> torch.Tensor:
        """The regime as torch ops (GPUs, ``torch.compile``, CPU without the compiled
        kernels): shared or no weights through :class:`_ChannelwiseFn`, per-sample weights (and
        any weights under ``torch.func`` transforms or forward-mode AD) one ``x2 @ K_p`` and one
        batched matmul per path."""
        if (w is None or w.dim() == 1) and not plain_autograd(x1, x2, w):
            return _ChannelwiseFn.apply(x1, x2, w, self)
        # per path (also what torch.func transforms and forward mode differentiate)
        b = x1.shape[0]
        dt = x1.dtype
        blocks: dict[int, torch.Tensor] = {}
        for n, p in enumerate(self.d.paths):
            a, bb = self._slices2[p.i_in2]
            m = (x2[:, a:bb] @ self.const(f"k{n}", dt)).reshape(b, p.ir_in1.dim, p.ir_out.dim)
            u = self._blk1(x1, p.i_in1)  # (B, m1, d1)
            wp = path_weight(p, w)
            if wp is not None:  # (B, m1, 1) per sample
                u = u * wp
            add_block(blocks, p.i_out, torch.bmm(u, m))
        return assemble(self.d, blocks, b, x1)

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

    def rows_per_chunk(self, x1: torch.Tensor) -> int | None:
        """Rows per chunk on CPU (:func:`chunk_rows`, ``tuning.channelwise_chunk_*``), or
        None."""
        return chunk_rows(x1, self.d.irreps_out.dim, self.tuning.channelwise_chunk_entries,
                          self.tuning.channelwise_chunk_min_rows)

    def product(self, x1, x2, w, out=None):
        """Forward into ``out`` (a new ``(B, dim_out)`` tensor if None): per x1 block one
        ``M = x2 @ K_g`` ``(B, kp, S)``; per path one product of the x1 block with a column
        slice of ``M`` -> ``(B, m1, d3)``, multiplied by the expanded weights straight into its
        block of the output (one pass over the output). The product is a batched matmul, or
        where a factor is a vector a broadcast: ``d1 = 1`` an outer product, ``d3 = 1`` ``d1``
        multiply-adds (each 2-3x faster than ATen's batched matmul of such shapes, which runs
        a per-matrix loop). Paths with a degree-0 x2 block (``scale``) are two flat
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
        for g, (i1, mul1, kp, s_tot, cols) in enumerate(self.groups):
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
                sc = self.scale.get(n)
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

    def gradients(self, x1, x2, w, gout, mus, need_w=True):
        """Gradients of the channelwise product, per path reading its output-gradient block
        ``g`` in place. With the path's per-channel weights ``w_u``: ``h = g @ M_p^T``
        ``(B, m1, kp)`` is the x1-side product before weighting, so the x1 gradient is
        ``w_u h`` and the weight gradient ``sum_(b,i) x1 h`` (no forward product is needed);
        ``g_M = x1^T @ (w_u g)``; per x1 block one matmul back to ``x2``. Vector factors
        (``d1 = 1``, ``d3 = 1``) use broadcasts as in the forward. ``mus``: the forward's
        ``M`` and padded x1 blocks, recomputed when empty or when the graph is recorded (so
        that it reaches the inputs). A ``scale`` path ``y = c x2_j x1`` (flat
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
        for g, (i1, mul1, kp, s_tot, cols) in enumerate(self.groups):
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
                sc = self.scale.get(n)
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
            add_block(gx1, i1, gb)
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
