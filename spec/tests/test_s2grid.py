"""Tests for tp_spec.s2grid: quadrature, separable transforms, exactness rule, Gaunt tables."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from tp_spec.errors import ShapeError
from tp_spec.s2grid import (
    S2Grid,
    from_grid,
    legendre_matrices,
    phi_matrix,
    s2grid_for,
    to_grid,
)
from tp_spec.spherical_harmonics import NORMALIZATIONS, spherical_harmonics


def _gaunt():
    try:
        from tp_spec.gaunt import gaunt
    except ImportError as exc:  # pragma: no cover - only while the module is being written
        pytest.skip(f"tp_spec.gaunt not importable yet: {exc}")
    return gaunt


# ----------------------------------------------------------------------------- grid
def test_grid_basics():
    g = S2Grid.gauss_legendre(5, 9)
    assert (g.n_theta, g.n_phi) == (5, 9)
    assert g.cos_theta.shape == g.theta_weights.shape == (5,)
    assert g.phi.shape == (9,) and g.weights.shape == (5, 9) and g.points.shape == (5, 9, 3)
    assert np.all(np.diff(g.cos_theta) > 0)
    np.testing.assert_allclose(g.weights.sum(), 4 * math.pi, rtol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(g.points, axis=-1), 1.0, atol=1e-15)
    np.testing.assert_allclose(g.points[..., 1], np.broadcast_to(g.cos_theta[:, None], (5, 9)))
    np.testing.assert_allclose(
        np.arctan2(g.points[0, 1:, 0], g.points[0, 1:, 2]) % (2 * math.pi), g.phi[1:], atol=1e-14
    )
    assert g.exact_degree == 8
    # Monomials integrate exactly: int x^2 = 4 pi / 3, int x^2 y^2 z^4 = 4 pi * 3 / 315 ...
    p = g.points
    np.testing.assert_allclose(np.sum(g.weights * p[..., 0] ** 2), 4 * math.pi / 3, rtol=1e-14)
    np.testing.assert_allclose(
        np.sum(g.weights * p[..., 0] ** 2 * p[..., 1] ** 2 * p[..., 2] ** 4),
        4 * math.pi * 3 / 9 / 7 / 5 / 3,
        rtol=1e-13,
    )


def test_grid_is_frozen_and_readonly():
    g = S2Grid.gauss_legendre(3, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.n_phi = 7  # type: ignore[misc]
    with pytest.raises(ValueError):
        g.weights[0, 0] = 1.0
    with pytest.raises(ShapeError):
        S2Grid(2, 3, g.cos_theta, g.theta_weights, g.phi, g.weights)
    with pytest.raises(ValueError):
        S2Grid.gauss_legendre(0, 3)


def test_s2grid_for_sizes():
    g = s2grid_for(2, 3, 4)
    assert (g.n_theta, g.n_phi) == (5, 10)
    g = s2grid_for(2, 3, 4, odd_phi=True)
    assert (g.n_theta, g.n_phi) == (5, 11)
    g = s2grid_for(1, 1, 1, odd_phi=True)
    assert (g.n_theta, g.n_phi) == (2, 5)
    assert (s2grid_for(0, 0, 0).n_theta, s2grid_for(0, 0, 0).n_phi) == (1, 1)
    for l1, l2, lo in [(1, 2, 3), (3, 3, 6), (10, 10, 20)]:
        g = s2grid_for(l1, l2, lo)
        assert g.n_theta == math.ceil((l1 + l2 + lo + 1) / 2)
        assert g.n_phi == l1 + l2 + lo + 1
        assert g.exact_degree >= l1 + l2 + lo


# ----------------------------------------------------------------------------- transforms
@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("lmax", [0, 1, 4, 9])
def test_to_grid_is_pointwise_evaluation(normalization, lmax):
    rng = np.random.default_rng(lmax)
    for grid in (s2grid_for(lmax, 0, lmax), S2Grid.gauss_legendre(3, 4)):
        c = rng.normal(size=(2, 3, (lmax + 1) ** 2))
        values = to_grid(c, lmax, grid, normalization)
        assert values.shape == (2, 3, grid.n_theta, grid.n_phi)
        y = spherical_harmonics(lmax, grid.points, normalization)
        np.testing.assert_allclose(values, np.einsum("ijk,abk->abij", y, c), atol=1e-13)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("lmax", [0, 1, 2, 5, 10])
@pytest.mark.parametrize("odd_phi", [False, True])
def test_round_trip_identity(normalization, lmax, odd_phi):
    rng = np.random.default_rng(100 + lmax)
    grid = s2grid_for(lmax, 0, lmax, odd_phi=odd_phi)
    c = rng.normal(size=(4, (lmax + 1) ** 2))
    back = from_grid(to_grid(c, lmax, grid, normalization), lmax, grid, normalization)
    np.testing.assert_allclose(back, c, atol=1e-13)


def test_round_trip_needs_enough_points():
    lmax = 4
    c = np.random.default_rng(0).normal(size=(lmax + 1) ** 2)
    for grid in (
        S2Grid.gauss_legendre(lmax, 2 * lmax + 1),
        S2Grid.gauss_legendre(lmax + 1, 2 * lmax),
    ):
        back = from_grid(to_grid(c, lmax, grid), lmax, grid)
        assert np.abs(back - c).max() > 1e-3


def test_exported_constants_are_inverse():
    lmax, grid = 6, s2grid_for(6, 0, 6)
    for normalization in NORMALIZATIONS:
        to_mats = legendre_matrices(lmax, grid, normalization, "to_grid")
        from_mats = legendre_matrices(lmax, grid, normalization, "from_grid")
        assert len(to_mats) == len(from_mats) == lmax + 1
        for m in range(lmax + 1):
            assert to_mats[m].shape == (lmax + 1 - m, grid.n_theta)
            assert from_mats[m].shape == (grid.n_theta, lmax + 1 - m)
            np.testing.assert_allclose(to_mats[m] @ from_mats[m], np.eye(lmax + 1 - m), atol=1e-13)
    t, tf = phi_matrix(lmax, grid, "to_grid"), phi_matrix(lmax, grid, "from_grid")
    assert t.shape == (2 * lmax + 1, grid.n_phi) and tf.shape == (grid.n_phi, 2 * lmax + 1)
    np.testing.assert_allclose(t @ tf, np.eye(2 * lmax + 1), atol=1e-14)
    with pytest.raises(ValueError):
        legendre_matrices(lmax, grid, "component", "sideways")


def test_transform_shape_errors():
    grid = S2Grid.gauss_legendre(3, 5)
    with pytest.raises(ShapeError):
        to_grid(np.zeros(8), 2, grid)
    with pytest.raises(ShapeError):
        from_grid(np.zeros((3, 4)), 2, grid)
    with pytest.raises(ValueError, match="normalization"):
        to_grid(np.zeros(9), 2, grid, "unit")
    with pytest.raises(TypeError):
        to_grid(np.zeros(9), 2, (3, 5))


# ----------------------------------------------------------------------------- exactness rule
def _product_projection(a, b, l1, l2, lo, grid):
    f = to_grid(a, l1, grid, "integral") * to_grid(b, l2, grid, "integral")
    return from_grid(f, lo, grid, "integral")


def _gaunt_product(a, b, l1, l2, lo):
    """Exact projection sum_ij G[i, j, k] a_i b_j with the Gaunt tables of tp_spec."""
    gaunt = _gaunt()
    out = np.zeros((lo + 1) ** 2)
    for p in range(l1 + 1):
        for q in range(l2 + 1):
            for r in range(abs(p - q), min(p + q, lo) + 1):
                G = gaunt(p, q, r)
                out[r * r : (r + 1) ** 2] += np.einsum(
                    "i,j,ijk->k", a[p * p : (p + 1) ** 2], b[q * q : (q + 1) ** 2], G
                )
    return out


@pytest.mark.parametrize(
    ("l1", "l2", "lo"),
    [(1, 1, 2), (2, 2, 0), (2, 3, 4), (3, 3, 6), (4, 2, 3), (5, 5, 5), (6, 3, 9)],
)
def test_product_exactness_rule(l1, l2, lo):
    rng = np.random.default_rng(l1 * 100 + l2 * 10 + lo)
    a = rng.normal(size=(l1 + 1) ** 2)
    b = rng.normal(size=(l2 + 1) ** 2)
    ref = _gaunt_product(a, b, l1, l2, lo)
    scale = np.abs(ref).max()
    big = S2Grid.gauss_legendre(l1 + l2 + lo + 5, 2 * (l1 + l2 + lo) + 7)
    np.testing.assert_allclose(_product_projection(a, b, l1, l2, lo, big), ref, atol=1e-13 * scale)

    total = l1 + l2 + lo
    n_theta, n_phi = math.ceil((total + 1) / 2), total + 1
    minimal = s2grid_for(l1, l2, lo)
    assert (minimal.n_theta, minimal.n_phi) == (n_theta, n_phi)
    exact = _product_projection(a, b, l1, l2, lo, minimal)
    np.testing.assert_allclose(exact, ref, atol=1e-13 * scale)
    for smaller in (
        S2Grid.gauss_legendre(n_theta - 1, n_phi) if n_theta > 1 else None,
        S2Grid.gauss_legendre(n_theta, n_phi - 1),
    ):
        if smaller is None:
            continue
        err = np.abs(_product_projection(a, b, l1, l2, lo, smaller) - ref).max() / scale
        assert err > 1e-3, (smaller, err)


# ----------------------------------------------------------------------------- Gaunt tables
def test_gaunt_equals_quadrature_of_three_harmonics():
    gaunt = _gaunt()
    lmax = 8
    grid = s2grid_for(lmax, lmax, lmax)  # exact for the degree 3 lmax integrand
    y = spherical_harmonics(lmax, grid.points.reshape(-1, 3), "integral")
    w = grid.weights.reshape(-1)
    checked = 0
    for l1 in range(lmax + 1):
        for l2 in range(lmax + 1):
            for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1):
                y1 = y[:, l1 * l1 : (l1 + 1) ** 2]
                y2 = y[:, l2 * l2 : (l2 + 1) ** 2]
                y3 = y[:, l3 * l3 : (l3 + 1) ** 2]
                quad = np.einsum("p,pa,pb,pc->abc", w, y1, y2, y3, optimize=True)
                G = gaunt(l1, l2, l3)
                assert G.shape == quad.shape
                np.testing.assert_allclose(G, quad, atol=1e-14, err_msg=str((l1, l2, l3)))
                if (l1 + l2 + l3) % 2:
                    assert np.all(G == 0)
                    assert np.abs(quad).max() < 1e-14
                checked += 1
    assert checked > 300
