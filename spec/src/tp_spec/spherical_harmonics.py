"""Real spherical harmonics in e3nn's basis, and their separable (Legendre x trig) pieces.

Convention (docs/conventions.md): the standard orthonormal real spherical harmonics WITHOUT the
Condon-Shortley phase, with the polar axis on ``y``::

    Y_e3nn(x, y, z) = Y_std(X=z, Y=x, Z=y),   cos(theta) = y,   phi = atan2(x, z).

Component ``m + l`` of degree ``l`` is, with ``Pt = legendre_table`` (below) and ``k_l`` the
normalization factor,

    Y_{l,0}  = k_l * Pt[l, 0](cos theta)
    Y_{l,m}  = k_l * Pt[l, m](cos theta) * sqrt(2) * cos(m phi)     (m > 0)
    Y_{l,-m} = k_l * Pt[l, m](cos theta) * sqrt(2) * sin(m phi)     (m > 0)

so ``Y^1 = k_1 sqrt(3 / 4 pi) (x, y, z)``. Normalizations (``k_l``):

* ``"integral"``: ``int_{S^2} Y_{l,m}^2 dOmega = 1`` (``k_l = 1``);
* ``"component"``: ``|Y^l(v)|^2 = 2l + 1`` on the unit sphere (``k_l = sqrt(4 pi)``);
* ``"norm"``: ``|Y^l(v)| = 1`` on the unit sphere (``k_l = sqrt(4 pi / (2l + 1))``).

Values are computed with the standard three-term recurrences of fully normalized associated
Legendre functions (no factorials), stable far beyond ``l = 30``. :func:`spherical_harmonics`
evaluates the homogeneous-polynomial form ``|v|^l Y(v / |v|)`` directly in ``(x, y, z)`` (the
trigonometric factors are ``Re/Im (z + i x)^m``), so no angle is ever formed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import DTypeError, IrrepsError, ShapeError

__all__ = [
    "NORMALIZATIONS",
    "legendre_table",
    "normalization_factors",
    "sh_index",
    "spherical_harmonics",
    "trig_table",
]

NORMALIZATIONS = ("integral", "component", "norm")


def _check_lmax(lmax: Any) -> int:
    if isinstance(lmax, bool) or not isinstance(lmax, (int, np.integer)) or lmax < 0:
        raise IrrepsError(f"lmax must be a non-negative int, got {lmax!r}")
    return int(lmax)


def _check_normalization(normalization: Any) -> str:
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"unknown normalization {normalization!r}; expected one of {NORMALIZATIONS}"
        )
    return normalization


def _as_float64(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if (
        arr.dtype == object
        or np.iscomplexobj(arr)
        or not (
            np.issubdtype(arr.dtype, np.floating)
            or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == np.bool_
        )
    ):
        raise DTypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def normalization_factors(lmax: int, normalization: str = "component") -> np.ndarray:
    """Factors ``k_l``, shape ``(lmax + 1,)``: ``Y[normalization] = k_l * Y[integral]``."""
    lmax = _check_lmax(lmax)
    _check_normalization(normalization)
    l = np.arange(lmax + 1, dtype=np.float64)
    if normalization == "integral":
        return np.ones(lmax + 1)
    if normalization == "component":
        return np.full(lmax + 1, math.sqrt(4.0 * math.pi))
    return np.sqrt(4.0 * math.pi / (2.0 * l + 1.0))


def sh_index(l: int, m: int) -> int:
    """Flat index of ``Y_{l,m}`` in the concatenation of degrees ``0..lmax``: ``l*l + l + m``."""
    if not -l <= m <= l:
        raise ValueError(f"need -l <= m <= l, got l={l}, m={m}")
    return l * l + l + m


_RECURRENCE: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _recurrence_coefficients(lmax: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients of the normalized associated Legendre recurrences (cached per lmax).

    ``diag[m]``: ``Pt[m, m] = diag[m] * s**m``;  ``Pt[l, m] = a[l, m] (t Pt[l-1, m]
    - b[l, m] Pt[l-2, m])`` for ``l >= m + 1`` (with ``Pt[m-1, m] = 0``).
    """
    if lmax not in _RECURRENCE:
        diag = np.empty(lmax + 1)
        diag[0] = 1.0 / math.sqrt(4.0 * math.pi)
        for m in range(1, lmax + 1):
            diag[m] = diag[m - 1] * math.sqrt((2.0 * m + 1.0) / (2.0 * m))
        a = np.zeros((lmax + 1, lmax + 1))
        b = np.zeros((lmax + 1, lmax + 1))
        for m in range(lmax + 1):
            for l in range(m + 1, lmax + 1):
                a[l, m] = math.sqrt((4.0 * l * l - 1.0) / (l * l - m * m))
                b[l, m] = math.sqrt(((l - 1.0) ** 2 - m * m) / (4.0 * (l - 1.0) ** 2 - 1.0))
        for arr in (diag, a, b):
            arr.setflags(write=False)
        _RECURRENCE[lmax] = (diag, a, b)
    return _RECURRENCE[lmax]


