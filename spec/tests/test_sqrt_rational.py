"""Tests for the exact number type SqrtRational and its correctly rounded conversion."""

from __future__ import annotations

import math
import pickle
import random
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest
from tp_spec.sqrt_rational import (
    SqrtRational,
    round_sqrt_fraction,
    sqrt_rational_array_to_float,
)


def _assert_nearest(x: float, p: int, q: int, dtype) -> None:
    """Independent check (decimal, 100 digits) that x is the nearest dtype value to sqrt(p/q)."""
    with localcontext() as ctx:
        ctx.prec = 100
        v = (Decimal(p) / Decimal(q)).sqrt()
        xs = dtype(x)
        assert float(xs) == x, "value not representable in dtype"
        up = np.nextafter(xs, dtype(np.inf))
        down = np.nextafter(xs, dtype(0))
        d = abs(Decimal(float(xs)) - v)
        d_up = abs(Decimal(float(up)) - v)
        d_down = abs(Decimal(float(down)) - v)
        assert d <= d_up and d <= d_down, (p, q, x)
        if d == d_up or d == d_down:  # a tie: must be the even significand
            assert int(np.frexp(xs)[0] * 2.0 ** np.finfo(dtype).nmant * 2) % 2 == 0


def test_normalization_and_accessors():
    x = SqrtRational(-1, 6, 20)
    assert (x.sign, x.p, x.q) == (-1, 3, 10)
    assert repr(x) == "-sqrt(3/10)"
    assert repr(SqrtRational(1, 8, 2)) == "sqrt(4)"
    z = SqrtRational(1, 0, 7)
    assert (z.sign, z.p, z.q) == (0, 0, 1) and repr(z) == "0" and not z
    assert SqrtRational(0, 5, 3) == z
    with pytest.raises(ValueError):
        SqrtRational(2, 1, 1)
    with pytest.raises(ValueError):
        SqrtRational(1, 1, 0)
    with pytest.raises(ValueError):
        SqrtRational(1, -1, 2)


def test_arithmetic_exact():
    a = SqrtRational(1, 2, 3)
    b = SqrtRational(-1, 3, 8)
    assert a * b == SqrtRational(-1, 1, 4)
    assert (a * b).as_fraction() == Fraction(-1, 2)
    assert a / b == SqrtRational(-1, 16, 9)
    assert a * 3 == SqrtRational(1, 6, 1)
    assert 3 * a == a * 3
    assert a * Fraction(-1, 2) == SqrtRational(-1, 1, 6)
    assert 1 / a == SqrtRational(1, 3, 2)
    assert -a == SqrtRational(-1, 2, 3) and abs(-a) == a
    assert SqrtRational.from_rational(Fraction(-3, 4)) == SqrtRational(-1, 9, 16)
    assert SqrtRational.from_signed_square(Fraction(-3, 4)) == SqrtRational(-1, 3, 4)
    assert a.square() == Fraction(2, 3) and b.signed_square() == Fraction(-3, 8)
    assert not a.is_rational()
    with pytest.raises(ValueError):
        a.as_fraction()
    with pytest.raises(ZeroDivisionError):
        a / SqrtRational(0, 0)


def test_comparison_and_hash():
    vals = [SqrtRational(s, p, q) for s in (-1, 0, 1) for p in (1, 2, 3, 7) for q in (1, 3, 5)]
    for x in vals:
        for y in vals:
            fx, fy = math.copysign(math.sqrt(x.p / x.q), x.sign), math.copysign(
                math.sqrt(y.p / y.q), y.sign)
            fx, fy = (0.0 if x.sign == 0 else fx), (0.0 if y.sign == 0 else fy)
            if abs(fx - fy) > 1e-12:
                assert (x < y) == (fx < fy)
                assert (x > y) == (fx > fy)
                assert x != y
            if x == y:
                assert hash(x) == hash(y)
    assert SqrtRational(1, 4, 1) == 2 and SqrtRational(-1, 1, 4) == Fraction(-1, 2)
    assert len({SqrtRational(1, 2, 4), SqrtRational(1, 1, 2)}) == 1
    x = SqrtRational(-1, 5, 7)
    assert pickle.loads(pickle.dumps(x)) == x


