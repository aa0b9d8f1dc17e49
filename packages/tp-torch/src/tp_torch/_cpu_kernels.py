"""The compiled channelwise CPU kernels (:mod:`tp_kernels.channelwise`) on CPU tensors, split
over torch's intra-op threads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tp_kernels import channelwise as _cw
from tp_kernels.channelwise import run_parts
from tp_kernels.source import available as _available
from tp_kernels.source import cg_nonzeros, kernel_table, path_kernels, supports

__all__ = ["ChannelwiseKernels", "available", "cg_nonzeros", "kernel_table", "num_threads",
           "path_kernels", "run_parts", "supports", "weight_rows"]


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
