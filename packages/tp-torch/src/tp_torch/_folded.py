"""The ``fused`` CGTP executor of the ``"folded"`` regime (:class:`tp_spec.plan.fused.FoldedPlan`:
channelwise with few channels, the same in every block): one single-channel ``"scalar"``
product per channel; on CPU the compiled channelwise kernels where Numba is present."""

from __future__ import annotations

import torch
from tp_spec.plan.fused import FoldedPlan

from ._cgtp_blocks import CGTPKernel
from ._compiled import CompiledChannelwise
from ._scalar import ScalarExecutor

__all__ = ["FoldedExecutor"]


class FoldedExecutor(CompiledChannelwise, CGTPKernel):
    """``fused``, ``"folded"`` regime (:class:`tp_spec.plan.fused.FoldedPlan`)."""

    def __init__(self, plan: FoldedPlan) -> None:
        CGTPKernel.__init__(self, plan.descriptor)
        self.init_compiled(plan.descriptor, plan.tuning)
        self.channels = plan.channels
        #: the single-channel product (``scalar`` regime), run once per channel
        self.inner = ScalarExecutor(plan.inner)
        self.add_index("fold_x1", plan.x1_index)
        self.add_index("fold_w", plan.weight_index)
        self.add_index("fold_out", plan.out_index)

    def torch_forward(self, x1: torch.Tensor, x2: torch.Tensor,
                      w: torch.Tensor | None) -> torch.Tensor:
        """Per channel ``u``: the single-channel product of ``x1``'s channel ``u`` with ``x2``
        and the ``u``-th weight of every path; the channels stacked back into ``mul_ir``."""
        b, c = x1.shape[0], self.channels
        x1c = x1.index_select(1, self.fold_x1).view(b, c, self.inner.d.irreps_in1.dim)
        outs = []
        for u in range(c):
            wu = None if w is None else w.index_select(w.dim() - 1, self.fold_w[u])
            outs.append(self.inner(x1c[:, u], x2, wu))
        y = torch.stack(outs, dim=1).view(b, c * self.inner.d.irreps_out.dim)
        return y.index_select(1, self.fold_out)
