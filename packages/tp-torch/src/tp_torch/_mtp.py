"""Matrix tensor product executors: ``dense`` and ``sparse`` (plans in ``tp_spec.plan.mtp``,
which describes the algorithm: parity split, ``[P, Q]``, fused read-out, transpose regime).

Product (both methods, :func:`tp_torch._bmm.matprod`, whose backward is the same product so
first and second derivatives stay fast): with ``plan.batch_last`` (``n <= 7``) the matrices are
laid out batch-last, ``(n, n, s, C, B)``, and multiplied as ``n`` broadcast multiply-adds over the
batch (ATen's CPU ``bmm`` runs a naive per-matrix loop below ``n^3 = 400``); for ``n >= 9``
batch-first, ``(B, C, s, n, n)``, with MKL's batched GEMM. Embedding and read-out are plain
matmuls in either layout (the transposes ride on the GEMM flags).

Measured (one thread, batch 10,000, AMD EPYC, MIMO, interleaved, dense / sparse time, forward /
forward+backward; min of 9:) L=3 1.41 / 1.43x, L=4 1.31 / 1.84x, L=5 1.72 / 1.72x, L=6
1.26 / 1.46x; (median of 5:) L=8 1.28 / 1.37x, L=10 1.16 / 1.54x; without the transpose regime
L=4 1.0 / 1.2x, L=8 1.20 / 1.01x.

``sparse`` with one channel (``MTPSparse.one_form``) runs the whole product (embedding, products,
read-out) as one autograd Function, :func:`tp_torch._bilinear.bilinear`, whose gradients are the
same Function; under ``torch.func`` transforms, forward-mode AD, ``torch.compile``, ``torch.export``
and ``torch.jit.trace`` it runs the per-op path above.

NaN and inf: every matrix entry mixes every coefficient of its parity, so a non-finite input
entry may reach every output of its sample (docs/numerics.md).
"""

from __future__ import annotations

import numpy as np
import torch
from tp_spec.plan.block_diagonal import worth_blocks
from tp_spec.plan.mtp import DenseMTPPlan, MTPPlan, SparseMTPPlan

from ._bilinear import Blocks, Map, Term, bilinear
from ._bmm import matprod
from ._common import FunctionProductKernel

__all__ = ["EXECUTORS", "MTPDense", "MTPSparse"]


class _MTPBase(FunctionProductKernel):
    """Shared pipeline: per-degree weights, CPU batch chunks, ``embed`` -> parity products ->
    ``readout``.

    ``embed(x, which)`` returns ``(B, ch, s, n, n)`` (``self.batch_last``: ``(n, n, s, ch, B)``):
    with ``pq`` ``s = 2`` holding ``[X, X']``, else one matrix per class. ``readout(zs)`` takes
    one ``(B, C, n, n)`` (``(n, n, C, B)``) per read class and returns ``(B, dim_out)``.
    ``batch_last`` and ``fused_out`` start as the plan's and may be switched (tests do).
    """

    def __init__(self, plan: MTPPlan) -> None:
        super().__init__(plan, None if plan.w_index1 is None else
                         (plan.w_index1, plan.w_index2, plan.w_index_out))
        self.n, self.C, self.C2 = plan.n, plan.channels, plan.channels2
        self.pq = plan.pq
        self.batch_last = plan.batch_last
        self.fused_out = plan.fused_out
        if plan.fused_out:
            # rows (a, b, s) for batch-last [P, Q], (s, a, b) for batch-first
            rpq = plan.read_pq
            self.add_const("rpq_bl", rpq.reshape(2 * self.n ** 2, -1))
            self.add_const("rpq_bf", rpq.transpose(1, 0, 2).reshape(2 * self.n ** 2, -1))
        self.needs_zero_row = plan.out_index is not None and bool(
            (plan.out_index == plan.out_rows).any())
        if plan.out_index is not None:
            self.add_index("go", plan.out_index)

    def readout_pq(self, pq: torch.Tensor) -> torch.Tensor:
        """``[P, Q]``: ``(n, n, 2, 1, B)`` or ``(B, 1, 2, n, n)`` -> ``(B, dim_out)``."""
        if self.batch_last:
            n2 = self.n * self.n
            return torch.mm(pq.reshape(2 * n2, pq.shape[-1]).t(),
                            self.const("rpq_bl", pq.dtype))
        return torch.mm(pq.reshape(pq.shape[0], 2 * self.n * self.n),
                        self.const("rpq_bf", pq.dtype))

    def gather_out(self, z: torch.Tensor) -> torch.Tensor:
        """Read-out rows ``(B, out_rows)`` -> ``(B, dim_out)`` (``plan.out_index``)."""
        if self.plan.out_index is None:
            return z
        if self.needs_zero_row:
            z = torch.cat([z, z.new_zeros((z.shape[0], 1))], dim=1)
        return z.index_select(1, self.go)

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
            zs = [p + q, p - q]  # 2 Z_e, 2 Z_o (classes_out = (1, -1))
        else:
            a1, a2 = m1.unbind(2), m2.unbind(2)
            acc: list[torch.Tensor | None] = [None] * len(self.plan.classes_out)
            for k1, k2, ko in self.plan.pairs:
                t = matprod(a1[k1], a2[k2], bl)
                acc[ko] = t if acc[ko] is None else acc[ko] + t
            zs = [z for z in acc if z is not None]
        return self.readout(zs)


