"""Tests for the Gaunt tables (integral-normalized real SH, e3nn basis; docs/conventions.md).

The quadrature check against spherical harmonics lives with the spherical-harmonics tests.
"""

from __future__ import annotations

import itertools
import random
from decimal import Decimal, localcontext

import numpy as np
import pytest
from tp_spec.clebsch_gordan import clebsch_gordan, clebsch_gordan_exact
from tp_spec.errors import DTypeError, InstructionError
from tp_spec.gaunt import _PI_DIGITS, gaunt, gaunt_exact, wigner_3j_000
from tp_spec.sqrt_rational import SqrtRational

# pi to 60 digits, written out independently of the module under test
PI_60 = "3.14159265358979323846264338327950288419716939937510582097494"


def triples(lmax: int):
    for l1 in range(lmax + 1):
        for l2 in range(lmax + 1):
            for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1):
                yield l1, l2, l3


def test_odd_sums_are_exactly_zero():
    for l1, l2, l3 in list(triples(7)) + [(12, 5, 8)]:
        G = gaunt(l1, l2, l3)
        assert G.shape == (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
        if (l1 + l2 + l3) % 2:
            assert not G.any() and gaunt_exact(l1, l2, l3).nnz == 0
            assert wigner_3j_000(l1, l2, l3) == 0
        else:
            assert G.any()


def test_wigner_3j_000_matches_sympy_and_general_3j():
    sympy = pytest.importorskip("sympy")
    wigner = pytest.importorskip("sympy.physics.wigner")
    from tp_spec.clebsch_gordan import wigner_3j_exact

    for l1, l2, l3 in triples(7):
        ours = wigner_3j_000(l1, l2, l3)
        assert ours == wigner_3j_exact(l1, 0, l2, 0, l3, 0)
        ref = wigner.wigner_3j(l1, l2, l3, 0, 0, 0)
        assert sympy.Rational(ours.signed_square()) == sympy.sign(ref) * ref**2


def test_exact_relation_to_cg():
    """R = sqrt((2l1+1)(2l2+1)(2l3+1)/4) |3j(000)| C exactly; 3j from sympy."""
    sympy = pytest.importorskip("sympy")
    wigner = pytest.importorskip("sympy.physics.wigner")
    for l1, l2, l3 in list(triples(6)) + [(10, 10, 10), (11, 4, 9)]:
        if (l1 + l2 + l3) % 2:
            continue
        w = wigner.wigner_3j(l1, l2, l3, 0, 0, 0)
        k2 = sympy.Rational((2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1), 4) * w**2
        cg = clebsch_gordan_exact(l1, l2, l3)
        g = gaunt_exact(l1, l2, l3)
        np.testing.assert_array_equal(g.indices, cg.indices)
        for c, v in zip(cg.values, g.values, strict=True):
            assert v.sign == c.sign
            assert sympy.Rational(v.square()) == k2 * sympy.Rational(c.square())


def test_float_relation_to_cg():
    for l1, l2, l3 in triples(10):
        if (l1 + l2 + l3) % 2:
            continue
        w = float(abs(wigner_3j_000(l1, l2, l3)))
        k = np.sqrt((2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1) / (4 * np.pi)) * w
        np.testing.assert_allclose(gaunt(l1, l2, l3), k * clebsch_gordan(l1, l2, l3),
                                   rtol=1e-14, atol=1e-17, err_msg=str((l1, l2, l3)))


def test_constant_function_is_the_unit():
    # Y^0 = 1/sqrt(4 pi): int Y^0 Y^l_a Y^l_b = delta_ab / sqrt(4 pi)  ->  R = delta / 2
    for l in range(13):
        R = gaunt_exact(0, l, l).to_object_array()[0]
        for a, b in itertools.product(range(2 * l + 1), repeat=2):
            assert R[a, b] == (SqrtRational(1, 1, 4) if a == b else 0)
        with localcontext() as ctx:
            ctx.prec = 50
            inv = float(1 / (4 * Decimal(PI_60)).sqrt())  # Decimal -> float rounds correctly
        np.testing.assert_array_equal(gaunt(0, l, l)[0], np.eye(2 * l + 1) * inv)


def test_full_permutation_symmetry():
    # an integral of a product of three functions is symmetric under any permutation
    for l1, l2, l3 in triples(5):
        G = gaunt(l1, l2, l3)
        ls = (l1, l2, l3)
        for perm in itertools.permutations(range(3)):
            np.testing.assert_array_equal(gaunt(*(ls[p] for p in perm)), np.transpose(G, perm))


def test_pi_digits():
    assert _PI_DIGITS.startswith(PI_60)
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(130):
        ref = mpmath.nstr(mpmath.pi, 125, strip_zeros=False)
    assert ref.startswith(_PI_DIGITS[:112])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_correctly_rounded_sample(dtype):
    rng = random.Random(2)
    even = [t for t in triples(10) if sum(t) % 2 == 0]
    sample = rng.sample(even, 30) + [(10, 10, 10), (12, 8, 6)]
    with localcontext() as ctx:
        ctx.prec = 50
        sqrt_pi = Decimal(PI_60).sqrt()
        for t in sample:
            ex = gaunt_exact(*t)
            G = gaunt(*t, dtype=dtype)
            assert G.dtype == dtype
            for k in rng.sample(range(ex.nnz), min(ex.nnz, 20)):
                v = ex.values[k]
                exact = v.sign * (Decimal(v.p) / Decimal(v.q)).sqrt() / sqrt_pi
                x = G[tuple(ex.indices[k])]
                d = abs(Decimal(float(x)) - exact)
                for nb in (np.nextafter(x, dtype(np.inf)), np.nextafter(x, dtype(-np.inf))):
                    assert d < abs(Decimal(float(nb)) - exact), (t, k)


def test_cached_readonly_and_errors():
    G = gaunt(2, 2, 2)
    assert G is gaunt(2, 2, 2) and not G.flags.writeable
    assert not gaunt(1, 1, 1).flags.writeable and not gaunt(1, 1, 1, np.float32).flags.writeable
    with pytest.raises(InstructionError, match=r"\(1, 2, 4\)"):
        gaunt(1, 2, 4)
    with pytest.raises(InstructionError):
        gaunt_exact(0, 1, 2)
    with pytest.raises(InstructionError):
        wigner_3j_000(1, 1, 5)
    with pytest.raises(InstructionError):
        gaunt(-2, 0, 2)
    with pytest.raises(DTypeError):
        gaunt(1, 1, 0, dtype=np.complex128)
