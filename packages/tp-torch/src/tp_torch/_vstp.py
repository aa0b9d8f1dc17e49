"""Vector-signal tensor product executor of the ``grid`` plan (:mod:`tp_spec.plan.vstp`: the
folded field, projection and scalar tables, gathers, weight layout).

Per channel: one GEMM takes the nonscalar features of each input to the Cartesian components
of its two vector fields (``P = +1, -1``) at the grid points, the four pointwise cross
products sum into the output fields ``H_{+1}, H_{-1}``, one GEMM projects them onto the
output features; the scalar blocks multiply as a CGTP. A large CPU batch runs in chunks
(:class:`tp_torch._common.FunctionProductKernel`); autograd differentiates every step, so the
backward and double backward are torch's.

NaN and inf: every grid point mixes every nonscalar coefficient of its input, so a non-finite
nonscalar input entry may reach every nonscalar-fed output of its sample (docs/numerics.md).
"""

from __future__ import annotations

import torch
from tp_spec.plan.vstp import VSTPGridPlan, cross_last3

from ._common import FunctionProductKernel

__all__ = ["EXECUTORS", "VSTPGridExecutor"]


def _with_zero_column(x: torch.Tensor) -> torch.Tensor:
    """Append a zero column (the sentinel of the gather indices)."""
    return torch.cat([x, x.new_zeros((x.shape[0], 1))], dim=1)


class VSTPGridExecutor(FunctionProductKernel):
    """``grid`` (:class:`VSTPGridPlan`): field GEMMs, cross products, projection GEMM, scalar
    products; inputs ``(B, dim1)``, ``(B, dim2)`` -> ``(B, dim_out)``."""

    def __init__(self, plan: VSTPGridPlan) -> None:
        super().__init__(plan, None if plan.weight_index1 is None else
                         (plan.weight_index1, plan.weight_index2, plan.weight_index_out))
        self.C, self.C2 = plan.channels, plan.channels2
        self.n1, self.n2 = plan.index1.shape[1], plan.index2.shape[1]
        self.npts, self.no = plan.npts, plan.n_out
        self.vector, self.scalar = plan.vector, plan.scalar
        if self.vector:
            self.add_const("t1", plan.to_grid1)  # (n1, 6 npts)
            self.add_const("t2", plan.to_grid2)
            self.add_const("proj", plan.project)  # (6 npts, no)
            self.add_index("g1", plan.index1.reshape(-1))  # (C, n1)
            self.add_index("g2", plan.index2.reshape(-1))
        if self.scalar:
            self.add_const("sout", plan.scalar_out)  # (2, no)
            self.add_index("s1", plan.scalar_index1.reshape(-1))  # (C, 2)
            self.add_index("s2", plan.scalar_index2.reshape(-1))
        self.add_index("go", plan.out_index)  # into (C, no)

    def _fields(self, x: torch.Tensor, g: torch.Tensor, name: str, ch: int, n: int):
        """``x (B, dim + 1)`` -> per ``P``: ``(B, ch, 3, npts)``."""
        b = x.shape[0]
        f = x.index_select(1, g).reshape(b * ch, n) @ self.const(name, x.dtype)
        return f.reshape(b, ch, 2, 3, self.npts).unbind(2)

    def _product(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        b, dt = x1.shape[0], x1.dtype
        x1, x2 = _with_zero_column(x1), _with_zero_column(x2)
        z = None
        if self.vector:
            a_plus, a_minus = self._fields(x1, self.g1, "t1", self.C, self.n1)
            b_plus, b_minus = self._fields(x2, self.g2, "t2", self.C2, self.n2)
            # one x2 channel broadcasts over C
            h_plus = cross_last3(a_plus, b_plus, torch) + cross_last3(a_minus, b_minus, torch)
            h_minus = cross_last3(a_plus, b_minus, torch) + cross_last3(a_minus, b_plus, torch)
            h = torch.stack([h_plus, h_minus], dim=2).reshape(b * self.C, 6 * self.npts)
            z = (h @ self.const("proj", dt)).reshape(b, self.C * self.no)
        if self.scalar:
            s1 = x1.index_select(1, self.s1).reshape(b, self.C, 2)
            s2 = x2.index_select(1, self.s2).reshape(b, self.C2, 2)
            se = s1[..., 0] * s2[..., 0] + s1[..., 1] * s2[..., 1]
            so = s1[..., 0] * s2[..., 1] + s1[..., 1] * s2[..., 0]
            zs = torch.stack([se, so], dim=-1) @ self.const("sout", dt)  # (B, C, no)
            zs = zs.reshape(b, self.C * self.no)
            z = zs if z is None else z + zs
        assert z is not None  # an inactive plan never reaches here
        return z.index_select(1, self.go)


#: Plan type -> executor.
EXECUTORS = {VSTPGridPlan: VSTPGridExecutor}
