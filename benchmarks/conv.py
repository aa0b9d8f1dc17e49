"""The ``conv`` suite: the tensor-product convolution (message passing) on graphs of real shape.

``out[i] = sum over edges e with receivers[e] == i of TP(x_nodes[senders[e]], x_edges[e],
weights[e])`` (:func:`tp_spec.reference.conv`) on a periodic box of atoms at liquid density
(:mod:`benchmarks.graphs`), with ``x_edges`` the spherical harmonics of the edge directions
(component normalization) and per-edge weights (a radial MLP's output in the models; random
here).

Workloads (op ``conv-<family>``; the subjects are in :mod:`benchmarks.conv_subjects`):

* ``mace-large`` / ``mace-medium``: ``128x(0e+1o+2e)`` / ``64x(0e+1o+2e)`` nodes times
  ``Y(l<=3) = 0e+1o+2e+3o``, channelwise (``uvu``). As MACE's ``InteractionBlock``, every output
  irrep ``ir1 x ir2 -> ir3`` is kept whose ``ir3`` is in the target irreps; the target here is
  ``0e+1o+2e+3o`` (the irreps of the edge attributes: MACE's ``target_irreps`` of the
  conv is ``(sh_irreps x num_features)`` filtered to ``l <= max_ell``), so ``1e``, ``2o``,
  ``3e`` and every ``l > 3`` are dropped: 17 paths, 17 ``(mul, ir)`` output segments.
* ``nequip``: ``32x(0e+1o+2e)`` times ``0e+1o+2e``, ``uvu``, outputs filtered to ``0e+1o+2e``
  (the feature irreps).
* ``gtp-grid`` / ``mtp``: ``32x(0e+1o+2e)`` times ``0e+1o+2e``, the GTP and the MTP of every
  reachable output (no weights: these families have none per path).

Default graph: 1,000 atoms, mean degree about 28 (about 28,000 edges; ``--nodes``/``--degree``
change it). ``batch`` in the records is the edge count (the number of products).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
import tp_spec

from .graphs import WATER_DENSITY, Graph, edge_features, periodic_graph

__all__ = ["CHECK_NODES", "CONV_PROBLEMS", "ConvWorkload", "conv_workloads"]

#: Output rows compared with :func:`tp_spec.reference.conv` (the reference runs on the edges
#: into these nodes only).
CHECK_NODES = 6
DEFAULT_NODES = 1000
DEFAULT_DEGREE = 30.0

#: (name, family, irreps_in1, irreps_in2, output filter (cgtp uvu) or None)
CONV_PROBLEMS: tuple[tuple[str, str, str, str, str | None], ...] = (
    ("mace-large", "cgtp", "128x0e+128x1o+128x2e", "0e+1o+2e+3o", "0e+1o+2e+3o"),
    ("mace-medium", "cgtp", "64x0e+64x1o+64x2e", "0e+1o+2e+3o", "0e+1o+2e+3o"),
    ("nequip", "cgtp", "32x0e+32x1o+32x2e", "0e+1o+2e", "0e+1o+2e"),
    ("gtp-grid", "gtp", "32x0e+32x1o+32x2e", "0e+1o+2e", None),
    ("mtp", "mtp", "32x0e+32x1o+32x2e", "0e+1o+2e", None),
)


@lru_cache(maxsize=4)
def _graph(n_nodes: int, mean_degree: float, density: float, seed: int) -> Graph:
    return periodic_graph(n_nodes, mean_degree, density, seed=seed)


@dataclass(frozen=True)
class ConvWorkload:
    """One convolution: a descriptor on one graph. Read by :func:`benchmarks.runner.run`
    through ``inputs``, ``check``, ``cost`` and ``engine``."""

    name: str
    family: str
    irreps_in1: str
    irreps_in2: str
    irreps_out: str | None
    n_nodes: int = DEFAULT_NODES
    mean_degree: float = DEFAULT_DEGREE
    density: float = WATER_DENSITY
    graph_seed: int = 0
    suite: str = "conv"
    L: int | None = None
    per_sample_weights: bool = True
    tags: tuple[str, ...] = field(default=(), compare=False)

    @property
    def op(self) -> str:
        return f"conv-{self.family}"

    @property
    def mode(self) -> str:
        return "uvu" if self.family == "cgtp" else "-"

    @cached_property
    def descriptor(self) -> Any:
        if self.family == "cgtp":
            return tp_spec.cgtp(self.irreps_in1, self.irreps_in2, self.irreps_out, mode="uvu")
        if self.family in ("gtp", "mtp"):
            return getattr(tp_spec, self.family)(self.irreps_in1, self.irreps_in2,
                                                 self.irreps_out)
        raise ValueError(f"unknown conv family {self.family!r}; expected cgtp, gtp or mtp")

    @property
    def graph(self) -> Graph:
        return _graph(self.n_nodes, self.mean_degree, self.density, self.graph_seed)

    @property
    def batch(self) -> int:
        """Products per call: the edge count."""
        return self.graph.n_edges

    @property
    def channels(self) -> int:
        return max(m for m, _ in tp_spec.Irreps(self.irreps_in1))

    def key(self) -> tuple[Any, ...]:
        return (self.suite, self.name, self.op, self.n_nodes, self.mean_degree)

    def as_dict(self) -> dict[str, Any]:
        d = self.descriptor
        return {
            "suite": self.suite, "name": self.name, "op": self.op, "L": self.L,
            "batch": self.batch, "channels": self.channels, "mode": self.mode,
            "irreps_in1": str(d.irreps_in1), "irreps_in2": str(d.irreps_in2),
            "irreps_out": str(d.irreps_out), "n_paths": len(d.paths),
            "weight_numel": int(d.weight_numel), "per_sample_weights": self.per_sample_weights,
            "graph": {**self.graph.summary(), "seed": self.graph_seed,
                      "target_mean_degree": self.mean_degree},
        }

    # -------------------------------------------------------------- runner hooks
    def inputs(self, seed: int) -> list[np.ndarray]:
        """``[x_nodes (N, dim1), x_edges (E, dim2)]`` plus ``weights (E, numel)`` when the
        descriptor has weights; float64 (the engine casts)."""
        d, g = self.descriptor, self.graph
        rng = np.random.default_rng(seed)
        args = [rng.standard_normal((g.n_nodes, d.irreps_in1.dim)),
                edge_features(g, d.irreps_in2)]
        if d.weight_numel:
            args.append(rng.standard_normal((g.n_edges, d.weight_numel)))
        return args

    def reference_rows(self, args: list[np.ndarray], rows: int = CHECK_NODES) -> np.ndarray:
        """:func:`tp_spec.reference.conv` at nodes ``0..rows-1`` (from their incoming edges)."""
        from tp_spec import reference

        g = self.graph
        sel = g.receivers < rows
        w = args[2][sel] if len(args) > 2 else None
        out = reference.conv(self.descriptor, args[0], args[1][sel], w,
                                     g.senders[sel], g.receivers[sel])
        return out[:rows]

    def check(self, args: list[np.ndarray], out: np.ndarray, tol: float) -> dict[str, Any]:
        """Compare rows ``0..CHECK_NODES-1`` of a forward output with the reference:
        ``rel_err = max|out - ref| / max|ref|``."""
        ref = self.reference_rows(args)
        out = np.asarray(out)
        if out.shape != (self.graph.n_nodes, self.descriptor.irreps_out.dim):
            return {"ok": False, "rel_err": None, "tol": tol, "batch": CHECK_NODES,
                    "error": f"output shape {out.shape} != ({self.graph.n_nodes}, "
                             f"{self.descriptor.irreps_out.dim})"}
        scale = max(float(np.max(np.abs(ref))), 1e-30)
        rel = float(np.max(np.abs(out[:CHECK_NODES] - ref))) / scale
        return {"ok": bool(np.isfinite(rel) and rel <= tol), "rel_err": rel, "tol": tol,
                "batch": CHECK_NODES, "rows": "nodes 0..5 of the full graph"}

    def cost(self, method: str | None) -> dict[str, Any]:
        """tp_spec's convolution cost models: minimal FLOPs, the method's FLOPs, the forward's
        bytes fused and materialized (float32), the materialized intermediate memory."""
        from tp_spec import cost

        d, n, e = self.descriptor, self.graph.n_nodes, self.graph.n_edges

        def safe(f: Any) -> Any:
            try:
                return int(f())
            except Exception:
                return None

        return {
            "flops_min": safe(lambda: cost.conv_flops(d, n, e)),
            "flops_method": safe(lambda: cost.conv_flops(d, n, e, method)) if method else None,
            "bytes_min": safe(lambda: cost.conv_bytes_moved(d, n, e, 4, materialized=False)),
            "bytes_materialized": safe(lambda: cost.conv_bytes_moved(d, n, e, 4,
                                                                     materialized=True)),
            "intermediate_bytes_materialized": safe(
                lambda: cost.conv_intermediate_bytes(d, e, 4, materialized=True)),
            "expressivity": safe(lambda: tp_spec.expressivity(d)),
        }

    def engine(self, framework: str, device: str) -> Any:
        """The pass engine bound to this graph (:mod:`benchmarks.conv_passes`)."""
        from .conv_passes import conv_engine

        return conv_engine(framework, device, self.graph.senders, self.graph.receivers)


def conv_workloads(n_nodes: int | None = None, mean_degree: float | None = None,
                   families: tuple[str, ...] = ("cgtp", "gtp", "mtp"),
                   names: tuple[str, ...] | None = None) -> list[ConvWorkload]:
    """The suite's workloads (module docstring), cheapest first, on one graph."""
    out = []
    for name, family, in1, in2, filt in CONV_PROBLEMS:
        if family not in families or (names and name not in names):
            continue
        out.append(ConvWorkload(name, family, in1, in2, filt, n_nodes or DEFAULT_NODES,
                                mean_degree or DEFAULT_DEGREE))
    order = {"nequip": 0, "gtp-grid": 1, "mtp": 2, "mace-medium": 3, "mace-large": 4}
    return sorted(out, key=lambda w: order.get(w.name, 9))
