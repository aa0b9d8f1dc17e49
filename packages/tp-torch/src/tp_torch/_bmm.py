"""Batched products of tiny ``n x n`` matrices with a backward that is the same product.

Two layouts (``batch_last``):

* ``True``: matrices on the two LEADING axes, ``a: (n, n, *batch)``; the product
  ``Z[i, k] = sum_j A[i, j] * B[j, k]`` is ``n`` broadcast multiply-adds over whole rows, each
  vectorized along the trailing (batch) axes. On CPU this beats ``torch.bmm`` for ``n^3 < 400``
  (``Tuning.batch_last_max_n3``),
  where ATen's ``bmm`` falls back to a naive per-matrix loop (5x5: ~6x slower, 7x7: ~7x).
* ``False``: matrices on the two TRAILING axes (``torch.matmul``; MKL batched GEMM on CPU).

In both, the batch axes of ``a`` and ``b`` broadcast (size-1 axes, e.g. one ``x2`` channel).
:func:`matprod` is a ``torch.autograd.Function`` whose backward, ``dA = dZ B^T`` and
``dB = A^T dZ`` (summed over broadcast axes), calls :func:`matprod` again: the double backward
is exact and just as fast, and there are no ``select``/``expand`` backward zero-fills.
"""

from __future__ import annotations

import torch

from ._common import plain_autograd

__all__ = ["matprod"]


def _op(a: torch.Tensor, t: bool, batch_last: bool) -> torch.Tensor:
    if not t:
        return a
    return a.transpose(0, 1) if batch_last else a.transpose(-2, -1)


def _sum_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum ``t`` over the axes where ``shape`` has size 1 and ``t`` does not (same ndim)."""
    if t.shape == shape:
        return t
    dims = [i for i, (s, ts) in enumerate(zip(shape, t.shape, strict=True)) if s == 1 and ts != 1]
    return t.sum(dims, keepdim=True)


def _product(a: torch.Tensor, b: torch.Tensor, batch_last: bool) -> torch.Tensor:
    if not batch_last:
        return torch.matmul(a, b)
    n = a.shape[1]
    # (n, 1, *) * (1, n, *) -> (n, n, *batch); allocated contiguous: with a transposed operand
    # TensorIterator would otherwise pick a permuted output layout and a slow loop order
    shape = (n, n) + tuple(max(x, y) for x, y in zip(a.shape[2:], b.shape[2:], strict=True))
    z = torch.mul(a[:, 0:1], b[0:1], out=a.new_empty(shape))
    for j in range(1, n):
        z.addcmul_(a[:, j:j + 1], b[j:j + 1])
    return z


class _MatProd(torch.autograd.Function):
    """``Z = op(A) op(B)``, ``op`` = transpose where flagged. The flags keep transposes out of
    the autograd graph: every gradient is computed directly in its operand's own layout
    (``dA = dZ op(B)^T``, or ``op(B) dZ^T`` when ``A`` enters transposed; likewise ``dB``),
    so no gradient arrives transposed and needs a strided copy."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, ta: bool, tb: bool,
                batch_last: bool) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        ctx.flags = (ta, tb, batch_last)
        return _product(_op(a, ta, batch_last), _op(b, tb, batch_last), batch_last)

    @staticmethod
    def backward(ctx, gz: torch.Tensor):
        a, b = ctx.saved_tensors
        ta, tb, bl = ctx.flags
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = (_MatProd.apply(b, gz, tb, True, bl) if ta
                  else _MatProd.apply(gz, b, False, not tb, bl))
            ga = _sum_to(ga, a.shape)
        if ctx.needs_input_grad[1]:
            gb = (_MatProd.apply(gz, a, True, ta, bl) if tb
                  else _MatProd.apply(a, gz, not ta, False, bl))
            gb = _sum_to(gb, b.shape)
        return ga, gb, None, None, None


def matprod(a: torch.Tensor, b: torch.Tensor, batch_last: bool) -> torch.Tensor:
    """Batched ``A @ B`` of square matrices.

    ``batch_last=True``: ``a: (n, n, *ba)``, ``b: (n, n, *bb)`` -> ``(n, n, *broadcast)``;
    ``False``: ``a: (*ba, n, n)``, ``b: (*bb, n, n)`` -> ``(*broadcast, n, n)``. ``a`` and ``b``
    have the same number of axes; their batch axes broadcast.
    """
    if plain_autograd(a, b):  # torch.func transforms, forward mode: torch's own autograd
        return _product_plain(a, b, batch_last)
    return _MatProd.apply(a, b, False, False, batch_last)


def _product_plain(a: torch.Tensor, b: torch.Tensor, batch_last: bool) -> torch.Tensor:
    """:func:`_product` without ``out=`` or in-place updates."""
    if not batch_last:
        return torch.matmul(a, b)
    n = a.shape[1]
    z = a[:, 0:1] * b[0:1]
    for j in range(1, n):
        z = z + a[:, j:j + 1] * b[j:j + 1]
    return z
