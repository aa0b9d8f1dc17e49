"""Tests for tp_spec.spherical_harmonics (e3nn basis, normalizations, stability, separable form)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.polynomial.legendre import legval
from tp_spec.errors import DTypeError, IrrepsError, ShapeError
from tp_spec.s2grid import S2Grid
from tp_spec.spherical_harmonics import (
    NORMALIZATIONS,
    legendre_table,
    normalization_factors,
    sh_index,
    spherical_harmonics,
    trig_table,
)

RNG_SEED = 20240611


def _vectors(n: int, seed: int = RNG_SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)) * rng.uniform(0.2, 3.0, size=(n, 1))


def _e3nn_sh(ls, xyz: np.ndarray, normalization: str, normalize: bool = True) -> np.ndarray:
    torch = pytest.importorskip("torch")
    o3 = pytest.importorskip("e3nn.o3")
    torch.set_default_dtype(torch.float64)
    x = torch.tensor(xyz, dtype=torch.float64)
    return o3.spherical_harmonics(ls, x, normalize, normalization=normalization).numpy()


# ----------------------------------------------------------------------------- e3nn oracle
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_matches_e3nn_normalized(normalization):
    xyz = _vectors(200)
    ours = spherical_harmonics(10, xyz, normalization)
    ref = _e3nn_sh(list(range(11)), xyz, normalization)
    assert ours.shape == (200, 121)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-13)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_matches_e3nn_unnormalized(normalization):
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(100, 3))
    xyz *= rng.uniform(0.6, 1.4, size=(100, 1)) / np.linalg.norm(xyz, axis=1, keepdims=True)
    ours = spherical_harmonics(10, xyz, normalization, normalize=False)
    ref = _e3nn_sh(list(range(11)), xyz, normalization, normalize=False)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-13)


def test_matches_e3nn_irreps_input():
    xyz = _vectors(50)
    irreps = "2x0e + 1o + 0x2e + 3x3o + 2e"
    ours = spherical_harmonics(irreps, xyz, "component")
    ref = _e3nn_sh(irreps.replace(" ", ""), xyz, "component")
    assert ours.shape == (50, 2 + 3 + 21 + 5)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-13)


def test_zero_vector_matches_e3nn():
    xyz = np.zeros((2, 3))
    for normalization in NORMALIZATIONS:
        ours = spherical_harmonics(4, xyz, normalization)
        ref = _e3nn_sh(list(range(5)), xyz, normalization)
        np.testing.assert_allclose(ours, ref, atol=1e-15)
        assert np.all(ours[:, 1:] == 0.0)
        assert np.all(np.isfinite(ours))


def test_tiny_and_huge_vectors_normalized_exactly():
    v = np.array([0.3, -0.2, 0.9])
    ref = spherical_harmonics(6, v)
    for scale in (1e-300, 1e-20, 1e20, 1e300):
        np.testing.assert_allclose(spherical_harmonics(6, v * scale), ref, atol=1e-14)


# ----------------------------------------------------------------------------- basis facts
def test_degree_one_is_xyz():
    xyz = _vectors(20)
    unit = xyz / np.linalg.norm(xyz, axis=1, keepdims=True)
    np.testing.assert_allclose(spherical_harmonics("1o", xyz), math.sqrt(3) * unit, atol=1e-15)
    np.testing.assert_allclose(spherical_harmonics(1, xyz, "norm")[:, 1:], unit, atol=1e-15)
    np.testing.assert_allclose(spherical_harmonics(0, xyz, "integral"), 1 / math.sqrt(4 * math.pi))


@pytest.mark.parametrize("lmax", [3, 10, 25])
def test_parity(lmax):
    xyz = _vectors(40)
    y_plus = spherical_harmonics(lmax, xyz)
    y_minus = spherical_harmonics(lmax, -xyz)
    sign = np.concatenate([np.full(2 * l + 1, (-1.0) ** l) for l in range(lmax + 1)])
    np.testing.assert_allclose(y_minus, sign * y_plus, atol=1e-12)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_pointwise_norms(normalization):
    lmax = 12
    y = spherical_harmonics(lmax, _vectors(30), normalization)
    for l in range(lmax + 1):
        sq = np.sum(y[:, l * l : (l + 1) ** 2] ** 2, axis=1)
        expected = {
            "component": 2 * l + 1,
            "norm": 1.0,
            "integral": (2 * l + 1) / (4 * math.pi),
        }[normalization]
        np.testing.assert_allclose(sq, expected, rtol=1e-13)


@pytest.mark.parametrize("lmax", [10, 30])
def test_integral_normalization_is_orthonormal(lmax):
    """Gauss-Legendre x uniform quadrature of degree 2 lmax + 2: exact for Y_a Y_b."""
    grid = S2Grid.gauss_legendre(lmax + 2, 2 * lmax + 3)
    y = spherical_harmonics(lmax, grid.points.reshape(-1, 3), "integral")
    gram = (y * grid.weights.reshape(-1, 1)).T @ y
    np.testing.assert_allclose(gram, np.eye((lmax + 1) ** 2), atol=1e-12)


@pytest.mark.parametrize("lmax", [10, 30, 60])
def test_addition_theorem(lmax):
    """sum_m Y_lm(u) Y_lm(v) = (2l+1)/(4 pi) P_l(u.v): basis-independent, checks stability."""
    rng = np.random.default_rng(7)
    u = rng.normal(size=(50, 3))
    v = rng.normal(size=(50, 3))
    yu = spherical_harmonics(lmax, u, "integral")
    yv = spherical_harmonics(lmax, v, "integral")
    cos = np.sum(u * v, 1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    for l in range(lmax + 1):
        sl = slice(l * l, (l + 1) ** 2)
        lhs = np.sum(yu[:, sl] * yv[:, sl], axis=1)
        coef = np.zeros(l + 1)
        coef[l] = 1.0
        rhs = (2 * l + 1) / (4 * math.pi) * legval(cos, coef)
        np.testing.assert_allclose(lhs, rhs, atol=1e-12 * (2 * l + 1))
    assert np.all(np.isfinite(yu))


def test_homogeneous_when_not_normalized():
    xyz = _vectors(10)
    r = np.linalg.norm(xyz, axis=1, keepdims=True)
    lmax = 8
    powers = np.concatenate([np.full(2 * l + 1, l) for l in range(lmax + 1)])
    np.testing.assert_allclose(
        spherical_harmonics(lmax, xyz, normalize=False),
        spherical_harmonics(lmax, xyz) * r**powers,
        rtol=1e-12,
        atol=1e-12,
    )


# ----------------------------------------------------------------------------- separable form
def test_separable_form_matches():
    lmax = 15
    xyz = _vectors(60)
    unit = xyz / np.linalg.norm(xyz, axis=1, keepdims=True)
    pt = legendre_table(lmax, unit[:, 1])
    trig = trig_table(lmax, np.arctan2(unit[:, 0], unit[:, 2]))
    assert pt.shape == (60, lmax + 1, lmax + 1)
    assert trig.shape == (60, 2 * lmax + 1)
    for normalization in NORMALIZATIONS:
        y = spherical_harmonics(lmax, xyz, normalization)
        k = normalization_factors(lmax, normalization)
        for l in range(lmax + 1):
            for m in range(-l, l + 1):
                sep = k[l] * pt[:, l, abs(m)] * trig[:, m + lmax]
                np.testing.assert_allclose(y[:, sh_index(l, m)], sep, atol=1e-13)
    assert np.all(np.triu(pt[0], 1) == 0)


def test_legendre_table_against_closed_form():
    """Pt[l, m] = sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!) P_l^m, checked via sympy's exact P_l^m."""
    sympy = pytest.importorskip("sympy")
    t = np.array([-0.9, -0.3, 0.0, 0.45, 0.99])
    lmax = 8
    pt = legendre_table(lmax, t)
    x = sympy.Symbol("x")
    for l in range(lmax + 1):
        for m in range(l + 1):
            # assoc_legendre includes the Condon-Shortley phase (-1)^m: remove it.
            expr = (-1) ** m * sympy.assoc_legendre(l, m, x)
            norm = math.sqrt(
                (2 * l + 1) / (4 * math.pi) * math.factorial(l - m) / math.factorial(l + m)
            )
            ref = np.array([float(expr.subs(x, sympy.Float(ti, 30))) for ti in t]) * norm
            np.testing.assert_allclose(pt[:, l, m], ref, rtol=1e-12, atol=1e-14)


