"""GTP plans: ``grid`` (product on a Gauss-Legendre sphere grid), ``fourier`` (exact 2D Fourier
tables and a convolution) and the JAX-only adapter ``s2fft``.

Both planned methods read each channel of an input as up to two functions on the sphere (the
parity classes ``q = p * (-1)**l``), multiply every class pair ``(q1, q2)`` whose product class
``q1 * q2`` is present in the output, and project back:
``z_{l3 m3} = (1 / 4 pi) int f1 f2 Y_{l3 m3}`` (:mod:`tp_spec.gtp`). Only the classes of these
pairs are computed, up to their own highest degrees ``L1``, ``L2``; the output up to
``Lo = min(lmax of its reached classes, L1 + L2)`` (higher degrees of a product are exactly zero).

* ``grid``: separable per-order transforms on the minimal exact Gauss-Legendre x uniform grid
  for ``(L1, L2, Lo)`` (:func:`tp_spec.s2grid.s2grid_for`): a Legendre step per order ``m``
  (``O(L^3)`` per channel), a real DFT over ``phi``, the pointwise products, and the transposed
  steps with the quadrature weights.
* ``fourier``: the exact SH -> 2D Fourier tables (:mod:`tp_spec.fourier`) as one dense GEMM,
  a 2D FFT linear convolution, and the exact projection back as one dense GEMM.

A large batch runs in chunks whose largest intermediate holds about
``tuning.function_chunk_entries`` entries (:meth:`GTPPlan.chunk_rows`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cost import class_degrees, class_dims, fft_real, per_degree_flops
from ..irreps import parity_class
from .base import Method, Plan, chunk_rows

if TYPE_CHECKING:
    from .tuning import Tuning

__all__ = ["METHODS", "FourierPlan", "GTPPlan", "GridPlan", "degrees", "permute_flat_index"]


def _is_gtp(d) -> str | None:
    return None if d.kind == "gtp" else f"not a GTP descriptor ({type(d).__name__})"


# ----------------------------------------------------------------------------- layout
def _present(irreps) -> set[int]:
    return {parity_class(ir) for _, ir in irreps}


def class_pairs(d) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...],
                            tuple[tuple[int, int, int], ...]]:
    """``(classes1, classes2, classes_out, pairs)``: the classes of each side that take part
    in a product (``+1`` first) and the pairs as indices ``(k1, k2, ko)`` into them."""
    p1, p2, po = _present(d.irreps_in1), _present(d.irreps_in2), _present(d.irreps_out)
    qs = [(q1, q2) for q1 in (1, -1) for q2 in (1, -1)
          if q1 in p1 and q2 in p2 and q1 * q2 in po]
    c1 = tuple(sorted({q1 for q1, _ in qs}, reverse=True))
    c2 = tuple(sorted({q2 for _, q2 in qs}, reverse=True))
    co = tuple(sorted({q1 * q2 for q1, q2 in qs}, reverse=True))
    return c1, c2, co, tuple((c1.index(q1), c2.index(q2), co.index(q1 * q2)) for q1, q2 in qs)


def degrees(d) -> tuple[int, int, int]:
    """``(L1, L2, Lo)`` the planned methods compute: the highest degrees of the classes taking
    part in a product, ``Lo`` at most ``L1 + L2`` (all 0 if no class pair is present)."""
    c1, c2, co, _ = class_pairs(d)

    def lmax(irreps, classes):
        ls = [ir.l for _, ir in irreps if parity_class(ir) in classes]
        return max(ls) if ls else 0

    l1, l2 = lmax(d.irreps_in1, c1), lmax(d.irreps_in2, c2)
    return l1, l2, min(lmax(d.irreps_out, co), l1 + l2)


def _weight_index(irreps, offset: int, channels: int) -> np.ndarray:
    """Per-degree weight ``w[offset + i * channels + c]`` of block ``i``, channel ``c``: its
    index for every flat feature, ``(irreps.dim,)``."""
    out = np.zeros(irreps.dim, dtype=np.int64)
    for i, ((mul, ir), sl) in enumerate(zip(irreps, irreps.slices(), strict=True)):
        for c in range(mul):
            out[sl.start + c * ir.dim: sl.start + (c + 1) * ir.dim] = offset + i * channels + c
    return out


def _positions(irreps, classes, lmax: int, position) -> np.ndarray:
    """``(dim,)``: ``position(k, c, l, m)`` of every feature of a block of class
    ``classes[k]`` and degree ``l <= lmax``; ``-1`` for the others."""
    out = np.full(irreps.dim, -1, dtype=np.int64)
    for (mul, ir), sl in zip(irreps, irreps.slices(), strict=True):
        q = parity_class(ir)
        if q not in classes or ir.l > lmax:
            continue
        for c in range(mul):
            for m in range(-ir.l, ir.l + 1):
                out[sl.start + c * ir.dim + ir.l + m] = position(classes.index(q), c, ir.l, m)
    return out


def _gather(irreps, classes, lmax: int, channels: int, shape, position) -> np.ndarray:
    """Gather index of shape ``shape`` into a flat input: entry ``position(k, c, l, m)`` holds
    the feature of class ``classes[k]``, channel ``c``, degree ``l``, order ``m``; every other
    entry ``irreps.dim`` (a zero column appended at run time). An input with one channel is
    gathered with ``channels=1`` (it broadcasts over the other input's channels)."""
    pos = _positions(irreps, classes, lmax, position)
    out = np.full(int(np.prod(shape)), irreps.dim, dtype=np.int64)
    keep = pos >= 0
    out[pos[keep]] = np.nonzero(keep)[0]
    return out.reshape(shape)


def _output_index(irreps, classes, lmax: int, size: int, position) -> np.ndarray:
    """``(dim_out,)``: the flat position ``position(k, c, l, m)`` of every output feature in
    the product array of ``size`` entries, or ``size`` (zero: a class or degree not
    computed)."""
    pos = _positions(irreps, classes, lmax, position)
    return np.where(pos >= 0, pos, size)


def permute_flat_index(index: np.ndarray, shape: tuple[int, ...],
                       perm: tuple[int, ...]) -> np.ndarray:
    """``index`` into a flat array of ``shape`` (``prod(shape)``: the zero entry) -> the same
    entries of that array transposed by ``perm`` and flattened (the sentinel kept)."""
    size = int(np.prod(shape))
    keep = index < size
    parts = np.unravel_index(np.where(keep, index, 0), shape)
    moved = np.ravel_multi_index(tuple(parts[p] for p in perm), tuple(shape[p] for p in perm))
    return np.where(keep, moved, size).astype(np.int64)


# ----------------------------------------------------------------------------- plans
@dataclass(frozen=True, eq=False)
class GTPPlan(Plan):
    """What both GTP plans share.

    ``classes1/2/out``: the parity classes computed (``+1`` first); ``pairs``: the products
    ``(k1, k2, ko)`` (indices into them); ``lmax1/2/out``: :func:`degrees`; ``channels``,
    ``channels2`` (1: ``x2`` broadcasts); ``weight_index1/2/out``: per flat feature of ``x1``,
    ``x2``, the output, the index of its per-degree weight (``None`` without weights);
    ``out_index (dim_out,)``: flat position of every output feature in the product array
    (``out_size``: zero); ``row_entries``: entries per batch row of the largest
    intermediate."""

    classes1: tuple[int, ...]
    classes2: tuple[int, ...]
    classes_out: tuple[int, ...]
    pairs: tuple[tuple[int, int, int], ...]
    lmax1: int
    lmax2: int
    lmax_out: int
    channels: int
    channels2: int
    weight_index1: np.ndarray | None
    weight_index2: np.ndarray | None
    weight_index_out: np.ndarray | None
    out_index: np.ndarray
    out_size: int
    row_entries: int

    @property
    def active(self) -> bool:
        """False if no class pair reaches the output (the product is zero)."""
        return bool(self.pairs)

    @property
    def needs_zero_out(self) -> bool:
        """Whether some output feature reads the zero entry ``out_size``."""
        return bool((self.out_index == self.out_size).any())

    def chunk_rows(self, batch: int) -> int | None:
        """Rows per chunk of a ``batch`` (:func:`~tp_spec.plan.base.chunk_rows` with
        ``tuning.function_chunk_*``); ``None``: one piece."""
        t = self.tuning
        return chunk_rows(batch, self.row_entries, t.function_chunk_entries,
                          t.function_chunk_min_rows)


def _common(d, tuning: Tuning, method: str) -> dict:
    c1, c2, co, pairs = class_pairs(d)
    l1, l2, lo = degrees(d)
    c, cb = d.channels, d.channels_in2
    w1 = w2 = wo = None
    if d.weight_numel:
        n1, n2 = len(d.irreps_in1), len(d.irreps_in2)
        w1 = _weight_index(d.irreps_in1, 0, c)
        w2 = _weight_index(d.irreps_in2, n1 * c, cb)
        wo = _weight_index(d.irreps_out, n1 * c + n2 * cb, c)
    return dict(descriptor=d, method=method, tuning=tuning, classes1=c1, classes2=c2,
                classes_out=co, pairs=pairs, lmax1=l1, lmax2=l2, lmax_out=lo, channels=c,
                channels2=cb, weight_index1=w1, weight_index2=w2, weight_index_out=wo)


def scale_inputs_numpy(p: GTPPlan, x1, x2, w):
    """Per-degree weights on the inputs: ``(x1, x2, output multiplier or None)``."""
    if w is None or p.weight_index1 is None:
        return x1, x2, None
    return x1 * w[..., p.weight_index1], x2 * w[..., p.weight_index2], w[..., p.weight_index_out]


def run_numpy(p: GTPPlan, product, x1, x2, w) -> np.ndarray:
    """Weights, the product of every chunk of :meth:`GTPPlan.chunk_rows`, the output index
    and weights: ``(B, dim_out)``."""
    b = x1.shape[0]
    if not p.active:
        return np.zeros((b, p.descriptor.irreps_out.dim))
    x1, x2, mult = scale_inputs_numpy(p, x1, x2, w)
    rows = p.chunk_rows(b) or max(b, 1)
    z = np.concatenate([product(p, x1[i:i + rows], x2[i:i + rows])
                        for i in range(0, max(b, 1), rows)])[:b]
    z = np.concatenate([z, np.zeros((b, 1))], axis=1)[:, p.out_index]
    return z if mult is None else z * mult


def with_zero_column_numpy(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.zeros((x.shape[0], 1))], axis=1)


