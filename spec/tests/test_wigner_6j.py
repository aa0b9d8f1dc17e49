"""Tests for the exact Wigner 6j symbols."""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import numpy as np
import pytest
from tp_spec.clebsch_gordan import clebsch_gordan
from tp_spec.errors import InstructionError
from tp_spec.sqrt_rational import SqrtRational
from tp_spec.wigner_6j import wigner_6j


def _random_args(rng: random.Random, jmax: int) -> tuple[int, ...]:
    """Mostly triangle-valid argument lists (a few invalid ones too)."""
    j1, j2 = rng.randrange(jmax + 1), rng.randrange(jmax + 1)
    j3 = rng.randrange(abs(j1 - j2), j1 + j2 + 1)
    j4, j5 = rng.randrange(jmax + 1), rng.randrange(jmax + 1)
    lo = max(abs(j1 - j5), abs(j4 - j2))
    hi = min(j1 + j5, j4 + j2)
    j6 = rng.randrange(lo, hi + 1) if lo <= hi and rng.random() < 0.9 else rng.randrange(jmax + 1)
    return j1, j2, j3, j4, j5, j6


def test_matches_sympy():
    sympy = pytest.importorskip("sympy")
    wigner = pytest.importorskip("sympy.physics.wigner")
    rng = random.Random(7)
    nonzero = 0
    for _ in range(400):
        args = _random_args(rng, 8)
        ours = wigner_6j(*args)
        ref = wigner.wigner_6j(*args)
        assert sympy.Rational(ours.signed_square()) == sympy.sign(ref) * ref**2, args
        nonzero += bool(ours)
    assert nonzero > 150


def test_symmetries():
    rng = random.Random(8)
    for _ in range(200):
        j1, j2, j3, j4, j5, j6 = _random_args(rng, 7)
        v = wigner_6j(j1, j2, j3, j4, j5, j6)
        cols = [(j1, j4), (j2, j5), (j3, j6)]
        for perm in itertools.permutations(range(3)):
            c = [cols[p] for p in perm]
            assert wigner_6j(c[0][0], c[1][0], c[2][0], c[0][1], c[1][1], c[2][1]) == v
        # exchange upper and lower arguments in two columns
        assert wigner_6j(j4, j5, j3, j1, j2, j6) == v
        assert wigner_6j(j1, j5, j6, j4, j2, j3) == v


def test_special_value():
    # {a b c; 0 c b} = (-1)^(a+b+c) / sqrt((2b+1)(2c+1))
    for a, b in itertools.product(range(7), repeat=2):
        for c in range(abs(a - b), a + b + 1):
            expected = SqrtRational(-1 if (a + b + c) % 2 else 1, 1, (2 * b + 1) * (2 * c + 1))
            assert wigner_6j(a, b, c, 0, c, b) == expected


def test_orthogonality_exact():
    # sum_j3 (2 j3 + 1)(2 j6 + 1) {j1 j2 j3; j4 j5 j6}^2 = 1 (for admissible j6)
    for j1, j2, j4, j5 in itertools.product(range(4), repeat=4):
        for j6 in range(max(abs(j1 - j5), abs(j4 - j2)), min(j1 + j5, j4 + j2) + 1):
            total = sum(((2 * j3 + 1) * (2 * j6 + 1) * wigner_6j(j1, j2, j3, j4, j5, j6).square()
                         for j3 in range(0, 10)), Fraction(0))
            assert total == 1, (j1, j2, j4, j5, j6)


def test_float_orthogonality_distinct():
    for j1, j2, j4, j5 in [(2, 3, 3, 2), (1, 2, 2, 3), (3, 3, 3, 3)]:
        j6s = range(max(abs(j1 - j5), abs(j4 - j2)), min(j1 + j5, j4 + j2) + 1)
        M = np.array([[float(wigner_6j(j1, j2, j3, j4, j5, j6)) for j3 in range(10)]
                      for j6 in j6s])
        w = np.sqrt(np.outer([2 * j6 + 1 for j6 in j6s], [2 * j3 + 1 for j3 in range(10)]))
        np.testing.assert_allclose((M * w) @ (M * w).T, np.eye(len(j6s)), atol=1e-14)


@pytest.mark.parametrize("t", [1, 2])
def test_matrix_product_path_identity(t):
    """docs/families.md: <B3, B1 B2>_F = (-1)^l3 sqrt(d1 d2 d3) {l1 l2 l3; t t t} C(l1,l2,l3)."""
    B = {l: np.sqrt(2 * l + 1) * np.moveaxis(clebsch_gordan(t, t, l), 2, 0)
         for l in range(2 * t + 1)}
    for l1, l2 in itertools.product(range(2 * t + 1), repeat=2):
        for l3 in range(abs(l1 - l2), min(l1 + l2, 2 * t) + 1):
            lhs = np.einsum("kij,aip,bpj->abk", B[l3], B[l1], B[l2])
            s = float(wigner_6j(l1, l2, l3, t, t, t))
            rhs = ((-1) ** l3 * np.sqrt((2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1)) * s
                   * clebsch_gordan(l1, l2, l3))
            np.testing.assert_allclose(lhs, rhs, atol=1e-14, err_msg=str((l1, l2, l3)))


def test_errors_and_triangle_zero():
    assert wigner_6j(1, 1, 3, 1, 1, 1) == 0
    with pytest.raises(InstructionError):
        wigner_6j(-1, 1, 1, 1, 1, 1)
    with pytest.raises(InstructionError):
        wigner_6j(0.5, 0.5, 1, 1, 1, 1)
