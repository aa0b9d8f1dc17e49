"""Deterministic atomistic graphs for the convolution benchmarks (NumPy only, no downloads).

Atoms sit on a jittered simple cubic lattice with vacancies in a periodic cubic box at a given
number density (default 0.1 atoms / A^3, liquid water counting every atom); the neighbour list
holds every ordered pair closer than a cutoff chosen so that the mean degree is a target
(``cutoff = (3 k / (4 pi rho))^(1/3)``: 4.15 A for k = 30 at rho = 0.1), found with minimum-image
displacements in an O(n^2) NumPy pass (blocks of rows; about 1 s for 5,000 atoms).

Edge ``e`` carries a message from ``senders[e]`` to ``receivers[e]``; its vector is
``r[receivers[e]] - r[senders[e]]`` (minimum image), as in MACE's ``get_edge_vectors``. Edges
are sorted by sender, then receiver (the order of a cell-list neighbour list such as
matscipy's); both directions of each pair are present.

>>> g = periodic_graph(200, mean_degree=20.0, seed=0)
>>> g.n_nodes, g.n_edges == g.senders.size == g.vectors.shape[0]
(200, True)
>>> 15 <= g.degree_stats()["mean"] <= 25
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Graph", "cutoff_for_degree", "edge_features", "periodic_graph"]

#: Atoms per A^3 of liquid water (3 atoms per molecule, 0.0334 molecules / A^3).
WATER_DENSITY = 0.1


@dataclass(frozen=True, eq=False)
class Graph:
    """A periodic neighbour graph.

    ``positions (n_nodes, 3)`` in ``[0, box)^3``, ``senders``/``receivers (n_edges,)`` int64,
    ``vectors (n_edges, 3)`` = minimum-image ``r[receiver] - r[sender]``, all ``|v| < cutoff``.
    """

    positions: np.ndarray
    box: float
    cutoff: float
    senders: np.ndarray
    receivers: np.ndarray
    vectors: np.ndarray

    @property
    def n_nodes(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.senders.size)

    def degree_stats(self) -> dict[str, float]:
        """Incoming edges per node: ``mean``, ``min``, ``max`` (equal to the outgoing ones:
        the list is symmetric)."""
        deg = np.bincount(self.receivers, minlength=self.n_nodes)
        return {"mean": float(deg.mean()), "min": int(deg.min()), "max": int(deg.max())}

    def summary(self) -> dict[str, Any]:
        """JSON-ready description: sizes, box, cutoff and degrees."""
        return {"n_nodes": self.n_nodes, "n_edges": self.n_edges, "box_A": round(self.box, 4),
                "cutoff_A": round(self.cutoff, 4),
                "density": round(self.n_nodes / self.box**3, 5),
                "degree": self.degree_stats()}


def cutoff_for_degree(mean_degree: float, density: float) -> float:
    """The radius whose ball holds ``mean_degree`` atoms on average at ``density``."""
    return (3.0 * mean_degree / (4.0 * math.pi * density)) ** (1.0 / 3.0)


def _positions(n: int, box: float, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct sites of the smallest ``m^3`` lattice that has ``n`` sites, each moved by
    a Gaussian of ``jitter`` lattice spacings per axis, wrapped into the box."""
    m = math.ceil(round(n ** (1.0 / 3.0), 9))
    m += m**3 < n
    a = box / m
    sites = np.sort(rng.choice(m**3, size=n, replace=False))
    grid = np.stack(np.unravel_index(sites, (m, m, m)), axis=1).astype(np.float64)
    pos = (grid + 0.5) * a + rng.normal(0.0, jitter * a, size=(n, 3))
    return np.mod(pos, box)


def _neighbours(pos: np.ndarray, box: float, cutoff: float, block: int = 256
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ordered pair ``(s, r)``, ``s != r``, with minimum-image distance ``< cutoff``:
    ``(senders, receivers, vectors)`` sorted by sender, then receiver."""
    n = pos.shape[0]
    s_parts, r_parts, v_parts = [], [], []
    c2 = cutoff * cutoff
    for b in range(0, n, block):
        rows = np.arange(b, min(b + block, n))
        diff = pos[None, :, :] - pos[rows, None, :]  # (rows, n, 3): r[receiver] - r[sender]
        diff -= box * np.round(diff / box)
        d2 = np.einsum("ijk,ijk->ij", diff, diff)
        d2[np.arange(rows.size), rows] = np.inf  # no self-loops
        i, j = np.nonzero(d2 < c2)  # row-major: sorted by sender, then receiver
        s_parts.append(rows[i])
        r_parts.append(j)
        v_parts.append(diff[i, j])
    return (np.concatenate(s_parts).astype(np.int64), np.concatenate(r_parts).astype(np.int64),
            np.concatenate(v_parts))


def periodic_graph(n_nodes: int = 1000, mean_degree: float = 30.0,
                   density: float = WATER_DENSITY, jitter: float = 0.15,
                   seed: int = 0) -> Graph:
    """Atoms at ``density`` in a periodic cube and their neighbour list (module docstring).

    ``mean_degree`` sets the cutoff; it must stay below half the box (minimum image), else
    ``ValueError``. Same arguments, same graph (bit for bit)."""
    if isinstance(n_nodes, bool) or not isinstance(n_nodes, int) or n_nodes < 2:
        raise ValueError(f"n_nodes must be an int >= 2, got {n_nodes!r}")
    if not (mean_degree > 0 and density > 0 and jitter >= 0):
        raise ValueError(f"need mean_degree > 0, density > 0, jitter >= 0; got {mean_degree}, "
                         f"{density}, {jitter}")
    box = (n_nodes / density) ** (1.0 / 3.0)
    cutoff = cutoff_for_degree(mean_degree, density)
    if cutoff >= box / 2:
        raise ValueError(f"cutoff {cutoff:.3g} A (mean degree {mean_degree}) is not below half "
                         f"the box ({box:.3g} A, {n_nodes} atoms): the minimum image would miss "
                         "neighbours; use more atoms or a smaller degree")
    rng = np.random.default_rng(seed)
    pos = _positions(n_nodes, box, jitter, rng)
    senders, receivers, vectors = _neighbours(pos, box, cutoff)
    return Graph(pos, box, cutoff, senders, receivers, vectors)


def edge_features(graph: Graph, irreps: Any) -> np.ndarray:
    """``(n_edges, irreps.dim)`` spherical harmonics of the edge directions, e3nn's
    ``spherical_harmonics(irreps, v, normalize=True, normalization="component")``."""
    from tp_spec import spherical_harmonics

    return spherical_harmonics(irreps, graph.vectors, normalization="component", normalize=True)