# ----------------------------------------------------------------------------- grid
@dataclass(frozen=True, eq=False)
class GridPlan(GTPPlan):
    """``grid`` on the ``(n_theta, n_phi)`` grid of ``s2grid_for(L1, L2, Lo)``.

    Layout ``(class k, order m + L, degree l, channel c)`` (``(ncls, 2L + 1, L + 1, C)``; the
    rows ``l < |m|`` read zero). ``index1/2``: gathers into ``x1``/``x2`` (``dim``: zero);
    ``legendre1/2 (2L + 1, L + 1, n_theta)``: per-order Legendre to the grid (zero rows
    ``l < |m|``); ``phi1/2 (2L + 1, n_phi)``: the real DFT to the grid; ``phi_out
    (n_phi, 2Lo + 1)`` and ``legendre_out (2Lo + 1, n_theta, Lo + 1)``: the projection back
    (quadrature weights included). The product array is ``(ncls_out, 2Lo + 1, Lo + 1, C)``.
    ``row_entries``: the grid values of both inputs per batch row.
    """

    n_theta: int
    n_phi: int
    index1: np.ndarray
    index2: np.ndarray
    legendre1: np.ndarray
    phi1: np.ndarray
    legendre2: np.ndarray
    phi2: np.ndarray
    legendre_out: np.ndarray
    phi_out: np.ndarray


