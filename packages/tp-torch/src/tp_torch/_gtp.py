"""Gaunt tensor product kernels: ``grid`` and ``fourier``.

Both read each channel of an input as up to two functions on the sphere (the parity classes
``p * (-1)**l``), multiply every class pair that reaches an output class, and project back:
``z_{l3 m3} = (1 / 4 pi) int f1 f2 Y_{l3 m3}`` (``tp_spec.gtp``).

* ``grid``: separable per-order transforms on the minimal exact Gauss-Legendre x uniform grid
  (``tp_spec.s2grid``). The work runs "batch last" (``(..., B * C)`` columns) so every step is
  one large matmul: Legendre step as a batched matmul over the orders ``m`` (``O(L^3)`` per
  channel), a real DFT over ``phi`` as one matmul, the pointwise product, and the inverse steps.
* ``fourier``: exact sparse SH <-> 2D Fourier tables (``tp_spec.fourier``) applied by
  gather + ``index_add`` (``O(L^3)`` per channel), a 2D FFT linear convolution, and the exact
  sparse projection back.

On CPU both (and the MTP kernels, which share :class:`ChannelFunctionKernel`) run a large batch
in chunks whose intermediates stay in cache (:attr:`ChannelFunctionKernel.chunk_entries`).
"""

from __future__ import annotations

import numpy as np
import torch
from tp_spec.fourier import fourier_to_sh, sh_to_fourier
from tp_spec.gtp import parity_class
from tp_spec.s2grid import legendre_matrices, phi_matrix, s2grid_for

from ._common import Kernel, chunk_rows
from ._layout import class_index, feature_weight_index

__all__ = ["ChannelFunctionKernel", "GTPFourier", "GTPGrid"]


