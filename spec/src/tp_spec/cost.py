"""Analytic FLOP and byte models of every tensor product and method.

Conventions: a multiply-add (MAC) counts 2 FLOPs; counts are for the forward pass of ``batch``
samples; fixed path coefficients are folded into the coupling tables (not counted). Per path,
``P`` is the number of channel products of its mode (``m1 * m2`` for ``uvw, uvu, uvv, uvuv``,
``m1`` for ``uuw, uuu``), ``dim_l = 2l + 1``, ``nnz(C)`` the nonzero entries of
:func:`tp_spec.clebsch_gordan`, and the weight contraction of a weighted path costs
``2 * dim_l3 * prod(weight_shape)`` (one MAC per weight and output component).

**Minimal count** (``method=None``): nonzero coupling coefficients only::

    sum_paths [2 * nnz(C) * P + weight contraction]  (+ per-degree scaling for GTP/MTP)

For GTP/MTP/VSTP the paths are those of the emulating CGTP (``d.as_cgtp()``) without weights;
per-degree weights add ``dim(in1) + dim(in2) + dim(out)`` (one multiply per component, counted
as 1 FLOP, per sample).

**CGTP methods**: ``"sparse"`` = the minimal count; ``"dense"`` and ``"fused"`` replace
``nnz(C)`` by the dense block size ``dim_l1 * dim_l2 * dim_l3``; ``"oeq"`` = :func:`flops_oeq`.

**GTP methods** (:func:`tp_spec.plan.gtp.flops_grid`, :func:`tp_spec.plan.gtp.flops_fourier`;
per channel, as planned: the degrees ``(L1, L2, Lo)`` of :func:`tp_spec.plan.gtp.degrees`,
``(nt, np)`` the grid of ``s2grid_for(L1, L2, Lo)``, ``dim_q`` = components per channel of
parity class ``q`` up to those degrees, ``C`` channels, ``C2`` channels of ``x2``):

* ``"gaunt"``: dense Gaunt blocks, ``sum_paths 2 * dim_l1 dim_l2 dim_l3 * P``.
* ``"grid"``: per input class used: per-``m`` Legendre step ``2 * nt * dim_q`` plus ``nt`` real
  FFTs of length ``np``; per class pair a pointwise MAC ``2 * nt * np``; per output class an
  FFT step ``nt * fft_real(np)`` and a Legendre projection ``2 * nt * dim_q``. Inputs count
  ``C`` (resp. ``C2``) times, products and outputs ``C`` times.
* ``"fourier"``: per input class used: the dense SH -> Fourier GEMM ``2 (L+1)^2 * 2 m^2``
  (``m = 2L + 1``, onto the real and imaginary parts) and one 2D complex FFT of size ``N x N``
  (``N = 2 (L1 + L2) + 1``); per class pair a complex MAC ``8 N^2``; per output class an
  inverse 2D FFT and the projection GEMM ``2 * 2 N^2 (Lo+1)^2`` (from the real and imaginary
  parts).

FFT constants: complex length ``N``: ``fft_complex(N) = 5 N log2 N``; real input:
``fft_real(N) = 2.5 N log2 N``; 2D ``N x N`` complex: ``5 N^2 log2(N^2)``.

**MTP methods** (:func:`tp_spec.plan.mtp.flops_mtp`; per sample, as planned by
:mod:`tp_spec.plan.mtp` with the default tuning;
``n = 2 lt + 1``, ``C`` channels of ``x1``, ``C2`` of ``x2``): an embedding GEMM of ``K`` rows
into ``s`` matrices costs ``2 K s n^2`` per channel, an ``n x n`` product ``2 n^3`` per channel,
a read-out GEMM onto ``K`` rows ``2 n^2 K`` per channel and read class; the elementwise sums
(``X +- X'``, ``P +- Q``, accumulated pairs) are not counted. Products: 2 with all four parity
pairs (``[P, Q]``) or in the transpose regime (``X1 X2`` and ``X2 X1``), else one per parity pair.

* ``"dense"``: per input, ``K = (L+1)^2`` (every degree up to the largest used, absent ones as
  zero rows) and ``s = 2`` (``[X, X']``) with all four pairs, else one matrix per parity used;
  read-out ``K = (Lo+1)^2`` per output parity.
* ``"sparse"``: per input, ``K`` = the used features of one channel (with one channel every
  feature of the input: the gather is folded into the GEMM) and ``s = 1`` in the transpose
  regime, else as dense; read-out ``K`` = the output components of one channel.
* Both: with one channel and all four pairs (no transpose regime) the read-out is one GEMM
  from ``[P, Q]``: ``2 * 2 n^2 * dim_out``. The count of the transpose regime is tp_torch's
  (and NumPy's) read-out; tp_jax reads one channel from ``[X1 X2, X2 X1]`` with one GEMM,
  ``2 * 2 n^2 * dim_out``.

**VSTP method** ``"grid"`` (:func:`tp_spec.plan.vstp.flops_grid`; per channel, dense
transforms on the ``npts`` points of ``s2grid_for(*d.field_degrees())``): the field GEMMs
``2 n * 6 npts`` per input (``n`` its nonscalar components per channel; ``C``, resp. ``C2``
times), four cross products ``36 npts`` and their two sums ``6 npts``, the projection GEMM
``2 * 6 npts * dim_out / C``, the scalar products ``6``.

**Convolution** (:func:`tp_spec.reference.conv`, ``N`` nodes, ``E`` edges): the product on
``E`` samples plus one add per message entry (``E * dim_out``). Bytes and intermediate memory
come in two forms: *materialized* (gather the senders' rows into an ``(E, dim1)`` array,
compute the ``(E, dim_out)`` messages, scatter-add them: what e3nn-style code does) and
*fused* (each edge's message is summed into its receiver as it is computed: nothing of size
``E x dim_out`` exists).

>>> import tp_spec as spec
>>> d = spec.cgtp("0e", "0e", "0e", mode="uvw")
>>> flops(d, 1), flops_oeq(d, 1), bytes_moved(d, 1, 4)   # 1 MAC CG + 1 MAC weight
(4, 4, 16)
"""