def _ml_position(lmax: int, channels: int):
    return lambda k, c, l, m: ((k * (2 * lmax + 1) + m + lmax) * (lmax + 1) + l) * channels + c


def build_grid(d, tuning: Tuning) -> GridPlan:
    from ..s2grid import legendre_matrices, phi_matrix, s2grid_for

    base = _common(d, tuning, "grid")
    l1, l2, lo = base["lmax1"], base["lmax2"], base["lmax_out"]
    c, cb = base["channels"], base["channels2"]
    grid = s2grid_for(l1, l2, lo)
    nt = grid.n_theta

    def to_grid(lmax):
        pl = legendre_matrices(lmax, grid, "component", "to_grid")  # [|m|]: (L+1-|m|, nt)
        out = np.zeros((2 * lmax + 1, lmax + 1, nt))
        for m in range(-lmax, lmax + 1):
            out[m + lmax, abs(m):] = pl[abs(m)]
        return out

    pf = legendre_matrices(lo, grid, "component", "from_grid")  # [|m|]: (nt, Lo+1-|m|)
    leg_out = np.zeros((2 * lo + 1, nt, lo + 1))
    for m in range(-lo, lo + 1):
        leg_out[m + lo, :, abs(m):] = pf[abs(m)]

    def index(irreps, classes, lmax, ch):
        return _gather(irreps, classes, lmax, ch, (len(classes), 2 * lmax + 1, lmax + 1, ch),
                       _ml_position(lmax, ch))

    co = base["classes_out"]
    size = len(co) * (2 * lo + 1) * (lo + 1) * c
    return GridPlan(
        **base,
        out_index=_output_index(d.irreps_out, co, lo, size, _ml_position(lo, c)),
        out_size=size,
        # both inputs' grids, live together at the product: chunks of half the entries of
        # the largest intermediate (MIMO L=10, torch, 1 thread: 150-row chunks 4.7 us/row,
        # 300-row chunks 6.6 us/row, their fresh pages faulting)
        row_entries=grid.n_phi * nt * (len(base["classes1"]) * c + len(base["classes2"]) * cb),
        n_theta=nt, n_phi=grid.n_phi,
        index1=index(d.irreps_in1, base["classes1"], l1, c),
        index2=index(d.irreps_in2, base["classes2"], l2, cb),
        legendre1=to_grid(l1), phi1=np.asarray(phi_matrix(l1, grid, "to_grid")),
        legendre2=to_grid(l2), phi2=np.asarray(phi_matrix(l2, grid, "to_grid")),
        legendre_out=leg_out, phi_out=np.asarray(phi_matrix(lo, grid, "from_grid")),
    )


