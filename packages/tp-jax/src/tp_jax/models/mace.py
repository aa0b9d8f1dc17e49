"""A MACE-style interatomic potential in Flax (linen) on tp_jax's layers.

Per interaction ``t`` (node features ``h``, species ``z``, edges ``s -> r`` with vectors
``v = pos[r] - pos[s] + shift``)::

    skip = IndexedLinear(h, z)                                      -> hidden
    m    = TensorProductConv_uvu(Linear(h), Y(v), MLP(|v|)) / avg_num_neighbors
    B    = SymmetricContraction(Linear(m) -> k x (0e + 1o + ... + max_ell), z)   -> hidden
    h    = Linear(B) + skip,          E_atom += Linear_readout(h) -> 0e

``h`` starts as a linear embedding of the one-hot species (``k x 0e``). The total energy of
each graph is the segment sum of the atomic energies; :func:`energy_and_forces` gives the
forces ``-dE/dpos`` by ``jax.grad``. Everything jits; the graph is data (any edge order).

>>> import jax, jax.numpy as jnp
>>> m = MACE(num_species=2, hidden_irreps="4x0e+4x1o", max_ell=2, num_interactions=1)
>>> g = Graph(jnp.array([[0., 0, 0], [1, 0, 0]]), jnp.array([0, 1]), jnp.array([0, 1]),
...           jnp.array([1, 0]), jnp.zeros((2, 3)), jnp.array([0, 0]))
>>> params = m.init(jax.random.PRNGKey(0), g, num_graphs=1)
>>> e, f = energy_and_forces(m, params, g, num_graphs=1)
>>> e.shape, f.shape
((1,), (2, 3))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import tp_spec
from tp_spec import DTypeError, Irreps, ShapeError

from ..flax import IndexedLinear, Linear, SymmetricContraction, TensorProductConv
from .edges import RadialMLP, spherical_harmonics

__all__ = ["MACE", "Graph", "energy_and_forces", "loss_fn"]


class Graph(NamedTuple):
    """One graph or a batch of graphs concatenated (``n`` atoms, ``E`` directed edges).

    positions ``(n, 3)`` float; species ``(n,)`` int in ``[0, num_species)``; senders,
    receivers ``(E,)`` int; shifts ``(E, 3)`` Cartesian periodic shifts (``cell_shift @
    cell``), the edge vector being ``positions[receivers] - positions[senders] + shifts``;
    graph_index ``(n,)`` int, the graph of each atom in ``[0, num_graphs)``.
    """

    positions: jax.Array
    species: jax.Array
    senders: jax.Array
    receivers: jax.Array
    shifts: jax.Array
    graph_index: jax.Array


def check_graph(g: Graph, dtype: Any) -> None:
    """Shapes and dtypes of ``g`` (positions and shifts of the model's ``dtype``, indices
    integer); raises :class:`tp_spec.ShapeError` / :class:`tp_spec.DTypeError`."""
    n, n_edges = g.positions.shape[0], g.senders.shape[0]
    want = {"positions": (n, 3), "species": (n,), "senders": (n_edges,),
            "receivers": (n_edges,), "shifts": (n_edges, 3), "graph_index": (n,)}
    for name, shape in want.items():
        a = getattr(g, name)
        if tuple(a.shape) != shape:
            raise ShapeError(f"{name} must have shape {shape}, got {tuple(a.shape)}")
        integer = name not in ("positions", "shifts")
        if integer and not jnp.issubdtype(a.dtype, jnp.integer):
            raise DTypeError(f"{name} must be an integer array, got {a.dtype}")
        if not integer and a.dtype != jnp.dtype(dtype):
            raise DTypeError(f"{name} must be {jnp.dtype(dtype)} (the model's dtype), got "
                             f"{a.dtype}; nothing is cast")


def _natural(mul: int, lmax: int) -> Irreps:
    """``mul x (0e + 1o + ... + lmax)``."""
    return Irreps(" + ".join(f"{mul}x{l}{'eo'[l % 2]}" for l in range(lmax + 1)))


class Interaction(nn.Module):
    """One MACE interaction and product block: ``(h (n, dim_in), z (n,), sh (E, (max_ell+1)^2),
    r (E,), senders, receivers)`` -> new ``h (n, hidden.dim)``."""

    irreps_in: Irreps
    hidden: Irreps
    max_ell: int
    correlation: int
    num_species: int
    r_max: float
    num_bessel: int
    radial_hidden: Sequence[int]
    avg_num_neighbors: float
    param_dtype: Any
    basis: str

    @nn.compact
    def __call__(self, h, z, sh, r, senders, receivers):
        k = self.hidden[0].mul
        target = _natural(k, self.max_ell)
        conv = tp_spec.cgtp(self.irreps_in, _natural(1, self.max_ell), target, mode="uvu")
        pd = self.param_dtype
        skip = IndexedLinear(self.irreps_in, self.hidden, self.num_species, param_dtype=pd)(h, z)
        up = Linear(self.irreps_in, self.irreps_in, param_dtype=pd)(h)
        w = RadialMLP(self.r_max, self.num_bessel, tuple(self.radial_hidden), conv.weight_numel,
                      param_dtype=pd)(r)
        m = TensorProductConv(conv, param_dtype=pd)(up, sh, senders, receivers, w)
        m = Linear(conv.irreps_out, target, param_dtype=pd)(m / self.avg_num_neighbors)
        b = SymmetricContraction(target, self.hidden, self.correlation, self.num_species,
                                 param_dtype=pd, basis=self.basis)(m, z)
        return Linear(self.hidden, self.hidden, param_dtype=pd)(b) + skip


class MACE(nn.Module):
    """MACE-style potential: ``__call__(graph, num_graphs)`` -> energies ``(num_graphs,)``.

    Attributes: ``num_species``; ``hidden_irreps`` (one multiplicity ``k`` for every irrep,
    e.g. ``"64x0e+64x1o+64x2e"``); ``max_ell`` of the edge spherical harmonics (the messages
    and the product basis input are ``k x (0e + 1o + ... + max_ell)``); ``correlation`` of the
    symmetric contraction; ``num_interactions``; ``r_max`` (cutoff), ``num_bessel`` and
    ``radial_hidden`` of the radial MLP; ``avg_num_neighbors`` (the messages' divisor);
    ``param_dtype``, also the dtype required of positions and shifts; ``product_basis`` of
    the symmetric contraction: ``"reduced"`` (its independent paths only, as e3nn-jax's and
    cuEquivariance's) or ``"mace"`` (MACE's paths and weight shapes, ~3x the weights).
    """

    num_species: int
    hidden_irreps: str = "64x0e+64x1o+64x2e"
    max_ell: int = 3
    correlation: int = 3
    num_interactions: int = 2
    r_max: float = 5.0
    num_bessel: int = 8
    radial_hidden: Sequence[int] = (64, 64, 64)
    avg_num_neighbors: float = 1.0
    param_dtype: Any = jnp.float32
    product_basis: str = "reduced"

    @nn.compact
    def __call__(self, g: Graph, num_graphs: int) -> jax.Array:
        """Args: ``g`` a :class:`Graph` of ``n`` atoms (positions ``[n, 3]``), ``num_graphs``
        (static). Returns the energies ``[num_graphs]``."""
        check_graph(g, self.param_dtype)
        hidden = Irreps(self.hidden_irreps)
        k = hidden[0].mul
        if any(mul != k for mul, _ in hidden) or hidden[0].ir.l != 0 or hidden[0].ir.p != 1:
            raise ShapeError(f"hidden_irreps must start with 0e and share one multiplicity, "
                             f"got {hidden}")
        dtype = jnp.dtype(self.param_dtype)
        vectors = g.positions[g.receivers] - g.positions[g.senders] + g.shifts
        r = jnp.linalg.norm(vectors, axis=-1)
        sh = spherical_harmonics(self.max_ell, vectors)
        onehot = jax.nn.one_hot(g.species, self.num_species, dtype=dtype)
        irreps = Irreps(f"{k}x0e")
        h = Linear(f"{self.num_species}x0e", irreps, param_dtype=dtype)(onehot)
        energy = jnp.zeros(g.positions.shape[0], dtype)
        for _ in range(self.num_interactions):
            h = Interaction(irreps, hidden, self.max_ell, self.correlation, self.num_species,
                            self.r_max, self.num_bessel, tuple(self.radial_hidden),
                            self.avg_num_neighbors, dtype, self.product_basis)(
                h, g.species, sh, r, g.senders, g.receivers)
            irreps = hidden
            energy = energy + Linear(hidden, "0e", param_dtype=dtype)(h)[:, 0]
        return jax.ops.segment_sum(energy, g.graph_index, num_segments=num_graphs)


def energy_and_forces(model: nn.Module, params: Any, g: Graph, num_graphs: int
                      ) -> tuple[jax.Array, jax.Array]:
    """Energies ``(num_graphs,)`` and forces ``-dE/dpositions`` ``(n, 3)`` of ``model``."""

    def total(pos: jax.Array) -> tuple[jax.Array, jax.Array]:
        e = model.apply(params, g._replace(positions=pos), num_graphs)
        return jnp.sum(e), e

    grad, e = jax.grad(total, has_aux=True)(g.positions)
    return e, -grad


def loss_fn(model: nn.Module, params: Any, g: Graph, num_graphs: int, energy: jax.Array,
            forces: jax.Array, force_weight: float = 1.0) -> jax.Array:
    """``mean((E - energy)^2 / n_atoms^2) + force_weight * mean((F - forces)^2)`` with targets
    ``energy (num_graphs,)`` and ``forces (n, 3)``."""
    e, f = energy_and_forces(model, params, g, num_graphs)
    n_atoms = jax.ops.segment_sum(jnp.ones_like(e, shape=g.graph_index.shape), g.graph_index,
                                  num_segments=num_graphs)
    return jnp.mean(((e - energy) / n_atoms) ** 2) + force_weight * jnp.mean((f - forces) ** 2)
