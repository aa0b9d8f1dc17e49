"""NumPy float64 reference implementations: the executable definition of every tensor product.

Written to be read, not to be fast. Every function validates shapes with
:meth:`~tp_spec.TensorProductDescriptor.check_shapes` (same batch shape on both inputs, nothing
broadcast; weights ``(numel,)`` shared or ``(*batch, numel)`` per sample), rejects non-real-
floating inputs with :class:`~tp_spec.errors.DTypeError`, computes in float64 and returns
``(*batch, irreps_out.dim)`` float64.

* :func:`apply` dispatches on the descriptor: CGTP -> :func:`apply_cgtp` (one einsum per path),
  GTP -> :func:`apply_gtp_gaunt` (Gaunt contraction), MTP -> :func:`apply_mtp_matrix`
  (matrix form).
* :func:`apply_gtp_grid` and :func:`apply_gtp_fourier`: the GTP through S2 grids / 2D Fourier
  series, per pair of parity classes.
* :func:`apply_vstp_grid`: the VSTP through vector fields on an S2 grid (what :func:`apply`
  runs for a VSTP; independent of its CGTP emulation).
* :func:`apply_emulated`: any descriptor through its equivalent CGTP (``d.as_cgtp()``).
* :func:`conv`: the tensor-product convolution over the edges of a graph (message passing).

>>> import tp_spec as spec
>>> d = spec.gtp("0e + 1o", "0e + 1o")
>>> x = np.array([0.5, 1.0, 2.0, 3.0])
>>> e0 = np.array([1.0, 0.0, 0.0, 0.0])
>>> apply(d, x, e0)[:4]                      # the constant function is the unit
array([0.5, 1. , 2. , 3. ])
>>> bool(np.allclose(apply(d, x, e0), apply_emulated(d, x, e0)))
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .cgtp import CGTPDescriptor
from .descriptor import Path, TensorProductDescriptor
from .errors import DTypeError, InstructionError
from .gtp import GTPDescriptor, parity_class
from .mtp import MTPDescriptor
from .vstp import VSTPDescriptor

__all__ = [
    "apply",
    "apply_cgtp",
    "apply_emulated",
    "apply_gtp_fourier",
    "apply_gtp_gaunt",
    "apply_gtp_grid",
    "apply_mtp_matrix",
    "apply_vstp_grid",
    "conv",
]


# ----------------------------------------------------------------------------- validation
def _as_real(name: str, a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype not in (np.float32, np.float64):
        raise DTypeError(
            f"{name} must be a float32 or float64 array, got dtype {arr.dtype} "
            "(the reference computes in float64 and converts nothing else implicitly)"
        )
    return arr.astype(np.float64, copy=False)


def _prepare(
    d: TensorProductDescriptor, x1: Any, x2: Any, weights: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[int, ...]]:
    x1 = _as_real("x1", x1)
    x2 = _as_real("x2", x2)
    w = None if weights is None else _as_real("weights", weights)
    batch = d.check_shapes(x1.shape, x2.shape, None if w is None else w.shape)
    return x1, x2, w, batch


def _blocks(x: np.ndarray, irreps: Any) -> list[np.ndarray]:
    """Split ``(..., dim)`` into blocks ``(..., mul, 2l + 1)``."""
    return [x[..., s].reshape(x.shape[:-1] + (mul, ir.dim))
            for s, (mul, ir) in zip(irreps.slices(), irreps, strict=True)]


def _join(blocks: list[np.ndarray], batch: tuple[int, ...]) -> np.ndarray:
    if not blocks:
        return np.zeros(batch + (0,))
    return np.concatenate([b.reshape(batch + (b.shape[-2] * b.shape[-1],)) for b in blocks],
                          axis=-1)


def _zero_blocks(irreps: Any, batch: tuple[int, ...]) -> list[np.ndarray]:
    return [np.zeros(batch + (mul, ir.dim)) for mul, ir in irreps]


# ----------------------------------------------------------------------------- CGTP
def _path_weight(p: Path, w: np.ndarray | None, batch: tuple[int, ...]) -> np.ndarray:
    """The path's weight block, ``(*batch or (), *weight_shape)``; ones if it has no weight."""
    from .descriptor import mode_weight_shape

    if not p.has_weight:
        return np.ones(mode_weight_shape(p.mode, p.mul_in1, p.mul_in2, p.mul_out))
    if p.weight_numel == 0:  # a weighted path between empty blocks: nothing to read
        return np.zeros(p.weight_shape)
    assert w is not None
    block = w[..., p.weight_slice]
    lead = block.shape[:-1]  # () for shared weights, batch for per-sample weights
    return block.reshape(lead + p.weight_shape)