def _grid_product(p: GridPlan, x1, x2) -> np.ndarray:
    """Weighted inputs ``(B, dim1)``, ``(B, dim2)`` -> the product array ``(B, out_size)``."""

    def to_grid(x, index, legendre, phi):  # -> (B, ncls, nt, nphi, ch)
        coeff = with_zero_column_numpy(x)[:, index]  # (B, ncls, M, L+1, ch)
        a = np.einsum("mli,bkmlc->bkmic", legendre, coeff)
        return np.einsum("bkmic,mp->bkipc", a, phi)

    f1 = to_grid(x1, p.index1, p.legendre1, p.phi1)
    f2 = to_grid(x2, p.index2, p.legendre2, p.phi2)
    h = np.zeros((x1.shape[0], len(p.classes_out)) + f1.shape[2:])
    for k1, k2, ko in p.pairs:
        h[:, ko] += f1[:, k1] * f2[:, k2]  # one x2 channel broadcasts
    bm = np.einsum("bkipc,pm->bkmic", h, p.phi_out)
    z = np.einsum("bkmic,mil->bkmlc", bm, p.legendre_out)
    return z.reshape(x1.shape[0], -1)


def run_grid_numpy(p: GridPlan, x1, x2, w):
    return run_numpy(p, _grid_product, x1, x2, w)


