"""The ``fused`` CGTP executor of the ``"scalar"`` regime (:class:`tp_spec.plan.fused.ScalarPlan`,
every block multiplicity 1): the whole product as ``(x1 (x) x2) @ W`` (:class:`_OuterMatmul`, on
CPU in row chunks that stay in cache), ``W`` assembled from the shared weights by one
``index_add``; per-sample weights: one matmul with the stacked CG, then one small batched
contraction per output block.

On CPU (float32 / float64, eager, Numba, ``TP_TORCH_CPU_KERNELS`` not 0), without weights or
with shared weights on every path, the product runs the compiled coupling kernels instead
(:class:`_Coupling`, :mod:`tp_kernels.coupling`: the plan's nonzero entries, the backward's
gradients in one pass; under ``create_graph`` the torch ops below).

Range: ``x1`` enters scaled by ``plan.x1_scale`` and the coupling constants by its inverse
(:attr:`tp_spec.plan.fused.ScalarPlan.x1_scale`), so float32 inputs whose products overflow
while the output does not give finite outputs.

NaN and inf: ``W`` holds the structural zeros between blocks, and ``NaN x 0`` is NaN, so a
non-finite entry of one input block may reach every output of its sample (never another
sample; docs/numerics.md). Computing per block instead would give up the regime's speed."""

from __future__ import annotations

import torch
from tp_spec.plan import Tuning
from tp_spec.plan.fused import ScalarPlan

from ._cgtp_blocks import CGTPKernel, assemble
from ._common import aligned_empty, chunk_rows, plain_autograd
from ._cpu_kernels import CouplingKernels, available, coupling_kernels

__all__ = ["ScalarExecutor"]


def _outer_grads(g: torch.Tensor, a: torch.Tensor, b: torch.Tensor, need_a: bool, need_b: bool,
                 tuning: Tuning):
    """Gradients of ``a (x) b`` from ``g (B, n, k)``: ``g @ b (B, n)`` and ``g^T @ a (B, k)``,
    as batched matrix-vector products from ``tuning.matvec_min_entries`` /
    ``matvec_t_min_entries`` entries, else a broadcast multiply and a sum."""
    size = g.shape[1] * g.shape[2]
    ga = gb = None
    if need_a:
        ga = (torch.bmm(g, b.unsqueeze(2)).squeeze(2)
              if size >= tuning.matvec_min_entries else (g * b.unsqueeze(1)).sum(2))
    if need_b:
        gb = (torch.bmm(g.transpose(1, 2), a.unsqueeze(2)).squeeze(2)
              if size >= tuning.matvec_t_min_entries else (g * a.unsqueeze(2)).sum(1))
    return ga, gb


