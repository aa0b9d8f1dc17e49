"""MACE's product basis (the symmetric contraction) and its Gaunt variant.

**SymmetricContraction.** ``irreps_in = k x ir_1 + ... + k x ir_J`` (one multiplicity ``k``
for every irrep, mul_ir layout). Per node, with species ``z`` and channel ``c``, the
features are read as one vector ``A[c, i]``, ``i < D = sum_j dim(ir_j)`` (the irreps of
``irreps_in`` concatenated in their order, MACE's ``coupling_irreps``). For each output irrep
``L`` (``irreps_out = k x L_1 + ...``, each with multiplicity ``k``)::

    B[c, L, M] = sum_{nu=1..correlation} sum_eta W[z, L, nu][eta, c]
                 * sum_{i_1..i_nu} U[L, nu][M, i_1, ..., i_nu, eta] * A[c, i_1] ... A[c, i_nu]

a polynomial of degree ``<= correlation`` in each channel's features, channel by channel.
``U[L, nu]`` (shape ``(2L+1, D, ..., D, K)``, ``K`` coupling paths) is MACE's generalized
Clebsch-Gordan basis (``mace.tools.cg.U_matrix_real``, ``irrep_normalization="component"``),
rebuilt here with :func:`tp_spec.clebsch_gordan` (equal to e3nn's ``wigner_3j``), same paths
in the same order:

* ``nu = 1``: one path per input irrep ``ir_j``, the identity block ``E[m, off_j + m] = 1``.
* ``nu > 1``: for every path ``(ir_left, C_left)`` of ``nu - 1`` (in their sorted order), every
  input irrep ``ir_j`` and every ``ir`` in ``ir_left x ir_j`` (increasing ``l``)::

      C[M, ..., off_j + m] = sqrt(2 l + 1) sum_a clebsch_gordan(l, l_left, l_j)[M, a, m]
                                             * C_left[a, ...]

  The paths are then sorted by their irrep, stably, in e3nn's order (``l``, then odd before
  even). For ``nu == 4`` every intermediate and final irrep is restricted to natural parity
  and ``l < 12`` (MACE's ``filter_ir_mid``).

``U[L, nu]`` holds the paths of ``nu`` whose irrep is ``L``; ``W[z, L, nu]`` has MACE's shape
``(num_species, K, k)``. MACE squeezes the ``M`` axis of ``L = 0`` away; here it is kept.

MACE pins e3nn 0.4.4, whose ``wigner_3j`` has the opposite sign of e3nn 0.6 (and of
:func:`tp_spec.clebsch_gordan`) for some triples of odd ``l1 + l2 + l3`` (``(1, 2, 2)``,
``(1, 3, 3)``, ``(4, 4, 5)``, ...), so a path of MACE's ``U`` through such a triple is minus
the path here; a path MACE has no coupling for (all zero) has ``K = 1`` there and ``K = 0``
here. :func:`tp_spec.mace_basis.weights_from_mace` maps MACE's weights exactly:
``T = pinv(U) U_mace`` (checked to reproduce ``U_mace``), ``W = T W_mace``; it also maps
MACE's reduced (cuEquivariance) basis.

**Gaunt variant.** Inputs and outputs of natural parity, each degree at most once in
``irreps_in``. Per node, species ``z``, channel ``c`` and ``nu``, the features become a
function on the sphere with per-degree weights ``u``, and its ``nu``-th power is projected
back onto each output degree with weights ``v``::

    f[nu, c](r) = sum_j u[z, nu, j, c] sum_m A[c, l_j, m] Y_{l_j m}(r)
    B[c, L_i, M] = sum_{nu=1..correlation} v[z, nu, i, c]
                   * (1 / 4 pi) integral Y_{L_i M}(r) f[nu, c](r)**nu dOmega

with component-normalized ``Y`` (``sum_m Y_lm**2 = 2l + 1``), so the projection is
:func:`tp_spec.s2grid.from_grid`. It is evaluated exactly on one Gauss-Legendre grid
(:func:`tp_spec.s2grid.s2grid_for`); :func:`gaunt_apply_reference` computes the same powers with
Gaunt coefficients (:func:`tp_spec.gaunt`) instead of a grid.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .clebsch_gordan import clebsch_gordan
from .errors import DTypeError, IndexRangeError, InstructionError, IrrepsError, ShapeError
from .gaunt import gaunt
from .irreps import Irrep, Irreps
from .s2grid import S2Grid, from_grid, s2grid_for, to_grid
from .symmetric_basis import independent_paths
from .validation import FLOAT_DTYPES, dtype_name

__all__ = [
    "GauntSymmetricContractionDescriptor",
    "SymmetricContractionDescriptor",
    "apply",
    "check_call",
    "check_species",
    "gaunt_apply",
    "gaunt_apply_reference",
    "gaunt_symmetric_contraction",
    "split_weights",
    "symmetric_contraction",
    "u_matrices",
]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.flags.writeable = False
    return a


def _e3nn_key(ir: Irrep) -> tuple[int, int]:
    return (ir.l, ir.p)


def _coupling_paths(
    coupling: Irreps, nu: int, natural_only: bool
) -> list[tuple[Irrep, np.ndarray]]:
    """MACE's ``_wigner_nj`` paths of ``nu`` copies of ``coupling``: ``(ir, C (dim, D**nu))``.

    ``natural_only``: keep only coupled irreps of natural parity and ``l < 12``."""
    D = coupling.dim
    if nu == 1:
        out = []
        eye = np.eye(D)
        for sl, (_, ir) in zip(coupling.slices(), coupling, strict=True):
            out.append((ir, eye[sl]))
        return sorted(out, key=lambda t: _e3nn_key(t[0]))
    out = []
    for ir_left, c_left in _coupling_paths(coupling, nu - 1, natural_only):
        for sl, (_, ir) in zip(coupling.slices(), coupling, strict=True):
            for ir_out in ir_left * ir:
                if natural_only and not (ir_out.is_natural and ir_out.l < 12):
                    continue
                cg = clebsch_gordan(ir_out.l, ir_left.l, ir.l) * math.sqrt(ir_out.dim)
                c = np.einsum("ak,Mam->Mkm", c_left, cg)  # (dim_out, D**(nu-1), dim_j)
                e = np.zeros((ir_out.dim, c_left.shape[1], D))
                e[:, :, sl] = c
                out.append((ir_out, e.reshape(ir_out.dim, -1)))
    return sorted(out, key=lambda t: _e3nn_key(t[0]))


def _paths_of(coupling: Irreps, nu: int, ir_out: Irrep) -> list[np.ndarray]:
    # MACE filters the coupled irreps for nu == 4 only (``U_matrix_real``'s ``filter_ir_mid``)
    return [c for ir, c in _coupling_paths(coupling, nu, nu == 4) if ir == ir_out]


@functools.lru_cache(maxsize=64)
def u_matrices(coupling: Irreps, ir_out: Irrep, correlation: int) -> tuple[np.ndarray, ...]:
    """``U[nu - 1]`` of shape ``(2L+1, D, ..., D, K_nu)`` for ``nu = 1..correlation``."""
    D = coupling.dim
    out = []
    for nu in range(1, correlation + 1):
        paths = _paths_of(coupling, nu, ir_out)
        shape = (ir_out.dim,) + (D,) * nu
        if paths:
            u = np.stack([c.reshape(shape) for c in paths], axis=-1)
        else:
            u = np.zeros(shape + (0,))
        out.append(_readonly(u))
    return tuple(out)


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InstructionError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_irreps(irreps_in: Any, irreps_out: Any) -> tuple[Irreps, Irreps, int]:
    irreps_in, irreps_out = Irreps(irreps_in), Irreps(irreps_out)
    if len(irreps_in) == 0 or len(irreps_out) == 0:
        raise IrrepsError("irreps_in and irreps_out must not be empty")
    muls = {mul for mul, _ in irreps_in}
    if len(muls) != 1 or 0 in muls:
        raise IrrepsError(
            f"irreps_in must have one positive multiplicity for every irrep, got {irreps_in}"
        )
    (k,) = muls
    if any(mul != k for mul, _ in irreps_out):
        raise IrrepsError(
            f"irreps_out must have the multiplicity {k} of irreps_in everywhere, got {irreps_out}"
        )
    return irreps_in, irreps_out, k


@dataclass(frozen=True, eq=False)
class SymmetricContractionDescriptor:
    """MACE's product basis (module docstring). ``U[i][nu - 1]``: the basis of output ``i``.

    ``weight_shapes[i][nu - 1] = (num_species, K, k)`` (MACE's shapes); one species' weights
    flattened: for each output, for ``nu = 1..correlation``, the ``(K, k)`` block row-major
    (:attr:`weight_numel` per species).
    """

    irreps_in: Irreps
    irreps_out: Irreps
    correlation: int
    num_species: int
    mul: int
    coupling: Irreps
    U: tuple[tuple[np.ndarray, ...], ...]
    basis: str = "mace"

    @property
    def num_paths(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(u.shape[-1] for u in us) for us in self.U)

    @property
    def weight_shapes(self) -> tuple[tuple[tuple[int, int, int], ...], ...]:
        return tuple(
            tuple((self.num_species, u.shape[-1], self.mul) for u in us) for us in self.U
        )

    @property
    def weight_numel(self) -> int:
        return sum(u.shape[-1] * self.mul for us in self.U for u in us)


BASES = ("mace", "reduced")


@functools.lru_cache(maxsize=64)
def _build(irreps_in: Irreps, irreps_out: Irreps, correlation: int, num_species: int,
           basis: str = "mace"):
    irreps_in, irreps_out, k = _check_irreps(irreps_in, irreps_out)
    coupling = Irreps([(1, ir) for _, ir in irreps_in])
    U = tuple(u_matrices(coupling, ir, correlation) for _, ir in irreps_out)
    if basis == "reduced":
        U = tuple(tuple(_readonly(u[..., independent_paths(u)]) for u in us) for us in U)
    return SymmetricContractionDescriptor(
        irreps_in, irreps_out, correlation, num_species, k, coupling, U, basis
    )


def symmetric_contraction(
    irreps_in: Any, irreps_out: Any, correlation: int, num_species: int, *,
    basis: str = "mace",
) -> SymmetricContractionDescriptor:
    """The frozen descriptor of MACE's ``SymmetricContraction`` (module docstring).

    ``basis="mace"``: MACE's paths, with MACE's weight shapes. ``"reduced"``: only the paths
    that add a new function (:func:`independent_paths`, e.g. 159 -> 49 per channel for
    ``k x (0e+1o+2e+3o) -> k x (0e+1o+2e)`` at correlation 3): the same functions with fewer
    weights and less work; the count of e3nn-jax's and cuEquivariance's reduced bases."""
    correlation = _check_int(correlation, "correlation", 1)
    num_species = _check_int(num_species, "num_species", 1)
    if basis not in BASES:
        raise InstructionError(f"basis must be one of {BASES}, got {basis!r}")
    irreps_in, irreps_out, _ = _check_irreps(irreps_in, irreps_out)
    return _build(irreps_in, irreps_out, correlation, num_species, basis)


def check_call(d: Any, x: Any, species: Any, weights: Any = None,
               weight_dtype: Any = None) -> None:
    """Shapes and dtypes of one call (arrays of any framework): ``x (n, dim_in)`` float32/64,
    ``species (n,)`` ints, ``weights (num_species, weight_numel)`` (or its ``weight_dtype``)
    of ``x``'s dtype. Species values: :func:`check_species`."""
    if not isinstance(d, (SymmetricContractionDescriptor, GauntSymmetricContractionDescriptor)):
        raise InstructionError(f"expected a symmetric contraction descriptor, got {type(d)}")
    kind = dtype_name(x.dtype)
    if kind not in FLOAT_DTYPES:
        raise DTypeError(f"x must be float32 or float64, got {kind}")
    if len(x.shape) != 2 or x.shape[1] != d.irreps_in.dim:
        raise ShapeError(f"x must have shape (n, {d.irreps_in.dim}), got {tuple(x.shape)}")
    if weights is not None:
        weight_dtype = weights.dtype
        if tuple(weights.shape) != (d.num_species, d.weight_numel):
            raise ShapeError(f"weights must have shape ({d.num_species}, {d.weight_numel}), "
                             f"got {tuple(weights.shape)}")
    if weight_dtype is not None and dtype_name(weight_dtype) != kind:
        raise DTypeError(f"x is {kind} but the weights are {dtype_name(weight_dtype)}; "
                         "nothing is cast")
    if tuple(species.shape) != (x.shape[0],):
        raise ShapeError(f"species must have shape ({x.shape[0]},), got {tuple(species.shape)}")
    if not dtype_name(species.dtype).startswith(("int", "uint")):
        raise DTypeError(f"species must hold integers, got {dtype_name(species.dtype)}")


def check_species(d: Any, lo: int, hi: int) -> None:
    """:class:`~tp_spec.errors.IndexRangeError` unless ``0 <= lo <= hi < num_species``."""
    if lo < 0 or hi >= d.num_species:
        raise IndexRangeError(f"species must lie in [0, {d.num_species}), got {lo}..{hi}")


def check_inputs(d: Any, x: Any, weights: Any, species: Any) -> tuple[np.ndarray, ...]:
    """:func:`check_call` and :func:`check_species`; ``x``, ``weights`` float64, ``species``."""
    x, w, s = np.asarray(x), np.asarray(weights), np.asarray(species)
    check_call(d, x, s, w)
    if s.size:
        check_species(d, int(s.min()), int(s.max()))
    return x.astype(np.float64), w.astype(np.float64), s.astype(np.int64)


def channels_last(irreps: Irreps, x: np.ndarray) -> np.ndarray:
    """mul_ir ``(n, dim)`` -> ``(n, k, D)``: each channel's irreps concatenated."""
    n = x.shape[0]
    return np.concatenate(
        [
            x[:, sl].reshape(n, mul, ir.dim)
            for sl, (mul, ir) in zip(irreps.slices(), irreps, strict=True)
        ],
        axis=-1,
    )


def split_weights(d: SymmetricContractionDescriptor, weights: np.ndarray) -> list[list[np.ndarray]]:
    """``(num_species, weight_numel)`` -> ``W[i][nu - 1]`` of shape ``(num_species, K, k)``."""
    out, start = [], 0
    for shapes in d.weight_shapes:
        row = []
        for S, K, k in shapes:
            row.append(weights[:, start : start + K * k].reshape(S, K, k))
            start += K * k
        out.append(row)
    return out


def apply(d: SymmetricContractionDescriptor, x: Any, weights: Any, species: Any) -> np.ndarray:
    """``B`` of the module docstring: ``x (n, irreps_in.dim)`` mul_ir, ``weights (num_species,
    weight_numel)``, ``species (n,)`` ints -> ``(n, irreps_out.dim)`` mul_ir, float64."""
    if not isinstance(d, SymmetricContractionDescriptor):
        raise InstructionError(f"expected a SymmetricContractionDescriptor, got {type(d)}")
    x, w, s = check_inputs(d, x, weights, species)
    A = channels_last(d.irreps_in, x)  # (n, k, D)
    n, k, D = A.shape
    W = split_weights(d, w)
    outs = []
    for i, (_, ir) in enumerate(d.irreps_out):
        b = np.zeros((n, k, ir.dim))
        power = np.ones((n, k, 1))
        for nu in range(1, d.correlation + 1):
            power = np.einsum("nkp,nkd->nkpd", power, A).reshape(n, k, D**nu)
            u = d.U[i][nu - 1].reshape(ir.dim, D**nu, -1)
            t = np.einsum("nkp,Mpe->nkMe", power, u)
            b += np.einsum("nkMe,nek->nkM", t, W[i][nu - 1][s])
        outs.append(b.reshape(n, k * ir.dim))
    return np.concatenate(outs, axis=1)


# ------------------------------------------------------------------------------ Gaunt variant


@dataclass(frozen=True, eq=False)
class GauntSymmetricContractionDescriptor:
    """The Gaunt variant (module docstring) and its exact grid.

    Weights of one species, flattened: ``u (correlation, len(irreps_in), k)`` then
    ``v (correlation, len(irreps_out), k)``. ``to_grid (P, (lmax_in+1)**2)`` evaluates
    coefficients at the ``P`` grid points; ``from_grid ((lmax_out+1)**2, P)`` projects back.
    """

    irreps_in: Irreps
    irreps_out: Irreps
    correlation: int
    num_species: int
    mul: int
    grid: S2Grid
    to_grid: np.ndarray
    from_grid: np.ndarray

    @property
    def weight_numel(self) -> int:
        return self.correlation * (len(self.irreps_in) + len(self.irreps_out)) * self.mul

    @property
    def lmax_in(self) -> int:
        return self.irreps_in.lmax

    @property
    def lmax_out(self) -> int:
        return self.irreps_out.lmax


@functools.lru_cache(maxsize=64)
def _build_gaunt(irreps_in: Irreps, irreps_out: Irreps, correlation: int, num_species: int):
    irreps_in, irreps_out, k = _check_irreps(irreps_in, irreps_out)
    for name, irreps in (("irreps_in", irreps_in), ("irreps_out", irreps_out)):
        if not all(ir.is_natural for _, ir in irreps):
            raise IrrepsError(f"the Gaunt variant needs natural parity irreps, {name}={irreps}")
    if len({ir.l for _, ir in irreps_in}) != len(irreps_in):
        raise IrrepsError(f"each degree at most once in irreps_in, got {irreps_in}")
    li, lo = irreps_in.lmax, irreps_out.lmax
    grid = s2grid_for((correlation - 1) * li, li, lo)
    eye_in = np.eye((li + 1) ** 2)
    t = to_grid(eye_in, li, grid).reshape((li + 1) ** 2, -1).T  # (P, (li+1)^2)
    eye_pts = np.eye(grid.n_theta * grid.n_phi).reshape(-1, grid.n_theta, grid.n_phi)
    f = from_grid(eye_pts, lo, grid).T  # ((lo+1)^2, P)
    return GauntSymmetricContractionDescriptor(
        irreps_in, irreps_out, correlation, num_species, k, grid, _readonly(t), _readonly(f)
    )


def gaunt_symmetric_contraction(
    irreps_in: Any, irreps_out: Any, correlation: int, num_species: int
) -> GauntSymmetricContractionDescriptor:
    """The frozen descriptor of the Gaunt variant (module docstring)."""
    correlation = _check_int(correlation, "correlation", 1)
    num_species = _check_int(num_species, "num_species", 1)
    irreps_in, irreps_out, _ = _check_irreps(irreps_in, irreps_out)
    return _build_gaunt(irreps_in, irreps_out, correlation, num_species)


def gaunt_split_weights(d: GauntSymmetricContractionDescriptor, weights: np.ndarray):
    """``(num_species, weight_numel)`` -> ``u (S, corr, len(in), k)``, ``v (S, corr,
    len(out), k)``."""
    S, c, k = d.num_species, d.correlation, d.mul
    nu_ = c * len(d.irreps_in) * k
    u = weights[:, :nu_].reshape(S, c, len(d.irreps_in), k)
    v = weights[:, nu_:].reshape(S, c, len(d.irreps_out), k)
    return u, v


def _sphere_coeffs(d, x: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``f[nu, c]`` coefficients: ``(n, corr, k, (lmax_in+1)**2)`` from ``x`` and ``u (n, corr,
    len(in), k)``."""
    n, k = x.shape[0], d.mul
    f = np.zeros((n, d.correlation, k, (d.lmax_in + 1) ** 2))
    for j, (sl, (_, ir)) in enumerate(zip(d.irreps_in.slices(), d.irreps_in, strict=True)):
        a = x[:, sl].reshape(n, 1, k, ir.dim)
        f[..., ir.l**2 : (ir.l + 1) ** 2] = a * u[:, :, j, :, None]
    return f


def _project_out(d, proj: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``proj (n, corr, k, (lmax_out+1)**2)``, ``v (n, corr, len(out), k)`` -> ``(n, dim_out)``."""
    n = proj.shape[0]
    outs = []
    for i, (_, ir) in enumerate(d.irreps_out):
        b = np.einsum("nckm,nck->nkm", proj[..., ir.l**2 : (ir.l + 1) ** 2], v[:, :, i, :])
        outs.append(b.reshape(n, -1))
    return np.concatenate(outs, axis=1)


def gaunt_apply(d: GauntSymmetricContractionDescriptor, x: Any, weights: Any, species: Any):
    """The Gaunt variant on its exact grid: ``x (n, dim_in)``, ``weights (num_species,
    weight_numel)``, ``species (n,)`` -> ``(n, irreps_out.dim)``, float64."""
    if not isinstance(d, GauntSymmetricContractionDescriptor):
        raise InstructionError(f"expected a GauntSymmetricContractionDescriptor, got {type(d)}")
    x, w, s = check_inputs(d, x, weights, species)
    u, v = gaunt_split_weights(d, w)
    f = _sphere_coeffs(d, x, u[s])
    vals = f @ d.to_grid.T  # (n, corr, k, P)
    powers = np.arange(1, d.correlation + 1)[None, :, None, None]
    return _project_out(d, (vals**powers) @ d.from_grid.T, v[s])


def _gaunt_product(a: np.ndarray, la: int, b: np.ndarray, lb: int) -> np.ndarray:
    """Coefficients (component SH) of the product of band-limited functions ``a`` (degree
    ``la``) and ``b`` (``lb``): ``(..., (la+lb+1)**2)``, exact."""
    out = np.zeros(a.shape[:-1] + ((la + lb + 1) ** 2,))
    for l1 in range(la + 1):
        for l2 in range(lb + 1):
            for l3 in range(abs(l1 - l2), l1 + l2 + 1):
                g = gaunt(l1, l2, l3) * math.sqrt(4 * math.pi)
                out[..., l3**2 : (l3 + 1) ** 2] += np.einsum(
                    "...a,...b,abc->...c",
                    a[..., l1**2 : (l1 + 1) ** 2],
                    b[..., l2**2 : (l2 + 1) ** 2],
                    g,
                )
    return out


def gaunt_apply_reference(d: GauntSymmetricContractionDescriptor, x: Any, weights: Any,
                          species: Any) -> np.ndarray:
    """:func:`gaunt_apply` from Gaunt coefficients (no grid): the powers ``f**nu`` by repeated
    exact products, then the output degrees' coefficients."""
    if not isinstance(d, GauntSymmetricContractionDescriptor):
        raise InstructionError(f"expected a GauntSymmetricContractionDescriptor, got {type(d)}")
    x, w, s = check_inputs(d, x, weights, species)
    u, v = gaunt_split_weights(d, w)
    f = _sphere_coeffs(d, x, u[s])
    li, lo = d.lmax_in, d.lmax_out
    proj = np.zeros(f.shape[:-1] + ((lo + 1) ** 2,))
    for nu in range(1, d.correlation + 1):
        p, lp = f[:, nu - 1], li
        for _ in range(nu - 1):
            p, lp = _gaunt_product(p, lp, f[:, nu - 1], li), lp + li
        keep = min(lp, lo)
        proj[:, nu - 1, :, : (keep + 1) ** 2] = p[..., : (keep + 1) ** 2]
    return _project_out(d, proj, v[s])
