"""The compiled CPU kernels of :mod:`tp_kernels` (channelwise and coupling) on CPU tensors,
split over torch's intra-op threads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tp_kernels import channelwise as _cw
from tp_kernels import coupling as _cp
from tp_kernels.channelwise import run_parts
from tp_kernels.pages import huge_pages
from tp_kernels.source import available as _available
from tp_kernels.source import cg_nonzeros, kernel_table, path_kernels, supports

__all__ = ["ChannelwiseKernels", "CouplingKernels", "available", "cg_nonzeros",
           "coupling_kernels", "kernel_table", "num_threads", "path_kernels", "run_parts",
           "supports", "weight_rows"]


def available() -> bool:
    """Whether the compiled kernels run: Numba importable (checked once) and
    ``TP_TORCH_CPU_KERNELS`` not 0 (read at every call)."""
    return _available("TP_TORCH_CPU_KERNELS")


available.cache_clear = _available.cache_clear  # type: ignore[attr-defined]


def num_threads() -> int:
    """Threads the kernels split a batch over: torch's intra-op thread count."""
    return torch.get_num_threads()


def _np(t: Any) -> np.ndarray | None:
    return None if t is None else t.detach().contiguous().numpy()


def weight_rows(w: Any, ones: np.ndarray) -> tuple[np.ndarray, int]:
    """:func:`tp_kernels.channelwise.weight_rows` of a tensor (or None)."""
    return _cw.weight_rows(_np(w), ones)


class ChannelwiseKernels(_cw.ChannelwiseKernels):
    """:class:`tp_kernels.channelwise.ChannelwiseKernels` taking and returning CPU tensors
    (``forward(x1, x2, w) -> out``, ``backward(x1, x2, w, g, need) -> (g1, g2, gw)``) on
    :func:`num_threads` threads. No autograd: the caller wraps them."""

    def forward(self, x1: Any, x2: Any, w: Any, weighted_only: bool = False) -> Any:
        return torch.from_numpy(super().forward(_np(x1), _np(x2), _np(w), num_threads(),
                                                weighted_only))

    def backward(self, x1: Any, x2: Any, w: Any, g: Any, need: tuple[bool, bool, bool],
                 weighted_only: bool = False) -> tuple[Any, Any, Any]:
        grads = super().backward(_np(x1), _np(x2), _np(w), _np(g), need, num_threads(),
                                 weighted_only)
        return _tensors(grads, w)

    def backward_dual(self, x1: Any, x2: Any, w: Any, g: Any, v: tuple[Any, Any, Any],
                      need: tuple[bool, bool, bool]) -> tuple[Any, Any, Any]:
        """The gradients' derivative along ``v = (v1, v2, vw)`` (None: zero), one pass
        (:meth:`tp_kernels.ChannelwiseKernels.backward_dual`); the double backward."""
        a1, a2, aw = _np(x1), _np(x2), _np(w)
        vs = tuple(_np(t) if t is not None else (None if a is None else np.zeros_like(a))
                   for t, a in zip(v, (a1, a2, aw), strict=True))
        grads = super().backward_dual(a1, a2, aw, _np(g), vs, need, num_threads())
        return _tensors(grads, w)


def _tensors(grads: tuple[Any, Any, Any], w: Any) -> tuple[Any, Any, Any]:
    gw = grads[2]
    if gw is not None and w.ndim == 1:
        gw = gw.reshape(w.shape)
    return tuple(None if a is None else torch.from_numpy(a)  # type: ignore[return-value]
                 for a in (grads[0], grads[1], gw))


class CouplingKernels(_cp.CouplingKernels):
    """:class:`tp_kernels.coupling.CouplingKernels` of a plan's coupling entries
    (:func:`coupling_kernels`) taking and returning CPU tensors: ``forward(x1, x2, w) -> out``
    and ``backward(x1, x2, w, g, need) -> (g1, g2, gw)``, ``w`` None or shared ``(numel,)``,
    on :func:`num_threads` threads, huge pages under large results. ``x1`` / ``x2`` may be None
    where the gradients asked for do not read them (x1's gradient never reads ``x1``, x2's
    never ``x2``). No autograd: the caller wraps them."""

    def _coefficients(self, w: Any, dt: Any) -> np.ndarray:
        if w is not None:
            return self.coefficients(_np(w), dt)
        cache = self.__dict__.setdefault("_values", {})
        if dt not in cache:
            cache[dt] = self.coefficients(None, dt)
        return cache[dt]

    def _result(self, rows: int, n: int, like: Any) -> Any:
        out = like.new_empty((rows, n))
        huge_pages(out.numpy())  # a fresh mapping for large results: 2 MiB pages
        return out

    def forward(self, x1: Any, x2: Any, w: Any = None) -> Any:  # type: ignore[override]
        a1, a2 = _np(x1), _np(x2)
        out = self._result(a1.shape[0], self.dims[2], x1)
        super().forward(a1, a2, self._coefficients(w, a1.dtype), num_threads(),
                        out=out.numpy())
        return out

    def backward(self, x1: Any, x2: Any, w: Any, g: Any,  # type: ignore[override]
                 need: tuple[bool, bool, bool]) -> tuple[Any, Any, Any]:
        gn = _np(g)
        outs = [self._result(gn.shape[0], self.dims[i], g) if need[i] else None
                for i in (0, 1)]
        a1 = _np(x1) if x1 is not None else outs[0].numpy()
        a2 = _np(x2) if x2 is not None else outs[1].numpy()
        ne = bool(need[2] and w is not None)
        _, _, ge = super().backward(a1, a2, self._coefficients(w, gn.dtype), gn,
                                    (need[0], need[1], ne), num_threads(),
                                    out=tuple(None if o is None else o.numpy()
                                              for o in outs) + (None,))
        gw = None
        if ge is not None:
            gw = torch.from_numpy(self.weight_grad(ge.astype(np.float64), w.shape[0])[:-1]
                                  .astype(gn.dtype))
        return outs[0], outs[1], gw


def coupling_kernels(plan: Any) -> CouplingKernels:
    """The :class:`CouplingKernels` of ``plan.coupling`` (a scalar or outer plan)."""
    d = plan.descriptor
    return CouplingKernels(plan.coupling, (d.irreps_in1.dim, d.irreps_in2.dim,
                                           d.irreps_out.dim),
                           plan.tuning.kernel_thread_min_rows)
