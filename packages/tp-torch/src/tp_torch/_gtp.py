"""Gaunt tensor product executors of the ``grid`` and ``fourier`` plans
(:mod:`tp_spec.plan.gtp`: classes, degrees, grid, tables, gathers, weight layout).

* ``grid``: the work runs "batch last" (``(..., B * C)`` columns) so every step is one large
  matmul: the Legendre step as a batched matmul over the orders ``m`` (``O(L^3)`` per channel),
  the real DFT over ``phi`` as one matmul, the pointwise products, and the inverse steps.
* ``fourier``: the SH -> 2D Fourier tables as one dense GEMM, a 2D FFT linear convolution,
  and the projection back as one dense GEMM.

On CPU both run a large batch in chunks whose intermediates stay in cache
(:class:`tp_torch._common.FunctionProductKernel`, thresholds from ``plan.tuning``).

NaN and inf: every grid point (Fourier coefficient) mixes every coefficient of its parity
class, so a non-finite input entry may reach every output of its sample (docs/numerics.md).
"""

from __future__ import annotations

import numpy as np
import torch
from tp_spec.plan.gtp import FourierPlan, GridPlan, permute_flat_index

from ._common import FunctionProductKernel

__all__ = ["EXECUTORS", "FourierExecutor", "GTPKernel", "GridExecutor"]


class GTPKernel(FunctionProductKernel):
    """What both executors share, from the plan (:class:`tp_spec.plan.gtp.GTPPlan`): classes,
    channels and degrees; per-degree weights and CPU batch chunks come from the base."""

    def __init__(self, plan) -> None:
        super().__init__(plan, None if plan.weight_index1 is None else
                         (plan.weight_index1, plan.weight_index2, plan.weight_index_out))
        self.C, self.C2 = plan.channels, plan.channels2
        self.pairs = plan.pairs
        self.ncls1, self.ncls2 = len(plan.classes1), len(plan.classes2)
        self.nclso = len(plan.classes_out)
        self.L1, self.L2, self.Lo = plan.lmax1, plan.lmax2, plan.lmax_out
        self.needs_zero_row = plan.needs_zero_out


def _pad_rows(xt: torch.Tensor) -> torch.Tensor:
    """Append a zero row (the sentinel of the gather indices)."""
    return torch.cat([xt, xt.new_zeros((1,) + tuple(xt.shape[1:]))], dim=0)


