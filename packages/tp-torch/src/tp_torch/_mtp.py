"""Matrix tensor product kernels: ``dense`` and ``sparse`` (``tp_spec.mtp``).

Each channel of an input is split by parity into an even and an odd ``n x n`` matrix
``X = sum x_lm B^(l)_m``; the products ``Z_e = X1e X2e + X1o X2o``, ``Z_o = X1e X2o + X1o X2e``
are read out as ``z_lm = sqrt(n) <B^(l)_m, Z>_F``.

Product (both methods, :func:`tp_torch._bmm.matprod`, whose backward is the same product so
first and second derivatives stay fast): for ``n <= 7`` the matrices are laid out batch-last,
``(n, n, s, C, B)``, and multiplied as ``n`` broadcast multiply-adds over the batch (ATen's CPU
``bmm`` runs a naive per-matrix loop below ``n^3 = 400``); for ``n >= 9`` batch-first,
``(B, C, s, n, n)``, with MKL's batched GEMM. Embedding and read-out are plain matmuls in either
layout (the transposes ride on the GEMM flags).

When all four parity pairs occur, two matmuls replace the four:
with ``X = Xe + Xo`` and ``X' = Xe - Xo``, ``P = X1 X2`` and ``Q = X1' X2'`` give
``Z_e = (P + Q) / 2`` and ``Z_o = (P - Q) / 2`` (the 1/2 is folded into the read-out). Otherwise
one matmul per parity pair. With all four pairs and one channel (both methods), the read-out is
one matmul from ``[P, Q]`` straight into the flat output (``readout_pq``): no ``P +- Q``, per-class
matmuls, concatenation or gather, in the forward or the backward.

* ``dense``: the change of basis is one dense matmul with the full ``((L+1)^2, n^2)`` basis
  matrix (every degree ``0..L``, zero rows for absent ones; features gathered into that layout),
  and the read-out one dense matmul with its ``(n^2, (Lo+1)^2)`` transpose: ``O(L^4)``.
* ``sparse``: the change of basis keeps only the nonzero blocks of the basis matrix: per parity
  class, only the degrees present (odd ``l`` are absent from an ``e``-class of natural-parity
  irreps, and vice versa), with the feature gather folded into the matrix (one channel: the
  embedding is ``x @ W`` straight from the flat features, and ``[X, X']`` come out of one matmul
  together); the read-out produces only the present output degrees of each class. This is
  about half the multiply-adds of ``dense`` and no gathers. When each input holds natural
  irreps only (``p = (-1)^l``, e.g. spherical harmonics) or pseudo irreps only,
  ``X' = +-X^T`` is redundant: the embedding makes ``X`` alone and the read-out takes each
  output from ``X1 X2 + X2 X1`` or ``X1 X2 - X2 X1`` (:class:`MTPSparse`, "transpose regime"),
  half the change-of-basis multiply-adds again, from ``n = 7`` (below, the read-out's
  concatenation and gather cost more than they save). Measured (one thread, batch 10,000,
  AMD EPYC, MIMO, interleaved, dense / sparse time, forward / forward+backward; min of 9:)
  L=3 1.41 / 1.43x, L=4 1.31 / 1.84x, L=5 1.72 / 1.72x, L=6 1.26 / 1.46x; (median of 5:)
  L=8 1.28 / 1.37x, L=10 1.16 / 1.54x; without the regime L=4 1.0 / 1.2x, L=8 1.20 / 1.01x.

  An ``O(L^3)`` variant that groups ``B^(l)_m`` by order ``m`` (shared support ``S_m``, small
  matmuls + gathers) was measured and rejected: on CPU an ``index_select`` costs 1-3 ns per
  element while MKL runs these GEMMs at ~65 GFLOP/s, so at L=6 the per-``m`` read-out (one
  gather of ``B x sum|S_m|`` entries, a padded batched matmul, one gather back) took 60 ms
  against 6 ms for the dense ``(B, 169) @ (169, 169)`` read-out (README, "MTP").
"""

from __future__ import annotations

import numpy as np
import torch
from tp_spec.mtp import mtp_basis

from ._bmm import matprod, use_batch_last
from ._gtp import ChannelFunctionKernel
from ._layout import class_index

__all__ = ["MTPDense", "MTPSparse"]


def _parity(ir) -> int:
    return ir.p