def _reduced_legendre(lmax: int, t: np.ndarray, r2: np.ndarray | float) -> list[list[np.ndarray]]:
    """``Q[m][l - m] = Pt[l, m](t) / s**m`` in homogeneous form (``r2`` = 1 on the sphere).

    Each ``Q[m][l - m]`` is a homogeneous polynomial of degree ``l - m`` in ``(t, r)``.
    """
    diag, a, b = _recurrence_coefficients(lmax)
    out: list[list[np.ndarray]] = []
    for m in range(lmax + 1):
        q_prev = np.zeros_like(t)
        q = np.full_like(t, diag[m])
        col = [q]
        for l in range(m + 1, lmax + 1):
            q_next = a[l, m] * (t * q - b[l, m] * r2 * q_prev)
            q_prev, q = q, q_next
            col.append(q)
        out.append(col)
    return out


def legendre_table(lmax: int, cos_theta: Any) -> np.ndarray:
    """Normalized associated Legendre values ``Pt[l, m]`` (``m >= 0``) at ``t = cos_theta``.

    ``cos_theta``: ``(...)`` with values in ``[-1, 1]``. Returns ``(..., lmax + 1, lmax + 1)``;
    entry ``[l, m]`` is ``sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!) P_l^m(t)`` (no Condon-Shortley
    phase, so ``Pt[m, m] >= 0``) for ``m <= l`` and 0 for ``m > l``. With it,
    ``int_{-1}^{1} Pt[l, m] Pt[l', m] dt = delta_{l l'} / (2 pi)`` and the ``integral``-normalized
    harmonic is ``Y_{l,m} = Pt[l, |m|](cos theta) * trig_m(phi)`` (see :func:`trig_table`).
    """
    lmax = _check_lmax(lmax)
    t = _as_float64(cos_theta, "cos_theta")
    if np.any(np.abs(t) > 1.0):
        raise ValueError("cos_theta must lie in [-1, 1]")
    s = np.sqrt(np.maximum(0.0, (1.0 - t) * (1.0 + t)))
    q = _reduced_legendre(lmax, t, 1.0)
    out = np.zeros(t.shape + (lmax + 1, lmax + 1))
    s_pow = np.ones_like(t)
    for m in range(lmax + 1):
        for l in range(m, lmax + 1):
            out[..., l, m] = q[m][l - m] * s_pow
        s_pow = s_pow * s
    return out


def trig_table(lmax: int, phi: Any) -> np.ndarray:
    """``trig_m(phi)`` for ``m = -lmax..lmax``: shape ``(..., 2 lmax + 1)``, index ``m + lmax``.

    ``trig_0 = 1``, ``trig_m = sqrt(2) cos(m phi)`` and ``trig_{-m} = sqrt(2) sin(m phi)`` for
    ``m > 0``; ``phi = atan2(x, z)`` in e3nn's frame.
    """
    lmax = _check_lmax(lmax)
    phi = _as_float64(phi, "phi")
    m = np.arange(-lmax, lmax + 1)
    ang = phi[..., None] * np.abs(m)
    return np.where(
        m > 0, math.sqrt(2.0) * np.cos(ang), np.where(m < 0, math.sqrt(2.0) * np.sin(ang), 1.0)
    )


def _normalize_vectors(xyz: np.ndarray) -> np.ndarray:
    """``v / |v|`` for nonzero ``v`` (overflow/underflow-safe); zero vectors stay zero."""
    scale = np.max(np.abs(xyz), axis=-1, keepdims=True)
    safe = np.where(scale > 0, scale, 1.0)
    v = xyz / safe
    norm = np.sqrt(np.sum(v * v, axis=-1, keepdims=True))
    return np.where(scale > 0, v / np.where(scale > 0, norm, 1.0), 0.0)