def _cg_path(p: Path, a: np.ndarray, b: np.ndarray, W: np.ndarray) -> np.ndarray:
    """One path (docs/families.md): ``a (..., m1, 2l1+1)``, ``b (..., m2, 2l2+1)`` -> output
    block ``(..., mul_out, 2l3+1)`` (without the coefficient)."""
    from .clebsch_gordan import clebsch_gordan

    C = clebsch_gordan(*p.lll)
    if p.mode == "uvw":
        t = np.einsum("...ui,...vj,ijk->...uvk", a, b, C)
        return np.einsum("...uvw,...uvk->...wk", W, t)
    if p.mode == "uvu":
        t = np.einsum("...ui,...vj,ijk->...uvk", a, b, C)
        return np.einsum("...uv,...uvk->...uk", W, t)
    if p.mode == "uvv":
        t = np.einsum("...ui,...vj,ijk->...uvk", a, b, C)
        return np.einsum("...uv,...uvk->...vk", W, t)
    if p.mode == "uuw":
        t = np.einsum("...ui,...uj,ijk->...uk", a, b, C)
        return np.einsum("...uw,...uk->...wk", W, t)
    if p.mode == "uuu":
        t = np.einsum("...ui,...uj,ijk->...uk", a, b, C)
        return W[..., :, None] * t
    if p.mode == "uvuv":
        t = np.einsum("...ui,...vj,ijk->...uvk", a, b, C)
        t = W[..., :, :, None] * t
        return t.reshape(t.shape[:-3] + (p.mul_out, C.shape[2]))
    raise InstructionError(f"unknown connection mode {p.mode!r}")  # pragma: no cover


def apply_cgtp(d: CGTPDescriptor, x1: Any, x2: Any, weights: Any = None) -> np.ndarray:
    """CGTP: every path adds ``coefficient * W . C . x1[i_in1] . x2[i_in2]`` to ``out[i_out]``.

    >>> import tp_spec as spec
    >>> d = spec.cgtp("1o", "1o", "1e", instructions=[(0, 0, 0, "uuu", False)])
    >>> apply_cgtp(d, np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))  # x cross y = z (times 1/sqrt2)
    array([0.        , 0.        , 0.70710678])
    """
    x1, x2, w, batch = _prepare(d, x1, x2, weights)
    a, b = _blocks(x1, d.irreps_in1), _blocks(x2, d.irreps_in2)
    out = _zero_blocks(d.irreps_out, batch)
    for p in d.paths:
        out[p.i_out] = out[p.i_out] + p.coefficient * _cg_path(
            p, a[p.i_in1], b[p.i_in2], _path_weight(p, w, batch))
    return _join(out, batch)


def apply_emulated(
    d: TensorProductDescriptor, x1: Any, x2: Any, weights: Any = None
) -> np.ndarray:
    """``apply_cgtp(d.as_cgtp(), x1, x2, d.cgtp_weights(weights))``: the emulating CGTP."""
    x1, x2, w, _ = _prepare(d, x1, x2, weights)
    cg = d.as_cgtp()
    if cg is d:
        return apply_cgtp(cg, x1, x2, w)
    return apply_cgtp(cg, x1, x2, d.cgtp_weights(w))  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- GTP / MTP helpers
