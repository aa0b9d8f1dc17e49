"""Exact real numbers of the form ``sign * sqrt(p / q)`` and their correctly rounded floats.

Every Clebsch-Gordan, Wigner 3j and 6j coefficient of integer angular momenta is such a number.
:class:`SqrtRational` keeps it exactly (Python integers, no size limit) and converts it to
float64 / float32 with correct rounding (round to nearest, ties to even) using integer
arithmetic only: no float intermediate is ever formed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction
from numbers import Rational
from typing import Any

import numpy as np

__all__ = [
    "SqrtRational",
    "round_sqrt_fraction",
    "sqrt_rational_array_to_float",
]

# (precision in bits including the implicit bit, minimum normal exponent, maximum exponent)
_FORMATS: dict[np.dtype, tuple[int, int, int]] = {
    np.dtype(np.float64): (53, -1022, 1023),
    np.dtype(np.float32): (24, -126, 127),
}


def _float_format(dtype: Any) -> tuple[np.dtype, tuple[int, int, int]]:
    dt = np.dtype(dtype)
    if dt not in _FORMATS:
        raise TypeError(f"unsupported dtype {dt}: use float64 or float32")
    return dt, _FORMATS[dt]


def _floor_log2_sqrt(p: int, q: int) -> int:
    """Largest integer k with 2**k <= sqrt(p/q)  (p, q > 0)."""
    # 4**k <= p/q  <=>  k <= log2(p/q)/2 ; start from a bit-length estimate and fix it exactly.
    k = (p.bit_length() - q.bit_length()) // 2
    while not _ge_pow4(p, q, k):
        k -= 1
    while _ge_pow4(p, q, k + 1):
        k += 1
    return k


def _ge_pow4(p: int, q: int, k: int) -> bool:
    """p/q >= 4**k, exactly."""
    if k >= 0:
        return p >= q << (2 * k)
    return p << (-2 * k) >= q


def round_sqrt_fraction(p: int, q: int, dtype: Any = np.float64) -> float:
    """Correctly rounded ``sqrt(p/q)`` in ``dtype`` (float64 or float32), as a Python float.

    Round to nearest, ties to even, subnormals handled; ``p >= 0``, ``q > 0`` integers.
    The returned Python float holds the float32 value exactly when ``dtype`` is float32.
    """
    if q <= 0 or p < 0:
        raise ValueError(f"need p >= 0 and q > 0, got p={p}, q={q}")
    if p == 0:
        return 0.0
    _, (prec, emin, emax) = _float_format(dtype)
    k = _floor_log2_sqrt(p, q)
    if k > emax:
        return math.inf
    # exponent of the unit in the last place of the result
    u = max(k, emin) - (prec - 1)
    # n = floor(sqrt(p/q) * 2**(1-u)): the significand with one guard bit
    shift = 2 * (1 - u)
    if shift >= 0:
        num, den = p << shift, q
    else:
        num, den = p, q << (-shift)
    r, rem = divmod(num, den)
    n = math.isqrt(r)
    exact = rem == 0 and n * n == r
    m, guard = n >> 1, n & 1
    if guard and (not exact or (m & 1)):
        m += 1
    out = math.ldexp(float(m), u)  # m <= 2**prec: exactly representable
    if math.isinf(out) or (out > 0 and math.frexp(out)[1] - 1 > emax):
        return math.inf
    return out


class SqrtRational:
    """Exact real number ``sign * sqrt(p / q)``; ``p``, ``q`` coprime positive ints.

    Zero is ``sign == 0, p == 0, q == 1``. Supports ``*``, ``/`` (by SqrtRational, int or
    Fraction), unary ``-``, ``abs``, exact comparison, hashing, ``float()`` and
    :meth:`to_float` (correctly rounded float64 or float32).
    """

    __slots__ = ("_sign", "_p", "_q")

    def __init__(self, sign: int, p: int, q: int = 1) -> None:
        sign, p, q = int(sign), int(p), int(q)
        if sign not in (-1, 0, 1):
            raise ValueError(f"sign must be -1, 0 or 1, got {sign}")
        if p < 0 or q <= 0:
            raise ValueError(f"need p >= 0 and q > 0, got p={p}, q={q}")
        if sign == 0 or p == 0:
            sign, p, q = 0, 0, 1
        else:
            g = math.gcd(p, q)
            p, q = p // g, q // g
        self._sign, self._p, self._q = sign, p, q

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_signed_square(cls, s: Rational | int) -> SqrtRational:
        """The number ``sign(s) * sqrt(|s|)``."""
        f = Fraction(s)
        sgn = (f > 0) - (f < 0)
        return cls(sgn, abs(f.numerator), f.denominator)

    @classmethod
    def from_rational(cls, x: Rational | int) -> SqrtRational:
        """The rational number ``x`` itself."""
        f = Fraction(x)
        sgn = (f > 0) - (f < 0)
        return cls(sgn, f.numerator * f.numerator, f.denominator * f.denominator)

    # ----------------------------------------------------------------- accessors
    @property
    def sign(self) -> int:
        return self._sign

    @property
    def p(self) -> int:
        """Numerator of the radicand."""
        return self._p

    @property
    def q(self) -> int:
        """Denominator of the radicand."""
        return self._q

    def square(self) -> Fraction:
        """The exact square ``p/q`` (always >= 0)."""
        return Fraction(self._p, self._q)

    def signed_square(self) -> Fraction:
        """``sign * p/q``: order-preserving and exact."""
        return self._sign * Fraction(self._p, self._q)

    def is_rational(self) -> bool:
        return math.isqrt(self._p) ** 2 == self._p and math.isqrt(self._q) ** 2 == self._q

    def as_fraction(self) -> Fraction:
        """The value as a Fraction; raises ValueError if it is irrational."""
        if not self.is_rational():
            raise ValueError(f"{self!r} is irrational")
        return self._sign * Fraction(math.isqrt(self._p), math.isqrt(self._q))

    # ----------------------------------------------------------------- arithmetic
    @staticmethod
    def _coerce(other: object) -> SqrtRational | None:
        if isinstance(other, SqrtRational):
            return other
        if isinstance(other, (int, Rational)) and not isinstance(other, bool):
            return SqrtRational.from_rational(other)
        return None

    def __mul__(self, other: object) -> SqrtRational:
        o = self._coerce(other)
        if o is None:
            return NotImplemented
        return SqrtRational(self._sign * o._sign, self._p * o._p, self._q * o._q)

    __rmul__ = __mul__

    def __truediv__(self, other: object) -> SqrtRational:
        o = self._coerce(other)
        if o is None:
            return NotImplemented
        if o._sign == 0:
            raise ZeroDivisionError("division of a SqrtRational by zero")
        return SqrtRational(self._sign * o._sign, self._p * o._q, self._q * o._p)

    def __rtruediv__(self, other: object) -> SqrtRational:
        o = self._coerce(other)
        if o is None:
            return NotImplemented
        return o / self

    def __neg__(self) -> SqrtRational:
        return SqrtRational(-self._sign, self._p, self._q)

    def __pos__(self) -> SqrtRational:
        return self

    def __abs__(self) -> SqrtRational:
        return SqrtRational(abs(self._sign), self._p, self._q)

    def __bool__(self) -> bool:
        return self._sign != 0

    # ----------------------------------------------------------------- comparison
    def __eq__(self, other: object) -> bool:
        o = self._coerce(other)
        if o is None:
            return NotImplemented
        return (self._sign, self._p, self._q) == (o._sign, o._p, o._q)

    def __hash__(self) -> int:
        return hash((SqrtRational, self._sign, self._p, self._q))

    def _cmp_key(self, other: object) -> tuple[Fraction, Fraction] | None:
        o = self._coerce(other)
        if o is None:
            return None
        return self.signed_square(), o.signed_square()

    def __lt__(self, other: object) -> bool:
        k = self._cmp_key(other)
        return NotImplemented if k is None else k[0] < k[1]

    def __le__(self, other: object) -> bool:
        k = self._cmp_key(other)
        return NotImplemented if k is None else k[0] <= k[1]

    def __gt__(self, other: object) -> bool:
        k = self._cmp_key(other)
        return NotImplemented if k is None else k[0] > k[1]

    def __ge__(self, other: object) -> bool:
        k = self._cmp_key(other)
        return NotImplemented if k is None else k[0] >= k[1]

    # ----------------------------------------------------------------- conversion
    def to_float(self, dtype: Any = np.float64) -> float:
        """Correctly rounded value in ``dtype`` (float64 or float32), as a Python float."""
        if self._sign == 0:
            return 0.0
        return self._sign * round_sqrt_fraction(self._p, self._q, dtype)

    def __float__(self) -> float:
        return self.to_float(np.float64)

    def __repr__(self) -> str:
        if self._sign == 0:
            return "0"
        s = "-" if self._sign < 0 else ""
        r = f"{self._p}" if self._q == 1 else f"{self._p}/{self._q}"
        return f"{s}sqrt({r})"

    def __reduce__(self) -> tuple[type, tuple[int, int, int]]:
        return (SqrtRational, (self._sign, self._p, self._q))


def sqrt_rational_array_to_float(values: Iterable[SqrtRational] | np.ndarray,
                                 dtype: Any = np.float64) -> np.ndarray:
    """Element-wise correctly rounded conversion; keeps the shape of an object array.

    ``values``: any iterable (or object ndarray) of :class:`SqrtRational`; returns an ndarray of
    ``dtype`` (float64 or float32) with the same shape.
    """
    dt, _ = _float_format(dtype)
    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    out = np.empty(arr.shape, dtype=dt)
    flat_out = out.reshape(-1)
    for i, v in enumerate(arr.reshape(-1)):
        if not isinstance(v, SqrtRational):
            raise TypeError(f"expected SqrtRational, got {type(v).__name__}")
        flat_out[i] = v.to_float(dt)
    return out
