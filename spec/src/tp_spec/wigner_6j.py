"""Exact Wigner 6j symbols ``{j1 j2 j3; j4 j5 j6}`` of integer arguments (Racah formula).

Used by the matrix tensor product path identity (docs/families.md):
``<B^(l3), B^(l1) B^(l2)>_F = (-1)**l3 sqrt((2l1+1)(2l2+1)(2l3+1)) {l1 l2 l3; t t t} C(l1,l2,l3)``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

from tp_spec.clebsch_gordan import _as_degree
from tp_spec.sqrt_rational import SqrtRational

__all__ = ["wigner_6j"]


def _delta_sq(a: int, b: int, c: int) -> Fraction:
    f = math.factorial
    return Fraction(f(a + b - c) * f(a - b + c) * f(-a + b + c), f(a + b + c + 1))


def _tri(a: int, b: int, c: int) -> bool:
    return abs(a - b) <= c <= a + b


@lru_cache(maxsize=65536)
def _wigner_6j(j1: int, j2: int, j3: int, j4: int, j5: int, j6: int) -> SqrtRational:
    triads = ((j1, j2, j3), (j1, j5, j6), (j4, j2, j6), (j4, j5, j3))
    if not all(_tri(*t) for t in triads):
        return SqrtRational(0, 0)
    pref = Fraction(1)
    for t in triads:
        pref *= _delta_sq(*t)
    a = [sum(t) for t in triads]
    b = (j1 + j2 + j4 + j5, j2 + j3 + j5 + j6, j3 + j1 + j6 + j4)
    f = math.factorial
    den_all = 1
    terms: list[tuple[int, int]] = []
    for t in range(max(a), min(b) + 1):
        num = f(t + 1)
        den = 1
        for ai in a:
            den *= f(t - ai)
        for bi in b:
            den *= f(bi - t)
        terms.append((-num if t % 2 else num, den))
        den_all = math.lcm(den_all, den)
    s = Fraction(sum(n * (den_all // d) for n, d in terms), den_all)
    sgn = (s > 0) - (s < 0)
    return SqrtRational.from_signed_square(sgn * s * s * pref)


def wigner_6j(j1: int, j2: int, j3: int, j4: int, j5: int, j6: int) -> SqrtRational:
    """Wigner 6j symbol ``{j1 j2 j3; j4 j5 j6}`` exactly, as ``sign * sqrt(p/q)``.

    Non-negative integer arguments only (InstructionError otherwise). Zero when any of the
    triads (j1 j2 j3), (j1 j5 j6), (j4 j2 j6), (j4 j5 j3) violates the triangle rule.
    """
    js = [_as_degree(j, f"j{i + 1}") for i, j in enumerate((j1, j2, j3, j4, j5, j6))]
    return _wigner_6j(*js)