def _scaled_blocks(
    d: GTPDescriptor | MTPDescriptor, x1: np.ndarray, x2: np.ndarray, w: np.ndarray | None
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray | None]:
    """Input blocks ``(..., C or C2, 2l+1)`` with the per-degree weights applied, and ``w3``."""
    a, b = _blocks(x1, d.irreps_in1), _blocks(x2, d.irreps_in2)
    if w is None:
        return a, b, None
    w1, w2, w3 = d.split_weights(w)
    a = [blk * w1[..., i, :, None] for i, blk in enumerate(a)]
    b = [blk * w2[..., i, :, None] for i, blk in enumerate(b)]
    return a, b, w3


def _finish(
    out: list[np.ndarray], w3: np.ndarray | None, batch: tuple[int, ...]
) -> np.ndarray:
    if w3 is not None:
        out = [blk * w3[..., i, :, None] for i, blk in enumerate(out)]
    return _join(out, batch)


# ----------------------------------------------------------------------------- GTP
def apply_gtp_gaunt(d: GTPDescriptor, x1: Any, x2: Any, weights: Any = None) -> np.ndarray:
    """GTP by direct Gaunt contraction: ``z[l3] = sqrt(4 pi) sum G(l1,l2,l3) x1[l1] x2[l2]``
    over every block triple with ``p3 = p1 p2`` (``G`` = :func:`tp_spec.gaunt`, integral-
    normalized SH; ``G = 0`` for odd ``l1 + l2 + l3``), channelwise (``x2`` broadcast if it
    has one channel), with the per-degree weights if any."""
    from .gaunt import gaunt

    x1, x2, w, batch = _prepare(d, x1, x2, weights)
    a, b, w3 = _scaled_blocks(d, x1, x2, w)
    out = _zero_blocks(d.irreps_out, batch)
    scale = math.sqrt(4 * math.pi)
    for i1, (_, ir1) in enumerate(d.irreps_in1):
        for i2, (_, ir2) in enumerate(d.irreps_in2):
            for io, (_, ir3) in enumerate(d.irreps_out):
                if ir3.p != ir1.p * ir2.p or not abs(ir1.l - ir2.l) <= ir3.l <= ir1.l + ir2.l:
                    continue
                G = gaunt(ir1.l, ir2.l, ir3.l)
                # b broadcasts over channels when x2 has a single channel
                out[io] = out[io] + scale * np.einsum("...ui,...uj,ijk->...uk", a[i1],
                                                      np.broadcast_to(b[i2], a[i1].shape[:-1]
                                                                      + b[i2].shape[-1:]), G)
    return _finish(out, w3, batch)


def _per_class(
    d: GTPDescriptor,
    x1: np.ndarray,
    x2: np.ndarray,
    w: np.ndarray | None,
    batch: tuple[int, ...],
    product: Callable[[np.ndarray, np.ndarray, int, int, int], np.ndarray],
) -> np.ndarray:
    """Split both inputs into parity classes, densify each class to all degrees ``0..L``
    (``(..., C, (L+1)**2)``), call ``product(f1, f2, L1, L2, Lout)`` (returns
    ``(..., C, (Lout+1)**2)``) for each class pair and scatter into the output blocks."""
    a, b, w3 = _scaled_blocks(d, x1, x2, w)
    C = d.channels

    def dense(blocks: list[np.ndarray], irreps: Any, q: int) -> tuple[np.ndarray, int] | None:
        sel = [i for i, (_, ir) in enumerate(irreps) if parity_class(ir) == q]
        if not sel:
            return None
        L = max(irreps[i].ir.l for i in sel)
        f = np.zeros(batch + (C, (L + 1) ** 2))
        for i in sel:
            l = irreps[i].ir.l
            f[..., l * l:(l + 1) ** 2] = blocks[i]  # broadcasts a single x2 channel
        return f, L

    out = _zero_blocks(d.irreps_out, batch)
    for q1 in (1, -1):
        f1 = dense(a, d.irreps_in1, q1)
        for q2 in (1, -1):
            f2 = dense(b, d.irreps_in2, q2)
            targets = [io for io, (_, ir) in enumerate(d.irreps_out)
                       if parity_class(ir) == q1 * q2]
            if f1 is None or f2 is None or not targets:
                continue
            lout = max(d.irreps_out[io].ir.l for io in targets)
            z = product(f1[0], f2[0], f1[1], f2[1], lout)
            for io in targets:
                l = d.irreps_out[io].ir.l
                out[io] = out[io] + z[..., l * l:(l + 1) ** 2]
    return _finish(out, w3, batch)


