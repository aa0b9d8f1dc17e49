"""``cueq``: a CGTP run through cuEquivariance (``cuequivariance_torch``).

The descriptor becomes one segmented polynomial per connection mode
(:func:`tp_spec.plan.cueq.cueq_groups`: exact tp_spec coefficients, the descriptor's weight
layout, ones for unweighted paths); each runs with ``cuet.SegmentedPolynomial(method="naive")``
(pure PyTorch; CPU and GPU) unless ``cuequivariance_ops_torch`` is importable and the device is
CUDA, where ``"fused_tp"`` is used (untested here: no GPU). Importing this module does not
import cuEquivariance; building the kernel does.
"""

from __future__ import annotations

import importlib.util

import torch
from tp_spec import CGTPDescriptor
from tp_spec.plan.cueq import cueq_groups, cueq_unsupported_reason, group_weights

from ._common import Kernel

__all__ = ["CGTPCueq", "cueq_reason"]


def cueq_reason(d) -> str | None:
    """Why ``cueq`` cannot run ``d`` here (None if it can): the descriptor-level reasons of
    :func:`tp_spec.plan.cueq.cueq_unsupported_reason` or a missing library."""
    reason = cueq_unsupported_reason(d)
    if reason is None and (importlib.util.find_spec("cuequivariance") is None
                           or importlib.util.find_spec("cuequivariance_torch") is None):
        reason = "needs cuequivariance and cuequivariance-torch (pip install 'tp-torch[cueq]')"
    return reason


class CGTPCueq(Kernel):
    """``cueq``: one ``cuet.SegmentedPolynomial`` per connection mode of ``d``, outputs
    summed."""

    def __init__(self, d: CGTPDescriptor, device: str | torch.device = "cpu") -> None:
        super().__init__()
        import cuequivariance as cue
        import cuequivariance_torch as cuet

        self.d = d
        method = "naive"
        if torch.device(device).type == "cuda" and (
            importlib.util.find_spec("cuequivariance_ops_torch") is not None
        ):
            method = "fused_tp"
        self.groups = cueq_groups(d, cue)
        # one set per compute dtype: cuEquivariance's fused_tp kernel computes in float32
        # unless told otherwise, whatever the inputs' dtype
        self.polys = torch.nn.ModuleDict({
            str(dt)[6:]: torch.nn.ModuleList(
                cuet.SegmentedPolynomial(g.polynomial, method=method, math_dtype=dt)
                for g in self.groups)
            for dt in (torch.float32, torch.float64)})

    def conv(self, x_nodes: torch.Tensor, x_edges: torch.Tensor, w: torch.Tensor | None,
             senders: torch.Tensor, receivers: torch.Tensor) -> torch.Tensor:
        """The convolution (:class:`tp_torch.TensorProductConv`) as cuEquivariance's indexed
        polynomial: ``x_nodes`` gathered by ``senders`` and the output scattered into
        ``receivers`` by cuEquivariance itself (on CUDA with cuequivariance-ops: fused)."""
        n_nodes, e = x_nodes.shape[0], x_edges.shape[0]
        out = x_nodes.new_zeros((n_nodes, self.d.irreps_out.dim))
        if e == 0:  # cuEquivariance does not accept empty batches; keep the graph
            return out + 0.0 * x_nodes.sum() + 0.0 * x_edges.sum() + (
                0.0 * w.sum() if w is not None else 0.0)
        lead = () if w is None or w.dim() == 1 else (e,)
        shape = out[:, :1]  # cuEquivariance reads the output batch from a tensor's shape
        for g, poly in zip(self.groups, self.polys[str(x_nodes.dtype)[6:]], strict=True):
            wg = group_weights(g, w, lambda n: x_nodes.new_ones(lead + (n,)),
                               lambda parts: torch.cat(parts, dim=-1))
            (y,) = poly([wg.unsqueeze(0) if wg.dim() == 1 else wg, x_nodes, x_edges],
                        input_indices={1: senders.long()}, output_shapes={0: shape},
                        output_indices={0: receivers.long()})  # its scatter needs int64
            out = out + y
        return out

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        b = x1.shape[0]
        out = x1.new_zeros((b, self.d.irreps_out.dim))
        if b == 0:  # cuEquivariance does not accept empty batches; keep the graph
            return out + 0.0 * x1.sum() + 0.0 * x2.sum() + (0.0 * w.sum() if w is not None
                                                            else 0.0)
        lead = () if w is None or w.dim() == 1 else (b,)
        for g, poly in zip(self.groups, self.polys[str(x1.dtype)[6:]], strict=True):
            wg = group_weights(g, w, lambda n: x1.new_ones(lead + (n,)),
                               lambda parts: torch.cat(parts, dim=-1))
            (y,) = poly([wg.unsqueeze(0) if wg.dim() == 1 else wg, x1, x2])
            out = out + (y if y.shape[0] == b else y.expand(b, y.shape[1]))
        return out
