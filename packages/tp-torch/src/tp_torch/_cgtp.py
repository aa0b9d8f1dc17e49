"""Clebsch-Gordan tensor product executors: ``dense``, ``sparse`` and ``fused``.

All three compute ``tp_spec.reference.apply`` for any :class:`tp_spec.CGTPDescriptor` (every
connection mode, shared / per-sample / no weights), each from its :mod:`tp_spec.plan`. They
differ in how the Clebsch-Gordan contraction is organised:

* ``dense``: one dense ``(d1, d2, d3)`` contraction per path, as e3nn does.
* ``sparse``: every nonzero term of the product, channels included, gathered, multiplied and
  scatter-added in one go (the paper's sparse variant; fewer FLOPs, more memory traffic).
* ``fused``: one of five regimes chosen from the descriptor's structure
  (:mod:`tp_spec.plan.fused`), one executor each: :mod:`tp_torch._outer`,
  :mod:`tp_torch._scalar`, :mod:`tp_torch._channelwise`, :mod:`tp_torch._folded` and
  :mod:`tp_torch._grouped` (on CPU
  the channelwise and folded regimes run the compiled kernels of :mod:`tp_torch._compiled`
  where Numba is present).

:data:`EXECUTORS` maps every CGTP plan type to its executor.
"""

from __future__ import annotations

import torch
from tp_spec.descriptor import UU_MODES
from tp_spec.plan.cgtp import DensePlan, SparsePlan
from tp_spec.plan.fused import ChannelwisePlan, FoldedPlan, GroupedPlan, ScalarPlan
from tp_spec.plan.outer import OuterPlan

from ._cgtp_blocks import CGTPKernel, add_block, apply_mode, assemble, path_weight
from ._channelwise import ChannelwiseExecutor
from ._common import Kernel
from ._folded import FoldedExecutor
from ._grouped import GroupedExecutor
from ._outer import OuterExecutor
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
            if p.mode in UU_MODES:
                s = torch.einsum("bui,buik->buk", a, t)
            else:
                s = torch.einsum("bui,bvik->buvk", a, t)
            add_block(blocks, p.i_out, apply_mode(p, s, path_weight(p, w)))
        return assemble(self.d, blocks, b, x1)


class SparseExecutor(Kernel):
    """``sparse`` (:class:`tp_spec.plan.cgtp.SparsePlan`): one gather of both inputs over every
    nonzero term (channels included), a multiply by the values and weights, one scatter-add.
    Batch-last: gathers and the scatter-add move whole contiguous rows of ``B`` values (and so
    do their derivatives), not single elements of every row."""

    def __init__(self, plan: SparsePlan) -> None:
        super().__init__()
        self.dim_out = plan.descriptor.irreps_out.dim
        self.add_index("i1", plan.i1)
        self.add_index("i2", plan.i2)
        self.add_index("out", plan.out)
        self.add_index("widx", plan.widx)
        self.add_const("value", plan.value[:, None])

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        prod = x1.t().index_select(0, self.i1) * x2.t().index_select(0, self.i2)  # (T, B)
        prod = prod * self.const("value", x1.dtype)
        if w is not None:
            wext = torch.cat([w, w.new_ones(w.shape[:-1] + (1,))], dim=-1)
            prod = prod * (wext.index_select(0, self.widx).unsqueeze(1) if w.dim() == 1
                           else wext.t().index_select(0, self.widx))
        out = x1.new_zeros((self.dim_out, x1.shape[0])).index_add(0, self.out, prod)
        return out.t()


#: Plan type -> executor, every CGTP plan.
EXECUTORS = {DensePlan: DenseExecutor, SparsePlan: SparseExecutor, ScalarPlan: ScalarExecutor,
             ChannelwisePlan: ChannelwiseExecutor, FoldedPlan: FoldedExecutor,
             GroupedPlan: GroupedExecutor, OuterPlan: OuterExecutor}