def _basis_matrix(lt: int, lmax: int) -> np.ndarray:
    """``E[l*l + l + m, a*n + b] = B^(l)_m[a, b]`` for ``l <= lmax``: ``((lmax+1)^2, n^2)``."""
    n = 2 * lt + 1
    e = np.zeros(((lmax + 1) ** 2, n * n))
    for l in range(lmax + 1):
        b = mtp_basis(lt, l)  # (n, n, 2l+1)
        e[l * l:(l + 1) ** 2] = b.reshape(n * n, 2 * l + 1).T
    return e


class _MTPBase(ChannelFunctionKernel):
    """Shared pipeline: ``embed`` -> parity products -> ``readout``.

    ``embed(x, which)`` returns ``(B, ch, s, n, n)`` (``self.batch_last``: ``(n, n, s, ch, B)``):
    with ``self.pq`` (all four parity pairs) ``s = 2`` holding ``[X, X']``, else one matrix per
    class of ``self.cls1`` / ``self.cls2``. ``readout(zs)`` takes one ``(B, C, n, n)``
    (``(n, n, C, B)``) per output class of ``self.clso`` and returns the flat output
    ``(B, dim_out)``; with ``self.pq`` its constants carry the factor 1/2.
    """

    def __init__(self, d) -> None:
        super().__init__(d, _parity)
        self.n = d.n
        self.active = bool(self.pairs)
        self.pq = len(self.pairs) == 4
        #: read-out factor: 1/2 for the (P + Q) / 2, (P - Q) / 2 products
        self.half = 0.5 if self.pq else 1.0
        #: product layout (module docstring); may be switched at any time (tests do)
        self.batch_last = use_batch_last(self.n)
        #: one channel and all four parity pairs: read ``[P, Q]`` out with ONE matmul straight
        #: into the flat output (``readout_pq``) instead of ``P + Q``, ``P - Q``, a matmul per
        #: class, cat and gather: twice the read-out multiply-adds of the per-class matmuls
        #: (as many as ``dense``'s), but a third of the ops and their backward; measured faster
        #: for n = 3 .. 13 (MIMO, one channel, CPU). May be switched off at any time (tests do).
        self.fused_out = self.active and self.pq and self.C == 1
        if self.fused_out:
            n2 = self.n * self.n
            rpq = np.zeros((n2, 2, d.irreps_out.dim))
            for (_, ir), sl in zip(d.irreps_out, d.irreps_out.slices(), strict=True):
                bl = self.half * d.scale * mtp_basis(d.lt, ir.l).reshape(n2, ir.dim)
                rpq[:, 0, sl] = bl  # Z_e = (P + Q) / 2, Z_o = (P - Q) / 2
                rpq[:, 1, sl] = ir.p * bl
            # rows (a, b, s) for batch-last [P, Q], (s, a, b) for batch-first
            self.add_const("rpq_bl", rpq.reshape(2 * n2, -1))
            self.add_const("rpq_bf", rpq.transpose(1, 0, 2).reshape(2 * n2, -1))

    def readout_pq(self, pq: torch.Tensor) -> torch.Tensor:
        """``[P, Q]``: ``(n, n, 2, 1, B)`` or ``(B, 1, 2, n, n)`` -> ``(B, dim_out)``."""
        if self.batch_last:
            n2 = self.n * self.n
            return torch.mm(pq.reshape(2 * n2, pq.shape[-1]).t(),
                            self.const("rpq_bl", pq.dtype))
        return torch.mm(pq.reshape(pq.shape[0], 2 * self.n * self.n),
                        self.const("rpq_bf", pq.dtype))

    def _row_entries(self) -> int:
        return 2 * self.n * self.n * self.C

    def _product(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        bl = self.batch_last
        m1 = self.embed(x1, 1)  # (B, C, s, n, n) or (n, n, s, C, B)
        m2 = self.embed(x2, 2)  # (B, C2, s, n, n) or (n, n, s, C2, B); one channel broadcasts
        if self.pq:
            # (B, C, 2, n, n) or (n, n, 2, C, B): P = X1 X2, Q = X1' X2'; unbind, not select:
            # its backward stacks instead of zero-filling
            pq = matprod(m1, m2, bl)
            if self.fused_out:
                return self.readout_pq(pq)
            p, q = pq.unbind(2)
            zs = [p + q, p - q]  # 2 Z_e, 2 Z_o (clso = [1, -1])
        else:
            a1, a2 = m1.unbind(2), m2.unbind(2)
            acc: list[torch.Tensor | None] = [None] * len(self.clso)
            for k1, k2, ko in self.pairs:
                t = matprod(a1[k1], a2[k2], bl)
                acc[ko] = t if acc[ko] is None else acc[ko] + t
            zs = [z for z in acc if z is not None]
        return self.readout(zs)


class MTPDense(_MTPBase):
    """``dense``: dense change of basis with the full ``((L+1)^2, n^2)`` basis matrix."""

    def __init__(self, d) -> None:
        super().__init__(d)
        if not self.active:
            return
        for which, irreps, classes, L, ch in ((1, d.irreps_in1, self.cls1, self.L1, self.C),
                                              (2, d.irreps_in2, self.cls2, self.L2, self.C2)):
            idx = class_index(irreps, classes, _parity, L, ch)  # (ncls, ch, K)
            self.add_index(f"g{which}", idx.reshape(-1))
            self.add_index(f"gt{which}", idx.transpose(2, 0, 1).reshape(-1))  # (K, ncls, ch)
        Lo = self.Lo
        nrow = len(self.clso) * self.C * (Lo + 1) ** 2
        go = np.full(d.irreps_out.dim, nrow, dtype=np.int64)
        for (mul, ir), sl in zip(d.irreps_out, d.irreps_out.slices(), strict=True):
            if ir.p not in self.clso:
                continue
            k = self.clso.index(ir.p)
            for c in range(mul):
                base = (k * self.C + c) * (Lo + 1) ** 2 + ir.l * ir.l
                go[sl.start + c * ir.dim: sl.start + (c + 1) * ir.dim] = base + np.arange(ir.dim)
        self.add_index("go", go)
        self.needs_zero_row = bool((go == nrow).any())
        self.add_const("e1", _basis_matrix(d.lt, self.L1))
        self.add_const("e2", _basis_matrix(d.lt, self.L2))
        self.add_const("eo", self.half * d.scale * _basis_matrix(d.lt, Lo).T.copy())

    def embed(self, x: torch.Tensor, which: int) -> torch.Tensor:
        b = x.shape[0]
        L, g = (self.L1, self.g1) if which == 1 else (self.L2, self.g2)
        ch = self.C if which == 1 else self.C2
        ncls = len(self.cls1 if which == 1 else self.cls2)
        k = (L + 1) ** 2
        if self.batch_last:
            xt = torch.cat([x.t(), x.new_zeros((1, b))], dim=0)  # (dim + 1, B)
            c = xt.index_select(0, getattr(self, f"gt{which}")).reshape(k, ncls, ch, b)
            if self.pq:
                c = torch.stack([c[:, 0] + c[:, 1], c[:, 0] - c[:, 1]], dim=1)
            s = c.shape[1]
            mats = torch.mm(self.const(f"e{which}", x.dtype).t(), c.reshape(k, s * ch * b))
            return mats.reshape(self.n, self.n, s, ch, b)
        xp = torch.cat([x, x.new_zeros((b, 1))], dim=1)
        c = xp.index_select(1, g).reshape(b, ncls, ch, k).transpose(1, 2)  # (B, ch, ncls, K)
        if self.pq:
            c = torch.stack([c[:, :, 0] + c[:, :, 1], c[:, :, 0] - c[:, :, 1]], dim=2)
        mats = torch.matmul(c, self.const(f"e{which}", x.dtype))  # (B, ch, s, n^2)
        return mats.reshape(b, ch, c.shape[2], self.n, self.n)

    def readout(self, zs: list[torch.Tensor]) -> torch.Tensor:
        ko = (self.Lo + 1) ** 2
        eo = self.const("eo", zs[0].dtype)
        if self.batch_last:
            b = zs[0].shape[-1]
            z = torch.stack(zs, dim=2).reshape(self.n * self.n, len(zs) * self.C * b)
            z = torch.mm(z.t(), eo).reshape(len(self.clso), self.C, b, ko)
            z = z.permute(2, 0, 1, 3).reshape(b, len(self.clso) * self.C * ko)
        else:
            b = zs[0].shape[0]
            z = torch.stack(zs, dim=1).reshape(-1, self.n * self.n)  # (B*ncls_o*C, n^2)
            z = (z @ eo).reshape(b, len(self.clso) * self.C * ko)
        if self.needs_zero_row:
            z = torch.cat([z, z.new_zeros((b, 1))], dim=1)
        return z.index_select(1, self.go)


#: ``sparse`` uses the transpose regime from this matrix size ``n`` (module docstring).
_TR_MIN_N = 7


def _transpose_sign(irreps, classes) -> int | None:
    """``sigma`` if every irrep of ``classes`` has parity ``p = sigma (-1)^l`` (all natural:
    ``+1``, all pseudo: ``-1``), else None. Then ``X' = Xe - Xo = sigma X^T``: odd-``l`` basis
    matrices are antisymmetric, even-``l`` symmetric."""
    signs = {ir.p * (-1) ** ir.l for _, ir in irreps if ir.p in classes}
    return signs.pop() if len(signs) == 1 else None


class MTPSparse(_MTPBase):
    """``sparse``: change of basis restricted to the nonzero (class, degree) blocks, with the
    feature gathers folded into the matrices (see the module docstring).

    Transpose regime (``self.tr``: all four parity pairs, each input all natural or all
    pseudo irreps, signs ``s1, s2``, ``n >= _TR_MIN_N``): ``X' = s X^T``, so
    ``Q = X1' X2' = s1 s2 (X2 X1)^T`` and, with ``B_l^T = (-1)^l B_l``, an output ``(l, p)``
    reads ``1/2 <B_l, X1 X2 + t X2 X1>`` with ``t = p s1 s2 (-1)^l``. The embedding produces
    ``X`` alone (half of ``[X, X']``) and each output is read from one ``n x n`` matrix, the
    anticommutator ``X1 X2 + X2 X1`` (``t = 1``) or the commutator (``t = -1``), instead of
    from ``[P, Q]``: half the multiply-adds of the change of basis in both directions, the same
    two products."""

    def __init__(self, d) -> None:
        super().__init__(d)
        if not self.active:
            return
        s1 = _transpose_sign(d.irreps_in1, self.cls1)
        s2 = _transpose_sign(d.irreps_in2, self.cls2)
        self.tr = self.pq and s1 is not None and s2 is not None and self.n >= _TR_MIN_N
        self._tr_sign = s1 * s2 if self.tr else 1
        if self.tr:
            self.fused_out = False
            self._read_classes = sorted({self._read_class(ir) for _, ir in d.irreps_out},
                                        reverse=True)
            half = 0.5
        else:
            self._read_classes = self.clso
            half = self.half
        n2 = self.n * self.n
        for which, irreps, classes, ch in ((1, d.irreps_in1, self.cls1, self.C),
                                           (2, d.irreps_in2, self.cls2, self.C2)):
            s = 1 if self.tr else 2 if self.pq else len(classes)
            rows, pos = [], []  # one row per used feature of channel 0; its flat positions
            for (mul, ir), sl in zip(irreps, irreps.slices(), strict=True):
                if ir.p not in classes:
                    continue
                k = classes.index(ir.p)
                bl = mtp_basis(d.lt, ir.l).reshape(n2, ir.dim).T  # (2l+1, n^2)
                for mi in range(ir.dim):
                    row = np.zeros((s, n2))
                    if self.tr:  # X alone
                        row[0] = bl[mi]
                    elif self.pq:  # [X, X'] with X' = Xe - Xo: sign = parity
                        row[0], row[1] = bl[mi], ir.p * bl[mi]
                    else:
                        row[k] = bl[mi]
                    rows.append(row.reshape(-1))
                    pos.append([sl.start + c * ir.dim + mi for c in range(mul)])
            w = np.array(rows)  # (K, s*n^2)
            pos_a = np.array(pos, dtype=np.int64)  # (K, ch)
            gather = ch > 1
            if not gather:  # fold the gather into W: rows indexed by flat feature
                full = np.zeros((irreps.dim, w.shape[1]))
                full[pos_a[:, 0]] = w
                w = full
            else:
                self.add_index(f"g{which}", pos_a.T.reshape(-1))  # (ch*K,) channel-major
                self.add_index(f"gt{which}", pos_a.reshape(-1))  # (K*ch,) feature-major
            setattr(self, f"_gather{which}", gather)
            setattr(self, f"_s{which}", s)
            self.add_const(f"w{which}", w)
            # batch-last: rows ordered (a, b, s) so that W^T x^T is (n, n, s, ch*B)
            self.add_const(f"wt{which}", w.reshape(-1, s, n2).transpose(2, 1, 0)
                           .reshape(n2 * s, -1))
        # read-out: per read class (output parity, or in the transpose regime the
        # (anti)commutator), the present degrees only
        ktot = 0
        offs = []
        for k, q in enumerate(self._read_classes):
            cols = []
            for (_, ir) in d.irreps_out:
                if self._read_class(ir) == q:
                    cols.append(mtp_basis(d.lt, ir.l).reshape(n2, ir.dim))
            r = half * d.scale * np.concatenate(cols, axis=1)  # (n^2, K_k)
            self.add_const(f"r{k}", r)
            offs.append(ktot)
            ktot += r.shape[1]
        nrow = self.C * ktot
        go = np.full(d.irreps_out.dim, nrow, dtype=np.int64)
        col = {k: 0 for k in range(len(self._read_classes))}
        for (mul, ir), sl in zip(d.irreps_out, d.irreps_out.slices(), strict=True):
            q = self._read_class(ir)
            if q not in self._read_classes:
                continue
            k = self._read_classes.index(q)
            for c in range(mul):
                base = c * ktot + offs[k] + col[k]
                go[sl.start + c * ir.dim: sl.start + (c + 1) * ir.dim] = base + np.arange(ir.dim)
            col[k] += ir.dim
        self._ktot = ktot
        self.needs_zero_row = bool((go == nrow).any())
        self._identity_out = not self.needs_zero_row and bool(
            (go == np.arange(d.irreps_out.dim)).all())
        self.add_index("go", go)

    def _read_class(self, ir) -> int:
        """The read-out class of an output irrep: its parity, or in the transpose regime
        ``+1`` (anticommutator) / ``-1`` (commutator)."""
        return ir.p * self._tr_sign * (-1) ** ir.l if self.tr else ir.p

    def _product(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        if not self.tr:
            return super()._product(x1, x2)
        bl = self.batch_last
        m1 = self.embed(x1, 1)  # (B, C, 1, n, n) or (n, n, 1, C, B)
        m2 = self.embed(x2, 2)
        ax = 2  # the class axis, of size 1 here
        p, p2 = matprod(m1, m2, bl).squeeze(ax), matprod(m2, m1, bl).squeeze(ax)
        zs = [p + p2 if q == 1 else p - p2 for q in self._read_classes]
        return self.readout(zs)

    def embed(self, x: torch.Tensor, which: int) -> torch.Tensor:
        b = x.shape[0]
        s = getattr(self, f"_s{which}")
        if self.batch_last:
            wt = self.const(f"wt{which}", x.dtype)  # (n^2 s, K or dim)
            if getattr(self, f"_gather{which}"):
                ch = self.C if which == 1 else self.C2
                xg = x.t().index_select(0, getattr(self, f"gt{which}")).reshape(wt.shape[1], ch * b)
                return torch.mm(wt, xg).reshape(self.n, self.n, s, ch, b)
            return torch.mm(wt, x.t()).reshape(self.n, self.n, s, 1, b)
        wm = self.const(f"w{which}", x.dtype)
        if getattr(self, f"_gather{which}"):
            ch = self.C if which == 1 else self.C2
            xg = x.index_select(1, getattr(self, f"g{which}")).reshape(b * ch, wm.shape[0])
            return (xg @ wm).reshape(b, ch, s, self.n, self.n)
        return (x @ wm).reshape(b, 1, s, self.n, self.n)

    def readout(self, zs: list[torch.Tensor]) -> torch.Tensor:
        n2 = self.n * self.n
        parts = []
        if self.batch_last:  # zs: (n, n, C, B)
            b = zs[0].shape[-1]
            for k, z in enumerate(zs):
                r = self.const(f"r{k}", z.dtype)
                zf = z.reshape(n2, self.C * b)
                parts.append(torch.mm(zf.t(), r).reshape(self.C, b, r.shape[1]))
            out = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]  # (C, B, ktot)
            out = (out if self.C == 1 else out.transpose(0, 1)).reshape(b, self.C * self._ktot)
        else:
            b = zs[0].shape[0]
            for k, z in enumerate(zs):
                r = self.const(f"r{k}", z.dtype)
                parts.append((z.reshape(-1, n2) @ r).reshape(b, self.C, r.shape[1]))
            out = (torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]).reshape(
                b, self.C * self._ktot)
        if self._identity_out:
            return out
        if self.needs_zero_row:
            out = torch.cat([out, out.new_zeros((b, 1))], dim=1)
        return out.index_select(1, self.go)