from __future__ import annotations

import math
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from .errors import InstructionError
from .irreps import parity_class

if TYPE_CHECKING:
    from .descriptor import Path, TensorProductDescriptor

__all__ = [
    "MODELS",
    "bytes_moved",
    "conv_bytes_moved",
    "conv_flops",
    "conv_intermediate_bytes",
    "fft_complex",
    "fft_real",
    "flops",
    "flops_oeq",
    "nnz_cg",
]

#: The FLOP models that need only the descriptor, per kind (``"gaunt"``: the dense Gaunt
#: contraction). The counts of the GTP and MTP methods follow their plans:
#: :func:`tp_spec.plan.flops` (each method's ``Method.flops``).
MODELS = {
    "cgtp": ("sparse", "dense", "fused", "oeq"),
    "gtp": ("gaunt",),
    "mtp": (),
    "vstp": (),
}


@cache
def nnz_cg(l1: int, l2: int, l3: int) -> int:
    """Number of nonzero entries of :func:`tp_spec.clebsch_gordan` ``(l1, l2, l3)``."""
    from .clebsch_gordan import clebsch_gordan

    return int(np.count_nonzero(clebsch_gordan(l1, l2, l3)))


def fft_complex(n: int) -> float:
    """FLOPs of a complex FFT of length ``n``: ``5 n log2 n`` (0 for ``n <= 1``)."""
    return 5.0 * n * math.log2(n) if n > 1 else 0.0


def fft_real(n: int) -> float:
    """FLOPs of a real-input FFT of length ``n``: ``2.5 n log2 n``."""
    return fft_complex(n) / 2


def _channel_products(p: Path) -> int:
    return p.mul_in1 if p.mode in ("uuw", "uuu") else p.mul_in1 * p.mul_in2


def _weight_contraction(p: Path) -> int:
    return 2 * p.ir_out.dim * p.weight_numel if p.has_weight else 0


def _path_flops(p: Path, dense: bool, weights: bool = True) -> int:
    table = p.ir_in1.dim * p.ir_in2.dim * p.ir_out.dim if dense else nnz_cg(*p.lll)
    return 2 * table * _channel_products(p) + (_weight_contraction(p) if weights else 0)


def flops_oeq(d: TensorProductDescriptor, batch: int) -> int:
    """OpenEquivariance's forward model on the emulating CGTP:
    ``batch * sum_paths [3 * nnz(C) * P + dim_l3 * prod(weight_shape)]`` (``P = m1 * m2`` for
    the ``uvu``/``uvw`` problems it supports; unweighted paths contribute no weight term)."""
    total = 0
    for p in d.as_cgtp().paths:
        total += 3 * nnz_cg(*p.lll) * _channel_products(p) + p.ir_out.dim * p.weight_numel
    return batch * total


def per_degree_flops(d: TensorProductDescriptor) -> int:
    if getattr(d, "per_degree_weights", False):
        return d.irreps_in1.dim + d.irreps_in2.dim + d.irreps_out.dim
    return 0


