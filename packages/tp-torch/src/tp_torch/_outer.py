"""The ``fused`` CGTP executor of the ``"outer"`` regime (:class:`tp_spec.plan.outer.OuterPlan`:
every path unweighted ``uvuv`` / ``uuu``, the full CGTP).

On CPU with Numba the product runs the plan's sparse bilinear form, one compiled kernel
(:func:`_bilinear`) over the nonzero CG entries: batch rows in tiles of ``_TILE``, transposed
in cache so that each entry is one vectorised multiply-add over the tile, each output summed
in a register tile and stored once. Its gradients are the same form with the roles exchanged
(:class:`_Form`), made of the same differentiable Function, so double backward is exact. The
batch is split over torch's intra-op threads (``tuning.kernel_thread_min_rows`` rows at least
per thread; the kernel releases the GIL).

Elsewhere (no Numba, ``TP_TORCH_CPU_KERNELS=0``, a GPU, ``torch.compile``, ``torch.func``
transforms, other dtypes) the same product runs as torch ops: per input block pair one matmul
of the outer product with the pair's stacked CG blocks (:attr:`OuterPlan.pairs`)."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import torch
from tp_spec.plan.outer import OuterPlan

from ._cgtp_blocks import CGTPKernel, add_block, assemble
from ._common import plain_autograd
from ._cpu_kernels import available, num_threads, run_parts

__all__ = ["OuterExecutor"]

#: Batch rows per kernel tile (a multiple of the vector width of float32 and float64).
_TILE = 64
#: The three forms, named by the argument of ``T(o, a, j) = sum c g[o] x1[a] x2[j]`` each is
#: the gradient of; a form takes the other two in this order.
_ORDER = ("o", "a", "j")


@cache
def _bilinear():
    """The compiled kernel ``(p, q, u, v, starts, c, out, r0, r1)``: rows ``r0:r1`` of
    ``out[:, r] = sum_{t in starts[r]:starts[r+1]} c[t] p[:, u[t]] q[:, v[t]]``."""
    import numba

    @numba.njit(nogil=True, fastmath=True, cache=False)
    def kernel(p, q, u, v, starts, c, out, r0, r1):  # pragma: no cover (compiled)
        n_p, n_q, n_o = p.shape[1], q.shape[1], out.shape[1]
        pt = np.zeros((n_p, _TILE), p.dtype)
        qt = np.zeros((n_q, _TILE), p.dtype)
        ot = np.empty((n_o, _TILE), p.dtype)
        acc = np.empty(_TILE, p.dtype)
        for s in range(r0, r1, _TILE):
            n = min(r1 - s, _TILE)
            for r in range(n):
                for i in range(n_p):
                    pt[i, r] = p[s + r, i]
                for j in range(n_q):
                    qt[j, r] = q[s + r, j]
            for o in range(n_o):
                for r in range(_TILE):
                    acc[r] = 0
                for t in range(starts[o], starts[o + 1]):
                    ct, i, j = c[t], u[t], v[t]
                    for r in range(_TILE):
                        acc[r] += ct * pt[i, r] * qt[j, r]
                for r in range(_TILE):
                    ot[o, r] = acc[r]
            for r in range(n):
                for o in range(n_o):
                    out[s + r, o] = ot[o, r]

    return kernel


class _Form(torch.autograd.Function):
    """``ex.run(kind, p, q)``: the form ``kind`` of ``ex`` on ``p``, ``q``; its backward is two
    other forms (``T`` is trilinear), through this Function again."""

    @staticmethod
    def forward(ctx, ex, kind, p, q):
        ctx.save_for_backward(p, q)
        ctx.ex, ctx.kind = ex, kind
        return ex.run(kind, p, q)

    @staticmethod
    def backward(ctx, h):
        p, q = ctx.saved_tensors
        k1, k2 = (k for k in _ORDER if k != ctx.kind)
        vals = {ctx.kind: h, k1: p, k2: q}
        gp = _apply(ctx.ex, k1, vals) if ctx.needs_input_grad[2] else None
        gq = _apply(ctx.ex, k2, vals) if ctx.needs_input_grad[3] else None
        return None, None, gp, gq


def _apply(ex: OuterExecutor, kind: str, vals: dict[str, torch.Tensor]) -> torch.Tensor:
    k1, k2 = (k for k in _ORDER if k != kind)
    return _Form.apply(ex, kind, vals[k1], vals[k2])


class OuterExecutor(CGTPKernel):
    """``fused``, ``"outer"`` regime (:class:`tp_spec.plan.outer.OuterPlan`)."""

    def __init__(self, plan: OuterPlan) -> None:
        super().__init__(plan.descriptor)
        self.tuning = plan.tuning
        d = plan.descriptor
        self.dims = {"o": d.irreps_out.dim, "a": d.irreps_in1.dim, "j": d.irreps_in2.dim}
        #: form name -> (u, v, starts, {numpy dtype: c})
        self.forms: dict[str, tuple[Any, ...]] = {}
        for kind, f in zip(_ORDER, (plan.forward_form, plan.grad1_form, plan.grad2_form),
                           strict=True):
            self.forms[kind] = (f.u, f.v, f.starts,
                                {np.dtype(t): f.c.astype(t) for t in (np.float32, np.float64)})
        self.pairs = [(i1, i2, uu, outs) for i1, i2, uu, _, outs in plan.pairs]
        for n, (*_, st, _) in enumerate(plan.pairs):
            self.add_const(f"pair{n}", st)

    def run(self, kind: str, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Form ``kind`` on CPU tensors ``p (B, .)``, ``q (B, .)`` by the compiled kernel, no
        autograd."""
        u, v, starts, cs = self.forms[kind]
        p, q = p.detach().contiguous(), q.detach().contiguous()
        b = p.shape[0]
        out = p.new_empty((b, self.dims[kind]))
        if b == 0:
            return out
        pn, qn, on = p.numpy(), q.numpy(), out.numpy()
        c = cs[pn.dtype]
        kernel = _bilinear()
        parts = max(1, min(num_threads(), b // self.tuning.kernel_thread_min_rows))
        step = -(-b // parts)

        def part(t: int) -> None:
            kernel(pn, qn, u, v, starts, c, on, t * step, min(b, (t + 1) * step))

        run_parts(part, parts)
        return out

    def _compiled(self, x1: torch.Tensor, x2: torch.Tensor) -> bool:
        return (x1.device.type == "cpu" and x1.dtype in (torch.float32, torch.float64)
                and not torch.compiler.is_compiling() and not plain_autograd(x1, x2)
                and available())

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        if self._compiled(x1, x2):
            return _apply(self, "o", {"a": x1, "j": x2})
        b = x1.shape[0]
        blocks: dict[int, torch.Tensor] = {}
        for n, (i1, i2, uu, outs) in enumerate(self.pairs):
            xa, xb = self._blk1(x1, i1), self._blk2(x2, i2)  # (B, u, d1), (B, v, d2)
            k = xa.shape[2] * xb.shape[2]
            if uu:
                o = (xa.unsqueeze(3) * xb.unsqueeze(2)).reshape(b, xa.shape[1], k)
            else:
                o = (xa[:, :, None, :, None] * xb[:, None, :, None, :]).reshape(
                    b, xa.shape[1] * xb.shape[1], k)
            t = o @ self.const(f"pair{n}", x1.dtype)
            for io, c0, c1 in outs:
                add_block(blocks, io, t[..., c0:c1])
        return assemble(self.d, blocks, b, x1)
