"""The ``fused`` CGTP executor of the ``"grouped"`` regime
(:class:`tp_spec.plan.fused.GroupedPlan`, every descriptor the other regimes do not take): paths
sharing the same input pair are contracted with their concatenated CG blocks in one go, then
the weights are applied per path."""

from __future__ import annotations

import torch
from tp_spec.plan.fused import GroupedPlan

from ._cgtp_blocks import CGTPKernel, add_block, apply_mode, assemble, path_weight

__all__ = ["GroupedExecutor"]


class GroupedExecutor(CGTPKernel):
    """``fused``, ``"grouped"`` regime (:class:`tp_spec.plan.fused.GroupedPlan`)."""

    def __init__(self, plan: GroupedPlan) -> None:
        super().__init__(plan.descriptor)
        #: per input pair ``((i1, i2, uu), paths, cols, d1, tot)`` (see the plan)
        self.groups = plan.groups
        for g, st in enumerate(plan.stack):
            self.add_const(f"g{g}", st)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        b = x1.shape[0]
        dt = x1.dtype
        blocks: dict[int, torch.Tensor] = {}
        for g, ((i1, i2, uu), idx, cols, d1, tot) in enumerate(self.groups):
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
                add_block(blocks, p.i_out, apply_mode(p, sp, path_weight(p, w)))
        return assemble(self.d, blocks, b, x1)