def class_dims(d: TensorProductDescriptor, which: str, key: str) -> dict[int, int]:
    """Components per channel of each parity class (``key="class"``) or parity (``"parity"``)."""
    irreps = {"in1": d.irreps_in1, "in2": d.irreps_in2, "out": d.irreps_out}[which]
    out = {1: 0, -1: 0}
    for _, ir in irreps:
        q = parity_class(ir) if key == "class" else ir.p
        out[q] += ir.dim
    return out


def class_degrees(d: TensorProductDescriptor, which: str, q: int) -> list[int]:
    irreps = {"in1": d.irreps_in1, "in2": d.irreps_in2, "out": d.irreps_out}[which]
    return [ir.l for _, ir in irreps if parity_class(ir) == q]


def flops(d: TensorProductDescriptor, batch: int = 1, method: str | None = None) -> int:
    """FLOPs of ``d`` for ``batch`` samples with the model ``method`` of :data:`MODELS` (module
    docstring); ``None`` gives the minimal count. Raises :class:`InstructionError` for another
    name (a planned method's count: :func:`tp_spec.plan.flops`)."""
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 0:
        raise ValueError(f"batch must be a non-negative int, got {batch!r}")
    kind = d.kind
    if method is not None and method not in MODELS.get(kind, ()):
        raise InstructionError(
            f"no descriptor-level FLOP model {method!r} for a {kind} (known: "
            f"{MODELS.get(kind, ())}); the count of a method as planned is "
            "tp_spec.plan.flops(d, batch, method)")
    if kind == "cgtp":
        if method == "oeq":
            return flops_oeq(d, batch)
        dense = method in ("dense", "fused")
        return batch * sum(_path_flops(p, dense) for p in d.paths)
    dense = method == "gaunt"
    per = sum(_path_flops(p, dense, weights=False) for p in d.paths)
    return int(round(batch * (per + per_degree_flops(d))))


def bytes_moved(d: TensorProductDescriptor, batch: int = 1, itemsize: int = 4) -> int:
    """Minimal bytes moved: ``itemsize * (batch * (dim1 + dim2 + dim_out) + weight_numel)``
    (inputs read once, output written once, shared weights read once)."""
    for name, value, low in (("batch", batch, 0), ("itemsize", itemsize, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    dims = d.irreps_in1.dim + d.irreps_in2.dim + d.irreps_out.dim
    return int(itemsize * (batch * dims + d.weight_numel))


def _sizes(**values: int) -> None:
    for name, value in values.items():
        low = 1 if name == "itemsize" else 0
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def conv_flops(d: TensorProductDescriptor, n_nodes: int, n_edges: int,
               method: str | None = None) -> int:
    """FLOPs of the convolution of ``d`` (module docstring): :func:`flops` of ``n_edges``
    products (model ``method``) plus ``n_edges * dim_out`` adds into the receivers."""
    _sizes(n_nodes=n_nodes, n_edges=n_edges)
    return flops(d, n_edges, method) + n_edges * d.irreps_out.dim


def conv_bytes_moved(d: TensorProductDescriptor, n_nodes: int, n_edges: int,
                     itemsize: int = 4, *, materialized: bool, per_edge_weights: bool = True,
                     index_itemsize: int = 8) -> int:
    """Bytes of the convolution's forward pass: the edge inputs, the indices and the weights
    read once, the output written once, and a node row read once per edge (fused) or gathered
    into an ``(E, dim1)`` array, written and read back, with the ``(E, dim_out)`` messages
    written and read back (``materialized``)."""
    _sizes(n_nodes=n_nodes, n_edges=n_edges, itemsize=itemsize)
    d1, d2, do = d.irreps_in1.dim, d.irreps_in2.dim, d.irreps_out.dim
    w = d.weight_numel * (n_edges if per_edge_weights else 1)
    base = itemsize * (n_edges * (d1 + d2) + w + n_nodes * do) + index_itemsize * 2 * n_edges
    if materialized:
        base += itemsize * n_edges * (2 * d1 + 2 * do)
    return int(base)


def conv_intermediate_bytes(d: TensorProductDescriptor, n_edges: int, itemsize: int = 4, *,
                            materialized: bool) -> int:
    """Memory of the forward pass beyond its inputs and output: the gathered sender rows and
    the messages, ``itemsize * E * (dim1 + dim_out)``, when ``materialized``; none fused."""
    _sizes(n_edges=n_edges, itemsize=itemsize)
    if not materialized:
        return 0
    return int(itemsize * n_edges * (d.irreps_in1.dim + d.irreps_out.dim))