# ----------------------------------------------------------------------------- fourier
@dataclass(frozen=True, eq=False)
class FourierPlan(GTPPlan):
    """``fourier``: the exact tables as dense real matrices, FFT size ``size = 2 (L1 + L2) + 1``.

    Layout ``(class k, channel c, l * l + l + m)`` (``(ncls, C, (L + 1)^2)``). ``index1/2``:
    gathers into ``x1``/``x2`` (``dim``: zero). ``table1/2 ((L + 1)^2, 2 n^2)``: the SH -> 2D
    Fourier table of degree ``L`` (``n = 2L + 1``), coefficients to the real and imaginary
    parts ``[Re | Im]`` of the ``(n, n)`` spectrum. ``project (2 size^2, (Lo + 1)^2)``: the
    ``[Re | Im]`` parts of the ``(size, size)`` convolution to the output coefficients
    (``Re(T G) = Re T Re G - Im T Im G``). The product array is ``(ncls_out, C, (Lo + 1)^2)``.
    Dense, not gathered: one GEMM each way (measured against the sparse gathers, torch, one
    thread, MIMO L=3 and 6: the GEMMs are faster)."""

    size: int
    index1: np.ndarray
    index2: np.ndarray
    table1: np.ndarray
    table2: np.ndarray
    project: np.ndarray


def _forward_table(lmax: int) -> np.ndarray:
    """``((lmax + 1)^2, 2 n^2)``: SH coefficients -> ``[Re | Im]`` of the 2D spectrum."""
    from ..fourier import sh_to_fourier

    tab = sh_to_fourier(lmax, "component")  # complex128, sparse; every entry real or imaginary
    n = 2 * lmax + 1
    row, u, v = tab.indices[:, 0], tab.indices[:, 1] + lmax, tab.indices[:, 2] + lmax
    out = np.zeros(((lmax + 1) ** 2, 2 * n * n))
    np.add.at(out, (row, u * n + v), tab.values.real)
    np.add.at(out, (row, n * n + u * n + v), tab.values.imag)
    return out


def _project_table(lo: int, k: int) -> np.ndarray:
    """``(2 n^2, (lo + 1)^2)``, ``n = 2k + 1``: ``[Re G | Im G]`` -> ``Re(T G)``."""
    from ..fourier import fourier_to_sh

    proj = fourier_to_sh(lo, k, "component")
    n = 2 * k + 1
    row, u, v = proj.indices[:, 0], proj.indices[:, 1] + k, proj.indices[:, 2] + k
    out = np.zeros((2 * n * n, (lo + 1) ** 2))
    np.add.at(out, (u * n + v, row), proj.values.real)
    np.add.at(out, (n * n + u * n + v, row), -proj.values.imag)
    return out


def build_fourier(d, tuning: Tuning) -> FourierPlan:
    base = _common(d, tuning, "fourier")
    l1, l2, lo = base["lmax1"], base["lmax2"], base["lmax_out"]
    c, cb = base["channels"], base["channels2"]
    k = l1 + l2
    n = 2 * k + 1

    def position(lmax, ch):
        return lambda kk, cc, l, m: (kk * ch + cc) * (lmax + 1) ** 2 + l * l + l + m

    def index(irreps, classes, lmax, ch):
        return _gather(irreps, classes, lmax, ch, (len(classes), ch, (lmax + 1) ** 2),
                       position(lmax, ch))

    co = base["classes_out"]
    size = len(co) * c * (lo + 1) ** 2
    return FourierPlan(
        **base,
        out_index=_output_index(d.irreps_out, co, lo, size, position(lo, c)),
        out_size=size,
        row_entries=2 * n * n * max(len(base["classes1"]), len(co)) * c,
        size=n,
        index1=index(d.irreps_in1, base["classes1"], l1, c),
        index2=index(d.irreps_in2, base["classes2"], l2, cb),
        table1=_forward_table(l1), table2=_forward_table(l2), project=_project_table(lo, k),
    )


