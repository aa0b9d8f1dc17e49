"""Gauss-Legendre x uniform-phi grids on the sphere and separable spherical-harmonic transforms.

A grid has ``n_theta`` Gauss-Legendre nodes in ``t = cos(theta)`` (ascending, so ``theta``
descends from near ``pi`` to near 0) and ``n_phi`` uniform angles ``phi_j = 2 pi j / n_phi``. The
point ``(i, j)`` is ``(x, y, z) = (sin theta_i sin phi_j, cos theta_i, sin theta_i cos phi_j)``
(e3nn's frame: polar axis ``y``, ``phi = atan2(x, z)``). Quadrature ``sum_ij w_ij f_ij`` integrates
over the sphere exactly every polynomial of total degree ``<= min(2 n_theta - 1, n_phi - 1)``
(:attr:`S2Grid.exact_degree`).

Exactness rule (docs/families.md): the product of functions of degrees ``L1`` and ``L2``
projected onto degrees ``<= Lout`` is exact iff ``n_theta >= ceil((L1 + L2 + Lout + 1) / 2)`` and
``n_phi >= L1 + L2 + Lout + 1`` (:func:`s2grid_for`).

The transforms are separable and per order ``m`` (clear reference versions; backends
reimplement them fast from the exported constants):

* :func:`to_grid`: ``A[i, m] = sum_{l >= |m|} c[l, m] * PL[|m|][l - |m|, i]`` (Legendre step,
  O(L^2 n_theta) in all), then ``f[i, j] = sum_m A[i, m] * T[m, j]`` (a real DFT over ``phi``).
* :func:`from_grid`: ``B[i, m] = sum_j f[i, j] * TF[j, m]`` then
  ``c[l, m] = sum_i B[i, m] * PF[|m|][i, l - |m|]``.

with ``PL/PF = legendre_matrices(..., direction="to_grid"/"from_grid")`` and
``T/TF = phi_matrix(..., direction=...)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.polynomial.legendre import leggauss

from .errors import ShapeError
from .spherical_harmonics import (
    _as_float64,
    _check_lmax,
    _check_normalization,
    legendre_table,
    normalization_factors,
    trig_table,
)

__all__ = [
    "S2Grid",
    "from_grid",
    "legendre_matrices",
    "phi_matrix",
    "s2grid_for",
    "to_grid",
]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class S2Grid:
    """A Gauss-Legendre (in ``cos theta``) x uniform-``phi`` grid. Arrays are read-only.

    Attributes:
        n_theta, n_phi: grid size.
        cos_theta: ``(n_theta,)`` Gauss-Legendre nodes, ascending.
        theta_weights: ``(n_theta,)`` Gauss-Legendre weights (sum 2).
        phi: ``(n_phi,)`` ``2 pi j / n_phi``.
        weights: ``(n_theta, n_phi)`` ``theta_weights[i] * 2 pi / n_phi``; ``sum(weights * f)`` is
            the integral of ``f`` over the unit sphere (sum ``4 pi``).

    Build with :meth:`S2Grid.gauss_legendre` or :func:`s2grid_for`.
    """

    n_theta: int
    n_phi: int
    cos_theta: np.ndarray
    theta_weights: np.ndarray
    phi: np.ndarray
    weights: np.ndarray

    def __post_init__(self) -> None:
        for name in ("n_theta", "n_phi"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        shapes = {
            "cos_theta": (self.n_theta,),
            "theta_weights": (self.n_theta,),
            "phi": (self.n_phi,),
            "weights": (self.n_theta, self.n_phi),
        }
        for name, shape in shapes.items():
            arr = _readonly(getattr(self, name))
            if arr.shape != shape:
                raise ShapeError(f"S2Grid.{name} must have shape {shape}, got {arr.shape}")
            object.__setattr__(self, name, arr)

    @classmethod
    def gauss_legendre(cls, n_theta: int, n_phi: int) -> S2Grid:
        """The grid with ``n_theta`` Gauss-Legendre nodes and ``n_phi`` uniform angles."""
        for name, v in (("n_theta", n_theta), ("n_phi", n_phi)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        t, w = leggauss(int(n_theta))
        phi = 2.0 * math.pi * np.arange(n_phi) / n_phi
        return cls(
            n_theta=int(n_theta),
            n_phi=int(n_phi),
            cos_theta=t,
            theta_weights=w,
            phi=phi,
            weights=np.outer(w, np.full(n_phi, 2.0 * math.pi / n_phi)),
        )

    @property
    def exact_degree(self) -> int:
        """Largest total polynomial degree integrated exactly: ``min(2 n_theta - 1, n_phi - 1)``."""
        return min(2 * self.n_theta - 1, self.n_phi - 1)

    @property
    def sin_theta(self) -> np.ndarray:
        """``(n_theta,)`` ``sqrt(1 - cos_theta**2)``."""
        t = self.cos_theta
        return np.sqrt((1.0 - t) * (1.0 + t))

    @property
    def points(self) -> np.ndarray:
        """``(n_theta, n_phi, 3)`` unit vectors ``(sin t sin p, cos t, sin t cos p)``."""
        s = self.sin_theta[:, None]
        return np.stack(
            [
                s * np.sin(self.phi)[None, :],
                np.broadcast_to(self.cos_theta[:, None], (self.n_theta, self.n_phi)),
                s * np.cos(self.phi)[None, :],
            ],
            axis=-1,
        )

    def __repr__(self) -> str:
        return f"S2Grid(n_theta={self.n_theta}, n_phi={self.n_phi})"


def s2grid_for(l1: int, l2: int, lout: int, *, odd_phi: bool = False) -> S2Grid:
    """Minimal grid on which ``project_lout(f1 * f2)`` is exact (deg ``f1 <= l1``, ``f2 <= l2``).

    ``n_theta = ceil((l1 + l2 + lout + 1) / 2)``, ``n_phi = l1 + l2 + lout + 1``, rounded up to
    the next odd number if ``odd_phi`` (as an FFT over ``phi`` wants). For a plain round trip
    ``from_grid(to_grid(c))`` of degree ``L`` use ``s2grid_for(L, 0, L)``.
    """
    for v in (l1, l2, lout):
        _check_lmax(v)
    total = l1 + l2 + lout
    n_theta = (total + 2) // 2
    n_phi = total + 1
    if odd_phi and n_phi % 2 == 0:
        n_phi += 1
    return S2Grid.gauss_legendre(n_theta, n_phi)


def _check_grid(grid: Any) -> S2Grid:
    if not isinstance(grid, S2Grid):
        raise TypeError(f"grid must be an S2Grid, got {type(grid).__name__}")
    return grid


def legendre_matrices(
    lmax: int, grid: S2Grid, normalization: str = "component", direction: str = "to_grid"
) -> tuple[np.ndarray, ...]:
    """Per-order Legendre matrices: a tuple of ``lmax + 1`` arrays, entry ``m`` for ``|m| = m``.

    ``direction="to_grid"``: entry ``m`` has shape ``(lmax + 1 - m, n_theta)``,
    ``[l - m, i] = k_l * Pt[l, m](cos_theta_i)`` (``k_l`` from ``normalization``).
    ``direction="from_grid"``: entry ``m`` has shape ``(n_theta, lmax + 1 - m)``,
    ``[i, l - m] = 2 pi * theta_weights_i * Pt[l, m](cos_theta_i) / k_l`` (the projection; on a
    grid with ``n_theta > lmax`` it is the inverse: ``to[m] @ from[m] = I``).
    """
    lmax = _check_lmax(lmax)
    grid = _check_grid(grid)
    _check_normalization(normalization)
    pt = legendre_table(lmax, grid.cos_theta)  # (n_theta, l, m)
    k = normalization_factors(lmax, normalization)
    out = []
    for m in range(lmax + 1):
        block = pt[:, m:, m]  # (n_theta, lmax + 1 - m)
        if direction == "to_grid":
            mat = (block * k[m:]).T
        elif direction == "from_grid":
            mat = block * (2.0 * math.pi * grid.theta_weights[:, None]) / k[m:]
        else:
            raise ValueError(f"direction must be 'to_grid' or 'from_grid', got {direction!r}")
        out.append(_readonly(mat))
    return tuple(out)


def phi_matrix(lmax: int, grid: S2Grid, direction: str = "to_grid") -> np.ndarray:
    """Real DFT matrix over ``phi``.

    ``direction="to_grid"``: ``(2 lmax + 1, n_phi)``, ``[m + lmax, j] = trig_m(phi_j)``
    (1, ``sqrt2 cos(m phi)``, ``sqrt2 sin(|m| phi)`` for ``m = 0, > 0, < 0``).
    ``direction="from_grid"``: ``(n_phi, 2 lmax + 1)``, the transpose divided by ``n_phi`` (so
    ``to @ from = I`` when ``n_phi > 2 lmax``; the ``2 pi`` of the ``phi`` integral sits in the
    ``from_grid`` Legendre matrices).
    """
    lmax = _check_lmax(lmax)
    grid = _check_grid(grid)
    t = trig_table(lmax, grid.phi)  # (n_phi, 2 lmax + 1)
    if direction == "to_grid":
        return _readonly(t.T)
    if direction == "from_grid":
        return _readonly(t / grid.n_phi)
    raise ValueError(f"direction must be 'to_grid' or 'from_grid', got {direction!r}")


def _order_indices(lmax: int, m: int) -> np.ndarray:
    """Flat indices of ``(l, m)`` for ``l = |m|..lmax``."""
    l = np.arange(abs(m), lmax + 1)
    return l * l + l + m


def to_grid(coeffs: Any, lmax: int, grid: S2Grid, normalization: str = "component") -> np.ndarray:
    """Evaluate ``f = sum_{l <= lmax, m} c_{l,m} Y_{l,m}`` on the grid.

    ``coeffs``: ``(..., (lmax + 1)**2)`` (degrees ``0..lmax`` concatenated, index ``l*l + l + m``);
    returns ``(..., n_theta, n_phi)``. Pointwise evaluation: valid on any grid.
    """
    lmax = _check_lmax(lmax)
    grid = _check_grid(grid)
    c = _as_float64(coeffs, "coeffs")
    if c.ndim == 0 or c.shape[-1] != (lmax + 1) ** 2:
        raise ShapeError(
            f"coeffs must have shape (..., {(lmax + 1) ** 2}) for lmax={lmax}, got {c.shape}"
        )
    pl = legendre_matrices(lmax, grid, normalization, "to_grid")
    t = phi_matrix(lmax, grid, "to_grid")
    a = np.zeros(c.shape[:-1] + (grid.n_theta, 2 * lmax + 1))
    for m in range(-lmax, lmax + 1):
        a[..., :, m + lmax] = c[..., _order_indices(lmax, m)] @ pl[abs(m)]
    return a @ t


def from_grid(values: Any, lmax: int, grid: S2Grid, normalization: str = "component") -> np.ndarray:
    """Project grid values onto ``Y_{l,m}``, ``l <= lmax``, with the grid's quadrature.

    ``values``: ``(..., n_theta, n_phi)``; returns ``(..., (lmax + 1)**2)`` with
    ``c_{l,m} = sum_ij w_ij f_ij Y_{l,m}(ij) / ||Y_{l,m}||^2`` (``||Y||^2 = k_l^2``), the
    coefficients in the same basis as :func:`to_grid`, so ``from_grid(to_grid(c)) = c`` whenever
    ``grid.exact_degree >= 2 lmax``. Exact for band-limited ``f`` of degree ``L`` when
    ``grid.exact_degree >= L + lmax``.
    """
    lmax = _check_lmax(lmax)
    grid = _check_grid(grid)
    f = _as_float64(values, "values")
    if f.ndim < 2 or f.shape[-2:] != (grid.n_theta, grid.n_phi):
        raise ShapeError(
            f"values must have shape (..., {grid.n_theta}, {grid.n_phi}) for {grid!r}, "
            f"got {f.shape}"
        )
    pf = legendre_matrices(lmax, grid, normalization, "from_grid")
    tf = phi_matrix(lmax, grid, "from_grid")
    b = f @ tf  # (..., n_theta, 2 lmax + 1)
    out = np.zeros(f.shape[:-2] + ((lmax + 1) ** 2,))
    for m in range(-lmax, lmax + 1):
        out[..., _order_indices(lmax, m)] = b[..., :, m + lmax] @ pf[abs(m)]
    return out
