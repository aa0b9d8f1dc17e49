"""One autograd Function for a whole MTP product of one channel: embedding, ``n x n`` matrix
products and read-out, whose derivatives are the same Function with other matrices.

A *form* ``out = F(x0, x1)`` (per sample; ``x0 (B, d0)``, ``x1 (B, d1)``, ``out (B, d_out)``)::

    A_i = M_i x_i                          M_i: (s_i n^2, d_i), rows (slot, a, b): s_i matrices
    Z_o = sum over terms to o of op(L) op(R)   L, R: one slot of A_0 or A_1; op: maybe transpose
    out = M_out^T Z                        M_out: (s_o n^2, d_out), rows (slot, a, b)

Embedding and read-out are the same kind of map (a matrix per side), and the transpose of a
matrix product is again a matrix product, so the gradient of ``F`` with respect to ``x_i`` for
a cotangent ``g`` is a form of the same kind: inputs ``(g, x_j)``, matrices
``(M_out, M_j, M_i)`` and terms from :func:`grad_terms`. :class:`_Form`'s backward computes
both gradients in one pass over the chunks, embedding the cotangent once; under
``create_graph`` that pass is one differentiable node, :class:`_Grads`, whose own backward is
again one pass of such forms, so the double backward is exact and runs the same kernels.
Autograd records one node per call (no per-op graph, no scatter, no strided copies) and every
gradient is computed in its input's own layout. The forward saves only its
inputs: the backward embeds them again (cheaper than keeping fresh full-batch matrices).

Layouts (``batch_last``, :mod:`tp_torch._bmm`): ``A: (s, n, n, rows)`` and the products as
``n`` broadcast multiply-adds over the rows (``n^3 < 400``), or ``(rows, s, n, n)`` and
``torch.matmul``. The batch runs in chunks of ``rows``; a chunk's matrices live in per-thread
scratch buffers reused by every chunk and call (:func:`_scratch`).

Measured (CPU time, one thread, batch 10,000, MIMO L = 1..6, ``sparse``, against the per-op
autograd graph of the same kernel): forward 1.05-1.9x, backward 1.07-1.8x, double backward
0.9-1.25x (largest gains at n = 7, L = 5, 6).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from ._common import over_chunks, scratch

__all__ = ["Blocks", "Map", "Term", "bilinear", "grad_terms"]

#: batch-last read-outs into at most this many columns run as ``(M^T Z)^T``: one thread, AMD
#: EPYC, 5,000 rows, a 50 x 9 read-out 442 -> 137 us (MTP L = 2, batch 10,000: backward 6.5 ->
#: 4.6 ms, double backward 13.0 -> 8.7 ms); 50 x 40 259 -> 378 us, and L = 1's 12-column
#: forward 0.41 -> 0.50 ms, so not wider
_NARROW_READ = 10


class Blocks(NamedTuple):
    """A form matrix ``M (s n^2, d)`` as dense blocks between permutations
    (:class:`tp_spec.plan.block_diagonal.BlockDiagonal`, as tensors): ``rows``/``cols`` the
    nonzero rows/columns in block order, ``row_inv``/``col_inv`` their inverses (the count:
    a zero), ``row_splits``/``col_splits`` the block bounds, ``blocks[k]`` and ``blocks_t[k]``
    (its transpose, contiguous)."""

    rows: torch.Tensor
    cols: torch.Tensor
    row_inv: torch.Tensor
    col_inv: torch.Tensor
    row_splits: tuple[int, ...]
    col_splits: tuple[int, ...]
    blocks: tuple[torch.Tensor, ...]
    blocks_t: tuple[torch.Tensor, ...]


class Map(NamedTuple):
    """A form matrix: ``dense (s n^2, d)`` and, for the batch-first GEMMs, its blocks (None:
    the dense GEMM)."""

    dense: torch.Tensor
    blocks: Blocks | None = None

    @property
    def shape(self) -> torch.Size:
        return self.dense.shape


def _block_mm(x: torch.Tensor, gather: torch.Tensor, inverse: torch.Tensor,
              splits_in: tuple[int, ...], splits_out: tuple[int, ...],
              blocks: tuple[torch.Tensor, ...], out: torch.Tensor, name: str) -> None:
    """``out (rows, D) = x (rows, E) @ M`` with ``M`` as blocks: the columns of ``x`` gathered
    in block order, one GEMM per block into the columns of a scratch result (plus a zero
    column), gathered back by ``inverse`` into ``out``."""
    r = x.shape[0]
    xg = scratch(name + "g", (r, gather.shape[0]), x)
    torch.index_select(x, 1, gather, out=xg)
    y = scratch(name + "y", (r, splits_out[-1] + 1), x)
    y[:, -1].zero_()
    for k, b in enumerate(blocks):
        torch.mm(xg[:, splits_in[k]:splits_in[k + 1]], b,
                 out=y[:, splits_out[k]:splits_out[k + 1]])
    torch.index_select(y, 1, inverse, out=out)


def _read_rows(z: torch.Tensor, m: Map, out: torch.Tensor) -> None:
    """Batch-first read-out ``out (rows, d) = z (rows, s n^2) @ M``."""
    bl = m.blocks
    if bl is None:
        torch.mm(z, m.dense, out=out)
    else:
        _block_mm(z, bl.rows, bl.col_inv, bl.row_splits, bl.col_splits, bl.blocks, out, "br")


class Term(NamedTuple):
    """``Z[out] += op(A_{lsrc}[lslot]) op(A_{rsrc}[rslot])`` (``lt``/``rt``: transposed)."""

    lsrc: int
    lslot: int
    lt: bool
    rsrc: int
    rslot: int
    rt: bool
    out: int


@functools.cache
def grad_terms(terms: tuple[Term, ...], i: int) -> tuple[Term, ...]:
    """The terms of ``dF/dx_i`` as a form of ``(g, x_j)``: input 0 is the cotangent embedded
    by ``M_out`` (slot ``o`` = ``dZ_o``), input 1 is ``x_j``, output slots are ``x_i``'s.

    ``Z = op(L) op(R)``: ``dL = dZ op(R)^T`` (``L`` transposed: ``op(R) dZ^T``), ``dR = op(L)^T
    dZ`` (``R`` transposed: ``dZ^T op(L)``)."""
    out = []
    for t in terms:
        if t.lsrc == t.rsrc:
            raise ValueError("a term must multiply a matrix of each input")
        if t.lsrc == i:  # the left operand
            out.append(Term(1, t.rslot, t.rt, 0, t.out, True, t.lslot) if t.lt else
                       Term(0, t.out, False, 1, t.rslot, not t.rt, t.lslot))
        else:  # the right operand
            out.append(Term(0, t.out, True, 1, t.lslot, t.lt, t.rslot) if t.rt else
                       Term(1, t.lslot, not t.lt, 0, t.out, False, t.rslot))
    return tuple(out)


def _diagonal(terms: tuple[Term, ...], slots: tuple[int, int, int]) -> bool:
    """Whether the terms are slot ``k`` times slot ``k`` into slot ``k`` for every ``k``, with
    one pair of sources and flags: then one product over all slots at once."""
    s = slots[2]
    if slots[0] != s or slots[1] != s or len(terms) != s:
        return False
    t0 = terms[0]
    return all(t == t0._replace(lslot=k, rslot=k, out=k) for k, t in enumerate(terms))


def _embed(m: Map, x: torch.Tensor, n: int, batch_last: bool, name: str) -> torch.Tensor:
    """``x (rows, d)`` -> ``(s, n, n, rows)`` (batch-last) or ``(rows, s, n, n)``."""
    s, r = m.shape[0] // (n * n), x.shape[0]
    if batch_last:
        return torch.mm(m.dense, x.t(), out=scratch(name, (s * n * n, r), x)).view(s, n, n, r)
    out = scratch(name, (r, s * n * n), x)
    bl = m.blocks
    if bl is None:
        torch.mm(x, m.dense.t(), out=out)
    else:  # x @ M^T: the blocks transposed, columns and rows exchanging roles
        _block_mm(x, bl.cols, bl.row_inv, bl.col_splits, bl.row_splits, bl.blocks_t, out, "be")
    return out.view(r, s, n, n)


def _op(a: torch.Tensor, t: bool, batch_last: bool) -> torch.Tensor:
    if not t:
        return a
    return a.transpose(1, 2) if batch_last else a.transpose(2, 3)


def _mul_into(z: torch.Tensor, a: torch.Tensor, b: torch.Tensor, acc: bool,
              batch_last: bool) -> None:
    """``z (+)= a @ b`` on matrices ``(S, n, n, rows)`` (axes 1, 2) or ``(rows, S, n, n)``."""
    if not batch_last:
        if acc:
            z.add_(torch.matmul(a, b))
        else:
            torch.matmul(a, b, out=z) if z.is_contiguous() else z.copy_(torch.matmul(a, b))
        return
    for j in range(a.shape[2]):
        if j == 0 and not acc:
            torch.mul(a[:, :, 0:1], b[:, 0:1], out=z)
        else:
            z.addcmul_(a[:, :, j:j + 1], b[:, j:j + 1])


def _products(a: tuple[torch.Tensor, torch.Tensor], terms: tuple[Term, ...],
              slots: tuple[int, int, int], n: int, batch_last: bool) -> torch.Tensor:
    """``Z`` of the embedded inputs ``a``: ``(s_o, n, n, rows)`` or ``(rows, s_o, n, n)``."""
    rows = a[0].shape[-1] if batch_last else a[0].shape[0]
    so = slots[2]
    z = scratch("z", (so, n, n, rows) if batch_last else (rows, so, n, n), a[0])
    if _diagonal(terms, slots):
        t = terms[0]
        _mul_into(z, _op(a[t.lsrc], t.lt, batch_last), _op(a[t.rsrc], t.rt, batch_last), False,
                  batch_last)
        return z
    done = [False] * so

    def slot(x: torch.Tensor, k: int) -> torch.Tensor:
        return x[k:k + 1] if batch_last else x[:, k:k + 1]

    for t in terms:
        _mul_into(slot(z, t.out), _op(slot(a[t.lsrc], t.lslot), t.lt, batch_last),
                  _op(slot(a[t.rsrc], t.rslot), t.rt, batch_last), done[t.out], batch_last)
        done[t.out] = True
    for k in range(so):
        if not done[k]:
            slot(z, k).zero_()
    return z


Job = tuple  # (left input, right input, terms, read-out matrix): one output of _run


def _run(x: tuple[torch.Tensor, ...], mats: tuple[Map, ...], jobs: tuple[Job, ...],
         n: int, batch_last: bool, rows: int) -> list[torch.Tensor]:
    """Forms on the inputs ``x`` (embedded by ``mats``), one output per job, in chunks of
    ``rows``: each chunk embeds every input once for all jobs. On CPU the chunks split over
    torch's threads (:func:`tp_torch._common.over_chunks`)."""
    b = x[0].shape[0]
    n2 = n * n
    used = sorted({k for job in jobs for k in job[:2]})
    outs = [x[0].new_empty((b, job[3].shape[1])) for job in jobs]

    def chunk(r0: int, r1: int) -> None:
        emb = {k: _embed(mats[k], x[k][r0:r1], n, batch_last, f"e{k}") for k in used}
        for (i, j, terms, mo), out in zip(jobs, outs, strict=True):
            so = mo.shape[0] // n2
            slots = (mats[i].shape[0] // n2, mats[j].shape[0] // n2, so)
            z = _products((emb[i], emb[j]), terms, slots, n, batch_last)
            if not batch_last:
                _read_rows(z.view(r1 - r0, so * n2), mo, out[r0:r1])
            elif mo.shape[1] <= _NARROW_READ:
                # (M^T Z)^T: MKL multiplies a transposed (rows, s n^2) operand into a narrow
                # output several times slower than the untransposed product (and its copy)
                zt = torch.mm(mo.dense.t(), z.view(so * n2, r1 - r0),
                              out=scratch("zt", (mo.shape[1], r1 - r0), z))
                out[r0:r1].copy_(zt.t())
            else:
                torch.mm(z.view(so * n2, r1 - r0).t(), mo.dense, out=out[r0:r1])

    if x[0].device.type == "cpu":
        over_chunks(b, rows, chunk)
    else:
        for r0 in range(0, b, rows):
            chunk(r0, min(b, r0 + rows))
    return outs


class _Form(torch.autograd.Function):
    """``F(x0, x1)`` of the module docstring; the matrices are constants (no gradient)."""

    @staticmethod
    def forward(ctx, x0: torch.Tensor, x1: torch.Tensor, m0: Map, m1: Map, mo: Map,
                terms: tuple[Term, ...], n: int, batch_last: bool, rows: int) -> torch.Tensor:
        ctx.save_for_backward(x0, x1)
        ctx.args = (m0, m1, mo, terms, n, batch_last, rows)
        return _run((x0, x1), (m0, m1), ((0, 1, terms, mo),), n, batch_last, rows)[0]

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x = ctx.saved_tensors
        m0, m1, mo, terms, n, bl, rows = ctx.args
        mats = (m0, m1)
        need = [i for i in (0, 1) if ctx.needs_input_grad[i]]
        grads: list[torch.Tensor | None] = [None, None]
        if torch.is_grad_enabled() and need:  # create_graph: both gradients as one node
            for i, o in zip(need, _Grads.apply(g, x[0], x[1], m0, m1, mo, terms, n, bl, rows,
                                               tuple(need)), strict=True):
                grads[i] = o
        elif need:  # both gradients in one pass over the chunks (g embedded once)
            # inputs (g, x0, x1): dF/dx0 multiplies g by x1 (input 2), dF/dx1 g by x0 (input 1)
            jobs = tuple((0, 2 - i, grad_terms(terms, i), mats[i]) for i in need)
            outs = _run((g, x[0], x[1]), (mo, m0, m1), jobs, n, bl, rows)
            for i, o in zip(need, outs, strict=True):
                grads[i] = o
        return grads[0], grads[1], None, None, None, None, None, None, None


class _Grads(torch.autograd.Function):
    """The gradients ``dF/dx_i . g`` (``i`` in ``need``) of a form at the cotangent ``g``, as one
    node (the backward of :class:`_Form` under ``create_graph``). Forward and backward are one
    pass over the chunks each, so the cotangent, whose embedding by ``M_out`` is the largest
    GEMM of a double backward, is embedded once per pass instead of once per gradient.

    ``dF/dx_i . g`` is the form ``F_i(g, x_j)`` (matrices ``(M_out, M_j)`` -> ``M_i``, terms
    ``T_i = grad_terms(terms, i)``). At its cotangent ``v_i``, it contributes to ``x_j`` the
    form of ``(v_i, g)`` with terms ``grad_terms(T_i, 1)`` (read out by ``M_j``), and to ``g``
    the form of ``(v_i, x_j)`` with terms ``grad_terms(T_i, 0)`` (read out by ``M_out``)."""

    @staticmethod
    def forward(ctx, g: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, m0: Map, m1: Map,
                mo: Map, terms: tuple[Term, ...], n: int, batch_last: bool, rows: int,
                need: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
        ctx.save_for_backward(g, x0, x1)
        ctx.args = (m0, m1, mo, terms, n, batch_last, rows, need)
        ctx.set_materialize_grads(False)  # an unused gradient costs no pass
        mats = (m0, m1)
        # inputs (g, x0, x1): dF/dx0 multiplies g by x1 (input 2), dF/dx1 g by x0 (input 1)
        jobs = tuple((0, 2 - i, grad_terms(terms, i), mats[i]) for i in need)
        return tuple(_run((g, x0, x1), (mo, m0, m1), jobs, n, batch_last, rows))

    @staticmethod
    def backward(ctx, *vs: torch.Tensor | None):
        g, x0, x1 = ctx.saved_tensors
        m0, m1, mo, terms, n, bl, rows, need = ctx.args
        mats = (m0, m1)
        # inputs (v0, v1, g, x0, x1), each embedded by its own matrix
        xs = [None, None, g, x0, x1]
        ms = (m0, m1, mo, m0, m1)
        jobs, targets = [], []  # targets: 0 for g, 1 + k for x_k
        for i, v in zip(need, vs, strict=True):
            if v is None:
                continue
            xs[i] = v
            j = 1 - i
            ti = grad_terms(terms, i)
            if ctx.needs_input_grad[1 + j]:
                jobs.append((i, 2, grad_terms(ti, 1), mats[j]))
                targets.append(1 + j)
            if ctx.needs_input_grad[0]:
                jobs.append((i, 3 + j, grad_terms(ti, 0), mo))
                targets.append(0)
        if not jobs:
            return (None,) * 11
        if torch.is_grad_enabled():  # create_graph again: differentiable forms
            outs = [_Form.apply(xs[a], xs[b], ms[a], ms[b], mr, t, n, bl, rows)
                    for a, b, t, mr in jobs]
        else:
            outs = _run(tuple(xs[k] if xs[k] is not None else g for k in range(5)), ms,
                        tuple(jobs), n, bl, rows)
        grads: list[torch.Tensor | None] = [None, None, None]
        for k, o in zip(targets, outs, strict=True):
            grads[k] = o if grads[k] is None else grads[k] + o
        return (*grads, None, None, None, None, None, None, None, None)


def bilinear(x0: torch.Tensor, x1: torch.Tensor, mats: tuple[Map | torch.Tensor, ...],
             terms: tuple[Term, ...], n: int, batch_last: bool, rows: int | None) -> torch.Tensor:
    """The form ``F(x0, x1)``: ``x0 (B, d0)``, ``x1 (B, d1)``, ``mats = (M_0, M_1, M_out)``
    (``(s n^2, d)`` each, rows ``(slot, a, b)``; a tensor or a :class:`Map` with its blocks)
    -> ``(B, d_out)``; ``rows``: batch rows per chunk (None: one chunk)."""
    rows = rows or max(x0.shape[0], 1)
    m0, m1, mo = (m if isinstance(m, Map) else Map(m) for m in mats)
    return _Form.apply(x0, x1, m0, m1, mo, tuple(terms), n, batch_last, rows)
