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

__all__ = ["Kernel", "aligned_empty", "chunk_rows", "flatten_batch"]


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
    rows = max(min_rows, entries // max(row_entries, 1))
    b = x.shape[0]
    if b <= rows:
        return None
    n = -(-b // rows)
    return -(-b // n)


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
