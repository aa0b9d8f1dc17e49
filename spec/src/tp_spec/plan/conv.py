"""The plan of the tensor-product convolution (message passing, :func:`tp_spec.reference.conv`).

A convolution plan holds the plan of the per-edge product (``message``: any method's
:class:`~tp_spec.plan.Plan`, ``None`` for an adapter of an outside library) and the edge-chunk
size of the executors that compute the messages chunk by chunk. The graph itself is data: each
call orders its edges by receiver (:func:`receiver_order`, a stable sort), so that

* each node's messages are summed in one fixed order (edge order within a receiver): the
  result is bit-identical across runs, thread counts and edge chunkings, with no atomics;
* a fused kernel (tp_torch's compiled channelwise kernels) adds every message into its
  receiver's row as it computes it, and the messages never exist as an array;
* a chunked executor keeps at most one chunk's messages (``edge_chunk`` edges).

The gradient of the node features sums over each node's *outgoing* edges: executors order
those by sender (:func:`sender_order`) the same way.

>>> import numpy as np, tp_spec as spec
>>> from tp_spec.plan import conv
>>> d = spec.cgtp("4x0e + 4x1o", "0e + 1o", mode="uvu")
>>> p = conv.conv_plan(d)
>>> p.message.method, p.edge_chunk >= 64
('fused', True)
>>> order, offsets = conv.receiver_order(np.array([2, 0, 2, 1]), 4)
>>> order.tolist(), offsets.tolist()
([1, 3, 0, 2], [0, 1, 2, 4, 4])
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..descriptor import TensorProductDescriptor
from .base import Plan
from .registry import default_method, execute, get_method, plan
from .tuning import DEFAULT_TUNING, Tuning

__all__ = ["ConvPlan", "conv_plan", "receiver_order", "run_conv_numpy", "sender_order"]


@dataclass(frozen=True, eq=False)
class ConvPlan(Plan):
    """How one method computes the convolution of ``descriptor``: the per-edge product's plan
    (``None`` for an adapter) and the edges per chunk of a chunked executor."""

    message: Plan | None
    edge_chunk: int


@lru_cache(maxsize=256)
def _conv_plan(d: TensorProductDescriptor, name: str, tuning: Tuning) -> ConvPlan:
    m = get_method(d, name)
    message = plan(d, name, tuning) if m.build is not None else None
    per_edge = d.irreps_in1.dim + d.irreps_out.dim  # gathered row + message
    chunk = max(tuning.conv_chunk_min_edges, tuning.conv_chunk_entries // max(per_edge, 1))
    return ConvPlan(d, name, tuning, message, chunk)


def conv_plan(d: TensorProductDescriptor, method: str | None = None,
              tuning: Tuning | None = None) -> ConvPlan:
    """The convolution plan of ``d`` under ``method`` (``None``: the family's default), built
    once per ``(d, method, tuning)``."""
    name = default_method(d) if method is None else method
    return _conv_plan(d, name, DEFAULT_TUNING if tuning is None else tuning)


def receiver_order(receivers: Any, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(order, offsets)``: the edges sorted by receiver (stable: edge order within a
    receiver), ``order (n_edges,)`` int64, and node ``i``'s incoming edges at
    ``order[offsets[i]:offsets[i + 1]]``, ``offsets (n_nodes + 1,)``."""
    r = np.asarray(receivers, dtype=np.int64)
    order = np.argsort(r, kind="stable")
    offsets = np.searchsorted(r[order], np.arange(n_nodes + 1), side="left")
    return order, offsets.astype(np.int64)


def sender_order(senders: Any, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`receiver_order` of the senders: each node's outgoing edges, in edge order."""
    return receiver_order(senders, n_nodes)


def run_conv_numpy(p: ConvPlan, x_nodes: np.ndarray, x_edges: np.ndarray, w: Any,
                   senders: np.ndarray, receivers: np.ndarray) -> np.ndarray:
    """Run ``p`` in NumPy (float64): the receiver-sorted edges in chunks of ``p.edge_chunk``,
    each chunk's messages computed by the message plan and added into their receivers. Shapes
    as :func:`tp_spec.reference.conv` (inputs already validated)."""
    if p.message is None:
        raise ValueError(f"method {p.method!r} is an adapter: it has no NumPy executor")
    d = p.descriptor
    n_nodes = x_nodes.shape[0]
    out = np.zeros((n_nodes, d.irreps_out.dim))
    order, _ = receiver_order(receivers, n_nodes)
    per_edge = w is not None and np.ndim(w) == 2
    for s in range(0, order.size, p.edge_chunk):
        e = order[s:s + p.edge_chunk]
        msg = execute(p.message, x_nodes[senders[e]], x_edges[e], w[e] if per_edge else w)
        np.add.at(out, receivers[e], msg)
    return out