class MTPDense(_MTPBase):
    """``dense``: dense change of basis with the full ``((L+1)^2, n^2)`` basis matrix."""

    def __init__(self, plan: DenseMTPPlan) -> None:
        super().__init__(plan)
        if not self.active:
            return
        for which in (1, 2):
            idx = getattr(plan, f"index{which}")  # (ncls, ch, K)
            self.add_index(f"g{which}", idx.reshape(-1))
            self.add_index(f"gt{which}", idx.transpose(2, 0, 1).reshape(-1))  # (K, ncls, ch)
            self.add_const(f"e{which}", getattr(plan, f"embed{which}"))
        self.add_const("eo", plan.read)

    def embed(self, x: torch.Tensor, which: int) -> torch.Tensor:
        b = x.shape[0]
        g = self.g1 if which == 1 else self.g2
        ch = self.C if which == 1 else self.C2
        ncls = len(self.plan.classes1 if which == 1 else self.plan.classes2)
        k = (getattr(self.plan, f"lmax{which}") + 1) ** 2
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
        ko = (self.plan.lmax_out + 1) ** 2
        ncls = len(self.plan.classes_out)
        eo = self.const("eo", zs[0].dtype)
        if self.batch_last:
            b = zs[0].shape[-1]
            z = torch.stack(zs, dim=2).reshape(self.n * self.n, len(zs) * self.C * b)
            z = torch.mm(z.t(), eo).reshape(ncls, self.C, b, ko)
            z = z.permute(2, 0, 1, 3).reshape(b, ncls * self.C * ko)
        else:
            b = zs[0].shape[0]
            z = torch.stack(zs, dim=1).reshape(-1, self.n * self.n)  # (B*ncls_o*C, n^2)
            z = (z @ eo).reshape(b, ncls * self.C * ko)
        return self.gather_out(z)


