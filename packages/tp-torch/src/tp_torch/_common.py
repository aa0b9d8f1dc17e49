"""Shared machinery of the executors: the :class:`Kernel` base, helpers.

Every method implementation is a :class:`Kernel` (a ``torch.nn.Module``) whose constants are
built ONCE from the exact ``tp_spec`` tables (float64 NumPy) as
:class:`tp_torch._constants.ConstantTables`: in float64 and float32, moved by ``.to(device)``,
never converted by a module cast, never converted by a forward pass.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD
from tp_spec.plan.base import chunk_rows as plan_chunk_rows

from ._constants import ConstantTables

__all__ = ["FunctionProductKernel", "Kernel", "NotScriptable", "aligned_empty", "call_weight",
           "chunk_rows", "flatten_batch", "no_autocast", "over_chunks", "plain_autograd", "scratch"]


_AUTOCAST_DEVICES = ("cpu", "cuda")


def no_autocast(forward: Callable[..., Any]) -> Callable[..., Any]:
    """A module's ``forward`` run with ``torch.autocast`` turned off: the modules compute in
    their inputs' own precision (float32 and float64 as given, float16 and bfloat16 in float32,
    rounded once) and return the inputs' dtype, inside an autocast region too."""

    @functools.wraps(forward)
    def run(*args: Any, **kwargs: Any) -> Any:
        on = [d for d in _AUTOCAST_DEVICES if torch.is_autocast_enabled(d)]
        if not on:
            return forward(*args, **kwargs)
        with contextlib.ExitStack() as stack:
            for d in on:
                stack.enter_context(torch.autocast(d, enabled=False))
            return forward(*args, **kwargs)

    return run


class NotScriptable:
    """Mixin of the public modules: ``torch.jit.script`` refuses them with a clear error
    (their forward is Python that TorchScript cannot compile); ``torch.jit.trace``,
    ``torch.compile`` and ``torch.export`` run them."""

    def __prepare_scriptable__(self) -> Any:
        raise TypeError(
            f"tp_torch.{type(self).__name__} cannot be compiled by TorchScript "
            "(torch.jit.script); use torch.jit.trace (then torch.jit.save), torch.compile or "
            "torch.export: the compiled CPU kernels are the custom ops torch.ops.tp_torch.*")


def call_weight(module: Any, weight: torch.Tensor | None, *passed: Any) -> torch.Tensor | None:
    """The weight of a call to a module with e3nn's weight arguments (``internal_weights``,
    ``shared_weights``, ``weight_numel``, a ``weight`` Parameter or None): its own, or
    ``weight`` (``(weight_numel,)``, or ``(*batch, weight_numel)`` when not shared). ShapeError
    if ``weight`` (or any of ``passed``) is given to a module holding its own, or is missing."""
    from tp_spec import ShapeError

    if module.internal_weights:
        if weight is not None or any(p is not None for p in passed):
            raise ShapeError("this module holds internal weights; do not pass weights")
        return module.weight
    if weight is None and module.weight_numel:
        raise ShapeError(f"weight ({module.weight_numel},) is required "
                         "(internal_weights=False)")
    if not module.shared_weights and weight is not None and weight.dim() == 1:
        raise ShapeError(f"shared_weights=False: weight must be (*batch, "
                         f"{module.weight_numel}), got {tuple(weight.shape)}")
    return weight


def plain_autograd(*tensors: torch.Tensor | None) -> bool:
    """Whether a call runs under a ``torch.func`` transform (``vmap``, ``grad``, ``jacrev``,
    ``jvp``) or forward-mode AD (a dual tensor): then the executors' hand-written backward
    Functions step aside for the same product as plain torch ops, which every transform
    differentiates and batches itself. (Dynamo traces the Functions themselves.)"""
    if torch.compiler.is_compiling():
        return False
    return any(t is not None and (torch._C._functorch.is_functorch_wrapped_tensor(t)
                                  or fwAD.unpack_dual(t).tangent is not None)
               for t in tensors)


