"""The compiled CPU kernels (:mod:`tp_torch._cpu_kernels`) as autograd Functions, and the
dispatch between them and the torch ops that the channelwise and folded ``fused`` executors
share (:class:`CompiledChannelwise`)."""

from __future__ import annotations

from typing import Any

import torch

from . import _cpu_kernels

__all__ = ["CompiledChannelwise", "compiled_channelwise"]


class CompiledChannelwise:
    """Mixin of the channelwise-shaped executors: ``forward`` runs the compiled CPU kernels
    where :meth:`uses_cpu_kernels`, else the executor's ``torch_forward`` (GPUs,
    ``torch.compile``, CPU without Numba)."""

    cpu_kernels: _cpu_kernels.ChannelwiseKernels | None

    def init_compiled(self, d: Any, tuning: Any) -> None:
        """Build the compiled kernels of ``d`` (thresholds from ``tuning``) if they support
        it."""
        #: compiled CPU kernels (:mod:`tp_torch._cpu_kernels`), None where unsupported
        self.cpu_kernels = (_cpu_kernels.ChannelwiseKernels(d, tuning)
                            if _cpu_kernels.supports(d, tuning) else None)

    def uses_cpu_kernels(self, x1: torch.Tensor) -> bool:
        """Whether a call on ``x1`` runs the compiled CPU kernels: a descriptor they support, a
        CPU tensor, not under ``torch.compile``, Numba present and not turned off
        (``TP_TORCH_CPU_KERNELS=0``)."""
        return (self.cpu_kernels is not None and x1.device.type == "cpu"
                and not torch.compiler.is_compiling() and _cpu_kernels.available())

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        if self.uses_cpu_kernels(x1):
            return _CompiledChannelwiseFn.apply(x1, x2, w, self.cpu_kernels)
        return self.torch_forward(x1, x2, w)

    def torch_forward(self, x1: torch.Tensor, x2: torch.Tensor,
                      w: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


def compiled_channelwise(x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None,
                         kernels: Any) -> torch.Tensor:
    """The differentiable (to any order) product run by ``kernels``: any object with the
    ``forward``/``backward`` of :class:`tp_torch._cpu_kernels.ChannelwiseKernels` (the batch
    kernels, or the convolution's :class:`tp_torch._conv_kernels.BoundConv`)."""
    return _CompiledChannelwiseFn.apply(x1, x2, w, kernels)


class _CompiledChannelwiseFn(torch.autograd.Function):
    """A channelwise product on CPU through the compiled kernels ``kernels``
    (:class:`tp_torch._cpu_kernels.ChannelwiseKernels`); ``weighted_only``: the weighted paths
    alone (see :class:`_CompiledChannelwiseGradFn`). Only the inputs are saved. The backward is
    the compiled backward; when its graph is recorded (``create_graph``) it is
    :class:`_CompiledChannelwiseGradFn`, differentiable to any order."""

    @staticmethod
    def forward(ctx, x1, x2, w, kernels, weighted_only=False):
        ctx.kernels = kernels
        ctx.weighted_only = weighted_only
        ctx.has_w = w is not None
        ctx.save_for_backward(x1, x2, *(() if w is None else (w,)))
        return kernels.forward(x1, x2, w, weighted_only)

    @staticmethod
    def backward(ctx, gout):
        saved = ctx.saved_tensors
        x1, x2 = saved[0], saved[1]
        w = saved[2] if ctx.has_w else None
        need = tuple(ctx.needs_input_grad[:3])
        if torch.is_grad_enabled():
            grads = _CompiledChannelwiseGradFn.apply(x1, x2, w, gout, ctx.kernels, need,
                                                     ctx.weighted_only)
        else:
            grads = ctx.kernels.backward(x1, x2, w, gout, need, ctx.weighted_only)
        return (*grads, None, None)


class _CompiledChannelwiseGradFn(torch.autograd.Function):
    """``(x1, x2, w, gout) -> (g1, g2, gw)``, the compiled first-order gradients (those in
    ``need``), as a differentiable function. The product ``f`` is linear in ``x1``, ``x2`` and
    in the weights of the weighted paths, so with cotangents ``v1, v2, vw`` of the gradients,
    ``S = <v1, g1> + <v2, g2> + <vw, gw> = <gout, f(v1, x2, w) + f(x1, v2, w) + f_w(x1, x2, vw)>``
    (``f_w``: the weighted paths only, weighted by ``vw``), and every second derivative is a
    compiled forward (``dS/dgout``) or backward (``dS/dx1``, ``dS/dx2``, ``dS/dw``) at
    substituted inputs: three backward calls for a force-training step. With the graph recorded
    again (third order) they run through these same functions."""

    @staticmethod
    def forward(ctx, x1, x2, w, gout, kernels, need, weighted_only):
        ctx.kernels = kernels
        ctx.has_w = w is not None
        ctx.need = need
        ctx.weighted_only = weighted_only
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x1, x2, gout, *(() if w is None else (w,)))
        return kernels.backward(x1, x2, w, gout, need, weighted_only)

    @staticmethod
    def backward(ctx, v1, v2, vw):
        saved = ctx.saved_tensors
        x1, x2, gout = saved[:3]
        w = saved[3] if ctx.has_w else None
        n1, n2, nw, ng = ctx.needs_input_grad[:4]
        kernels, only = ctx.kernels, ctx.weighted_only
        v1, v2, vw = (v if n else None for v, n in zip((v1, v2, vw), ctx.need, strict=True))
        if w is None:
            vw = None
        if torch.is_grad_enabled():  # record: the same functions, differentiable again
            def bwd(a, b, c, nd, wo):
                return _CompiledChannelwiseGradFn.apply(a, b, c, gout, kernels, nd, wo)

            def fwd(a, b, c, wo):
                return _CompiledChannelwiseFn.apply(a, b, c, kernels, wo)
        else:
            def bwd(a, b, c, nd, wo):
                return kernels.backward(a, b, c, gout, nd, wo)

            def fwd(a, b, c, wo):
                return kernels.forward(a, b, c, wo)

        def add(acc, t):
            return t if acc is None else (acc if t is None else acc + t)

        d1 = d2 = dw = dg = None
        if v1 is not None and (n2 or nw):  # S1 = <gout, f(v1, x2, w)>
            _, a, c = bwd(v1, x2, w, (False, n2, nw), only)
            d2, dw = add(d2, a), add(dw, c)
        if v2 is not None and (n1 or nw):  # S2 = <gout, f(x1, v2, w)>
            a, _, c = bwd(x1, v2, w, (n1, False, nw), only)
            d1, dw = add(d1, a), add(dw, c)
        if vw is not None and (n1 or n2):  # S3 = <gout, f_w(x1, x2, vw)>
            a, c, _ = bwd(x1, x2, vw, (n1, n2, False), True)
            d1, d2 = add(d1, a), add(d2, c)
        if ng:
            if v1 is not None:
                dg = add(dg, fwd(v1, x2, w, only))
            if v2 is not None:
                dg = add(dg, fwd(x1, v2, w, only))
            if vw is not None:
                dg = add(dg, fwd(x1, x2, vw, True))
        out = []
        for t, n, like in ((d1, n1, x1), (d2, n2, x2), (dw, nw, w), (dg, ng, gout)):
            out.append(None if not n else (torch.zeros_like(like) if t is None else t))
        return (*out, None, None, None)
