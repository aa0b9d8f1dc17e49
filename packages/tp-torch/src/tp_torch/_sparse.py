"""``sparse`` CGTP executor (:class:`tp_spec.plan.cgtp.SparsePlan`): one gather of both inputs
over every nonzero term, a multiply by the values (and weights) and one scatter-add."""

from __future__ import annotations

import torch
from tp_spec.plan.cgtp import SparsePlan

from ._common import Kernel

__all__ = ["EXECUTORS", "SparseExecutor"]


class SparseExecutor(Kernel):
    """Runs a :class:`~tp_spec.plan.cgtp.SparsePlan`: ``x1 (B, dim1)``, ``x2 (B, dim2)``,
    ``w`` None, ``(numel,)`` or ``(B, numel)`` -> ``(B, dim_out)``."""

    def __init__(self, plan: SparsePlan) -> None:
        super().__init__()
        self.dim_out = plan.descriptor.irreps_out.dim
        self.add_index("i1", plan.i1)
        self.add_index("i2", plan.i2)
        self.add_index("out", plan.out)
        self.add_index("widx", plan.widx)
        self.add_const("value", plan.value)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        prod = x1.index_select(1, self.i1) * x2.index_select(1, self.i2)
        prod = prod * self.const("value", x1.dtype)
        if w is not None:
            wext = torch.cat([w, w.new_ones(w.shape[:-1] + (1,))], dim=-1)
            prod = prod * wext.index_select(w.dim() - 1, self.widx)
        return x1.new_zeros((x1.shape[0], self.dim_out)).index_add(1, self.out, prod)


#: Plan type -> executor.
EXECUTORS = {SparsePlan: SparseExecutor}