def aligned_empty(rows: int, cols: int, like: torch.Tensor, align: int) -> torch.Tensor:
    """An uninitialised ``(rows, cols)`` tensor like ``like`` whose rows start every ``align``
    elements on CPU (``Tuning.row_align``: MKL's GEMM is slower into rows of odd length; a
    column slice of a wider buffer: not contiguous unless ``cols`` is a multiple); a plain
    contiguous tensor elsewhere. Its columns can be split by ``view`` (``(rows, n, k)``), not
    merged with the rows."""
    if like.device.type != "cpu" or cols % align == 0:
        return like.new_empty((rows, cols))
    return like.new_empty((rows, -(-cols // align) * align))[:, :cols]


_SCRATCH = threading.local()


def scratch(name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A contiguous ``shape`` buffer for a chunk's intermediates: on CPU one per name, dtype and
    thread, reused by every chunk and call (a fresh buffer of a few hundred KB costs its page
    faults again on every call, more than the products); elsewhere a new tensor."""
    if like.device.type != "cpu":
        return like.new_empty(shape)
    pool = _SCRATCH.__dict__.setdefault("bufs", {})
    numel = math.prod(shape)
    buf = pool.get((name, like.dtype))
    if buf is None or buf.numel() < numel:
        buf = pool[(name, like.dtype)] = like.new_empty(numel)
    return buf[:numel].view(shape)


def over_chunks(n: int, rows: int, step: Callable[[int, int], None]) -> None:
    """``step(r0, r1)`` for every chunk of ``rows`` rows of ``n``. With torch at more than one
    thread, the chunks split over that many Python threads (torch's ops release the GIL; each
    thread has its own :func:`scratch` buffers), torch set to one thread meanwhile so that the
    GEMMs do not nest threads (2 cores, grid GTP MIMO L = 10, forward / forward+backward:
    77 / 191 ms serial, 63 / 146 ms threaded). ``step`` must write only its own rows."""
    starts = list(range(0, n, rows))
    workers = min(torch.get_num_threads(), len(starts))
    if workers <= 1:
        for r0 in starts:
            step(r0, min(r0 + rows, n))
        return

    def run(part: list[int]) -> None:
        with torch.no_grad():  # grad mode is per thread; the Function's own is off
            for r0 in part:
                step(r0, min(r0 + rows, n))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers are the parallelism: no nested GEMM threads
    try:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, [starts[i::workers] for i in range(workers)]))
    finally:
        torch.set_num_threads(threads)


def chunk_rows(x: torch.Tensor, row_entries: int, entries: int, min_rows: int) -> int | None:
    """Rows per chunk for a CPU kernel that runs the batch ``x.shape[0]`` in chunks of about
    ``entries`` intermediate entries (``row_entries`` per batch row), at least ``min_rows``
    rows, the batch split evenly; None where it runs in one piece (at most one chunk, a GPU,
    or under ``torch.compile``, which fuses the product itself)."""
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return None
    return plan_chunk_rows(x.shape[0], row_entries, entries, min_rows)


class Kernel(ConstantTables):
    """Base class of the per-method kernels.

    ``forward(x1, x2, w)`` takes ``x1: (B, dim1)``, ``x2: (B, dim2)`` (validated, same dtype and
    device) and ``w``: ``None``, ``(numel,)`` (shared) or ``(B, numel)``; returns
    ``(B, dim_out)``.
    """

    def add_index(self, name: str, value: Any) -> None:
        """Register an integer (int64) index buffer."""
        t = torch.as_tensor(np.asarray(value, dtype=np.int64).copy())
        self.register_buffer(name, t, persistent=False)


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

    #: whether :meth:`_one_form` runs the product (set by an executor that has one)
    one_form = False

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        if not self.active:
            return x1.new_zeros((x1.shape[0], self.d.irreps_out.dim))
        # torch.func transforms, forward mode, compile and tracing: torch ops, which each of
        # them differentiates, batches or traces itself
        form = self.one_form and not plain_autograd(x1, x2, w) and not (
            torch.compiler.is_compiling() or torch.jit.is_tracing())
        weighted = self.weighted and w is not None
        if weighted:
            x1, x2 = self._scale(x1, w, self.widx1), self._scale(x2, w, self.widx2)
        t = self.plan.tuning
        rows = chunk_rows(x1, self.plan.row_entries, t.function_chunk_entries,
                          t.function_chunk_min_rows)
        out = self._one_form(x1, x2, rows) if form else None
        if out is None and rows is None:
            out = self._product(x1, x2)
        elif out is None:  # split, not slices: the backward concatenates the chunk gradients
            out = torch.cat([self._product(a, c)
                             for a, c in zip(x1.split(rows), x2.split(rows), strict=True)])
        return self._scale(out, w, self.widx3) if weighted else out

    def _one_form(self, x1: torch.Tensor, x2: torch.Tensor, rows: int | None
                  ) -> torch.Tensor | None:
        """The product of weighted inputs as one autograd Function over the batch, in chunks of
        ``rows`` rows (None: one piece), or None where this call runs :meth:`_product`."""
        return None

    def _product(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """The product of weighted inputs ``(B, dim1)``, ``(B, dim2)`` -> ``(B, dim_out)``."""
        raise NotImplementedError
