"""The ``fused`` CGTP executor of the ``"outer"`` regime (:class:`tp_spec.plan.outer.OuterPlan`:
every path unweighted ``uvuv`` / ``uuu``, the full CGTP).

On CPU with Numba the product runs the plan's coupling entries (:attr:`OuterPlan.coupling`)
through the compiled kernels tp_jax runs too (:class:`tp_kernels.coupling.CouplingKernels`:
row chunks transposed in cache, per input pair one product, then its entries as vectorised
multiply-adds; the batch split over torch's intra-op threads). Its gradients are the same
bilinear form with the roles exchanged (:class:`_Form`: ``x1``'s from the cotangent and
``x2``, ``x2``'s from the cotangent and ``x1``), made of the same differentiable Function, so
double backward is exact.

Elsewhere (no Numba, ``TP_TORCH_CPU_KERNELS=0``, a GPU, ``torch.compile``, ``torch.func``
transforms, other dtypes) the same product runs as torch ops: per input block pair one matmul
of the outer product with the pair's stacked CG blocks (:attr:`OuterPlan.pairs`)."""

from __future__ import annotations

import torch
from tp_spec.plan.outer import OuterPlan

from ._cgtp_blocks import CGTPKernel, add_block, assemble
from ._common import plain_autograd
from ._cpu_kernels import CouplingKernels, available, coupling_kernels

__all__ = ["OuterExecutor"]

#: The three forms, named by the argument of ``T(o, a, j) = sum c g[o] x1[a] x2[j]`` each is
#: the gradient of; a form takes the other two in this order.
_ORDER = ("o", "a", "j")


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
        if ctx.kind == "o" and all(ctx.needs_input_grad[2:4]) and not torch.is_grad_enabled():
            return None, None, *ctx.ex.grads(h, p, q)  # both in one pass, no graph recorded
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
        self.plan = plan
        self._kernels: CouplingKernels | None = None  # built on the first kernel call
        self.pairs = [(i1, i2, uu, outs) for i1, i2, uu, _, outs in plan.pairs]
        for n, (*_, st, _) in enumerate(plan.pairs):
            self.add_const(f"pair{n}", st)

    def kernels(self) -> CouplingKernels:
        """The coupling kernels of the plan's entries (built on first use)."""
        if self._kernels is None:
            self._kernels = coupling_kernels(self.plan)
        return self._kernels

    def run(self, kind: str, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Form ``kind`` on CPU tensors ``p (B, .)``, ``q (B, .)`` by the compiled kernels, no
        autograd: ``"o"`` the product of ``(x1, x2)``, ``"a"`` x1's gradient from
        ``(cotangent, x2)``, ``"j"`` x2's from ``(cotangent, x1)``."""
        k = self.kernels()
        if kind == "o":
            return k.forward(p, q)
        if kind == "a":
            return k.backward(None, q, None, p, (True, False, False))[0]
        return k.backward(q, None, None, p, (False, True, False))[1]

    def grads(self, g: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """x1's and x2's gradients for the cotangent ``g`` in one kernel pass, no autograd."""
        g1, g2, _ = self.kernels().backward(x1, x2, None, g, (True, True, False))
        return g1, g2

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
