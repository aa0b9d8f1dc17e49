"""Shared machinery of the executors: constant buffers in both float precisions, helpers.

Every method implementation is an :class:`Kernel` (a ``torch.nn.Module``) whose constants are
built ONCE from the exact ``tp_spec`` tables (float64 NumPy) and registered as non-persistent
buffers, in float64 and in float32 (correctly rounded from the float64 values), so they move
with ``.to(device)`` and a forward pass never converts a table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tp_spec.plan.base import chunk_rows as plan_chunk_rows

__all__ = ["FunctionProductKernel", "Kernel", "aligned_empty", "chunk_rows", "flatten_batch"]


def aligned_empty(rows: int, cols: int, like: torch.Tensor, align: int) -> torch.Tensor:
    """An uninitialised ``(rows, cols)`` tensor like ``like`` whose rows start every ``align``
    elements on CPU (``Tuning.row_align``: MKL's GEMM is slower into rows of odd length; a
    column slice of a wider buffer: not contiguous unless ``cols`` is a multiple); a plain
    contiguous tensor elsewhere. Its columns can be split by ``view`` (``(rows, n, k)``), not
    merged with the rows."""
    if like.device.type != "cpu" or cols % align == 0:
        return like.new_empty((rows, cols))
    return like.new_empty((rows, -(-cols // align) * align))[:, :cols]


def chunk_rows(x: torch.Tensor, row_entries: int, entries: int, min_rows: int) -> int | None:
    """Rows per chunk for a CPU kernel that runs the batch ``x.shape[0]`` in chunks of about
    ``entries`` intermediate entries (``row_entries`` per batch row), at least ``min_rows``
    rows, the batch split evenly; None where it runs in one piece (at most one chunk, a GPU,
    or under ``torch.compile``, which fuses the product itself)."""
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return None
    return plan_chunk_rows(x.shape[0], row_entries, entries, min_rows)


class Kernel(torch.nn.Module):
    """Base class of the per-method kernels.

    ``forward(x1, x2, w)`` takes ``x1: (B, dim1)``, ``x2: (B, dim2)`` (validated, same dtype and
    device) and ``w``: ``None``, ``(numel,)`` (shared) or ``(B, numel)``; returns
    ``(B, dim_out)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._const_names: list[str] = []

    def add_const(self, name: str, value: Any) -> None:
        """Register a float constant as two buffers (``name__f64``, ``name__f32``)."""
        arr = np.asarray(value, dtype=np.float64)
        t64 = torch.from_numpy(np.array(arr, dtype=np.float64, copy=True))
        t32 = torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))
        self.register_buffer(f"{name}__f64", t64, persistent=False)
        self.register_buffer(f"{name}__f32", t32, persistent=False)
        self._const_names.append(name)

    def add_index(self, name: str, value: Any) -> None:
        """Register an integer (int64) index buffer."""
        t = torch.as_tensor(np.asarray(value, dtype=np.int64).copy())
        self.register_buffer(name, t, persistent=False)

    def const(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        """The constant ``name`` in ``dtype`` (float32 or float64)."""
        t = getattr(self, f"{name}__f32" if dtype == torch.float32 else f"{name}__f64")
        if t.dtype != dtype:  # the module was cast with .double()/.float(): convert
            t = t.to(dtype)
        return t


def flatten_batch(
    x1: torch.Tensor, x2: torch.Tensor, weights: torch.Tensor | None, numel: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(*batch, d)`` -> ``(B, d)``; shared weights stay ``(numel,)``."""
    b = 1
    for s in x1.shape[:-1]:
        b *= s
    x1f = x1.reshape(b, x1.shape[-1])
    x2f = x2.reshape(b, x2.shape[-1])
    if weights is not None and weights.dim() > 1:
        weights = weights.reshape(b, numel)
    return x1f, x2f, weights


class FunctionProductKernel(Kernel):
    """Base of the GTP and MTP executors (products of functions or matrices): per-degree
    weights (``weight_index``: the plan's ``(in1, in2, out)`` index tables, or None) scale the
    inputs, :meth:`_product` runs on CPU in batch chunks (``plan.row_entries`` intermediate
    entries per row, ``tuning.function_chunk_*``: each chunk's intermediates stay in cache and
    are reused from the allocator's heap; autograd records every chunk, so the backward is
    chunked too), the weights scale the output. An inactive plan (no pair of classes or
    parities meets) gives zeros."""

    def __init__(self, plan: Any, weight_index: tuple[Any, Any, Any] | None) -> None:
        super().__init__()
        self.plan = plan
        self.d = plan.descriptor
        self.active = plan.active
        self.weighted = weight_index is not None
        if weight_index is not None:
            for name, idx in zip(("widx1", "widx2", "widx3"), weight_index, strict=True):
                self.add_index(name, idx)

    @staticmethod
    def _scale(x: torch.Tensor, w: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return x * (w.index_select(0, idx) if w.dim() == 1 else w.index_select(1, idx))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        if not self.active:
            return x1.new_zeros((x1.shape[0], self.d.irreps_out.dim))
        weighted = self.weighted and w is not None
        if weighted:
            x1, x2 = self._scale(x1, w, self.widx1), self._scale(x2, w, self.widx2)
        t = self.plan.tuning
        rows = chunk_rows(x1, self.plan.row_entries, t.function_chunk_entries,
                          t.function_chunk_min_rows)
        if rows is None:
            out = self._product(x1, x2)
        else:  # split, not slices: the backward concatenates the chunks' gradients once
            out = torch.cat([self._product(a, c)
                             for a, c in zip(x1.split(rows), x2.split(rows), strict=True)])
        return self._scale(out, w, self.widx3) if weighted else out

    def _product(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """The product of weighted inputs ``(B, dim1)``, ``(B, dim2)`` -> ``(B, dim_out)``."""
        raise NotImplementedError