def _fourier_product(p: FourierPlan, x1, x2) -> np.ndarray:
    """Weighted inputs -> the product array ``(B, out_size)``."""
    b, n = x1.shape[0], p.size

    def spectrum(x, index, table, lmax):  # -> (B, ncls, ch, n, n) complex
        m = 2 * lmax + 1
        flat = with_zero_column_numpy(x)[:, index] @ table
        f = flat[..., :m * m] + 1j * flat[..., m * m:]
        return np.fft.fft2(f.reshape(f.shape[:-1] + (m, m)), s=(n, n))

    h1 = spectrum(x1, p.index1, p.table1, p.lmax1)
    h2 = spectrum(x2, p.index2, p.table2, p.lmax2)
    h = np.zeros((b, len(p.classes_out), p.channels, n, n), dtype=complex)
    for k1, k2, ko in p.pairs:
        h[:, ko] += h1[:, k1] * h2[:, k2]
    g = np.fft.ifft2(h).reshape(b, len(p.classes_out), p.channels, n * n)
    return (np.concatenate([g.real, g.imag], axis=-1) @ p.project).reshape(b, -1)


def run_fourier_numpy(p: FourierPlan, x1, x2, w):
    return run_numpy(p, _fourier_product, x1, x2, w)


# ----------------------------------------------------------------------------- cost
def flops_grid(d: Any) -> float:
    """Per-sample FLOPs of the ``grid`` plan (the model in :mod:`tp_spec.cost`'s docstring),
    per-degree weights included."""
    l1, l2, lo = degrees(d)
    nt, nph = (l1 + l2 + lo + 2) // 2, l1 + l2 + lo + 1  # the plan's s2grid_for(l1, l2, lo)
    pairs = d.class_pairs()
    c, c2 = d.channels, d.channels_in2
    dims = {w: class_dims(d, w, "class") for w in ("in1", "in2")}
    dims["out"] = {q: sum(2 * l + 1 for l in class_degrees(d, "out", q) if l <= lo)
                   for q in (1, -1)}
    total = 0.0
    for q in {q1 for q1, _, _ in pairs}:
        total += c * (2 * nt * dims["in1"][q] + nt * fft_real(nph))
    for q in {q2 for _, q2, _ in pairs}:
        total += c2 * (2 * nt * dims["in2"][q] + nt * fft_real(nph))
    total += c * len(pairs) * 2 * nt * nph
    for q in {q3 for _, _, q3 in pairs}:
        total += c * (nt * fft_real(nph) + 2 * nt * dims["out"][q])
    return total + per_degree_flops(d)


def flops_fourier(d: Any) -> float:
    """Per-sample FLOPs of the ``fourier`` plan (dense table GEMMs, FFTs, products),
    per-degree weights included."""
    pairs = d.class_pairs()
    c, c2 = d.channels, d.channels_in2
    l1, l2, lout = degrees(d)
    n = 2 * (l1 + l2) + 1
    fft2 = 5.0 * n * n * math.log2(n * n) if n > 1 else 0.0
    total = 0.0
    for lm, mult, used in ((l1, c, {q for q, _, _ in pairs}),
                           (l2, c2, {q for _, q, _ in pairs})):
        m = 2 * lm + 1
        total += mult * len(used) * (2 * (lm + 1) ** 2 * 2 * m * m + fft2)
    total += c * len(pairs) * 8 * n * n
    total += c * len({q3 for _, _, q3 in pairs}) * (fft2 + 2 * 2 * n * n * (lout + 1) ** 2)
    return total + per_degree_flops(d)


METHODS = (
    Method("gtp", "grid", "separable Gauss-Legendre grid transform (per-order Legendre GEMMs "
           "and a real DFT), pointwise product, projection back", build=build_grid,
           numpy=run_grid_numpy, available=_is_gtp, flops=flops_grid),
    Method("gtp", "fourier", "exact 2D Fourier tables (dense GEMMs), FFT convolution, "
           "projection back",
           build=build_fourier, numpy=run_fourier_numpy, available=_is_gtp,
           flops=flops_fourier),
    Method("gtp", "s2fft", "grid GTP through s2fft's spherical transforms", available=_is_gtp,
           frameworks=("jax",), adapter="s2fft"),
)