def _sh_all_integral(lmax: int, xyz: np.ndarray) -> np.ndarray:
    """Homogeneous ``|v|^l Y_int(v/|v|)`` for degrees ``0..lmax``: ``(..., (lmax + 1)**2)``."""
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    r2 = x * x + y * y + z * z
    q = _reduced_legendre(lmax, y, r2)
    out = np.empty(xyz.shape[:-1] + ((lmax + 1) ** 2,))
    sqrt2 = math.sqrt(2.0)
    c = np.ones_like(x)  # Re (z + i x)^m
    s = np.zeros_like(x)  # Im (z + i x)^m
    for m in range(lmax + 1):
        for l in range(m, lmax + 1):
            base = l * l + l
            if m == 0:
                out[..., base] = q[0][l]
            else:
                out[..., base + m] = sqrt2 * q[m][l - m] * c
                out[..., base - m] = sqrt2 * q[m][l - m] * s
        c, s = z * c - x * s, z * s + x * c
    return out


def spherical_harmonics(
    lmax_or_irreps: Any,
    xyz: Any,
    normalization: str = "component",
    normalize: bool = True,
) -> np.ndarray:
    """Real spherical harmonics of ``xyz`` in e3nn's basis and layout.

    Args:
        lmax_or_irreps: an int ``lmax`` (every degree ``0..lmax`` concatenated,
            ``(lmax + 1)**2`` components; note that e3nn's int argument means the single degree
            ``l``), a list of ints (those degrees, in order, as e3nn), or irreps
            (``Irreps``/str/``Irrep``) whose blocks are produced in order, each repeated ``mul``
            times. Every irrep must have the natural parity ``(-1)**l`` (``0e, 1o, 2e, ...``);
            otherwise :class:`IrrepsError`.
        xyz: ``(..., 3)`` real array.
        normalization: ``"integral"``, ``"component"`` (default here; e3nn's own default is
            ``"integral"``) or ``"norm"``.
        normalize: if True, evaluate at ``xyz / |xyz|``. A zero vector stays zero, so it gives
            ``Y^0`` = its constant and ``Y^l = 0`` for ``l >= 1`` (e3nn gives the same values;
            unlike e3nn, which clamps ``|xyz|`` at 1e-12, every nonzero vector is normalized
            exactly). If False, the homogeneous polynomial ``|xyz|^l Y^l(xyz / |xyz|)``.

    Returns:
        float64 array ``(..., dim)``.
    """
    _check_normalization(normalization)
    arr = _as_float64(xyz, "xyz")
    if arr.ndim == 0 or arr.shape[-1] != 3:
        raise ShapeError(f"xyz must have shape (..., 3), got {arr.shape}")
    if normalize:
        arr = _normalize_vectors(arr)

    if isinstance(lmax_or_irreps, (int, np.integer)) and not isinstance(lmax_or_irreps, bool):
        lmax = _check_lmax(lmax_or_irreps)
        blocks = None
    else:
        from .irreps import Irrep, Irreps

        if isinstance(lmax_or_irreps, (list, tuple)) and all(
            isinstance(l, (int, np.integer)) and not isinstance(l, bool) for l in lmax_or_irreps
        ):
            lmax_or_irreps = [Irrep(int(_check_lmax(l)), (-1) ** int(l)) for l in lmax_or_irreps]
        irreps = Irreps(lmax_or_irreps)
        for _mul, ir in irreps:
            if ir.p != (-1) ** ir.l:
                raise IrrepsError(
                    f"spherical harmonics only exist for irreps of parity (-1)**l; "
                    f"{ir!r} in {irreps!r} has parity {ir.p:+d}"
                )
        blocks = [(mul, ir.l) for mul, ir in irreps]
        if not blocks:
            return np.zeros(arr.shape[:-1] + (0,))
        lmax = max(l for _, l in blocks)

    sh = _sh_all_integral(lmax, arr)
    k = normalization_factors(lmax, normalization)
    sh = sh * np.repeat(k, 2 * np.arange(lmax + 1) + 1)
    if blocks is None:
        return sh
    parts = []
    for mul, l in blocks:
        part = sh[..., l * l : (l + 1) * (l + 1)]
        parts.extend([part] * mul)
    if not parts:
        return np.zeros(arr.shape[:-1] + (0,))
    return np.concatenate(parts, axis=-1)