def test_legendre_table_rejects_out_of_range():
    with pytest.raises(ValueError, match="cos_theta"):
        legendre_table(3, np.array([1.5]))


# ----------------------------------------------------------------------------- errors and layout
def test_irreps_layout_repeats_blocks():
    xyz = _vectors(5)
    full = spherical_harmonics(3, xyz)
    out = spherical_harmonics("2x1o + 0e + 3o", xyz)
    expected = np.concatenate([full[:, 1:4], full[:, 1:4], full[:, 0:1], full[:, 9:16]], axis=1)
    np.testing.assert_array_equal(out, expected)
    assert spherical_harmonics("", xyz).shape == (5, 0)


def test_wrong_parity_raises_naming_irrep():
    with pytest.raises(IrrepsError, match="1e"):
        spherical_harmonics("0e + 1e", np.ones(3))
    with pytest.raises(IrrepsError, match="0o"):
        spherical_harmonics("0o", np.ones(3))


def test_bad_inputs():
    with pytest.raises(ShapeError):
        spherical_harmonics(2, np.ones((4, 2)))
    with pytest.raises(ShapeError):
        spherical_harmonics(2, np.float64(1.0))
    with pytest.raises(ValueError, match="normalization"):
        spherical_harmonics(2, np.ones(3), normalization="unit")
    with pytest.raises(IrrepsError):
        spherical_harmonics(-1, np.ones(3))
    with pytest.raises(DTypeError):
        spherical_harmonics(2, np.ones(3, dtype=complex))


def test_shapes_and_dtype():
    xyz = _vectors(24).reshape(2, 3, 4, 3).astype(np.float32)
    out = spherical_harmonics(4, xyz)
    assert out.shape == (2, 3, 4, 25)
    assert out.dtype == np.float64
    assert spherical_harmonics(2, np.array([0.0, 0.0, 1.0])).shape == (9,)
