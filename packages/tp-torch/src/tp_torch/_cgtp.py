"""Clebsch-Gordan tensor product executors: ``dense``, ``sparse`` and ``fused``.

All three compute ``tp_spec.reference.apply`` for any :class:`tp_spec.CGTPDescriptor` (every
connection mode, shared / per-sample / no weights), each from its :mod:`tp_spec.plan`. They
differ in how the Clebsch-Gordan contraction is organised:

* ``dense``: one dense ``(d1, d2, d3)`` contraction per path, as e3nn does.
* ``sparse``: per path, gather the nonzero CG entries ``(i, j, k, c)`` and scatter-add the
  products ``c * x1[i] * x2[j]`` into ``k`` (the paper's sparse variant; fewer FLOPs, more
  memory traffic).
* ``fused``: one of four regimes chosen from the descriptor's structure
  (:mod:`tp_spec.plan.fused`), one executor each: :mod:`tp_torch._scalar`,
  :mod:`tp_torch._channelwise`, :mod:`tp_torch._folded` and :mod:`tp_torch._grouped` (on CPU
  the channelwise and folded regimes run the compiled kernels of :mod:`tp_torch._compiled`
  where Numba is present).

:data:`EXECUTORS` maps every CGTP plan type to its executor.
"""

from __future__ import annotations

import torch
from tp_spec.plan.cgtp import DensePlan, SparsePlan
from tp_spec.plan.fused import ChannelwisePlan, FoldedPlan, GroupedPlan, ScalarPlan

from ._cgtp_blocks import UU, CGTPKernel, add_block, apply_mode, assemble, path_weight
from ._channelwise import ChannelwiseExecutor
from ._folded import FoldedExecutor
from ._grouped import GroupedExecutor
from ._scalar import ScalarExecutor

__all__ = ["EXECUTORS", "DenseExecutor", "SparseExecutor"]


class DenseExecutor(CGTPKernel):
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
            if p.mode in UU:
                s = torch.einsum("bui,buik->buk", a, t)
            else:
                s = torch.einsum("bui,bvik->buvk", a, t)
            add_block(blocks, p.i_out, apply_mode(p, s, path_weight(p, w)))
        return assemble(self.d, blocks, b, x1)


class SparseExecutor(CGTPKernel):
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
            if p.mode in UU:
                prod = a * v * vals
                s = prod.new_zeros((b, p.mul_in1, d3)).index_add(-1, kk, prod)
            else:
                prod = a.unsqueeze(2) * (v * vals).unsqueeze(1)  # (B, u, v, nnz)
                s = prod.new_zeros((b, p.mul_in1, p.mul_in2, d3)).index_add(-1, kk, prod)
            add_block(blocks, p.i_out, apply_mode(p, s, path_weight(p, w)))
        return assemble(self.d, blocks, b, x1)


#: Plan type -> executor, every CGTP plan.
EXECUTORS = {DensePlan: DenseExecutor, SparsePlan: SparseExecutor, ScalarPlan: ScalarExecutor,
             ChannelwisePlan: ChannelwiseExecutor, FoldedPlan: FoldedExecutor,
             GroupedPlan: GroupedExecutor}