def test_matches_ieee_sqrt_of_representable_inputs():
    # math.sqrt / np.sqrt are correctly rounded (IEEE 754) when p/q is exactly representable
    rng = random.Random(0)
    for _ in range(3000):
        p = rng.randrange(1, 2**53)
        e = rng.randrange(-60, 60)
        num, den = (p << e, 1) if e >= 0 else (p, 1 << -e)
        assert round_sqrt_fraction(num, den) == math.sqrt(math.ldexp(p, e))
        p32 = rng.randrange(1, 2**24)
        num, den = (p32 << e, 1) if e >= 0 else (p32, 1 << -e)
        expected = np.sqrt(np.float32(math.ldexp(p32, e)))
        assert round_sqrt_fraction(num, den, np.float32) == float(expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_correct_rounding_random_rationals(dtype):
    rng = random.Random(1)
    for _ in range(1500):
        p = rng.randrange(1, 10 ** rng.randrange(1, 40))
        q = rng.randrange(1, 10 ** rng.randrange(1, 40))
        x = SqrtRational(1, p, q)
        _assert_nearest(x.to_float(dtype), x.p, x.q, dtype)
        assert SqrtRational(-1, p, q).to_float(dtype) == -x.to_float(dtype)


def test_ties_to_even_and_exact_values():
    # value exactly halfway between two doubles: 1 + 2**-53 -> 1.0 (even), 1 + 3*2**-53 -> up
    for k, expected in ((1, 1.0), (3, 1.0 + 2.0**-51)):
        num = (2**53 + k) ** 2
        assert round_sqrt_fraction(num, 2**106) == expected
    for k, expected in ((1, 1.0), (3, 1.0 + 2.0**-22)):
        num = (2**24 + k) ** 2
        assert round_sqrt_fraction(num, 2**48, np.float32) == expected
    # just above a midpoint rounds up
    assert round_sqrt_fraction((2**53 + 1) ** 2 + 1, 2**106) == 1.0 + 2.0**-52
    assert SqrtRational(1, 9, 4).to_float() == 1.5
    assert float(SqrtRational(-1, 1, 4)) == -0.5


def test_extreme_exponents():
    assert round_sqrt_fraction(1, 2**2200) == math.ldexp(1.0, -1100)  # subnormal, exact
    assert round_sqrt_fraction(1, 2**2300) == 0.0  # below half the smallest subnormal
    assert round_sqrt_fraction(2**2100, 1) == math.inf
    assert round_sqrt_fraction(2**300, 1, np.float32) == math.inf
    assert round_sqrt_fraction(1, 2**290, np.float32) == float(np.float32(2.0**-145))
    with pytest.raises(TypeError):
        round_sqrt_fraction(1, 2, np.float16)


def test_array_helper():
    vals = np.array([[SqrtRational(1, 1, 2), SqrtRational(-1, 3, 1)],
                     [SqrtRational(0, 0), SqrtRational(1, 1, 3)]], dtype=object)
    out = sqrt_rational_array_to_float(vals)
    assert out.dtype == np.float64 and out.shape == (2, 2)
    np.testing.assert_array_equal(out[:, 0], [math.sqrt(0.5), 0.0])
    assert out[0, 1] == -math.sqrt(3.0)
    _assert_nearest(float(out[1, 1]), 1, 3, np.float64)
    out32 = sqrt_rational_array_to_float(list(vals.ravel()), np.float32)
    assert out32.dtype == np.float32 and out32.shape == (4,)
    assert out32[1] == np.float32(-math.sqrt(3.0))
    with pytest.raises(TypeError):
        sqrt_rational_array_to_float([1.0])
