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

from ._common import FunctionProductKernel, over_chunks, scratch

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


def _inverse(index: np.ndarray, size: int, missing: int) -> np.ndarray:
    """For a gather ``y = x_padded[index]`` that reads each of the ``size`` rows of ``x`` at
    most once: ``inverse`` with ``x_grad = y_grad_padded[inverse]`` (``missing``: the zero row
    appended to ``y_grad``, for a row of ``x`` never read)."""
    inv = np.full(size, missing, dtype=np.int64)
    hit = index < size
    if np.unique(index[hit]).size != int(hit.sum()):
        raise ValueError("a gather reads one row twice: its transpose is not a gather")
    inv[index[hit]] = np.nonzero(hit)[0]
    return inv


class _GridProduct(torch.autograd.Function):
    """The grid product over the whole batch, in chunks of ``rows`` rows whose intermediates
    live in per-thread scratch buffers (a fresh buffer of a few hundred KB costs its page
    faults on every chunk; :func:`tp_torch._common.scratch`), each chunk's result written into
    the output. The backward is the product's own transposes
    (:meth:`GridExecutor._chunk_backward`: the cotangent to the grid through the projection's
    transposed tables, times the other input's recomputed grid, back through the input's
    transposed tables; the gathers' transposes are gathers). It saves the inputs only. Under
    ``create_graph`` the gradients are the torch-op product's (differentiable again)."""

    @staticmethod
    def forward(ctx, x1: torch.Tensor, x2: torch.Tensor, ex: GridExecutor, rows: int
                ) -> torch.Tensor:
        ctx.save_for_backward(x1, x2)
        ctx.ex, ctx.rows = ex, rows
        out = x1.new_empty((x1.shape[0], ex.d.irreps_out.dim))
        over_chunks(x1.shape[0], rows,
                    lambda r0, r1: ex._chunk_forward(x1[r0:r1], x2[r0:r1], out[r0:r1]))
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x1, x2 = ctx.saved_tensors
        ex, rows = ctx.ex, ctx.rows
        need = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled():  # create_graph: torch ops, differentiable again
            with torch.enable_grad():  # on the saved inputs: the graph reaches the caller's
                y = torch.cat([ex._product(x1[r0:r0 + rows], x2[r0:r0 + rows])
                               for r0 in range(0, x1.shape[0], rows)])
                wrt = [t for t, n in zip((x1, x2), need, strict=True) if n]
                got = iter(torch.autograd.grad(y, wrt, g, create_graph=True))
            return (next(got) if need[0] else None), (next(got) if need[1] else None), None, None
        g = g.contiguous()
        outs = (x1.new_empty(x1.shape) if need[0] else None,
                x2.new_empty(x2.shape) if need[1] else None)
        over_chunks(g.shape[0], rows, lambda r0, r1: ex._chunk_backward(
            x1[r0:r1], x2[r0:r1], g[r0:r1], tuple(None if o is None else o[r0:r1] for o in outs)))
        return outs[0], outs[1], None, None


