"""The convolution on CPU through the compiled indexed kernels (:mod:`tp_kernels.source`):
each message is added into its receiver's row as it is computed; no ``(n_edges, dim_out)``
array exists.

A :class:`ConvGraph` orders the edges of one call: by receiver for the forward pass and the
edge gradients, by sender for the node gradient (stable sorts: edge order within a node). Both
orders are cut into chunks at node boundaries, fixed by the graph alone; threads take whole
chunks. Every output row is written by one thread, paths in order and, per path, its edges in
order, so the sums are bit-identical across runs and thread counts, without atomics. The weight
gradient of shared weights is summed per chunk, then over the chunks in order.

:class:`BoundConv` (kernels + graph) has the ``forward``/``backward`` of
:class:`tp_torch._cpu_kernels.ChannelwiseKernels` with ``x1`` the node features ``(n_nodes,
dim1)``, ``x2`` the edge features ``(n_edges, dim2)``, the output ``(n_nodes, dim_out)``: the
autograd functions of :mod:`tp_torch._compiled` run it unchanged, to any order (the product is
linear in each of nodes, edges and weights, so every derivative is one of these kernels at
substituted inputs).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from tp_kernels.source import kernel_table
from tp_spec.plan import DEFAULT_TUNING, Tuning
from tp_spec.validation import check_index_range

from ._cpu_kernels import ChannelwiseKernels, num_threads, run_parts, weight_rows

__all__ = ["BoundConv", "ConvGraph", "ConvKernels", "edge_orders"]


class _Order:
    """Edges in one node order: ``i1`` (sender), ``i2`` (edge id), ``io`` (receiver) per
    position, int64, sorted (stably) by ``key``, one of ``i1``/``io``; ``chunks``: positions
    where chunks start, and the end."""

    def __init__(self, rows: np.ndarray, key_row: int, n_nodes: int, chunk: int) -> None:
        self.i1, self.i2, self.io = (np.ascontiguousarray(r) for r in rows)
        n = self.i2.size
        offsets = np.searchsorted(rows[key_row], np.arange(n_nodes + 1), side="left")
        starts = offsets[np.searchsorted(offsets, np.arange(0, n, chunk), side="left")]
        self.chunks = np.unique(np.concatenate([starts, [0, n]]))

    def parts(self, threads: int, min_edges: int) -> list[tuple[int, int]]:
        """Chunk indices ``[c0, c1)`` per thread: whole chunks, about equal edges, at least
        ``min_edges`` edges per thread."""
        b = self.chunks
        n = int(b[-1])
        k = max(1, min(threads, n // max(min_edges, 1)))
        cuts = np.unique(np.searchsorted(b, np.arange(k + 1) * n / k, side="left"))
        cuts[-1] = b.size - 1
        return [(int(c0), int(c1)) for c0, c1 in zip(cuts[:-1], cuts[1:], strict=True)
                if c1 > c0] or [(0, b.size - 1)]


def edge_orders(senders: torch.Tensor, receivers: torch.Tensor,
                by_sender: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The graph as the kernels read it: ``(3, n_edges)`` int64 rows (sender, edge id,
    receiver) with the edges stably sorted by receiver, and the same sorted by sender (the
    node gradient's order; ``(3, 0)`` unless ``by_sender``). Torch ops, so that a compiled or
    exported graph sorts its own edges."""
    s, r = senders.long(), receivers.long()

    def order(key: torch.Tensor) -> torch.Tensor:
        perm = torch.argsort(key, stable=True)
        return torch.stack([s.index_select(0, perm), perm, r.index_select(0, perm)])

    return order(r), (order(s) if by_sender else s.new_empty((3, 0)))


class ConvGraph:
    """The edge orders of one call (:func:`edge_orders`), as NumPy arrays."""

    def __init__(self, by_receiver: torch.Tensor, by_sender: torch.Tensor, n_nodes: int,
                 chunk: int) -> None:
        self.n_nodes = n_nodes
        n_edges = by_receiver.shape[1]
        for order in (by_receiver, by_sender) if n_edges else ():  # the kernels index
            for name, row, size in (("senders", 0, n_nodes), ("edge ids", 1, n_edges),
                                    ("receivers", 2, n_nodes)):  # without bounds checks
                if order.shape[1]:
                    lo, hi = torch.aminmax(order[row])
                    check_index_range(name, int(lo), int(hi), size,
                                      of="nodes" if row != 1 else "edges")
        self.by_receiver = _Order(by_receiver.numpy(), 2, n_nodes, chunk)
        self._by_sender = (_Order(by_sender.numpy(), 0, n_nodes, chunk)
                           if by_sender.shape[1] == by_receiver.shape[1] else None)

    @property
    def by_sender(self) -> _Order:
        if self._by_sender is None:
            raise RuntimeError("tp_torch: the node gradient of the convolution needs the edges "
                               "sorted by sender, which this call was not given")
        return self._by_sender