def _outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a (B, n) (x) b (B, k) -> (B, n k)``."""
    return (a.unsqueeze(2) * b.unsqueeze(1)).reshape(a.shape[0], a.shape[1] * b.shape[1])


class _OuterMatmul(torch.autograd.Function):
    """``(a (x) b) @ w``: ``a (B, n)``, ``b (B, k)``, ``w (n k, o)`` -> ``(B, o)``; ``tuning``:
    the :class:`tp_spec.plan.Tuning` of the chunks and the gradient products.

    The scalar plan's product. Autograd of ``(a[:, :, None] * b[:, None, :]) @ w`` gets the
    input gradients from the ``(B, n, k)`` gradient of the outer product by a multiply and a
    sum (three passes over it); here each is one batched matrix-vector product (one pass)
    where that is faster (:func:`_outer_grads`). On CPU the forward and the first-order
    backward run in row chunks (``tuning.scalar_chunk_entries``); the outer product is never
    stored
    for the batch (the weight gradient rebuilds it chunk by chunk).
    When a graph is recorded (``create_graph``) the backward is made of differentiable ops on
    the whole batch, so double backward is exact."""

    @staticmethod
    def forward(ctx, a, b, w, tuning):
        ctx.save_for_backward(a, b, w)
        ctx.tuning = tuning
        n, k = a.shape[1], b.shape[1]
        rows = chunk_rows(a, n * k, tuning.scalar_chunk_entries, tuning.scalar_chunk_min_rows)
        if rows is None:
            return _outer(a, b) @ w
        out = aligned_empty(a.shape[0], w.shape[1], a, tuning.row_align)
        buf = a.new_empty((rows, n, k))
        for s in range(0, a.shape[0], rows):
            e = min(a.shape[0], s + rows)
            o = torch.mul(a[s:e].unsqueeze(2), b[s:e].unsqueeze(1), out=buf[:e - s])
            torch.mm(o.view(e - s, n * k), w, out=out[s:e])
        return out

    @staticmethod
    def backward(ctx, gy):
        a, b, w = ctx.saved_tensors
        tuning = ctx.tuning
        need_a, need_b, need_w = ctx.needs_input_grad[:3]
        n, k = a.shape[1], b.shape[1]
        rows = (None if torch.is_grad_enabled()
                else chunk_rows(a, n * k, tuning.scalar_chunk_entries,
                                tuning.scalar_chunk_min_rows))
        if rows is None:
            ga = gb = gw = None
            if need_a or need_b:
                g = (gy @ w.t()).view(a.shape[0], n, k)  # d/d(a (x) b)
                ga, gb = _outer_grads(g, a, b, need_a, need_b, tuning)
            if need_w:
                gw = _outer(a, b).t() @ gy
            return ga, gb, gw, None
        ga = a.new_empty(a.shape) if need_a else None
        gb = b.new_empty(b.shape) if need_b else None
        gw = (aligned_empty(w.shape[0], w.shape[1], w, tuning.row_align).zero_() if need_w
              else None)
        buf = aligned_empty(rows, n * k, a, tuning.row_align)
        for s in range(0, a.shape[0], rows):
            e = min(a.shape[0], s + rows)
            if need_a or need_b:
                g = torch.mm(gy[s:e], w.t(), out=buf[:e - s]).view(e - s, n, k)
                ga_c, gb_c = _outer_grads(g, a[s:e], b[s:e], need_a, need_b, tuning)
                if need_a:
                    ga[s:e] = ga_c
                if need_b:
                    gb[s:e] = gb_c
            if need_w:
                o = torch.mul(a[s:e].unsqueeze(2), b[s:e].unsqueeze(1),
                              out=buf[:e - s].view(e - s, n, k))
                gw.addmm_(o.view(e - s, n * k).t(), gy[s:e])
        return ga, gb, gw, None


class ScalarExecutor(CGTPKernel):
    """``fused``, ``"scalar"`` regime (:class:`tp_spec.plan.fused.ScalarPlan`)."""

    def __init__(self, plan: ScalarPlan) -> None:
        super().__init__(plan.descriptor)
        self.tuning = plan.tuning
        self.split = plan.split
        self.groups = plan.groups
        self.out_parts = plan.out_parts
        self.w_total = plan.w_total
        self.out_groups = plan.out_groups
        self.add_index("x1_perm", plan.x1_perm)
        self.add_index("x2_perm", plan.x2_perm)
        self.add_index("out_inv", plan.out_inv)
        self.add_index("w_pos", plan.w_pos)
        self.add_index("w_idx", plan.w_idx)
        # x1 is scaled by ``x1_scale``, the constants by its inverse (module docstring: Range)
        self.x1_scale = plan.x1_scale
        self.add_const("w_val", plan.w_val / self.x1_scale)
        if plan.w_full is not None:
            self.add_const("w_full", plan.w_full / self.x1_scale)
        self.add_const("cg_stack", plan.cg_stack / self.x1_scale)
        self.add_index("cg_stack_w", plan.cg_stack_w)
        self.plan = plan
        self.all_weighted = all(p.has_weight for p in plan.descriptor.paths)
        self._kernels: CouplingKernels | None = None

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        if self._compiled(x1, x2, w):
            return _Coupling.apply(self, x1, x2, w)
        return self.torch_forward(x1, x2, w)

    def _compiled(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> bool:
        """Whether the compiled coupling kernels run the product: CPU float32 / float64
        tensors, no weights or shared weights on every path, eager (not compiling, tracing or
        under ``torch.func``), the CPU kernels on."""
        if w is not None and (w.dim() != 1 or not self.all_weighted):
            return False
        return (x1.device.type == "cpu" and x1.dtype in (torch.float32, torch.float64)
                and bool(self.d.paths) and not torch.compiler.is_compiling()
                and not torch.jit.is_tracing() and not plain_autograd(x1, x2, w)
                and available())

    def kernels(self) -> CouplingKernels:
        """The coupling kernels of the plan's entries (built on first use)."""
        if self._kernels is None:
            self._kernels = coupling_kernels(self.plan)
        return self._kernels

    def torch_forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None
                      ) -> torch.Tensor:
        """The product as torch ops (every device, every autograd mode)."""
        b = x1.shape[0]
        dt = x1.dtype
        d = self.d
        numel = d.weight_numel
        if self.x1_scale != 1.0:
            x1 = x1 * self.x1_scale
        if numel == 0 or w.dim() == 1:
            if numel == 0:
                wflat = self.const("w_full", dt)
            else:
                wext = torch.cat([w, w.new_ones(1)])
                vals = wext.index_select(0, self.w_idx) * self.const("w_val", dt)
                wflat = vals.new_zeros(self.w_total).index_add(0, self.w_pos, vals)
            x1p = x1.index_select(1, self.x1_perm) if self.split else x1
            x2p = x2.index_select(1, self.x2_perm) if self.split else x2
            acc: list[torch.Tensor | None] = [None, None]
            for a0, a1, j0, j1, q, nk, base in self.groups:
                ni, nj = a1 - a0, j1 - j0
                wg = wflat[base:base + ni * nj * nk].view(ni * nj, nk)
                if plain_autograd(x1p, x2p, wg):  # torch.func transforms, forward mode
                    y = _outer(x1p[:, a0:a1], x2p[:, j0:j1]) @ wg
                else:
                    y = _OuterMatmul.apply(x1p[:, a0:a1], x2p[:, j0:j1], wg, self.tuning)
                acc[q] = y if acc[q] is None else acc[q] + y
            parts = []
            for q, (k0, k1) in enumerate(self.out_parts):
                if k1 > k0:
                    parts.append(acc[q] if acc[q] is not None else x1.new_zeros((b, k1 - k0)))
            if not parts:
                return x1.new_zeros((b, d.irreps_out.dim))
            out = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
            return out.index_select(1, self.out_inv) if self.split else out
        outer = (x1.unsqueeze(2) * x2.unsqueeze(1)).reshape(b, x1.shape[1] * x2.shape[1])
        # per-sample weights
        y = outer @ self.const("cg_stack", dt)  # (B, sum_p d3)
        wext = torch.cat([w, w.new_ones((b, 1))], dim=1).index_select(1, self.cg_stack_w)
        blocks: dict[int, torch.Tensor] = {}
        wcol = 0
        for io, col, npaths, d3 in self.out_groups:
            yo = y[:, col:col + npaths * d3].reshape(b, npaths, d3)
            wo = wext[:, wcol:wcol + npaths]
            blocks[io] = torch.einsum("bpk,bp->bk", yo, wo)
            wcol += npaths
        return assemble(d, blocks, b, x1)


class _Coupling(torch.autograd.Function):
    """The product by the compiled coupling kernels (:mod:`tp_kernels.coupling`): ``ex``, a
    :class:`ScalarExecutor`; ``w`` None or shared ``(numel,)`` with every path weighted. The
    backward computes the asked gradients in one kernel pass; when a graph is recorded
    (``create_graph``) it runs the executor's torch ops instead, so higher derivatives are
    exact."""

    @staticmethod
    def forward(ctx, ex, x1, x2, w):
        ctx.save_for_backward(x1, x2, w)
        ctx.ex = ex
        return ex.kernels().forward(x1, x2, w)

    @staticmethod
    def backward(ctx, g):
        x1, x2, w = ctx.saved_tensors
        ex = ctx.ex
        need = ctx.needs_input_grad[1:4]
        if torch.is_grad_enabled():  # create_graph: the torch ops, differentiable again
            wanted = [t for t, n in zip((x1, x2, w), need, strict=True) if n]
            grads = iter(torch.autograd.grad(ex.torch_forward(x1, x2, w), wanted, g,
                                             create_graph=True))
            return (None, *(next(grads) if n else None for n in need))
        return (None, *ex.kernels().backward(x1, x2, w, g, need))