class GridExecutor(GTPKernel):
    """``grid`` (:class:`GridPlan`): per-m Legendre matmuls + real DFT over phi, batch-last:
    the plan's ``(class, m, l, channel)`` layout is held as ``(m, l, class, channel)`` so
    that each step is one matmul over columns ``class * channel * B``."""

    def __init__(self, plan: GridPlan) -> None:
        super().__init__(plan)
        if not self.active:
            return
        self.n_theta, self.n_phi = plan.n_theta, plan.n_phi
        t = np.transpose
        self.add_const("plt1", t(plan.legendre1, (0, 2, 1)))  # (M, nt, L+1)
        self.add_const("t1", t(plan.phi1))  # (nphi, M)
        self.add_const("plt2", t(plan.legendre2, (0, 2, 1)))
        self.add_const("t2", t(plan.phi2))
        self.add_const("pft", t(plan.legendre_out, (0, 2, 1)))  # (M_o, Lo+1, nt)
        self.add_const("tft", t(plan.phi_out))  # (M_o, nphi)
        # gather maps: (M, L+1, ncls, C) from the flat features
        self.add_index("g1", t(plan.index1, (1, 2, 0, 3)).reshape(-1))
        self.add_index("g2", t(plan.index2, (1, 2, 0, 3)).reshape(-1))
        # output feature -> row of Z (M_o, Lo+1, ncls_o, C) or the zero row
        shape = (self.nclso, 2 * self.Lo + 1, self.Lo + 1, self.C)
        self.add_index("go", permute_flat_index(plan.out_index, shape, (1, 2, 0, 3)))

    def _to_grid(self, x: torch.Tensor, g: torch.Tensor, plt: torch.Tensor, t: torch.Tensor):
        """``x: (B, dim)`` -> grid values ``(n_phi, n_theta, ncls * ch * B)``."""
        b = x.shape[0]
        m_, nt, lp1 = plt.shape
        xt = _pad_rows(x.t())  # (dim + 1, B)
        coeff = xt.index_select(0, g).reshape(m_, lp1, (g.shape[0] // (m_ * lp1)) * b)
        a = torch.bmm(plt, coeff)  # (M, nt, R)
        r = coeff.shape[-1]
        return (t @ a.reshape(m_, nt * r)).reshape(t.shape[0], nt, r)

    def _product(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        b = x1.shape[0]
        dt = x1.dtype
        nphi, nt = self.n_phi, self.n_theta
        f1 = self._to_grid(x1, self.g1, self.const("plt1", dt), self.const("t1", dt))
        f2 = self._to_grid(x2, self.g2, self.const("plt2", dt), self.const("t2", dt))
        # per class (nphi, nt, C, B); unbind, not select: its backward stacks the gradients
        # instead of zero-filling the whole array per class
        f1 = f1.reshape(nphi, nt, self.ncls1, self.C, b).unbind(2)
        f2 = f2.reshape(nphi, nt, self.ncls2, self.C2, b).unbind(2)
        prods: list[torch.Tensor | None] = [None] * self.nclso
        for k1, k2, ko in self.pairs:
            p = f1[k1] * f2[k2]  # (nphi, nt, C, B); one x2 channel broadcasts
            prods[ko] = p if prods[ko] is None else prods[ko] + p
        h = torch.stack(prods, dim=2) if len(prods) > 1 else prods[0].unsqueeze(2)
        tft = self.const("tft", dt)  # (M_o, nphi)
        pft = self.const("pft", dt)  # (M_o, Lo+1, nt)
        r = self.nclso * self.C * b
        bm = (tft @ h.reshape(nphi, nt * r)).reshape(tft.shape[0], nt, r)
        rows = pft.shape[0] * pft.shape[1] * self.nclso * self.C
        z = torch.bmm(pft, bm).reshape(rows, b)  # (M_o*(Lo+1)*ncls_o*C, B)
        if self.needs_zero_row:
            z = _pad_rows(z)
        return z.index_select(0, self.go).t().contiguous()


class FourierExecutor(GTPKernel):
    """``fourier`` (:class:`FourierPlan`): the dense tables as GEMMs, FFT convolution, the
    projection GEMM."""

    def __init__(self, plan: FourierPlan) -> None:
        super().__init__(plan)
        if not self.active:
            return
        self.N = plan.size
        self.add_const("f1", plan.table1)  # ((L1+1)^2, 2 n1^2): [Re | Im]
        self.add_const("f2", plan.table2)
        self.add_const("proj", plan.project)  # (2 N^2, (Lo+1)^2) from [Re G | Im G]
        self.add_index("g1", plan.index1.reshape(-1))  # (ncls, C, (L+1)^2)
        self.add_index("g2", plan.index2.reshape(-1))
        self.add_index("go", plan.out_index)  # into (ncls_o, C, (Lo+1)^2) or the zero column

    def _fourier(self, x, g, name, L, ch, ncls):
        """``x: (B, dim)`` -> complex Fourier coefficients ``(B, ncls, ch, 2L+1, 2L+1)``."""
        b = x.shape[0]
        n = 2 * L + 1
        xp = torch.cat([x, x.new_zeros((b, 1))], dim=1)
        coeff = xp.index_select(1, g).reshape(b * ncls * ch, (L + 1) ** 2)
        flat = coeff @ self.const(name, x.dtype)  # (rows, 2 n^2)
        return torch.complex(flat[:, : n * n], flat[:, n * n:]).reshape(b, ncls, ch, n, n)

    def _product(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        b = x1.shape[0]
        dt = x1.dtype
        if b == 0:  # MKL's FFT rejects empty batches; keep the result attached to the inputs
            zero = (x1.sum() + x2.sum()) * 0.0
            return x1.new_zeros((0, self.d.irreps_out.dim)) + zero
        N = self.N
        f1 = self._fourier(x1, self.g1, "f1", self.L1, self.C, self.ncls1)
        f2 = self._fourier(x2, self.g2, "f2", self.L2, self.C2, self.ncls2)
        h1 = torch.fft.fft2(f1, s=(N, N))
        h2 = torch.fft.fft2(f2, s=(N, N))
        prods: list[torch.Tensor | None] = [None] * self.nclso
        for k1, k2, ko in self.pairs:
            p = h1[:, k1] * h2[:, k2]  # (B, C, N, N)
            prods[ko] = p if prods[ko] is None else prods[ko] + p
        h = torch.stack(prods, dim=1)  # (B, ncls_o, C, N, N)
        g = torch.fft.ifft2(h)
        gr = torch.cat([g.real.reshape(-1, N * N), g.imag.reshape(-1, N * N)], dim=1)
        z = gr @ self.const("proj", dt)  # (B * ncls_o * C, (Lo+1)^2)
        z = z.reshape(b, -1)
        if self.needs_zero_row:
            z = torch.cat([z, z.new_zeros((b, 1))], dim=1)
        return z.index_select(1, self.go)


#: Plan type -> executor.
EXECUTORS = {GridPlan: GridExecutor, FourierPlan: FourierExecutor}