class ConvKernels:
    """The indexed kernels of a channelwise descriptor ``d``
    (:func:`tp_kernels.source.supports` must hold); :meth:`bind` a graph to run them."""

    def __init__(self, d: Any, tuning: Tuning = DEFAULT_TUNING) -> None:
        self.cw = ChannelwiseKernels(d, tuning)  # the path table
        self.chunk = tuning.conv_kernel_chunk_edges
        self.thread_min_edges = tuning.kernel_thread_min_rows

    def key(self) -> str:
        """A JSON string that :meth:`from_key` rebuilds these kernels from."""
        return json.dumps({"cw": self.cw.key(), "chunk": self.chunk,
                           "thread_min_edges": self.thread_min_edges})

    @classmethod
    def from_key(cls, key: str) -> ConvKernels:
        k = json.loads(key)
        self = cls.__new__(cls)
        self.cw = ChannelwiseKernels.from_key(k["cw"])
        self.chunk, self.thread_min_edges = k["chunk"], k["thread_min_edges"]
        return self

    def bound(self, np_dtype: Any, weighted_only: bool,
              kinds: tuple[str, ...] = ("fwd_ix", "bwd_ix")) -> list[tuple[Any, ...]]:
        """The paths with their indexed kernels ``kinds`` and the coefficient in the dtype."""
        every = [p[0] for p in self.cw.paths[False]]
        table = kernel_table(every, np.dtype(np_dtype).name, kinds)
        fns = dict(zip(every, table, strict=True))
        return [(*fns[lll], o1, o2, o3, wo, mul, np_dtype.type(c))
                for lll, o1, o2, o3, wo, mul, c, _ in self.cw.paths[weighted_only]]

    def bind(self, by_receiver: torch.Tensor, by_sender: torch.Tensor,
             n_nodes: int) -> BoundConv:
        """These kernels on the graph of :func:`edge_orders` over ``n_nodes`` nodes."""
        return BoundConv(self, ConvGraph(by_receiver, by_sender, n_nodes, self.chunk))


