"""Shared machinery: constant buffers in both float precisions, input validation, helpers.

Every method implementation is an :class:`Kernel` (a ``torch.nn.Module``) whose constants are
built ONCE from the exact ``tp_spec`` tables (float64 NumPy) and registered as non-persistent
buffers, in float64 and in float32 (correctly rounded from the float64 values), so they move
with ``.to(device)`` and a forward pass never converts a table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tp_spec import DeviceError, DTypeError, ShapeError

__all__ = ["FLOAT_DTYPES", "Kernel", "aligned_empty", "chunk_rows", "flatten_batch",
           "validate_inputs"]

#: dtypes every method computes in. Half precisions are rejected (see the README).
FLOAT_DTYPES = (torch.float32, torch.float64)


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


def validate_inputs(
    descriptor: Any,
    x1: Any,
    x2: Any,
    weights: Any,
    dims: tuple[int, int, int],
    module_device: torch.device | None,
) -> tuple[int, ...]:
    """Check types, dtypes, devices and shapes before any kernel; return the batch shape.

    Raises :class:`tp_spec.DTypeError` (non-tensor, integer, half or mixed dtypes),
    :class:`tp_spec.DeviceError` (inputs on different devices or not where the module's
    constants live) and :class:`tp_spec.ShapeError` (via ``descriptor.check_shapes``).
    """
    named = (("x1", x1), ("x2", x2)) + ((("weights", weights),) if weights is not None else ())
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise DTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in FLOAT_DTYPES:
            raise DTypeError(
                f"{name} has dtype {t.dtype}; tp_torch computes in torch.float32 or "
                "torch.float64 only (cast explicitly)"
            )
    for name, t in named[1:]:
        if t.dtype != x1.dtype:
            raise DTypeError(
                f"dtype mix: x1 is {x1.dtype} but {name} is {t.dtype} (nothing is cast "
                "silently; convert explicitly)"
            )
    for name, t in named[1:]:
        if t.device != x1.device:
            raise DeviceError(f"device mix: x1 is on {x1.device} but {name} is on {t.device}")
    if module_device is not None and x1.device != module_device:
        raise DeviceError(
            f"inputs are on {x1.device} but the module's constants are on {module_device}; "
            "move the module with .to(device)"
        )
    dim1, dim2, numel = dims
    s1, s2 = x1.shape, x2.shape
    ok = (
        x1.dim() >= 1
        and x2.dim() >= 1
        and s1[-1] == dim1
        and s2[-1] == dim2
        and s1[:-1] == s2[:-1]
    )
    if ok:
        if numel == 0:
            ok = weights is None
        elif weights is None:
            ok = False
        else:
            ok = tuple(weights.shape) == (numel,) or tuple(weights.shape) == tuple(s1[:-1]) + (
                numel,
            )
    if not ok:
        descriptor.check_shapes(
            tuple(s1), tuple(s2), None if weights is None else tuple(weights.shape)
        )
        raise ShapeError(  # pragma: no cover - check_shapes raises first
            f"bad shapes x1 {tuple(s1)}, x2 {tuple(s2)}, weights "
            f"{None if weights is None else tuple(weights.shape)}"
        )
    return tuple(s1[:-1])


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