class ChannelFunctionKernel(Kernel):
    """Shared layout for GTP/MTP: classes, gather indices, per-degree weight indices."""

    def __init__(self, d, class_of) -> None:
        super().__init__()
        self.d = d
        self.C, self.C2 = d.channels, d.channels_in2
        pairs = []
        present = {w: {class_of(ir) for _, ir in irr} for w, irr in
                   (("in1", d.irreps_in1), ("in2", d.irreps_in2), ("out", d.irreps_out))}
        for q1 in (1, -1):
            for q2 in (1, -1):
                if q1 in present["in1"] and q2 in present["in2"] and q1 * q2 in present["out"]:
                    pairs.append((q1, q2))
        self.cls1 = sorted({q1 for q1, _ in pairs}, reverse=True)
        self.cls2 = sorted({q2 for _, q2 in pairs}, reverse=True)
        self.clso = sorted({q1 * q2 for q1, q2 in pairs}, reverse=True)
        self.pairs = [(self.cls1.index(q1), self.cls2.index(q2), self.clso.index(q1 * q2))
                      for q1, q2 in pairs]

        def lmax(irreps, classes):
            ls = [ir.l for _, ir in irreps if class_of(ir) in classes]
            return max(ls) if ls else 0

        self.L1 = lmax(d.irreps_in1, self.cls1)
        self.L2 = lmax(d.irreps_in2, self.cls2)
        self.Lo = lmax(d.irreps_out, self.clso)
        self.class_of = class_of
        if d.weight_numel:
            n1, n2 = len(d.irreps_in1), len(d.irreps_in2)
            self.add_index("widx1", feature_weight_index(d.irreps_in1, 0, self.C))
            self.add_index("widx2", feature_weight_index(d.irreps_in2, n1 * self.C, self.C2))
            self.add_index("widx3", feature_weight_index(
                d.irreps_out, n1 * self.C + n2 * self.C2, self.C))

    @staticmethod
    def _scale(x: torch.Tensor, w: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor:
        if w is None:
            return x
        if w.dim() == 1:
            return x * w.index_select(0, idx)
        return x * w.index_select(1, idx)

    def weighted_inputs(self, x1, x2, w):
        if w is None or not self.d.weight_numel:
            return x1, x2
        return self._scale(x1, w, self.widx1), self._scale(x2, w, self.widx2)

    def weighted_output(self, out, w):
        if w is None or not self.d.weight_numel:
            return out
        return self._scale(out, w, self.widx3)

    #: CPU batch chunks: about this many entries of the largest intermediate per chunk, at
    #: least this many rows (``_row_entries`` gives the per-row size). Unchunked, MIMO L=10 at
    #: batch 10,000 makes 34-134 MB intermediates per call, each mapped anew by the allocator
    #: (a page fault per 4 kB) and streamed from memory. Measured (one thread, batch 10,000,
    #: AMD EPYC, MIMO, min of 5-7 interleaved, unchunked / 2^18 entries, forward;
    #: forward+backward): grid L=6 57.7 / 15.4 ms; 72 / 49, L=10 162 / 49; 356 / 170;
    #: fourier L=6 551 / 239; 1272 / 596, L=10 6177 / 1930; 9251 / 3993; MTP sparse L=6
    #: 85.7 / 35.0; 133 / 97, L=10 316 / 172; 593 / 395; MTP dense L=10 364 / 308;
    #: 839 / 699. 2^17 .. 2^20 are within ~15 % of each other from L = 4.
    chunk_entries = 2 ** 18
    chunk_min_rows = 64

    def _row_entries(self) -> int:
        """Entries per batch row of the product's largest intermediate."""
        raise NotImplementedError

    def _chunk_rows(self, x1: torch.Tensor) -> int | None:
        """Batch rows per chunk on CPU (:func:`chunk_rows`), or None: one piece."""
        return chunk_rows(x1, self._row_entries(), self.chunk_entries, self.chunk_min_rows)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        """Per-degree weights on the inputs, the product (on CPU in batch chunks: each
        chunk's intermediates stay in cache and are reused from the allocator's heap instead
        of being mapped anew; autograd records every chunk, so the backward is chunked too),
        weights on the output."""
        b = x1.shape[0]
        if not self.active:
            return x1.new_zeros((b, self.d.irreps_out.dim))
        x1, x2 = self.weighted_inputs(x1, x2, w)
        rows = self._chunk_rows(x1)
        if rows is None:
            out = self._product(x1, x2)
        else:  # split, not slices: the backward concatenates the chunks' gradients once
            out = torch.cat([self._product(a, c)
                             for a, c in zip(x1.split(rows), x2.split(rows), strict=True)])
        return self.weighted_output(out, w)

    def _product(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """The product of weighted inputs ``(B, dim1)``, ``(B, dim2)`` -> ``(B, dim_out)``."""
        raise NotImplementedError


def _pad_rows(xt: torch.Tensor) -> torch.Tensor:
    """Append a zero row (the sentinel of the gather indices)."""
    return torch.cat([xt, xt.new_zeros((1,) + tuple(xt.shape[1:]))], dim=0)


class GTPGrid(ChannelFunctionKernel):
    """``grid``: per-m Legendre matmuls + real DFT over phi, batch-last (see module doc)."""

    def __init__(self, d) -> None:
        super().__init__(d, parity_class)
        L1, L2 = self.L1, self.L2
        self.Lo = min(self.Lo, L1 + L2)  # higher output degrees are exactly zero
        Lo = self.Lo
        self.active = bool(self.pairs)
        if not self.active:
            return
        grid = s2grid_for(L1, L2, Lo)
        self.n_theta, self.n_phi = grid.n_theta, grid.n_phi

        def to_grid_consts(L):
            pl = legendre_matrices(L, grid, "component", "to_grid")  # [|m|]: (L+1-|m|, nt)
            plt = np.zeros((2 * L + 1, grid.n_theta, L + 1))
            for m in range(-L, L + 1):
                plt[m + L, :, abs(m):] = pl[abs(m)].T
            return plt, np.ascontiguousarray(phi_matrix(L, grid, "to_grid").T)  # (nphi, M)

        plt1, t1 = to_grid_consts(L1)
        plt2, t2 = to_grid_consts(L2)
        self.add_const("plt1", plt1)
        self.add_const("t1", t1)
        self.add_const("plt2", plt2)
        self.add_const("t2", t2)
        pf = legendre_matrices(Lo, grid, "component", "from_grid")  # [|m|]: (nt, Lo+1-|m|)
        pft = np.zeros((2 * Lo + 1, Lo + 1, grid.n_theta))
        for m in range(-Lo, Lo + 1):
            pft[m + Lo, abs(m):, :] = pf[abs(m)].T
        self.add_const("pft", pft)
        self.add_const("tft", np.ascontiguousarray(phi_matrix(Lo, grid, "from_grid").T))

        # gather maps: dense (m, l) layout (M, L+1, ncls, C) from the flat features
        def ml_index(irreps, classes, L, ch):
            idx = class_index(irreps, classes, parity_class, L, ch)  # (ncls, ch, (L+1)^2)
            out = np.full((2 * L + 1, L + 1) + idx.shape[:2], irreps.dim, dtype=np.int64)
            for l in range(L + 1):
                for m in range(-l, l + 1):
                    out[m + L, l] = idx[:, :, l * l + l + m]
            return out.reshape(-1)

        self.add_index("g1", ml_index(d.irreps_in1, self.cls1, L1, self.C))
        self.add_index("g2", ml_index(d.irreps_in2, self.cls2, L2, self.C2))
        # scatter back: output feature -> row of Z (M_o, Lo+1, ncls_o, C) or the zero row
        nrow = (2 * Lo + 1) * (Lo + 1) * len(self.clso) * self.C
        go = np.full(d.irreps_out.dim, nrow, dtype=np.int64)
        for (mul, ir), sl in zip(d.irreps_out, d.irreps_out.slices(), strict=True):
            q = parity_class(ir)
            if q not in self.clso or ir.l > Lo:
                continue
            k = self.clso.index(q)
            for c in range(mul):
                for m in range(-ir.l, ir.l + 1):
                    row = (((m + Lo) * (Lo + 1) + ir.l) * len(self.clso) + k) * self.C + c
                    go[sl.start + c * ir.dim + m + ir.l] = row
        self.add_index("go", go)
        self.needs_zero_row = bool((go == nrow).any())

    def _to_grid(self, x: torch.Tensor, g: torch.Tensor, plt: torch.Tensor, t: torch.Tensor):
        """``x: (B, dim)`` -> grid values ``(n_phi, n_theta, ncls * ch * B)``."""
        b = x.shape[0]
        m_, nt, lp1 = plt.shape
        xt = _pad_rows(x.t())  # (dim + 1, B)
        coeff = xt.index_select(0, g).reshape(m_, lp1, (g.shape[0] // (m_ * lp1)) * b)
        a = torch.bmm(plt, coeff)  # (M, nt, R)
        r = coeff.shape[-1]
        return (t @ a.reshape(m_, nt * r)).reshape(t.shape[0], nt, r)

    def _row_entries(self) -> int:
        return self.n_phi * self.n_theta * max(len(self.cls1), len(self.clso)) * self.C

    def _product(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        b = x1.shape[0]
        dt = x1.dtype
        nphi, nt = self.n_phi, self.n_theta
        f1 = self._to_grid(x1, self.g1, self.const("plt1", dt), self.const("t1", dt))
        f2 = self._to_grid(x2, self.g2, self.const("plt2", dt), self.const("t2", dt))
        # per class (nphi, nt, C, B); unbind, not select: its backward stacks the gradients
        # instead of zero-filling the whole array per class
        f1 = f1.reshape(nphi, nt, len(self.cls1), self.C, b).unbind(2)
        f2 = f2.reshape(nphi, nt, len(self.cls2), self.C2, b).unbind(2)
        prods: list[torch.Tensor | None] = [None] * len(self.clso)
        for k1, k2, ko in self.pairs:
            p = f1[k1] * f2[k2]  # (nphi, nt, C, B); one x2 channel broadcasts
            prods[ko] = p if prods[ko] is None else prods[ko] + p
        h = torch.stack(prods, dim=2) if len(prods) > 1 else prods[0].unsqueeze(2)
        tft = self.const("tft", dt)  # (M_o, nphi)
        pft = self.const("pft", dt)  # (M_o, Lo+1, nt)
        r = len(self.clso) * self.C * b
        bm = (tft @ h.reshape(nphi, nt * r)).reshape(tft.shape[0], nt, r)
        rows = pft.shape[0] * pft.shape[1] * len(self.clso) * self.C
        z = torch.bmm(pft, bm).reshape(rows, b)  # (M_o*(Lo+1)*ncls_o*C, B)
        if self.needs_zero_row:
            z = _pad_rows(z)
        return z.index_select(0, self.go).t().contiguous()


class GTPFourier(ChannelFunctionKernel):
    """``fourier``: sparse exact SH -> 2D Fourier tables, FFT convolution, exact projection."""

    def __init__(self, d) -> None:
        super().__init__(d, parity_class)
        L1, L2 = self.L1, self.L2
        self.Lo = min(self.Lo, L1 + L2)
        Lo = self.Lo
        self.active = bool(self.pairs)
        if not self.active:
            return
        self.K = L1 + L2
        self.N = 2 * self.K + 1

        def forward_table(name, L):
            tab = sh_to_fourier(L, "component")  # complex128, sparse
            n = 2 * L + 1
            s, u, v = tab.indices[:, 0], tab.indices[:, 1] + L, tab.indices[:, 2] + L
            vals = tab.values
            real = np.abs(vals.imag) == 0
            # output position in the flat (2, n, n) real/imag layout
            pos = np.where(real, 0, n * n) + u * n + v
            self.add_index(f"{name}_s", s)
            self.add_index(f"{name}_pos", pos)
            self.add_const(f"{name}_val", np.where(real, vals.real, vals.imag))

        forward_table("f1", L1)
        forward_table("f2", L2)
        proj = fourier_to_sh(Lo, self.K, "component")
        n = self.N
        s, u, v = proj.indices[:, 0], proj.indices[:, 1] + self.K, proj.indices[:, 2] + self.K
        vals = proj.values
        real = np.abs(vals.imag) == 0
        # z = Re(sum T G) = sum Re(T) Re(G) - Im(T) Im(G); G stored as (2, N, N) real/imag
        self.add_index("p_pos", np.where(real, 0, n * n) + u * n + v)
        self.add_index("p_s", s)
        self.add_const("p_val", np.where(real, vals.real, -vals.imag))
        self.add_index("g1", class_index(d.irreps_in1, self.cls1, parity_class, L1, self.C)
                       .reshape(-1))
        self.add_index("g2", class_index(d.irreps_in2, self.cls2, parity_class, L2, self.C2)
                       .reshape(-1))
        nrow = len(self.clso) * self.C * (Lo + 1) ** 2
        go = np.full(d.irreps_out.dim, nrow, dtype=np.int64)
        for (mul, ir), sl in zip(d.irreps_out, d.irreps_out.slices(), strict=True):
            q = parity_class(ir)
            if q not in self.clso or ir.l > Lo:
                continue
            k = self.clso.index(q)
            for c in range(mul):
                base = (k * self.C + c) * (Lo + 1) ** 2 + ir.l * ir.l
                go[sl.start + c * ir.dim: sl.start + (c + 1) * ir.dim] = base + np.arange(ir.dim)
        self.add_index("go", go)
        self.needs_zero_row = bool((go == nrow).any())

    def _fourier(self, x, g, name, L, ch, ncls):
        """``x: (B, dim)`` -> complex Fourier coefficients ``(B, ncls, ch, 2L+1, 2L+1)``."""
        b = x.shape[0]
        n = 2 * L + 1
        xp = torch.cat([x, x.new_zeros((b, 1))], dim=1)
        coeff = xp.index_select(1, g).reshape(b * ncls * ch, (L + 1) ** 2)
        vals = coeff.index_select(1, getattr(self, f"{name}_s")) * self.const(f"{name}_val",
                                                                                x.dtype)
        flat = coeff.new_zeros((coeff.shape[0], 2 * n * n)).index_add(
            1, getattr(self, f"{name}_pos"), vals)
        f = torch.complex(flat[:, : n * n], flat[:, n * n:]).reshape(b, ncls, ch, n, n)
        return f

    def _row_entries(self) -> int:
        return 2 * self.N * self.N * max(len(self.cls1), len(self.clso)) * self.C

    def _product(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        b = x1.shape[0]
        dt = x1.dtype
        if b == 0:  # MKL's FFT rejects empty batches; keep the result attached to the inputs
            zero = (x1.sum() + x2.sum()) * 0.0
            return x1.new_zeros((0, self.d.irreps_out.dim)) + zero
        N = self.N
        f1 = self._fourier(x1, self.g1, "f1", self.L1, self.C, len(self.cls1))
        f2 = self._fourier(x2, self.g2, "f2", self.L2, self.C2, len(self.cls2))
        h1 = torch.fft.fft2(f1, s=(N, N))
        h2 = torch.fft.fft2(f2, s=(N, N))
        prods: list[torch.Tensor | None] = [None] * len(self.clso)
        for k1, k2, ko in self.pairs:
            p = h1[:, k1] * h2[:, k2]  # (B, C, N, N)
            prods[ko] = p if prods[ko] is None else prods[ko] + p
        h = torch.stack(prods, dim=1)  # (B, ncls_o, C, N, N)
        g = torch.fft.ifft2(h)
        gr = torch.cat([g.real.reshape(-1, N * N), g.imag.reshape(-1, N * N)], dim=1)
        terms = gr.index_select(1, self.p_pos) * self.const("p_val", dt)
        dim_o = (self.Lo + 1) ** 2
        z = terms.new_zeros((gr.shape[0], dim_o)).index_add(1, self.p_s, terms)
        z = z.reshape(b, len(self.clso) * self.C * dim_o)
        if self.needs_zero_row:
            z = torch.cat([z, z.new_zeros((b, 1))], dim=1)
        return z.index_select(1, self.go)