class BoundConv:
    """:class:`ConvKernels` bound to a :class:`ConvGraph`: ``forward(x_nodes, x_edges, w)`` and
    ``backward(x_nodes, x_edges, w, g, need)`` (module docstring)."""

    def __init__(self, kernels: ConvKernels, graph: ConvGraph) -> None:
        self.k, self.graph = kernels, graph

    def _parts(self, order: _Order) -> list[tuple[int, int]]:
        return order.parts(num_threads(), self.k.thread_min_edges)

    def forward(self, x1: Any, x2: Any, w: Any, weighted_only: bool = False) -> Any:
        a1 = x1.detach().contiguous().numpy()
        a2 = x2.detach().contiguous().numpy()
        ones = np.ones((1, self.k.cw.max_mul), a1.dtype)
        aw, wstep = weight_rows(w, ones)
        ao = np.zeros((self.graph.n_nodes, self.k.cw.dims[2]), a1.dtype)
        bound = self.k.bound(a1.dtype, weighted_only)
        o = self.graph.by_receiver
        parts = self._parts(o)

        def run(t: int) -> None:
            c0, c1 = parts[t]
            for c in range(c0, c1):
                n0, n1 = int(o.chunks[c]), int(o.chunks[c + 1])
                for fwd, _, p1, p2, p3, wo, mul, coef in bound:
                    if wo < 0:
                        fwd(a1, a2, ones, 0, ao, o.i1, o.i2, o.io, n0, n1, p1, p2, p3, 0, mul,
                            coef)
                    else:
                        fwd(a1, a2, aw, wstep, ao, o.i1, o.i2, o.io, n0, n1, p1, p2, p3, wo,
                            mul, coef)

        if o.i2.size:
            run_parts(run, len(parts))
        return torch.from_numpy(ao)

    def backward(self, x1: Any, x2: Any, w: Any, g: Any, need: tuple[bool, bool, bool],
                 weighted_only: bool = False, v: tuple[Any, Any, Any] | None = None
                 ) -> tuple[Any, Any, Any]:
        """The gradients in ``need``; with directions ``v = (v1, v2, vw)`` (None: zero)
        instead their derivative along ``v`` (the double backward: ``bwd_dual_ix``)."""
        n1, n2, nw = need
        nw = nw and w is not None
        a1 = x1.detach().contiguous().numpy()
        a2 = x2.detach().contiguous().numpy()
        ag = g.detach().contiguous().numpy()
        ones = np.ones((1, self.k.cw.max_mul), a1.dtype)
        aw, wstep = weight_rows(w, ones)
        dummy = np.zeros((1, 1), a1.dtype)
        dual = None
        if v is not None:  # the directions, laid out as the inputs (the constant 1: zero)
            dual = tuple(np.zeros(a.shape, a.dtype) if t is None else
                         t.detach().contiguous().numpy().reshape(a.shape)
                         for t, a in zip(v, (a1, a2, aw), strict=True)) + (np.zeros_like(ones),)
            bound = self.k.bound(a1.dtype, weighted_only, ("bwd_dual_ix",))
        else:
            bound = self.k.bound(a1.dtype, weighted_only)
        ag1 = np.zeros_like(a1) if n1 else dummy
        ag2 = np.zeros_like(a2) if n2 else dummy
        gw_rows = None
        if n1:  # node gradient: each sender's edges, by one thread
            self._pass(self.graph.by_sender, bound, a1, a2, aw, wstep, ag, ones,
                       (ag1, dummy, lambda c: dummy), (True, False, False), dual)
        if n2 or nw:  # edge gradients: rows of their own edges
            o = self.graph.by_receiver
            if nw and wstep:
                gw_all = np.zeros_like(aw)

                def gw_of(c: int) -> np.ndarray:
                    return gw_all
            elif nw:  # shared weights: a partial sum per chunk, summed in chunk order
                gw_rows = np.zeros((o.chunks.size - 1, 1, aw.shape[1]), a1.dtype)

                def gw_of(c: int) -> np.ndarray:
                    return gw_rows[c]
            else:
                def gw_of(c: int) -> np.ndarray:
                    return dummy
            self._pass(o, bound, a1, a2, aw, wstep, ag, ones, (dummy, ag2, gw_of),
                       (False, n2, nw), dual)
        gw = None
        if nw:
            gw = torch.from_numpy(gw_all if wstep else
                                  gw_rows.sum(axis=0).reshape(w.shape))
        return (torch.from_numpy(ag1) if n1 else None, torch.from_numpy(ag2) if n2 else None,
                gw)

    def _pass(self, o: _Order, bound: list[tuple[Any, ...]], a1: np.ndarray, a2: np.ndarray,
              aw: np.ndarray, wstep: int, ag: np.ndarray, ones: np.ndarray,
              outs: tuple[Any, Any, Any], need: tuple[bool, bool, bool],
              dual: tuple[np.ndarray, ...] | None = None) -> None:
        """One backward pass over the edges in order ``o``: into ``outs = (gx1, gx2,
        gw_of(chunk))`` for the gradients in ``need``; with ``dual = (v1, v2, vw, v_ones)``
        their derivative along those directions (``bound``: the ``bwd_dual_ix`` kernels)."""
        if not o.i2.size:
            return
        g1, g2, gw_of = outs
        need1, need2, needw = need
        parts = self._parts(o)
        dummy = np.zeros((1, 1), a1.dtype)

        def run(t: int) -> None:
            c0, c1 = parts[t]
            for c in range(c0, c1):
                n0, n1 = int(o.chunks[c]), int(o.chunks[c + 1])
                gwc = gw_of(c)
                if dual is not None:
                    v1, v2, vw, v0 = dual
                    for kern, p1, p2, p3, wo, mul, coef in bound:
                        if wo < 0:  # unweighted: the constant 1, direction 0
                            kern(a1, a2, ones, 0, ag, v1, v2, v0, o.i1, o.i2, o.io, n0, n1, p1,
                                 p2, p3, 0, mul, coef, g1, g2, dummy, need1, need2, False)
                        else:
                            kern(a1, a2, aw, wstep, ag, v1, v2, vw, o.i1, o.i2, o.io, n0, n1,
                                 p1, p2, p3, wo, mul, coef, g1, g2, gwc, need1, need2, needw)
                    continue
                for _, bwd, p1, p2, p3, wo, mul, coef in bound:
                    if wo < 0:  # unweighted: no weight gradient
                        bwd(a1, a2, ones, 0, ag, o.i1, o.i2, o.io, n0, n1, p1, p2, p3, 0, mul,
                            coef, g1, g2, dummy, need1, need2, False)
                    else:
                        bwd(a1, a2, aw, wstep, ag, o.i1, o.i2, o.io, n0, n1, p1, p2, p3, wo,
                            mul, coef, g1, g2, gwc, need1, need2, needw)

        run_parts(run, len(parts))