def apply_gtp_grid(
    d: GTPDescriptor, x1: Any, x2: Any, weights: Any = None, grid: Any = None
) -> np.ndarray:
    """GTP on an S2 grid: per class pair, evaluate ``f1, f2`` on a Gauss-Legendre x uniform
    grid (:func:`tp_spec.s2grid.to_grid`, component normalization), multiply pointwise and
    project back (:func:`tp_spec.s2grid.from_grid`, which divides by ``|Y|^2 = 4 pi``, i.e.
    ``z = (1/4pi) int f1 f2 Y``). ``grid=None``: the minimal exact grid for each class pair
    (:func:`tp_spec.s2grid.s2grid_for`); a given :class:`~tp_spec.s2grid.S2Grid` is used as is
    (results are exact only if it is large enough)."""
    from .s2grid import from_grid, s2grid_for, to_grid

    x1, x2, w, batch = _prepare(d, x1, x2, weights)

    def product(f1: np.ndarray, f2: np.ndarray, l1: int, l2: int, lout: int) -> np.ndarray:
        g = s2grid_for(l1, l2, lout) if grid is None else grid
        return from_grid(to_grid(f1, l1, g) * to_grid(f2, l2, g), lout, g)

    return _per_class(d, x1, x2, w, batch, product)


def apply_gtp_fourier(d: GTPDescriptor, x1: Any, x2: Any, weights: Any = None) -> np.ndarray:
    """GTP through exact 2D Fourier tables (Luo et al.): per class pair,
    :func:`tp_spec.fourier.fourier_gtp_reference` (sparse SH -> Fourier tables, 2D FFT
    convolution, exact projection back)."""
    from .fourier import fourier_gtp_reference

    x1, x2, w, batch = _prepare(d, x1, x2, weights)

    def product(f1: np.ndarray, f2: np.ndarray, l1: int, l2: int, lout: int) -> np.ndarray:
        return fourier_gtp_reference(f1, f2, l1, l2, lout)

    return _per_class(d, x1, x2, w, batch, product)


# ----------------------------------------------------------------------------- MTP
def apply_mtp_matrix(d: MTPDescriptor, x1: Any, x2: Any, weights: Any = None) -> np.ndarray:
    """MTP in matrix form: per channel, ``X_p = sum_{blocks of parity p} x_lm B^(l)_m``
    (``n x n``), ``Z_e = X1e X2e + X1o X2o``, ``Z_o = X1e X2o + X1o X2e``, and
    ``z_(l,p) = sqrt(n) <B^(l)_m, Z_p>_F`` (:mod:`tp_spec.mtp`)."""
    x1, x2, w, batch = _prepare(d, x1, x2, weights)
    a, b, w3 = _scaled_blocks(d, x1, x2, w)
    n = d.n

    def embed(blocks: list[np.ndarray], irreps: Any, channels: int) -> dict[int, np.ndarray]:
        mats = {1: np.zeros(batch + (channels, n, n)), -1: np.zeros(batch + (channels, n, n))}
        for blk, (_, ir) in zip(blocks, irreps, strict=True):
            mats[ir.p] = mats[ir.p] + np.einsum("...ci,abi->...cab", blk, d.basis(ir.l))
        return mats

    X1 = embed(a, d.irreps_in1, d.channels)
    X2 = embed(b, d.irreps_in2, d.channels_in2)  # one channel broadcasts in the matmul
    Z = {1: X1[1] @ X2[1] + X1[-1] @ X2[-1], -1: X1[1] @ X2[-1] + X1[-1] @ X2[1]}
    out = [d.scale * np.einsum("...cab,abk->...ck", Z[ir.p], d.basis(ir.l))
           for _, ir in d.irreps_out]
    return _finish(out, w3, batch)