class GridExecutor(GTPKernel):
    """``grid`` (:class:`GridPlan`): per-m Legendre matmuls + real DFT over phi, batch-last:
    the plan's ``(class, m, l, channel)`` layout is held as ``(m, l, class, channel)`` so
    that each step is one matmul over columns ``class * channel * B``."""

    #: run the CPU product as one :class:`_GridProduct` (False: torch ops per chunk)
    one_form = True

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
        go = np.asarray(permute_flat_index(plan.out_index, shape, (1, 2, 0, 3)))
        self.add_index("go", go)
        # the transposed product (:class:`_GridProduct`): the tables transposed, and each
        # gather's transpose as a gather (every map reads a row at most once)
        self.add_const("pl1", plan.legendre1)  # (M, L+1, nt)
        self.add_const("ph1", plan.phi1)  # (M, nphi)
        self.add_const("pl2", plan.legendre2)
        self.add_const("ph2", plan.phi2)
        self.add_const("plo", plan.legendre_out)  # (M_o, nt, Lo+1)
        self.add_const("pho", plan.phi_out)  # (nphi, M_o)
        g1, g2 = (np.asarray(t(i, (1, 2, 0, 3)).reshape(-1)) for i in (plan.index1, plan.index2))
        self.add_index("g1_t", _inverse(g1, self.d.irreps_in1.dim, g1.size))
        self.add_index("g2_t", _inverse(g2, self.d.irreps_in2.dim, g2.size))
        self.add_index("go_t", _inverse(go, int(np.prod(shape)), self.d.irreps_out.dim))

    def _one_form(self, x1: torch.Tensor, x2: torch.Tensor, rows: int | None
                  ) -> torch.Tensor | None:
        if x1.device.type != "cpu":  # the chunk loop and its scratch buffers are for CPU
            return None
        return _GridProduct.apply(x1, x2, self, rows or max(x1.shape[0], 1))

    # ------------------------------------------------------------- chunked, in scratch buffers
    def _grid_into(self, x: torch.Tensor, side: int) -> torch.Tensor:
        """Rows ``x (b, dim)`` of input ``side`` -> its grid ``(nphi, nt, ncls * ch * b)``
        (scratch)."""
        b, dim = x.shape
        g = self.g1 if side == 0 else self.g2
        plt = self.const("plt1" if side == 0 else "plt2", x.dtype)  # (M, nt, L+1)
        t = self.const("t1" if side == 0 else "t2", x.dtype)  # (nphi, M)
        m_, nt, lp1 = plt.shape
        xt = scratch(f"gx{side}", (dim + 1, b), x)
        xt[:dim].copy_(x.t())
        xt[dim].zero_()
        coeff = scratch(f"gc{side}", (g.shape[0], b), x)
        torch.index_select(xt, 0, g, out=coeff)
        r = g.shape[0] // (m_ * lp1) * b
        a = scratch(f"ga{side}", (m_, nt, r), x)
        torch.bmm(plt, coeff.view(m_, lp1, r), out=a)
        f = scratch(f"gf{side}", (t.shape[0], nt * r), x)
        torch.mm(t, a.view(m_, nt * r), out=f)
        return f.view(t.shape[0], nt, r)

    def _chunk_forward(self, x1: torch.Tensor, x2: torch.Tensor, out: torch.Tensor) -> None:
        b, dt = x1.shape[0], x1.dtype
        nphi, nt = self.n_phi, self.n_theta
        f1 = self._grid_into(x1, 0).view(nphi, nt, self.ncls1, self.C, b)
        f2 = self._grid_into(x2, 1).view(nphi, nt, self.ncls2, self.C2, b)
        h = scratch("gh", (nphi, nt, self.nclso, self.C, b), x1)
        done = set()
        for k1, k2, ko in self.pairs:
            if ko in done:
                h[:, :, ko].addcmul_(f1[:, :, k1], f2[:, :, k2])
            else:
                torch.mul(f1[:, :, k1], f2[:, :, k2], out=h[:, :, ko])
                done.add(ko)
        for ko in set(range(self.nclso)) - done:
            h[:, :, ko].zero_()
        tft, pft = self.const("tft", dt), self.const("pft", dt)
        r = self.nclso * self.C * b
        bm = scratch("gbm", (tft.shape[0], nt * r), x1)
        torch.mm(tft, h.view(nphi, nt * r), out=bm)
        rows = pft.shape[0] * pft.shape[1] * self.nclso * self.C
        zp = scratch("gz", (rows + 1, b), x1)
        torch.bmm(pft, bm.view(tft.shape[0], nt, r), out=zp[:rows].view(pft.shape[0],
                                                                         pft.shape[1], r))
        zp[rows].zero_()
        y = scratch("gy", (self.go.shape[0], b), x1)
        torch.index_select(zp, 0, self.go, out=y)
        out.copy_(y.t())

    def _chunk_backward(self, x1: torch.Tensor, x2: torch.Tensor, g: torch.Tensor,
                        outs: tuple[torch.Tensor | None, torch.Tensor | None]) -> None:
        """The transposes at the cotangent rows ``g (b, dim_out)``: ``F^T g`` on the grid, times
        the other input's grid, ``G^T`` back; into ``outs`` (the rows of the x1 and x2
        gradients, None where not needed)."""
        b, dt = g.shape[0], g.dtype
        nphi, nt = self.n_phi, self.n_theta
        dout = g.shape[1]
        gt = scratch("tg", (dout + 1, b), g)
        gt[:dout].copy_(g.t())
        gt[dout].zero_()
        plo, pho = self.const("plo", dt), self.const("pho", dt)  # (Mo, nt, Lo+1), (nphi, Mo)
        r = self.nclso * self.C * b
        zc = scratch("tz", (self.go_t.shape[0], b), g)
        torch.index_select(gt, 0, self.go_t, out=zc)
        bm = scratch("tbm", (plo.shape[0], nt, r), g)
        torch.bmm(plo, zc.view(plo.shape[0], plo.shape[2], r), out=bm)
        h = scratch("th", (nphi, nt * r), g)
        torch.mm(pho, bm.view(plo.shape[0], nt * r), out=h)
        h = h.view(nphi, nt, self.nclso, self.C, b)
        grids = (self._grid_into(x1, 0).view(nphi, nt, self.ncls1, self.C, b)
                 if outs[1] is not None else None,
                 self._grid_into(x2, 1).view(nphi, nt, self.ncls2, self.C2, b)
                 if outs[0] is not None else None)
        for side in (0, 1):
            if outs[side] is None:
                continue
            other = grids[1 - side]
            ncls, ch = (self.ncls1, self.C) if side == 0 else (self.ncls2, self.C2)
            ctf = scratch("tf", (nphi, nt, ncls, ch, b), g)
            ctf.zero_()
            for pair in self.pairs:
                hk, ok = h[:, :, pair[2]], other[:, :, pair[1 - side]]
                if hk.shape[2] == ch:  # in place: a fresh term would fault its pages again
                    ctf[:, :, pair[side]].addcmul_(hk, ok)
                else:  # one x2 channel broadcast over the channels of x1: summed over them
                    ctf[:, :, pair[side]] += (hk * ok).sum(dim=2, keepdim=True)
            pl = self.const("pl1" if side == 0 else "pl2", dt)  # (M, L+1, nt)
            ph = self.const("ph1" if side == 0 else "ph2", dt)  # (M, nphi)
            rr = ncls * ch * b
            a = scratch("ta", (ph.shape[0], nt * rr), g)
            torch.mm(ph, ctf.view(nphi, nt * rr), out=a)
            rows = pl.shape[0] * pl.shape[1] * ncls * ch
            cp = scratch("tc", (rows + 1, b), g)
            torch.bmm(pl, a.view(ph.shape[0], nt, rr), out=cp[:rows].view(pl.shape[0],
                                                                          pl.shape[1], rr))
            cp[rows].zero_()
            idx = self.g1_t if side == 0 else self.g2_t
            y = scratch("ty", (idx.shape[0], b), g)
            torch.index_select(cp, 0, idx, out=y)
            outs[side].copy_(y.t())

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