class MTPSparse(_MTPBase):
    """``sparse``: change of basis restricted to the nonzero (class, degree) blocks, with the
    feature gathers folded into the matrices for one channel; in the transpose regime
    (``plan.transpose``) the embedding makes ``X`` alone and each output is read from the
    anticommutator ``X1 X2 + X2 X1`` or the commutator (``tp_spec.plan.mtp``)."""

    def __init__(self, plan: SparseMTPPlan) -> None:
        super().__init__(plan)
        self.tr = plan.transpose
        self.one_form = False
        if not self.active:
            return
        n2 = self.n * self.n
        for which in (1, 2):
            w, s = getattr(plan, f"embed{which}"), getattr(plan, f"mats{which}")
            index = getattr(plan, f"index{which}")  # (K, ch) or None: folded into w
            if index is not None:
                self.add_index(f"g{which}", index.T.reshape(-1))  # (ch*K,) channel-major
                self.add_index(f"gt{which}", index.reshape(-1))  # (K*ch,) feature-major
            self.add_const(f"w{which}", w)
            # batch-last: rows ordered (a, b, s) so that W^T x^T is (n, n, s, ch*B)
            self.add_const(f"wt{which}", w.reshape(-1, s, n2).transpose(2, 1, 0)
                           .reshape(n2 * s, -1))
        for k, r in enumerate(plan.read):
            self.add_const(f"r{k}", r)
        self.one_form = plan.channels == 1
        if self.one_form:
            self._add_form(plan)

    def _add_form(self, plan: SparseMTPPlan) -> None:
        """One channel: the whole product as one :func:`tp_torch._bilinear.bilinear` form,
        matrices ``fm1``, ``fm2`` (the embeddings, rows ``(slot, a, b)``) and ``fmo``."""
        n2 = self.n * self.n
        self.add_const("fm1", plan.embed1.T)
        self.add_const("fm2", plan.embed2.T)
        if plan.transpose:  # [X1 X2, X2 X1] read by read_tr
            self.terms = (Term(0, 0, False, 1, 0, False, 0), Term(1, 0, False, 0, 0, False, 1))
            read = plan.read_tr.transpose(1, 0, 2).reshape(2 * n2, -1)
        elif plan.pq:  # [P, Q] read by read_pq
            self.terms = tuple(Term(0, k, False, 1, k, False, k) for k in (0, 1))
            read = plan.read_pq.transpose(1, 0, 2).reshape(2 * n2, -1)
        else:  # one product per parity pair, summed per output class
            self.terms = tuple(Term(0, k1, False, 1, k2, False, ko) for k1, k2, ko in plan.pairs)
            ncls = len(plan.read_classes)
            rows = np.zeros((ncls * n2, plan.read_total + 1))
            for k, r in enumerate(plan.read):
                first = sum(q.shape[1] for q in plan.read[:k])
                rows[k * n2:(k + 1) * n2, first:first + r.shape[1]] = r
            read = rows[:, :-1] if plan.out_index is None else rows[:, plan.out_index]
        self.add_const("fmo", read)
        # batch-first GEMMs through the matrices' dense blocks where they save enough
        self.form_blocks: dict[str, tuple[tuple[int, ...], tuple[int, ...], int]] = {}
        for name, m in (("fm1", plan.embed1.T), ("fm2", plan.embed2.T), ("fmo", read)):
            bd = worth_blocks(m, plan.tuning)
            if bd is None:
                continue
            for k, b in enumerate(bd.blocks):
                self.add_const(f"{name}_b{k}", b)
                self.add_const(f"{name}_bt{k}", b.T)
            for part in ("rows", "cols", "row_inverse", "col_inverse"):
                self.add_index(f"{name}_{part}", getattr(bd, part))
            self.form_blocks[name] = (bd.row_splits, bd.col_splits, len(bd.blocks))

    def _map(self, name: str, dt: torch.dtype) -> Map:
        """The form matrix ``name`` in ``dt``, with its blocks where it has them."""
        dense = self.const(name, dt)
        if name not in self.form_blocks:
            return Map(dense)
        rs, cs, k = self.form_blocks[name]
        idx = [getattr(self, f"{name}_{part}")
               for part in ("rows", "cols", "row_inverse", "col_inverse")]
        return Map(dense, Blocks(*idx, rs, cs,
                                 tuple(self.const(f"{name}_b{i}", dt) for i in range(k)),
                                 tuple(self.const(f"{name}_bt{i}", dt) for i in range(k))))

    def _one_form(self, x1: torch.Tensor, x2: torch.Tensor, rows: int | None) -> torch.Tensor:
        dt = x1.dtype
        mats = (self._map("fm1", dt), self._map("fm2", dt), self._map("fmo", dt))
        return bilinear(x1, x2, mats, self.terms, self.n, self.batch_last, rows)

    def _product(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        if not self.tr:
            return super()._product(x1, x2)
        bl = self.batch_last
        m1 = self.embed(x1, 1)  # (B, C, 1, n, n) or (n, n, 1, C, B)
        m2 = self.embed(x2, 2)
        ax = 2  # the class axis, of size 1 here
        p, p2 = matprod(m1, m2, bl).squeeze(ax), matprod(m2, m1, bl).squeeze(ax)
        zs = [p + p2 if q == 1 else p - p2 for q in self.plan.read_classes]
        return self.readout(zs)

    def embed(self, x: torch.Tensor, which: int) -> torch.Tensor:
        b = x.shape[0]
        s = getattr(self.plan, f"mats{which}")
        gather = getattr(self.plan, f"index{which}") is not None
        if self.batch_last:
            wt = self.const(f"wt{which}", x.dtype)  # (n^2 s, K or dim)
            if gather:
                ch = self.C if which == 1 else self.C2
                xg = x.t().index_select(0, getattr(self, f"gt{which}")).reshape(wt.shape[1], ch * b)
                return torch.mm(wt, xg).reshape(self.n, self.n, s, ch, b)
            return torch.mm(wt, x.t()).reshape(self.n, self.n, s, 1, b)
        wm = self.const(f"w{which}", x.dtype)
        if gather:
            ch = self.C if which == 1 else self.C2
            xg = x.index_select(1, getattr(self, f"g{which}")).reshape(b * ch, wm.shape[0])
            return (xg @ wm).reshape(b, ch, s, self.n, self.n)
        return (x @ wm).reshape(b, 1, s, self.n, self.n)

    def readout(self, zs: list[torch.Tensor]) -> torch.Tensor:
        n2 = self.n * self.n
        total = self.plan.read_total
        parts = []
        if self.batch_last:  # zs: (n, n, C, B)
            b = zs[0].shape[-1]
            for k, z in enumerate(zs):
                r = self.const(f"r{k}", z.dtype)
                zf = z.reshape(n2, self.C * b)
                parts.append(torch.mm(zf.t(), r).reshape(self.C, b, r.shape[1]))
            out = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]  # (C, B, total)
            out = (out if self.C == 1 else out.transpose(0, 1)).reshape(b, self.C * total)
        else:
            b = zs[0].shape[0]
            for k, z in enumerate(zs):
                r = self.const(f"r{k}", z.dtype)
                parts.append((z.reshape(-1, n2) @ r).reshape(b, self.C, r.shape[1]))
            out = (torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]).reshape(
                b, self.C * total)
        return self.gather_out(out)


#: tp_spec plan type -> executor.
EXECUTORS = {DenseMTPPlan: MTPDense, SparseMTPPlan: MTPSparse}