# ----------------------------------------------------------------------------- VSTP
def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product over axis ``-3`` (the Cartesian components of ``(..., 3, nt, nphi)``)."""
    return np.stack([a[..., 1, :, :] * b[..., 2, :, :] - a[..., 2, :, :] * b[..., 1, :, :],
                     a[..., 2, :, :] * b[..., 0, :, :] - a[..., 0, :, :] * b[..., 2, :, :],
                     a[..., 0, :, :] * b[..., 1, :, :] - a[..., 1, :, :] * b[..., 0, :, :]],
                    axis=-3)


def apply_vstp_grid(
    d: VSTPDescriptor, x1: Any, x2: Any, weights: Any = None, grid: Any = None
) -> np.ndarray:
    """VSTP by its definition (:mod:`tp_spec.vstp`): per vector parity ``P`` build each
    input's field ``F_P = sum x_{Jm} V^{J,l}_m`` over the slots of its nonscalar blocks, evaluate
    the Cartesian components on a Gauss-Legendre grid, take the four cross products
    ``F1_{P1} x F2_{P2}`` into ``H_{P1 P2}``, project the components back with the quadrature
    (:func:`tp_spec.s2grid.from_grid`) and read each output block off its slots; the scalar
    blocks multiply as a CGTP. ``grid=None``: the minimal exact grid
    (``s2grid_for(*d.field_degrees())``)."""
    from .s2grid import from_grid, s2grid_for, to_grid
    from .vsh import coupling, slots

    x1, x2, w, batch = _prepare(d, x1, x2, weights)
    a, b, w3 = _scaled_blocks(d, x1, x2, w)
    out = _zero_blocks(d.irreps_out, batch)
    for i1, (_, ir1) in enumerate(d.irreps_in1):
        for i2, (_, ir2) in enumerate(d.irreps_in2):
            for io, (_, ir3) in enumerate(d.irreps_out):
                if ir1.l == ir2.l == ir3.l == 0 and ir3.p == ir1.p * ir2.p:
                    out[io] = out[io] + a[i1] * b[i2]  # one x2 channel broadcasts
    l1, l2, lo = d.field_degrees()
    if not (l1 and l2 and lo):
        return _finish(out, w3, batch)
    g = s2grid_for(l1, l2, lo) if grid is None else grid

    def fields(blocks: list[np.ndarray], irreps: Any, lmax: int) -> dict[int, np.ndarray]:
        """Per ``P``: grid values ``(..., ch, 3, nt, nphi)``."""
        ch = blocks[0].shape[-2]
        out_f = {}
        for P in (1, -1):
            c = np.zeros(batch + (ch, 3, (lmax + 1) ** 2))
            for blk, (_, ir) in zip(blocks, irreps, strict=True):
                for l in slots(ir.l, ir.p, P) if ir.l > 0 else ():
                    c[..., l * l:(l + 1) ** 2] += np.einsum("...cm,iam->...cia", blk,
                                                            coupling(ir.l, l))
            out_f[P] = to_grid(c, lmax, g)
        return out_f

    f1, f2 = fields(a, d.irreps_in1, l1), fields(b, d.irreps_in2, l2)
    for P in (1, -1):
        h = _cross(f1[1], f2[P]) + _cross(f1[-1], f2[-P])  # H_P: P1 * P2 = P
        coef = from_grid(h, lo, g)  # (..., C, 3, (lo + 1)^2)
        for io, (_, ir3) in enumerate(d.irreps_out):
            for l in slots(ir3.l, ir3.p, P):
                out[io] = out[io] + np.einsum("...cia,iam->...cm", coef[..., l * l:(l + 1) ** 2],
                                              coupling(ir3.l, l))
    return _finish(out, w3, batch)


# ----------------------------------------------------------------------------- dispatch
def apply(d: TensorProductDescriptor, x1: Any, x2: Any, weights: Any = None) -> np.ndarray:
    """The reference forward pass of any descriptor, in float64.

    CGTP: :func:`apply_cgtp`; GTP: :func:`apply_gtp_gaunt`; MTP: :func:`apply_mtp_matrix`;
    VSTP: :func:`apply_vstp_grid`; any other descriptor: :func:`apply_emulated`. The other
    ``apply_*`` functions take the same arguments.

    Args:
        d: the descriptor.
        x1: ``[*batch, irreps_in1.dim]`` real floating array.
        x2: ``[*batch, irreps_in2.dim]`` (the same batch; nothing is broadcast).
        weights: ``None`` iff ``d.weight_numel == 0``, else ``[weight_numel]`` shared or
            ``[*batch, weight_numel]`` per sample.

    Returns:
        ``[*batch, irreps_out.dim]`` float64.
    """
    if isinstance(d, CGTPDescriptor):
        return apply_cgtp(d, x1, x2, weights)
    if isinstance(d, GTPDescriptor):
        return apply_gtp_gaunt(d, x1, x2, weights)
    if isinstance(d, MTPDescriptor):
        return apply_mtp_matrix(d, x1, x2, weights)
    if isinstance(d, VSTPDescriptor):
        return apply_vstp_grid(d, x1, x2, weights)
    if isinstance(d, TensorProductDescriptor):
        return apply_emulated(d, x1, x2, weights)
    raise TypeError(f"expected a tensor-product descriptor, got {type(d).__name__}")


# ----------------------------------------------------------------------------- convolution
def conv(d: TensorProductDescriptor, x_nodes: Any, x_edges: Any, weights: Any, senders: Any,
         receivers: Any) -> np.ndarray:
    """The tensor-product convolution (message passing) over a graph's edges::

        out[i] = sum over edges e with receivers[e] == i of
                 TP(x_nodes[senders[e]], x_edges[e], weights[e])

    ``x_nodes (n_nodes, dim1)``, ``x_edges (n_edges, dim2)``, ``weights`` ``(n_edges, numel)``
    per edge, ``(numel,)`` shared or ``None`` (no weights), ``senders`` and ``receivers``
    ``(n_edges,)`` int32/int64 in ``[0, n_nodes)`` -> ``(n_nodes, dim_out)`` float64. Edges may
    come in any order, repeat, or be self-loops; a node no edge reaches gets zeros.

    >>> import tp_spec as spec
    >>> d = spec.cgtp("0e", "0e", mode="uvu")
    >>> x = np.array([[1.0], [2.0], [3.0]])
    >>> e = np.ones((3, 1))
    >>> conv(d, x, e, np.ones(1), np.array([0, 1, 2]), np.array([1, 1, 0]))[:, 0]
    array([3., 3., 0.])
    """
    from .validation import check_conv_call, check_index_range

    n_nodes, n_edges, _ = check_conv_call(d, x_nodes, x_edges, weights, senders, receivers)
    senders, receivers = np.asarray(senders), np.asarray(receivers)
    for name, idx in (("senders", senders), ("receivers", receivers)):
        if n_edges:
            check_index_range(name, int(idx.min()), int(idx.max()), n_nodes)
    x_nodes = _as_real("x_nodes", x_nodes)
    messages = apply(d, x_nodes[senders], x_edges, weights)
    out = np.zeros((n_nodes, d.irreps_out.dim))
    np.add.at(out, receivers, messages)
    return out
