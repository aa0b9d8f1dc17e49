"""The compiled CPU kernels as ``torch.library`` custom ops (namespace ``tp_torch``).

Four ops, each with a fake (meta) implementation and a batching (vmap) rule; their autograd
is registered in :mod:`tp_torch._compiled`::

    channelwise(x1, x2, w, key, weighted_only) -> out
    channelwise_backward(x1, x2, w, g, key, need1, need2, needw, weighted_only) -> (g1, g2, gw)
    channelwise_conv(x1, x2, w, by_receiver, by_sender, key, weighted_only) -> out
    channelwise_conv_backward(x1, x2, w, g, by_receiver, by_sender, key, need1, need2, needw,
                              weighted_only) -> (g1, g2, gw)

``key`` is the JSON path table of :meth:`tp_torch._cpu_kernels.ChannelwiseKernels.key` (of
:meth:`tp_torch._conv_kernels.ConvKernels.key` for the convolution): a graph traced by
``torch.compile`` or ``torch.export`` carries everything the kernels need, and a process that
loads it rebuilds them (``import tp_torch`` registers the ops). Shapes: batch ops
``x1 (B, dim1)``, ``x2 (B, dim2)``, ``w`` None, ``(numel,)`` or ``(B, numel)``, ``g`` and
``out (B, dim_out)``; convolution ``x1 (n_nodes, dim1)``, ``x2``/``w`` per edge,
``by_receiver``/``by_sender`` the ``(3, n_edges)`` int64 edge orders of
:func:`tp_torch._conv_kernels.edge_orders`, ``out (n_nodes, dim_out)``. A gradient not asked
for (``need*`` False) comes back as an empty ``(0,)`` tensor (ops cannot return None).
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from ._conv_kernels import ConvKernels
from ._cpu_kernels import ChannelwiseKernels, available

__all__ = ["OPS", "batch_kernels", "conv_kernels"]

#: The op names, as ``torch.ops.tp_torch.<name>``.
OPS = ("channelwise", "channelwise_backward", "channelwise_conv", "channelwise_conv_backward")


@lru_cache(maxsize=256)
def batch_kernels(key: str) -> ChannelwiseKernels:
    """The kernels of a path table (one object per key and process)."""
    return ChannelwiseKernels.from_key(key)


@lru_cache(maxsize=256)
def conv_kernels(key: str) -> ConvKernels:
    return ConvKernels.from_key(key)


def _check_graph(x2: Tensor, by_receiver: Tensor, by_sender: Tensor) -> None:
    for name, t in (("by_receiver", by_receiver), ("by_sender", by_sender)):
        if t.dtype != torch.int64 or t.dim() != 2 or t.shape[0] != 3:
            raise ValueError(f"{name} must be a (3, n_edges) int64 tensor, got "
                             f"{tuple(t.shape)} {t.dtype}")
    if by_receiver.shape[1] != x2.shape[0] or by_sender.shape[1] not in (0, x2.shape[0]):
        raise ValueError(f"the edge orders have {by_receiver.shape[1]} and "
                         f"{by_sender.shape[1]} edges, x2 has {x2.shape[0]} rows")


def _require_kernels(op: str) -> None:
    if not available():
        raise RuntimeError(
            f"tp_torch::{op} runs tp_torch's compiled CPU kernels, which are off in this "
            "process (Numba missing, or TP_TORCH_CPU_KERNELS=0); a graph that contains this op "
            "needs them where it runs")


def _grads(x1: Tensor, grads: tuple) -> tuple[Tensor, ...]:
    """``None`` gradients as empty tensors (an op returns tensors only)."""
    return tuple(x1.new_empty(0) if g is None else g for g in grads)


# ----------------------------------------------------------------------------- batch ops


#: The ops are defined on a ``torch.library.Library`` with CPU implementations (not with
#: ``torch.library.custom_op``, whose wrapper imports Dynamo on an op's first call: seconds).
_LIB = torch.library.Library("tp_torch", "DEF")
_LIB.define("channelwise(Tensor x1, Tensor x2, Tensor? w, str key, bool weighted_only) -> Tensor")
_LIB.define("channelwise_backward(Tensor x1, Tensor x2, Tensor? w, Tensor g, str key, "
            "bool need1, bool need2, bool needw, bool weighted_only) -> (Tensor, Tensor, Tensor)")
_LIB.define("channelwise_conv(Tensor x1, Tensor x2, Tensor? w, Tensor by_receiver, "
            "Tensor by_sender, str key, bool weighted_only) -> Tensor")
_LIB.define("channelwise_conv_backward(Tensor x1, Tensor x2, Tensor? w, Tensor g, "
            "Tensor by_receiver, Tensor by_sender, str key, bool need1, bool need2, "
            "bool needw, bool weighted_only) -> (Tensor, Tensor, Tensor)")


def _impl(name: str):
    def register(fn):
        _LIB.impl(name, fn, "CPU")
        return fn
    return register


def _fake(name: str):
    return torch.library.register_fake(f"tp_torch::{name}", lib=_LIB)


def _vmap(name: str):
    return torch.library.register_vmap(f"tp_torch::{name}", lib=_LIB)


@_impl("channelwise")
def channelwise(x1: Tensor, x2: Tensor, w: Tensor | None, key: str,
                weighted_only: bool) -> Tensor:
    _require_kernels("channelwise")
    return batch_kernels(key).forward(x1, x2, w, weighted_only)


@_fake("channelwise")
def _(x1, x2, w, key, weighted_only):
    return x1.new_empty((x1.shape[0], batch_kernels(key).dims[2]))


@_impl("channelwise_backward")
def channelwise_backward(x1: Tensor, x2: Tensor, w: Tensor | None, g: Tensor, key: str,
                         need1: bool, need2: bool, needw: bool,
                         weighted_only: bool) -> tuple[Tensor, Tensor, Tensor]:
    _require_kernels("channelwise_backward")
    needw = needw and w is not None
    grads = batch_kernels(key).backward(x1, x2, w, g, (need1, need2, needw), weighted_only)
    return _grads(x1, grads)


def _fake_grads(x1, x2, w, need1, need2, needw):
    def like(t, n):
        return t.new_empty(t.shape) if n and t is not None else x1.new_empty(0)
    return like(x1, need1), like(x2, need2), like(w, needw)


@_fake("channelwise_backward")
def _(x1, x2, w, g, key, need1, need2, needw, weighted_only):
    return _fake_grads(x1, x2, w, need1, need2, needw)


# ----------------------------------------------------------------------------- convolution


@_impl("channelwise_conv")
def channelwise_conv(x1: Tensor, x2: Tensor, w: Tensor | None, by_receiver: Tensor,
                     by_sender: Tensor, key: str, weighted_only: bool) -> Tensor:
    _require_kernels("channelwise_conv")
    _check_graph(x2, by_receiver, by_sender)
    bound = conv_kernels(key).bind(by_receiver, by_sender, x1.shape[0])
    return bound.forward(x1, x2, w, weighted_only)


@_fake("channelwise_conv")
def _(x1, x2, w, by_receiver, by_sender, key, weighted_only):
    return x1.new_empty((x1.shape[0], conv_kernels(key).cw.dims[2]))


@_impl("channelwise_conv_backward")
def channelwise_conv_backward(x1: Tensor, x2: Tensor, w: Tensor | None, g: Tensor,
                              by_receiver: Tensor, by_sender: Tensor, key: str, need1: bool,
                              need2: bool, needw: bool,
                              weighted_only: bool) -> tuple[Tensor, Tensor, Tensor]:
    _require_kernels("channelwise_conv_backward")
    _check_graph(x2, by_receiver, by_sender)
    needw = needw and w is not None
    bound = conv_kernels(key).bind(by_receiver, by_sender, x1.shape[0])
    grads = bound.backward(x1, x2, w, g, (need1, need2, needw), weighted_only)
    return _grads(x1, grads)


@_fake("channelwise_conv_backward")
def _(x1, x2, w, g, by_receiver, by_sender, key, need1, need2, needw, weighted_only):
    return _fake_grads(x1, x2, w, need1, need2, needw)


# ----------------------------------------------------------------------------- vmap rules
#
# Batch ops: the vmapped axis is folded into the batch (``(V, B, d) -> (V B, d)``); shared
# weights become per-sample rows (each vmapped instance may have its own), and the weight
# gradient of weights that were shared is summed back over ``B``. The convolution's rows are
# nodes and edges of one graph: its rule runs the op once per vmapped instance.


def _front(t: Tensor | None, dim: int | None, size: int) -> Tensor | None:
    """``t`` with the vmapped axis first (expanded where ``t`` is not vmapped)."""
    if t is None:
        return None
    if dim is None:
        return t.unsqueeze(0).expand(size, *t.shape)
    return t.movedim(dim, 0)


def _fold_batch(info, in_dims, x1, x2, w, g=None):
    v = info.batch_size
    d1, d2, dw = in_dims[:3]
    x1v, x2v = _front(x1, d1, v), _front(x2, d2, v)
    b = x1v.shape[1]
    shared = w is not None and w.dim() - (dw is not None) == 1
    wf = None
    if w is not None:
        wv = _front(w, dw, v)
        if shared:
            wv = wv.unsqueeze(1).expand(v, b, wv.shape[-1])
        wf = wv.reshape(v * b, wv.shape[-1])
    gf = None if g is None else _front(g, in_dims[3], v).reshape(v * b, -1)
    return (v, b, shared, x1v.reshape(v * b, -1), x2v.reshape(v * b, -1), wf, gf)


@_vmap("channelwise")
def _(info, in_dims, x1, x2, w, key, weighted_only):
    v, b, _, a1, a2, aw, _ = _fold_batch(info, in_dims, x1, x2, w)
    out = torch.ops.tp_torch.channelwise(a1, a2, aw, key, weighted_only)
    return out.reshape(v, b, -1), 0


@_vmap("channelwise_backward")
def _(info, in_dims, x1, x2, w, g, key, need1, need2, needw, weighted_only):
    v, b, shared, a1, a2, aw, ag = _fold_batch(info, in_dims, x1, x2, w, g)
    g1, g2, gw = torch.ops.tp_torch.channelwise_backward(a1, a2, aw, ag, key, need1, need2,
                                                          needw, weighted_only)
    out, dims = [], []
    for t, n in ((g1, need1), (g2, need2)):
        out.append(t.reshape(v, b, -1) if n else t)
        dims.append(0 if n else None)
    if needw and w is not None:
        gw = gw.reshape(v, b, -1)
        out.append(gw.sum(1) if shared else gw)
        dims.append(0)
    else:
        out.append(gw)
        dims.append(None)
    return tuple(out), tuple(dims)


def _per_instance(info, in_dims, args, call):
    """``call(*args_v)`` for every vmapped instance ``v``, stacked on a new axis 0."""
    outs = []
    for i in range(info.batch_size):
        outs.append(call(*(a if d is None or a is None else a.select(d, i)
                           for a, d in zip(args, in_dims, strict=True))))
    return outs


@_vmap("channelwise_conv")
def _(info, in_dims, x1, x2, w, by_receiver, by_sender, key, weighted_only):
    outs = _per_instance(info, in_dims[:5], (x1, x2, w, by_receiver, by_sender),
                         lambda *a: torch.ops.tp_torch.channelwise_conv(*a, key, weighted_only))
    return torch.stack(outs), 0


@_vmap("channelwise_conv_backward")
def _(info, in_dims, x1, x2, w, g, by_receiver, by_sender, key, need1, need2, needw,
      weighted_only):
    outs = _per_instance(
        info, in_dims[:6], (x1, x2, w, g, by_receiver, by_sender),
        lambda *a: torch.ops.tp_torch.channelwise_conv_backward(*a, key, need1, need2, needw,
                                                                weighted_only))
    needs = (need1, need2, needw and w is not None)
    res = tuple(torch.stack([o[i] for o in outs]) if needs[i] else outs[0][i]
                for i in range(3))
    return res, tuple(0 if n else None for n in needs)
