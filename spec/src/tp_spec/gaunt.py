"""Gaunt coefficients for integral-normalized real spherical harmonics in the e3nn basis.

``G[a, b, c] = integral over the sphere of Y^{l1}_a Y^{l2}_b Y^{l3}_c`` (docs/conventions.md)::

    G = sqrt((2l1+1)(2l2+1)(2l3+1) / (4 pi)) * |(l1 l2 l3; 0 0 0)| * C(l1, l2, l3)

for even ``l1 + l2 + l3`` (exactly zero otherwise). Up to the single global factor
``1/sqrt(pi)`` every entry is exactly ``+-sqrt(p/q)``: :func:`gaunt_exact` returns that rational
part ``R`` (``G = R / sqrt(pi)``). The float tables of :func:`gaunt` are the correctly rounded
values of ``R / sqrt(pi)``: each entry is rounded at two rigorous bounds of pi (a 110-digit
enclosure) and the two results agree (checked per entry; an ArithmeticError would be raised
otherwise), so the float64 and float32 tables are correctly rounded (nearest even).
"""

from __future__ import annotations

import logging
import math
import time
from fractions import Fraction
from typing import Any

import numpy as np

from tp_spec.clebsch_gordan import (
    SHIPPED_LMAX,
    ExactTable,
    _check_dtype,
    _check_triple,
    _dense_from_shipped,
    _real_cg_exact,
)
from tp_spec.sqrt_rational import SqrtRational, round_sqrt_fraction

__all__ = ["gaunt", "gaunt_exact", "wigner_3j_000"]

# pi to 120 decimals (the last digits are not relied upon: the enclosure below uses 110).
_PI_DIGITS = (
    "3.14159265358979323846264338327950288419716939937510582097494459230781640628620899862803"
    "482534211706798214808651328230664709"
)
_PI_DECIMALS = 110
_PI_SCALE = 10**_PI_DECIMALS
#: pi_lo = _PI_NUM / _PI_SCALE < pi < (_PI_NUM + 1) / _PI_SCALE
_PI_NUM = int(_PI_DIGITS.replace(".", "")[: _PI_DECIMALS + 1])


def wigner_3j_000(l1: int, l2: int, l3: int) -> SqrtRational:
    """The Wigner 3j symbol ``(l1 l2 l3; 0 0 0)`` exactly: ``(-1)**g * |3j|``, ``g = J/2``.

    Zero for odd ``J = l1 + l2 + l3``; InstructionError for a triangle violation.
    """
    a, b, c = _check_triple(l1, l2, l3)
    J = a + b + c
    if J % 2:
        return SqrtRational(0, 0)
    g = J // 2
    f = math.factorial
    sq = Fraction(f(J - 2 * a) * f(J - 2 * b) * f(J - 2 * c), f(J + 1))
    r = Fraction(f(g), f(g - a) * f(g - b) * f(g - c))
    return SqrtRational(-1 if g % 2 else 1, (sq * r * r).numerator, (sq * r * r).denominator)


def _gaunt_factor(l1: int, l2: int, l3: int) -> SqrtRational:
    """``sqrt((2l1+1)(2l2+1)(2l3+1)/4) * |(l1 l2 l3; 000)|``: R = factor * C."""
    w = abs(wigner_3j_000(l1, l2, l3))
    return w * SqrtRational(1, (2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1), 4)


def gaunt_exact(l1: int, l2: int, l3: int) -> ExactTable:
    """Rational part ``R`` of the Gaunt table: ``gaunt(l1, l2, l3) == R / sqrt(pi)``.

    Sparse exact table of shape ``(2l1+1, 2l2+1, 2l3+1)``; no entries (nnz == 0) for odd
    ``l1 + l2 + l3``. InstructionError for negative degrees or a triangle violation.
    """
    a, b, c = _check_triple(l1, l2, l3)
    cg = _real_cg_exact(a, b, c)
    if (a + b + c) % 2:
        idx = np.zeros((0, 3), dtype=np.int64)
        idx.flags.writeable = False
        return ExactTable(shape=cg.shape, indices=idx, values=())
    k = _gaunt_factor(a, b, c)
    return ExactTable(shape=cg.shape, indices=cg.indices, values=tuple(v * k for v in cg.values))


def round_over_sqrt_pi(x: SqrtRational, dtype: Any = np.float64) -> float:
    """Correctly rounded ``x / sqrt(pi)`` in ``dtype`` (float64/float32), as a Python float.

    Rounds ``x / sqrt(pi_hi)`` and ``x / sqrt(pi_lo)`` for a 110-digit enclosure of pi; the true
    value lies strictly between, so equal roundings are the correct rounding.
    """
    if not x:
        return 0.0
    dt = _check_dtype(dtype)
    # |x| / sqrt(pi) = sqrt(p * S / (q * N)) with pi ~ N / S
    lo = round_sqrt_fraction(x.p * _PI_SCALE, x.q * (_PI_NUM + 1), dt)
    hi = round_sqrt_fraction(x.p * _PI_SCALE, x.q * _PI_NUM, dt)
    if lo != hi:  # pragma: no cover - would need a value within 1e-110 of a rounding midpoint
        raise ArithmeticError(f"cannot decide the rounding of {x!r}/sqrt(pi)")
    return x.sign * lo


_float_cache: dict[tuple[int, int, int, str], np.ndarray] = {}
log = logging.getLogger(__name__)


def gaunt(l1: int, l2: int, l3: int, dtype: Any = np.float64) -> np.ndarray:
    """Gaunt table ``G[a,b,c] = int Y^{l1}_a Y^{l2}_b Y^{l3}_c dOmega`` (integral-normalized SH).

    Cached, read-only ``dtype`` (float64 or float32) array of shape ``(2l1+1, 2l2+1, 2l3+1)``,
    correctly rounded; exactly zero for odd ``l1 + l2 + l3``. Raises InstructionError for
    negative degrees or a triangle violation, DTypeError for other dtypes.
    """
    triple = _check_triple(l1, l2, l3)
    dt = _check_dtype(dtype)
    key = (*triple, dt.str)
    arr = _float_cache.get(key)
    if arr is None:
        shape = tuple(2 * l + 1 for l in triple)
        if sum(triple) % 2:
            arr = np.zeros(shape, dtype=dt)
        else:
            arr = None
            if max(triple[:2]) <= SHIPPED_LMAX:
                arr = _dense_from_shipped("gaunt", triple, dt)
            if arr is None:
                t0 = time.perf_counter()
                ex = gaunt_exact(*triple)
                arr = np.zeros(shape, dtype=dt)
                for idx, v in zip(ex.indices, ex.values, strict=True):
                    arr[tuple(idx)] = round_over_sqrt_pi(v, dt)
                log.debug("Gaunt table %s (%s) computed exactly in %.3f s (not shipped)",
                          triple, dt.name, time.perf_counter() - t0)
        arr.flags.writeable = False
        _float_cache[key] = arr
    return arr
