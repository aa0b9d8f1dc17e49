"""The compiled CPU kernels (:mod:`tp_torch._cpu_kernels`) as autograd Functions, and the
dispatch between them and the torch ops that the channelwise and folded ``fused`` executors
share (:class:`CompiledChannelwise`)."""

from __future__ import annotations

from typing import Any

import torch

from . import _cpu_kernels, _ops  # noqa: F401  (_ops: registers the ops)

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
        #: their path table, the ``key`` of the ops (:mod:`tp_torch._ops`)
        self.kernel_key = None if self.cpu_kernels is None else self.cpu_kernels.key()

    def uses_cpu_kernels(self, x1: torch.Tensor) -> bool:
        """Whether a call on ``x1`` runs the compiled CPU kernels: a descriptor they support, a
        CPU tensor, Numba present and not turned off (``TP_TORCH_CPU_KERNELS=0``). Under
        ``torch.compile`` and ``torch.export`` they run as the custom ops of
        :mod:`tp_torch._ops`."""
        return (self.cpu_kernels is not None and x1.device.type == "cpu"
                and _cpu_kernels.available())

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        if self.uses_cpu_kernels(x1):
            return compiled_channelwise(x1, x2, w, self.kernel_key)
        return self.torch_forward(x1, x2, w)

    def torch_forward(self, x1: torch.Tensor, x2: torch.Tensor,
                      w: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


def compiled_channelwise(x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None, key: str,
                         graph: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
    """The product of the compiled kernels of ``key`` (the path table of
    :meth:`tp_torch._cpu_kernels.ChannelwiseKernels.key`), differentiable to any order in
    reverse and forward mode: the batch product, or with ``graph = (by_receiver, by_sender)``
    (:func:`tp_torch._conv_kernels.edge_orders`; ``key`` then of
    :meth:`tp_torch._conv_kernels.ConvKernels.key`) the convolution. Under ``torch.compile``
    and ``torch.jit.trace`` the op itself, with its registered autograd (Dynamo cannot trace a
    custom forward-mode derivative, TorchScript cannot hold a Python Function)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return _forward_op(x1, x2, w, key, graph, False)
    return _Product.apply(x1, x2, w, key, graph, False)


def _forward_op(x1, x2, w, key, graph, weighted_only):
    """The op of the product (module doc of :mod:`tp_torch._ops`)."""
    if graph:
        return torch.ops.tp_torch.channelwise_conv(x1, x2, w, *graph, key, weighted_only)
    return torch.ops.tp_torch.channelwise(x1, x2, w, key, weighted_only)


def _backward_op(x1, x2, w, g, key, graph, need, weighted_only):
    """``(g1, g2, gw)`` of the op, None where not in ``need``."""
    if graph:
        out = torch.ops.tp_torch.channelwise_conv_backward(x1, x2, w, g, *graph, key, *need,
                                                           weighted_only)
    else:
        out = torch.ops.tp_torch.channelwise_backward(x1, x2, w, g, key, *need, weighted_only)
    return tuple(t if n and ref is not None else None
                 for t, n, ref in zip(out, need, (x1, x2, w), strict=True))


def _add(acc, t):
    return t if acc is None else (acc if t is None else acc + t)


def _product(x1, x2, w, key, graph, weighted_only):
    """The product as a differentiable function (:class:`_Product`)."""
    return _Product.apply(x1, x2, w, key, graph, weighted_only)


def _gradient(x1, x2, w, g, key, graph, need, weighted_only):
    """The first-order gradients as a differentiable function (:class:`_Gradient`)."""
    return _Gradient.apply(x1, x2, w, g, key, graph, need, weighted_only)


def _tangent(fn, x1, x2, w, t1, t2, tw, weighted_only):
    """The directional derivative of ``fn(a, b, c, wo)``, linear in each of ``a``, ``b`` and
    (the weighted paths of) ``c``, along ``(t1, t2, tw)`` at ``(x1, x2, w)``."""
    out = None
    if t1 is not None:
        out = _add(out, fn(t1, x2, w, weighted_only))
    if t2 is not None:
        out = _add(out, fn(x1, t2, w, weighted_only))
    if tw is not None and w is not None:
        out = _add(out, fn(x1, x2, tw, True))
    return out


class _Product(torch.autograd.Function):
    """The compiled product (:func:`compiled_channelwise`); ``weighted_only``: the weighted paths
    alone (the derivative along the weights). Only the inputs are saved. The backward is
    :class:`_Gradient`; the forward-mode derivative is the product at substituted inputs (it
    is linear in each input). Batching (``torch.func.vmap``) goes through the ops' rules."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x1, x2, w, key, graph, weighted_only):
        return _forward_op(x1, x2, w, key, graph, weighted_only)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x1, x2, w, key, graph, weighted_only = inputs
        ctx.key, ctx.graph, ctx.weighted_only = key, graph, weighted_only
        ctx.has_w = w is not None
        ctx.save_for_backward(x1, x2, *(() if w is None else (w,)))
        ctx.save_for_forward(x1, x2, w)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, gout):
        saved = ctx.saved_tensors
        x1, x2 = saved[0], saved[1]
        w = saved[2] if ctx.has_w else None
        need = tuple(bool(n) for n in ctx.needs_input_grad[:3])
        if gout is None or not any(need):
            return None, None, None, None, None, None
        grads = _gradient(x1, x2, w, gout, ctx.key, ctx.graph, need, ctx.weighted_only)
        return (*grads, None, None, None)

    @staticmethod
    def jvp(ctx, t1, t2, tw, *_):
        x1, x2, w = ctx.saved_for_forward

        def fn(a, b, c, wo):
            return _product(a, b, c, ctx.key, ctx.graph, wo)

        out = _tangent(fn, x1, x2, w, t1, t2, tw, ctx.weighted_only)
        if out is None:
            kernels = _ops.conv_kernels(ctx.key).cw if ctx.graph else _ops.batch_kernels(ctx.key)
            out = x1.new_zeros((x1.shape[0], kernels.dims[2]))
        return out


class _Gradient(torch.autograd.Function):
    """``(x1, x2, w, gout) -> (g1, g2, gw)``, the compiled first-order gradients (those in
    ``need``), as a differentiable function. The product ``f`` is linear in ``x1``, ``x2`` and
    in the weights of the weighted paths, so with cotangents ``v1, v2, vw`` of the gradients,
    ``S = <v1, g1> + <v2, g2> + <vw, gw> = <gout, f(v1, x2, w) + f(x1, v2, w) + f_w(x1, x2, vw)>``
    (``f_w``: the weighted paths only, weighted by ``vw``), and every second derivative is a
    compiled forward (``dS/dgout``) or backward (``dS/dx1``, ``dS/dx2``, ``dS/dw``) at
    substituted inputs: three backward calls for a force-training step, or, where no graph is
    recorded (the step's last pass, eager), one ``bwd_dual`` pass computing all three
    (:meth:`tp_kernels.ChannelwiseKernels.backward_dual`). Higher orders run through these
    same functions. Forward mode: each gradient is linear in every input but its
    own (``g1`` does not depend on ``x1``), so its tangent is this function at substituted
    inputs."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x1, x2, w, gout, key, graph, need, weighted_only):
        return _backward_op(x1, x2, w, gout, key, graph, need, weighted_only)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x1, x2, w, gout, key, graph, need, weighted_only = inputs
        ctx.key, ctx.graph, ctx.need, ctx.weighted_only = key, graph, need, weighted_only
        ctx.has_w = w is not None
        ctx.save_for_backward(x1, x2, gout, *(() if w is None else (w,)))
        ctx.save_for_forward(x1, x2, w, gout)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, v1, v2, vw):
        saved = ctx.saved_tensors
        x1, x2, gout = saved[:3]
        w = saved[3] if ctx.has_w else None
        n1, n2, nw, ng = ctx.needs_input_grad[:4]
        key, graph, only = ctx.key, ctx.graph, ctx.weighted_only
        v1, v2, vw = (v if n else None for v, n in zip((v1, v2, vw), ctx.need, strict=True))
        if w is None:
            vw = None

        def bwd(a, b, c, nd, wo):
            return _gradient(a, b, c, gout, key, graph, nd, wo)

        d1 = d2 = dw = dg = None
        if _dual_pass(ctx, (x1, x2, w, gout, v1, v2, vw), n1, n2, nw) and sum(
                t is not None for t in (v1, v2, vw)) > 1:
            # no graph to build (the force-training step's last pass): the three derivatives
            # in one kernel pass (``H v`` for the Hessian of <gout, f>)
            nd = (bool(n1), bool(n2), bool(nw) and w is not None)
            if graph:
                bound = _ops.conv_kernels(key).bind(*graph, x1.shape[0])
                d1, d2, dw = bound.backward(x1, x2, w, gout, nd, v=(v1, v2, vw))
            else:
                d1, d2, dw = _ops.batch_kernels(key).backward_dual(x1, x2, w, gout,
                                                                    (v1, v2, vw), nd)
        else:
            if v1 is not None and (n2 or nw):  # S1 = <gout, f(v1, x2, w)>
                _, a, c = bwd(v1, x2, w, (False, n2, nw), only)
                d2, dw = _add(d2, a), _add(dw, c)
            if v2 is not None and (n1 or nw):  # S2 = <gout, f(x1, v2, w)>
                a, _, c = bwd(x1, v2, w, (n1, False, nw), only)
                d1, dw = _add(d1, a), _add(dw, c)
            if vw is not None and (n1 or n2):  # S3 = <gout, f_w(x1, x2, vw)>
                a, c, _ = bwd(x1, x2, vw, (n1, n2, False), True)
                d1, d2 = _add(d1, a), _add(d2, c)
        if ng:
            dg = _tangent(lambda a, b, c, wo: _product(a, b, c, key, graph, wo),
                          x1, x2, w, v1, v2, vw, only)
        out = []
        for t, n, like in ((d1, n1, x1), (d2, n2, x2), (dw, nw, w), (dg, ng, gout)):
            out.append(None if not n else (torch.zeros_like(like) if t is None else t))
        return (*out, None, None, None, None)

    @staticmethod
    def jvp(ctx, t1, t2, tw, tg, *_):
        x1, x2, w, gout = ctx.saved_for_forward
        key, graph, need, only = ctx.key, ctx.graph, ctx.need, ctx.weighted_only
        w_t = tw if w is not None else None
        res = []
        for i, n in enumerate(need):
            if not n or (i == 2 and w is None):
                res.append(None)
                continue
            one = tuple(j == i for j in range(3))
            acc = None
            # along the inputs other than the gradient's own
            if i != 0 and t1 is not None:
                acc = _add(acc, _gradient(t1, x2, w, gout, key, graph, one, only)[i])
            if i != 1 and t2 is not None:
                acc = _add(acc, _gradient(x1, t2, w, gout, key, graph, one, only)[i])
            if i != 2 and w_t is not None:
                acc = _add(acc, _gradient(x1, x2, w_t, gout, key, graph, one, True)[i])
            if tg is not None:
                acc = _add(acc, _gradient(x1, x2, w, tg, key, graph, one, only)[i])
            like = (x1, x2, w)[i]
            res.append(torch.zeros_like(like) if acc is None else acc)
        return tuple(res)


def _dual_pass(ctx, tensors, n1, n2, nw) -> bool:
    """Whether :meth:`_Gradient.backward` runs the one-pass double backward (``bwd_dual``, or
    ``bwd_dual_ix`` for the convolution): every path, eager (no graph recorded: no higher
    order; not traced by ``torch.compile``/``torch.export``, not inside ``torch.func``
    transforms: plain CPU tensors), asked for an input's gradient. The caller also requires
    two or more directions: along one, the substituted backward is the same pass with less
    work per edge (MACE-medium convolution's force training, one thread: 587 ms against 864)."""
    plain = all(t is None or (type(t) is torch.Tensor and t.device.type == "cpu"
                              and not torch._C._functorch.is_functorch_wrapped_tensor(t))
                for t in tensors)
    return (not ctx.weighted_only and (n1 or n2 or nw) and plain
            and not torch.is_grad_enabled() and not torch.compiler.is_compiling()
            and _cpu_kernels.available())


def _op_setup(ctx, inputs, output):
    """Autograd of the ops themselves (an exported graph that holds the op, not the Python
    functions above): inputs are saved and the backward is :class:`_Gradient`."""
    x1, x2, w = inputs[:3]
    graph = tuple(inputs[3:5]) if len(inputs) == 7 else ()
    ctx.key, ctx.graph, ctx.weighted_only = inputs[-2], graph, inputs[-1]
    ctx.has_w = w is not None
    ctx.save_for_backward(x1, x2, *(() if w is None else (w,)))


def _op_backward(ctx, gout):
    saved = ctx.saved_tensors
    x1, x2 = saved[0], saved[1]
    w = saved[2] if ctx.has_w else None
    need = tuple(bool(n) for n in ctx.needs_input_grad[:3])
    grads = _gradient(x1, x2, w, gout, ctx.key, ctx.graph, need, ctx.weighted_only)
    return (*grads, *(None,) * (len(ctx.needs_input_grad) - 3))


torch.library.register_autograd("tp_torch::channelwise", _op_backward, setup_context=_op_setup)
torch.library.register_autograd("tp_torch::channelwise_conv", _op_backward,
                                setup_context=_op_setup)
