"""``TensorProductConv``: the tensor-product convolution (message passing) of
:func:`tp_spec.reference.conv` as a torch module.

Two executors, one plan (:func:`tp_spec.plan.conv_plan`):

* channelwise descriptors under ``fused`` on CPU: the compiled indexed kernels
  (:mod:`tp_torch._conv_kernels`) add each message into its receiver as they compute it; no
  message array exists, in the forward pass or in any derivative;
* ``cueq``: cuEquivariance's indexed segmented polynomial (senders gathered and receivers
  scattered by cuEquivariance: its fused kernels on CUDA, its naive PyTorch path elsewhere);
* everything else (other modes and families, other methods, GPUs, ``torch.compile``): the
  receiver-sorted edges in chunks of ``plan.edge_chunk``: gather the senders' rows, the
  product (:class:`tp_torch.TensorProduct` of the same method), ``index_add_`` into the
  receivers. At most one chunk's messages exist, in the forward pass and (each chunk's product
  recomputed) in every derivative.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import checkpoint
from tp_spec import DeviceError, DTypeError, TensorProductDescriptor
from tp_spec.plan import Tuning, conv_plan
from tp_spec.validation import check_conv_call, check_index_range, dtype_name

from ._common import NotScriptable, no_autocast
from ._compiled import CompiledChannelwise, compiled_channelwise
from ._conv_kernels import ConvKernels, edge_orders
from ._module import TensorProduct

__all__ = ["TensorProductConv"]


class TensorProductConv(NotScriptable, torch.nn.Module):
    """The convolution of a tp_spec descriptor ``d`` over a graph's edges::

        out[i] = sum over edges e with receivers[e] == i of
                 TP(x_nodes[senders[e]], x_edges[e], weights[e])

    Edges may come in any order, repeat or be self-loops; nodes no edge reaches get zeros.
    Bad shapes, dtypes and indices out of range raise before any compute. On CPU the result is
    bit-identical across runs (and, through the compiled kernels, across thread counts);
    differentiable to any order.

    Args:
        descriptor: the tp_spec descriptor ``d`` of the per-edge product.
        method: a method of :class:`TensorProduct` (``None``: the default).
        device: where the constants live (default CPU).
        tuning: a :class:`tp_spec.plan.Tuning` (its ``conv_*`` fields set the edge chunk).

    >>> import tp_spec, tp_torch, torch
    >>> d = tp_spec.cgtp("2x0e + 2x1o", "0e + 1o", "0e + 1o", mode="uvu")
    >>> conv = tp_torch.TensorProductConv(d)
    >>> senders, receivers = torch.tensor([0, 1, 2, 2]), torch.tensor([1, 2, 0, 1])
    >>> conv(torch.randn(3, 8), torch.randn(4, 4), torch.randn(4, d.weight_numel),
    ...      senders, receivers).shape
    torch.Size([3, 16])
    """

    def __init__(self, descriptor: TensorProductDescriptor, method: str | None = None,
                 device: str | torch.device | None = None, tuning: Tuning | None = None) -> None:
        super().__init__()
        self.tp = TensorProduct(descriptor, method, device, tuning)
        self.descriptor = descriptor
        self.method = self.tp.method
        self.weight_numel = self.tp.weight_numel
        self.plan = conv_plan(descriptor, self.method, tuning)
        kernel = self.tp.kernel
        #: the compiled conv kernels where the product's executor runs compiled kernels
        self.conv_kernels = (ConvKernels(descriptor, self.plan.tuning)
                             if isinstance(kernel, CompiledChannelwise)
                             and kernel.cpu_kernels is not None else None)
        #: their path table, the ``key`` of the convolution ops (:mod:`tp_torch._ops`)
        self.conv_key = None if self.conv_kernels is None else self.conv_kernels.key()

    def _check(self, x_nodes: Any, x_edges: Any, weights: Any, senders: Any,
               receivers: Any) -> tuple[int, int, str]:
        named = [("x_nodes", x_nodes), ("x_edges", x_edges), ("senders", senders),
                 ("receivers", receivers)] + ([("weights", weights)] if weights is not None
                                              else [])
        for name, t in named:
            if not isinstance(t, torch.Tensor):
                raise DTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        n_nodes, n_edges, compute = check_conv_call(self.descriptor, x_nodes, x_edges,
                                                    weights, senders, receivers)
        for name, t in named[1:]:
            if t.device != x_nodes.device:
                raise DeviceError(f"device mix: x_nodes is on {x_nodes.device} but {name} is "
                                  f"on {t.device}")
        # Data-dependent: checked here in eager mode; a compiled or exported graph leaves it to
        # its ops (index_select, and the kernels' op, check every index when they run).
        if n_edges and not torch.compiler.is_compiling():
            for name, idx in (("senders", senders), ("receivers", receivers)):
                lo, hi = torch.aminmax(idx)
                check_index_range(name, int(lo), int(hi), n_nodes)
        return n_nodes, n_edges, compute

    @no_autocast
    def forward(self, x_nodes: torch.Tensor, x_edges: torch.Tensor,
                weights: torch.Tensor | None, senders: torch.Tensor,
                receivers: torch.Tensor) -> torch.Tensor:
        """Sum the messages of each node's incoming edges.

        Args:
            x_nodes: ``[n_nodes, irreps_in1.dim]``.
            x_edges: ``[n_edges, irreps_in2.dim]``.
            weights: ``[n_edges, weight_numel]`` per edge, ``[weight_numel]`` shared, or
                ``None`` iff ``weight_numel == 0``.
            senders: ``[n_edges]`` int32/int64 in ``[0, n_nodes)``.
            receivers: ``[n_edges]`` int32/int64 in ``[0, n_nodes)``.

        Returns:
            ``[n_nodes, irreps_out.dim]`` in the inputs' dtype (half precisions computed in
            float32, rounded once).
        """
        n_nodes, n_edges, compute = self._check(x_nodes, x_edges, weights, senders, receivers)
        dtype = x_nodes.dtype
        if compute != dtype_name(dtype):  # half precisions: computed in float32, rounded once
            x_nodes, x_edges = x_nodes.float(), x_edges.float()
            weights = None if weights is None else weights.float()
        if self.conv_kernels is not None and self.tp.kernel.uses_cpu_kernels(x_nodes):
            # the node gradient walks the edges by sender (sorted where a gradient may be
            # taken: requires_grad is not visible under torch.func transforms)
            graph = edge_orders(senders, receivers, torch.is_grad_enabled())
            out = compiled_channelwise(x_nodes, x_edges, weights, self.conv_key, graph)
        elif hasattr(self.tp.kernel, "conv"):  # an adapter with its own (indexed) convolution
            out = self.tp.kernel.conv(x_nodes, x_edges, weights, senders, receivers)
        else:
            out = self._chunked(x_nodes, x_edges, weights, senders, receivers, n_nodes)
        return out.to(dtype)

    def _chunked(self, x_nodes: torch.Tensor, x_edges: torch.Tensor, w: torch.Tensor | None,
                 senders: torch.Tensor, receivers: torch.Tensor, n_nodes: int) -> torch.Tensor:
        """Receiver-sorted edge chunks: gather, product, add into the receivers."""
        out = x_nodes.new_zeros((n_nodes, self.descriptor.irreps_out.dim))
        order = torch.argsort(receivers, stable=True)
        per_edge = w is not None and w.dim() == 2
        step = self.plan.edge_chunk
        # With several chunks under autograd, each chunk's product is recomputed in the
        # backward pass instead of keeping its intermediates (to any order: non-reentrant
        # checkpoints), so no derivative holds more than one chunk's intermediates either.
        remat = (self.plan.tuning.conv_checkpoint_chunks and order.numel() > step
                 and torch.is_grad_enabled())

        def messages(e: torch.Tensor) -> torch.Tensor:
            return self.tp.kernel(x_nodes.index_select(0, senders.index_select(0, e)),
                                  x_edges.index_select(0, e),
                                  w.index_select(0, e) if per_edge else w)

        for s in range(0, max(order.numel(), 1), step):  # once if empty: out joins the graph
            e = order[s:s + step]
            msg = checkpoint(messages, e, use_reentrant=False) if remat else messages(e)
            out.index_add_(0, receivers.index_select(0, e), msg)
        return out

    def extra_repr(self) -> str:
        return self.tp.extra_repr()
