"""Tests for tp_spec.rotations: Euler angles, generators, Wigner D, equivariance of SH and CG."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tp_spec.errors import IrrepsError, ShapeError
from tp_spec.irreps import Irreps
from tp_spec.rotations import (
    euler_to_matrix,
    matrix_to_euler,
    matrix_x,
    matrix_y,
    matrix_z,
    random_rotation,
    so3_generators,
    wigner_D,
    wigner_D_l,
)
from tp_spec.spherical_harmonics import spherical_harmonics

SH10 = Irreps.spherical_harmonics(10)  # 0e + 1o + 2e + ... + 10e


def _expm():
    return pytest.importorskip("scipy.linalg").expm


# ----------------------------------------------------------------------------- elementary rotations
def test_generators_degree_one_are_cross_products():
    g = so3_generators(1)
    v = np.array([0.3, -1.2, 0.7])
    for i in range(3):
        e = np.eye(3)[i]
        np.testing.assert_allclose(g[i] @ v, np.cross(e, v), atol=1e-15)


def test_axis_matrices_are_exponentials():
    expm = _expm()
    g = so3_generators(1)
    for i, mat in enumerate((matrix_x, matrix_y, matrix_z)):
        for t in (0.3, -1.1, 2.9):
            np.testing.assert_allclose(mat(t), expm(t * g[i]), atol=1e-15)


def test_euler_round_trip_random_and_poles():
    R = random_rotation(np.random.default_rng(0), shape=(500,))
    a, b, c = matrix_to_euler(R)
    assert np.all((b >= 0) & (b <= math.pi))
    np.testing.assert_allclose(euler_to_matrix(a, b, c), R, atol=1e-14)
    poles = [
        np.eye(3),
        matrix_y(0.4),
        matrix_y(0.4) @ matrix_x(math.pi) @ matrix_y(-1.3),
        matrix_y(2.0) @ matrix_x(1e-14) @ matrix_y(0.5),
        matrix_y(-2.0) @ matrix_x(math.pi - 1e-14) @ matrix_y(0.5),
    ]
    for P in poles:
        np.testing.assert_allclose(euler_to_matrix(*matrix_to_euler(P)), P, atol=1e-13)


def test_euler_definition():
    a, b, c = 0.3, 1.1, -2.0
    np.testing.assert_allclose(
        euler_to_matrix(a, b, c), matrix_y(a) @ matrix_x(b) @ matrix_y(c), atol=1e-16
    )
    assert euler_to_matrix(np.zeros(4), np.zeros((2, 1)), 0.0).shape == (2, 4, 3, 3)


def test_random_rotation_properties():
    rng = np.random.default_rng(3)
    R = random_rotation(rng, shape=(4000,))
    Ri = random_rotation(rng, improper=True, shape=(7, 2))
    assert R.shape == (4000, 3, 3) and Ri.shape == (7, 2, 3, 3)
    np.testing.assert_allclose(
        R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-14
    )
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-14)
    np.testing.assert_allclose(np.linalg.det(Ri), -1.0, atol=1e-14)
    # Haar moments: E[R] = 0, E[R_ij^2] = 1/3 (statistical, ~5 sigma).
    assert np.abs(R.mean(axis=0)).max() < 5 * math.sqrt(1 / 3 / 4000)
    assert np.abs((R**2).mean(axis=0) - 1 / 3).max() < 0.05
    assert random_rotation(5).shape == (3, 3)
    np.testing.assert_array_equal(random_rotation(5), random_rotation(5))


# ----------------------------------------------------------------------------- generators
@pytest.mark.parametrize("l", [0, 1, 2, 5, 10])
def test_generator_algebra(l):
    g = so3_generators(l)
    n = 2 * l + 1
    assert g.shape == (3, n, n)
    np.testing.assert_allclose(g, -np.swapaxes(g, 1, 2), atol=1e-15)
    np.testing.assert_allclose(g[0] @ g[1] - g[1] @ g[0], g[2], atol=1e-12)
    np.testing.assert_allclose(g[1] @ g[2] - g[2] @ g[1], g[0], atol=1e-12)
    casimir = sum(gi @ gi for gi in g)
    np.testing.assert_allclose(casimir, -l * (l + 1) * np.eye(n), atol=1e-11)


@pytest.mark.parametrize("l", [2, 3, 6, 10])
def test_wigner_matches_euler_generator_form(l):
    """D^l(R_y(a) R_x(b) R_y(c)) = expm(a G_y) expm(b G_x) expm(c G_y)."""
    expm = _expm()
    g = so3_generators(l)
    rng = np.random.default_rng(l)
    for a, b, c in rng.uniform(-math.pi, math.pi, size=(4, 3)):
        ref = expm(a * g[1]) @ expm(b * g[0]) @ expm(c * g[1])
        np.testing.assert_allclose(wigner_D_l(l, euler_to_matrix(a, b, c)), ref, atol=1e-12)


# ----------------------------------------------------------------------------- Wigner D
@pytest.mark.parametrize("improper", [False, True])
def test_spherical_harmonics_equivariance(improper):
    rng = np.random.default_rng(11 + improper)
    R = random_rotation(rng, improper=improper, shape=(20,))
    v = rng.normal(size=(20, 3))
    D = wigner_D(SH10, R)
    for normalization in ("component", "integral", "norm"):
        y_rot = spherical_harmonics(SH10, np.einsum("bij,bj->bi", R, v), normalization)
        y = spherical_harmonics(SH10, v, normalization)
        np.testing.assert_allclose(y_rot, np.einsum("bij,bj->bi", D, y), atol=1e-12)


@pytest.mark.parametrize("improper", [False, True])
def test_wigner_orthogonal_and_homomorphism(improper):
    rng = np.random.default_rng(21 + improper)
    irreps = "2x0e + 0o + 1o + 1e + 2e + 2o + 5o + 10e"
    R1 = random_rotation(rng, improper=improper, shape=(3,))
    R2 = random_rotation(rng, improper=True, shape=(3,))
    D1, D2, D12 = wigner_D(irreps, R1), wigner_D(irreps, R2), wigner_D(irreps, R1 @ R2)
    eye = np.broadcast_to(np.eye(D1.shape[-1]), D1.shape)
    np.testing.assert_allclose(D1 @ np.swapaxes(D1, -1, -2), eye, atol=1e-13)
    np.testing.assert_allclose(D12, D1 @ D2, atol=1e-13)


def test_degree_one_is_R_exactly():
    rng = np.random.default_rng(5)
    R = random_rotation(rng, shape=(10,))
    np.testing.assert_array_equal(wigner_D_l(1, R), R)
    np.testing.assert_array_equal(wigner_D("1o", R), R)
    Ri = -R
    np.testing.assert_array_equal(wigner_D("1o", Ri), Ri)
    np.testing.assert_array_equal(wigner_D("1e", Ri), R)
    np.testing.assert_array_equal(wigner_D_l(0, R), np.ones((10, 1, 1)))


def test_parity_factor_on_inversion():
    irreps = Irreps("0e + 0o + 1o + 1e + 2e + 2o + 3o + 3e")
    D = wigner_D(irreps, -np.eye(3))
    expected = np.concatenate([np.full(mul * ir.dim, float(ir.p)) for mul, ir in irreps])
    np.testing.assert_allclose(D, np.diag(expected), atol=1e-14)


def test_block_layout_and_batch():
    rng = np.random.default_rng(8)
    R = random_rotation(rng, shape=(2, 3))
    irreps = "2x1o + 0x3e + 2e"
    D = wigner_D(irreps, R)
    assert D.shape == (2, 3, 11, 11)
    d1, d2 = wigner_D_l(1, R), wigner_D_l(2, R)
    np.testing.assert_array_equal(D[..., 0:3, 0:3], d1)
    np.testing.assert_array_equal(D[..., 3:6, 3:6], d1)
    np.testing.assert_array_equal(D[..., 6:11, 6:11], d2)
    assert np.all(D[..., 0:3, 3:] == 0) and np.all(D[..., 6:, :6] == 0)
    np.testing.assert_allclose(D[1, 2], wigner_D(irreps, R[1, 2]), atol=0)
    assert wigner_D("", np.eye(3)).shape == (0, 0)


def test_matches_e3nn_D_from_matrix():
    torch = pytest.importorskip("torch")
    o3 = pytest.importorskip("e3nn.o3")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn builds its tables in the default dtype
    try:
        rng = np.random.default_rng(9)
        irreps = "2x0e + 0o + 1o + 1e + 2e + 2o + 3o + 5e + 10e"
        for improper in (False, True):
            R = random_rotation(rng, improper=improper, shape=(4,))
            ref = o3.Irreps(irreps).D_from_matrix(torch.tensor(R)).numpy()
            np.testing.assert_allclose(wigner_D(irreps, R), ref, atol=1e-12)
    finally:
        torch.set_default_dtype(old)


def test_input_validation():
    with pytest.raises(ShapeError):
        wigner_D("1o", np.eye(4))
    with pytest.raises(ShapeError):
        wigner_D_l(2, np.ones(3))
    with pytest.raises(ValueError, match="orthogonal"):
        wigner_D("1o", 2 * np.eye(3))
    with pytest.raises(ValueError, match="orthogonal"):
        wigner_D_l(2, np.eye(3) + 1e-3)
    with pytest.raises(ValueError, match="non-finite"):
        wigner_D("1o", np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="proper"):
        wigner_D_l(2, -np.eye(3))
    with pytest.raises(ValueError, match="proper"):
        matrix_to_euler(-np.eye(3))
    with pytest.raises(IrrepsError):
        wigner_D("1x", np.eye(3))
    # relaxed tolerance for slightly non-orthogonal (e.g. float32-derived) matrices
    R = random_rotation(np.random.default_rng(0)).astype(np.float32).astype(np.float64)
    wigner_D("2e", R)
    with pytest.raises(ValueError):
        wigner_D("2e", R + 1e-5)
    wigner_D("2e", R + 1e-5, atol=1e-4)


# ----------------------------------------------------------------------------- Clebsch-Gordan
def test_clebsch_gordan_invariance_all_triples():
    """C(l1, l2, l3) is invariant under (D1, D2, D3) for every triangle triple with l <= 10."""
    try:
        from tp_spec.clebsch_gordan import clebsch_gordan
    except ImportError as exc:  # pragma: no cover - only while the module is being written
        pytest.skip(f"tp_spec.clebsch_gordan not importable yet: {exc}")
    lmax = 10
    rng = np.random.default_rng(31)
    R = random_rotation(rng, shape=(2,))
    Ds = [wigner_D_l(l, R) for l in range(lmax + 1)]
    count = 0
    for l1 in range(lmax + 1):
        for l2 in range(lmax + 1):
            for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1):
                C = clebsch_gordan(l1, l2, l3)
                assert C.shape == (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
                rotated = np.einsum(
                    "nia,njb,nkc,abc->nijk", Ds[l1], Ds[l2], Ds[l3], C, optimize=True
                )
                np.testing.assert_allclose(
                    rotated,
                    np.broadcast_to(C, rotated.shape),
                    atol=1e-13,
                    err_msg=str((l1, l2, l3)),
                )
                count += 1
    assert count == 671
