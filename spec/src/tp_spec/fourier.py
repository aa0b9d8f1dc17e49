"""Exact 2D-Fourier tables for the Fourier Gaunt tensor product (Luo et al., ICLR 2024).

Convention (docs/conventions.md): e3nn real spherical harmonics, polar axis y,
``cos(theta) = y``, ``phi = atan2(x, z)``, no Condon-Shortley phase::

    Y_lm = N_lm * P_l^|m|(cos theta) * {cos(m phi) (m > 0), 1 (m = 0), sin(|m| phi) (m < 0)}
    P_l^m(x) = (1 - x^2)^(m/2) d^m/dx^m P_l(x)

On the torus ``(theta, phi) in [0, 2pi)^2`` we replace ``(1 - x^2)^(m/2)`` by ``sin(theta)^m``
(the double-Fourier-sphere extension; it satisfies ``Y(-theta, phi + pi) = Y(theta, phi)``), so
every ``Y_lm`` is a trigonometric polynomial of degree ``l`` in each angle::

    Y_lm(theta, phi) = sum_{u, v} c[lm, u, v] exp(i u theta) exp(i v phi)

**Forward table** (:func:`sh_to_fourier`). With ``a_lm[u]`` integers (``|m|`` only)::

    P_l^m(cos theta) = i^(-m) 4^(-l) sum_u a_lm[u] exp(i u theta),   u = -l, -l+2, ..., l
    a_lm[u] = sum_k (-1)^k C(l,k) C(2l-2k,l) (l-2k)!/(l-2k-m)! 4^k  [sin^m cos^j](u),
              j = l-2k-m,  [sin^m cos^j](u) = sum_{2a-m+2b-j=u} C(m,a)(-1)^(m-a) C(j,b)

and the phi factor is ``B(v)``: ``m > 0``: ``1/2`` at ``v = +-m``; ``m = 0``: ``1`` at ``v = 0``;
``m < 0``: ``-i/2`` at ``v = |m|``, ``+i/2`` at ``v = -|m|``. So
``c[lm, u, v] = N_lm i^(-|m|) a_lm[u] 4^(-l) B(v)``: each entry is real or purely imaginary,
``i^(-|m|) * (1 if m >= 0 else -+i)``, times ``sqrt(rational)``. ``N_lm^2`` is rational for
``component`` (``(2l+1)(l-|m|)!/(l+|m|)! * (2 if m != 0)``) and ``norm`` (that over ``2l+1``);
``integral`` is ``component / sqrt(4 pi)``: the table carries ``pi_power = -1/2`` (one global
factor). Only ``v = +-m`` and ``u = l (mod 2)`` occur, and ``u = 0`` vanishes for even ``l`` and
odd ``m`` (the theta factor is then odd in theta). Hence ``nnz <= sum_l (l+1)(4l+1) - [l even] 2l``
(:func:`fourier_nnz_bound`, O(L^3)), with equality for ``lmax <= 7``; a few further coefficients
vanish by accident (``(l, |m|, u) = (8, 2, +-6), (8, 6, +-2), (17, 14, +-5), (18, 3, 0 and +-16),
(18, 13, 0 and +-4)`` up to ``l = 20``) and are left out of the sparse table.

**Projection table** (:func:`fourier_to_sh`). For ``f = sum F[u, v] exp(i u theta + i v phi)``
it returns the coefficients of ``f`` in the dual basis, ``z_lm = <f, Y_lm> / <Y_lm, Y_lm>`` with
``<f, g> = int_{S^2} f g dOmega``, computed as ``(1/2) int_{torus} f Y |sin theta|``. This is
the sphere integral whenever ``f(-theta, phi + pi) = f(theta, phi)`` (every product of
forward-table outputs), and it is rational per mode::

    (1/2) int_0^2pi exp(i k theta) |sin theta| dtheta = 2/(1 - k^2) (k even),  0 (k odd)

With ``phi`` integrated exactly (only ``v = +-m`` survive)::

    z_lm = w_l sum_{u,v} F[u,v] sum_{u'} c[lm, u', -v] * 2pi * I(u + u'),  I(k) = 2/(1-k^2), k even

``w_l = 1/<Y_lm, Y_lm>``: ``1/(4 pi)`` (component), ``(2l+1)/(4 pi)`` (norm), ``1`` (integral).
Component and norm entries are ``sqrt(rational)`` times ``1`` or ``i``; integral entries are
``sqrt(4 pi)`` times the component ones (``pi_power = +1/2``).

**Gaunt product** (:func:`fourier_gtp_reference`): ``z = fourier_to_sh(F1 * F2) / Y_00``, so the
constant function (``e0 = [1, 0, ...]``) is the unit: ``GTP(x, e0) = x``. With ``component``
features that is ``z_lm = (1/(4 pi)) int f1 f2 Y_lm dOmega = sqrt(4 pi) * sum G x1 x2`` where
``G`` is the Gaunt table of integral-normalized SH (docs/conventions.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from functools import cache, lru_cache
from typing import Any

import numpy as np

from tp_spec.errors import DTypeError, IrrepsError, ShapeError
from tp_spec.sqrt_rational import SqrtRational

__all__ = [
    "ExactFourierTable",
    "FourierTable",
    "NORMALIZATIONS",
    "fourier_gtp_reference",
    "fourier_nnz_bound",
    "fourier_to_sh",
    "fourier_to_sh_exact",
    "sh_to_fourier",
    "sh_to_fourier_exact",
]

NORMALIZATIONS = ("component", "norm", "integral")

_PI_DIGITS = "3.14159265358979323846264338327950288419716939937510582097494459230781640628620899"


# ----------------------------------------------------------------------------- tables


@dataclass(frozen=True, eq=False)
class ExactFourierTable:
    """Sparse exact table. Entry ``k`` is ``(1j if imag[k] else 1) * values[k] * pi**pi_power``.

    ``kind``: ``"sh_to_fourier"`` (dense shape ``(dim, 2K+1, 2K+1)``, maps SH coefficients to
    Fourier coefficients) or ``"fourier_to_sh"`` (same dense shape, the projection back).
    ``dim = (lmax+1)**2``, ``K = fourier_lmax``; ``indices``: read-only int64 ``(nnz, 3)`` rows
    ``(sh_index, u, v)`` with ``sh_index = l*l + l + m`` and ``-K <= u, v <= K``, sorted;
    ``imag``: read-only bool ``(nnz,)``; ``values``: nonzero real :class:`SqrtRational`.
    """

    kind: str
    lmax: int
    fourier_lmax: int
    normalization: str
    indices: np.ndarray
    imag: np.ndarray
    values: tuple[SqrtRational, ...]
    pi_power: Fraction

    @property
    def shape(self) -> tuple[int, int, int]:
        n = 2 * self.fourier_lmax + 1
        return ((self.lmax + 1) ** 2, n, n)

    @property
    def nnz(self) -> int:
        return len(self.values)

    def squares(self) -> list[Fraction]:
        """Exact squares ``entry**2 / pi**(2 pi_power)``: signed rationals (``i**2 = -1``)."""
        return [(-1 if im else 1) * v.square() for im, v in zip(self.imag, self.values,
                                                                 strict=True)]

    def to_float(self, dtype: Any = np.float64) -> FourierTable:
        """Rounded table; ``dtype`` float64/float32 (or complex128/complex64)."""
        cdt = _complex_dtype(dtype)
        rdt = np.float64 if cdt == np.complex128 else np.float32
        mags = np.array([_round(v, self.pi_power, rdt) for v in self.values], dtype=rdt)
        vals = np.where(self.imag, 1j * mags, mags).astype(cdt)
        vals.setflags(write=False)
        return FourierTable(self.kind, self.lmax, self.fourier_lmax, self.normalization,
                            self.indices, vals)


@dataclass(frozen=True, eq=False)
class FourierTable:
    """Sparse float table: ``dense[indices[k, 0], indices[k, 1] + K, indices[k, 2] + K] =
    values[k]`` (complex). See :class:`ExactFourierTable` for the meaning of the fields.

    ``sh_to_fourier``: ``F[..., u+K, v+K] = sum_s x[..., s] dense[s, u+K, v+K]``.
    ``fourier_to_sh``: ``z[..., s] = sum_{u,v} dense[s, u+K, v+K] F[..., u+K, v+K]``.
    """

    kind: str
    lmax: int
    fourier_lmax: int
    normalization: str
    indices: np.ndarray
    values: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        n = 2 * self.fourier_lmax + 1
        return ((self.lmax + 1) ** 2, n, n)

    @property
    def nnz(self) -> int:
        return int(self.values.shape[0])

    def to_dense(self) -> np.ndarray:
        """Dense complex array ``(dim, 2K+1, 2K+1)``, ``u`` and ``v`` offset by ``K``."""
        out = np.zeros(self.shape, dtype=self.values.dtype)
        k = self.fourier_lmax
        out[self.indices[:, 0], self.indices[:, 1] + k, self.indices[:, 2] + k] = self.values
        return out


# ----------------------------------------------------------------------------- helpers


def _check_lmax(name: str, lmax: Any) -> int:
    if isinstance(lmax, bool) or not isinstance(lmax, (int, np.integer)) or lmax < 0:
        raise IrrepsError(f"{name} must be a non-negative int, got {lmax!r}")
    return int(lmax)


def _check_normalization(normalization: Any) -> str:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    return normalization


def _complex_dtype(dtype: Any) -> type:
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise DTypeError(f"unsupported dtype {dtype!r}") from e
    if dt in (np.dtype(np.float64), np.dtype(np.complex128)):
        return np.complex128
    if dt in (np.dtype(np.float32), np.dtype(np.complex64)):
        return np.complex64
    raise DTypeError(f"unsupported dtype {dt}: use float64 or float32")


def _round(v: SqrtRational, pi_power: Fraction, dtype: Any) -> float:
    """``v * pi**pi_power`` rounded to ``dtype`` (correctly rounded when ``pi_power == 0``)."""
    if pi_power == 0:
        return v.to_float(dtype)
    # sqrt(p/q * pi^(2 pi_power)) to 60 significant digits, then one rounding to float64.
    with localcontext() as ctx:
        ctx.prec = 60
        pi2 = Decimal(_PI_DIGITS) ** int(2 * pi_power)
        mag = (Decimal(v.p) / Decimal(v.q) * pi2).sqrt()
    return v.sign * float(np.dtype(dtype).type(float(mag)))


def _freeze(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@cache
def _theta_coeffs(l: int, m: int) -> tuple[int, ...]:
    """Integers ``a[u + l]`` with ``P_l^m(cos t) = i^(-m) 4^(-l) sum_u a[u] exp(i u t)``, m >= 0.

    ``P_l^m`` without Condon-Shortley phase, ``(1-x^2)^(m/2)`` read as ``sin(t)^m``.
    """
    size = 2 * l + 1
    # cosine part: sum_k coef_k cos^j, j = l - 2k - m, each cos^j scaled to denominator 4^l/2^m
    cos_part = [0] * size  # index w + l, w = frequency
    for k in range((l - m) // 2 + 1):
        j = l - 2 * k - m
        coef = ((-1) ** k * math.comb(l, k) * math.comb(2 * l - 2 * k, l)
                * math.factorial(l - 2 * k) // math.factorial(j) * 4**k)
        for b in range(j + 1):
            cos_part[2 * b - j + l] += coef * math.comb(j, b)
    # multiply by (2i)^m sin^m = (e^{it} - e^{-it})^m
    out = [0] * size
    for a in range(m + 1):
        s = math.comb(m, a) * (-1) ** (m - a)
        shift = 2 * a - m
        for w in range(size):
            c = cos_part[w]
            if c:
                out[w + shift] += s * c
    return tuple(out)


def _norm_sq_component(l: int, am: int) -> Fraction:
    """``N_lm^2`` for component normalization (``|Y_l|^2 = 2l+1`` on the sphere)."""
    f = Fraction((2 * l + 1) * math.factorial(l - am), math.factorial(l + am))
    return 2 * f if am else f


def _phi_factor(m: int, v: int) -> tuple[int, Fraction]:
    """``B(v)`` as ``(power of i, magnitude squared)`` for the phi factor of ``Y_lm``."""
    if m == 0:
        return 0, Fraction(1)
    if m > 0:
        return 0, Fraction(1, 4)
    return (3 if v > 0 else 1), Fraction(1, 4)


def _make_exact(kind: str, lmax: int, klim: int, normalization: str,
                rows: list[tuple[int, int, int, int, Fraction]],
                pi_power: Fraction) -> ExactFourierTable:
    """rows: (sh_index, u, v, phase (power of i), signed magnitude squared... as sqrt arg)."""
    rows.sort(key=lambda r: r[:3])
    indices = np.array([r[:3] for r in rows], dtype=np.int64).reshape(-1, 3)
    imag = np.array([r[3] % 2 == 1 for r in rows], dtype=bool)
    values = tuple(
        SqrtRational(1 if r[3] % 4 in (0, 1) else -1, r[4].numerator, r[4].denominator)
        for r in rows
    )
    return ExactFourierTable(kind, lmax, klim, normalization, _freeze(indices), _freeze(imag),
                             values, pi_power)


# ----------------------------------------------------------------------------- forward


@lru_cache(maxsize=64)
def sh_to_fourier_exact(lmax: int, normalization: str = "component") -> ExactFourierTable:
    """Exact table ``c[lm, u, v]`` with ``Y_lm = sum c exp(i u theta + i v phi)``, ``l <= lmax``.

    Dense shape ``((lmax+1)**2, 2 lmax + 1, 2 lmax + 1)``; ``pi_power`` is ``-1/2`` for
    ``integral`` and ``0`` otherwise.
    """
    lmax = _check_lmax("lmax", lmax)
    normalization = _check_normalization(normalization)
    rows: list[tuple[int, int, int, int, Fraction]] = []
    for l in range(lmax + 1):
        den = Fraction(1, 16**l)
        for m in range(-l, l + 1):
            am = abs(m)
            a = _theta_coeffs(l, am)
            n2 = _norm_sq_component(l, am)
            if normalization == "norm":
                n2 /= 2 * l + 1
            elif normalization == "integral":
                n2 /= 4  # times pi^(-1/2): 1/sqrt(4 pi) = (1/2) pi^(-1/2)
            for v in ((0,) if m == 0 else (am, -am)):
                bphase, b2 = _phi_factor(m, v)
                for iu, au in enumerate(a):
                    if au == 0:
                        continue
                    phase = (-am + bphase + (2 if au < 0 else 0)) % 4
                    rows.append((l * l + l + m, iu - l, v, phase, n2 * b2 * au * au * den))
    pi_power = Fraction(-1, 2) if normalization == "integral" else Fraction(0)
    return _make_exact("sh_to_fourier", lmax, lmax, normalization, rows, pi_power)


@lru_cache(maxsize=64)
def sh_to_fourier(lmax: int, normalization: str = "component",
                  dtype: Any = np.float64) -> FourierTable:
    """Float version of :func:`sh_to_fourier_exact` (complex128 for float64, complex64 for
    float32); ``to_dense()`` gives ``((lmax+1)**2, 2 lmax + 1, 2 lmax + 1)``."""
    return sh_to_fourier_exact(lmax, normalization).to_float(dtype)


def fourier_nnz_bound(lmax: int) -> int:
    """Structural nonzero count of :func:`sh_to_fourier_exact` ``(lmax)`` (O(lmax^3)): the
    entries with ``v = +-m``, ``u = l (mod 2)``, not ``(u = 0, l even, m odd)``. Exact for
    ``lmax <= 7``; accidental zeros make the true count smaller from ``l = 8`` on."""
    lmax = _check_lmax("lmax", lmax)
    return sum((l + 1) * (4 * l + 1) - (2 * l if l % 2 == 0 else 0) for l in range(lmax + 1))


# ----------------------------------------------------------------------------- projection


@cache
def _theta_projection(l: int, am: int, klim: int) -> tuple[Fraction, ...]:
    """``r[u + K] = sum_u' a_lm[u'] I(u + u')``, ``I(k) = 2/(1 - k^2)`` for even k (else 0)."""
    a = _theta_coeffs(l, am)
    out = []
    for u in range(-klim, klim + 1):
        if (u - l) % 2:
            out.append(Fraction(0))
            continue
        # common denominator of the 1 - k^2 terms, integer accumulation
        terms = [(au, 1 - (u + up) ** 2) for up, au in zip(range(-l, l + 1), a, strict=True)
                 if au]
        den = 1
        for _, d in terms:
            den = den * abs(d) // math.gcd(den, abs(d))
        num = sum(2 * au * (den // d) for au, d in terms)
        out.append(Fraction(num, den))
    return tuple(out)


@lru_cache(maxsize=64)
def fourier_to_sh_exact(lmax_out: int, lmax_in_fourier: int,
                        normalization: str = "component") -> ExactFourierTable:
    """Exact projection table ``T[lm, u, v]``: ``z_lm = sum_{u,v} T[lm,u,v] F[u,v]``.

    ``F`` holds Fourier coefficients for ``-K <= u, v <= K`` (``K = lmax_in_fourier``);
    ``z_lm = <f, Y_lm> / <Y_lm, Y_lm>`` for ``l <= lmax_out`` (see the module docstring; exact
    for functions lifted from the sphere). Dense shape ``((lmax_out+1)**2, 2K+1, 2K+1)``;
    ``pi_power`` is ``+1/2`` for ``integral`` and ``0`` otherwise.
    """
    lmax_out = _check_lmax("lmax_out", lmax_out)
    klim = _check_lmax("lmax_in_fourier", lmax_in_fourier)
    normalization = _check_normalization(normalization)
    rows: list[tuple[int, int, int, int, Fraction]] = []
    for l in range(lmax_out + 1):
        den = Fraction(1, 16**l)
        for m in range(-l, l + 1):
            am = abs(m)
            if am > klim:
                continue
            r = _theta_projection(l, am, klim)
            # T = w_l * 2 pi * N i^(-|m|) B(-v) 4^(-l) r[u]; component: w_l * 2 pi = 1/2
            n2 = _norm_sq_component(l, am) / 4
            if normalization == "norm":
                n2 *= 2 * l + 1  # sqrt(2l+1) times the component entry
            elif normalization == "integral":
                n2 *= 4  # sqrt(4 pi) times the component entry: 4 here, pi in pi_power
            for v in ((0,) if m == 0 else (am, -am)):
                bphase, b2 = _phi_factor(m, -v)
                for iu, ru in enumerate(r):
                    if ru == 0:
                        continue
                    phase = (-am + bphase + (2 if ru < 0 else 0)) % 4
                    rows.append((l * l + l + m, iu - klim, v, phase, n2 * b2 * ru * ru * den))
    pi_power = Fraction(1, 2) if normalization == "integral" else Fraction(0)
    return _make_exact("fourier_to_sh", lmax_out, klim, normalization, rows, pi_power)


@lru_cache(maxsize=64)
def fourier_to_sh(lmax_out: int, lmax_in_fourier: int, normalization: str = "component",
                  dtype: Any = np.float64) -> FourierTable:
    """Float version of :func:`fourier_to_sh_exact`; ``to_dense()`` gives
    ``((lmax_out+1)**2, 2K+1, 2K+1)`` complex with ``K = lmax_in_fourier``."""
    return fourier_to_sh_exact(lmax_out, lmax_in_fourier, normalization).to_float(dtype)


# ----------------------------------------------------------------------------- reference GTP


def _check_features(name: str, x: Any, lmax: int) -> np.ndarray:
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise DTypeError(f"{name} must be a real floating array, got dtype {x.dtype}")
    dim = (lmax + 1) ** 2
    if x.ndim == 0 or x.shape[-1] != dim:
        raise ShapeError(f"{name} must have shape (..., {dim}) for lmax={lmax}, got {x.shape}")
    return x.astype(np.float64, copy=False)


def fourier_gtp_reference(x1: Any, x2: Any, lmax1: int, lmax2: int, lmax_out: int,
                          normalization: str = "component") -> np.ndarray:
    """Gaunt tensor product of one parity class through 2D Fourier series (NumPy, float64).

    ``x1``: ``(..., (lmax1+1)**2)``, ``x2``: ``(..., (lmax2+1)**2)`` with equal leading shapes
    (no broadcasting), all degrees ``0..lmax`` in e3nn order. Returns ``(..., (lmax_out+1)**2)``
    float64: ``z = P(f1 * f2) / Y_00`` where ``f_i = sum x_i Y`` and ``P`` is the projection
    :func:`fourier_to_sh`. So ``GTP(x, e0) = x``; with ``component`` normalization
    ``z_lm = (1/(4 pi)) int f1 f2 Y_lm dOmega``. Steps: ``F_i = x_i @ sh_to_fourier``; the
    product ``F1 * F2`` is a 2D linear convolution done with FFTs on zero-padded
    ``(2(lmax1+lmax2)+1)^2`` arrays; then ``z = Re(fourier_to_sh(lmax_out, lmax1+lmax2) F)``.
    """
    lmax1 = _check_lmax("lmax1", lmax1)
    lmax2 = _check_lmax("lmax2", lmax2)
    lmax_out = _check_lmax("lmax_out", lmax_out)
    normalization = _check_normalization(normalization)
    x1 = _check_features("x1", x1, lmax1)
    x2 = _check_features("x2", x2, lmax2)
    if x1.shape[:-1] != x2.shape[:-1]:
        raise ShapeError(f"x1 and x2 need equal leading shapes, got {x1.shape} and {x2.shape}")
    k = lmax1 + lmax2
    n = 2 * k + 1
    f1 = np.einsum("...s,suv->...uv", x1, sh_to_fourier(lmax1, normalization).to_dense())
    f2 = np.einsum("...s,suv->...uv", x2, sh_to_fourier(lmax2, normalization).to_dense())
    # index p = u + lmax_i on each input; the linear convolution lands on u + k < n: no wrap
    g = np.fft.ifft2(np.fft.fft2(f1, s=(n, n)) * np.fft.fft2(f2, s=(n, n)))
    proj = fourier_to_sh(lmax_out, k, normalization).to_dense()
    z = np.einsum("...uv,suv->...s", g, proj).real
    if normalization == "integral":
        z = z * math.sqrt(4 * math.pi)  # 1 / Y_00
    return z
