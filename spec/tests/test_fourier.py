"""Tests for tp_spec.fourier: exact 2D-Fourier tables and the Fourier Gaunt tensor product."""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import pytest
from tp_spec.errors import DTypeError, IrrepsError, ShapeError
from tp_spec.fourier import (
    NORMALIZATIONS,
    ExactFourierTable,
    FourierTable,
    fourier_gtp_reference,
    fourier_nnz_bound,
    fourier_to_sh,
    fourier_to_sh_exact,
    sh_to_fourier,
    sh_to_fourier_exact,
)

# ----------------------------------------------------------------------------- oracles


def _e3nn_sh(lmax: int, xyz: np.ndarray, normalization: str) -> np.ndarray:
    torch = pytest.importorskip("torch")
    o3 = pytest.importorskip("e3nn.o3")
    torch.set_default_dtype(torch.float64)
    t = torch.tensor(np.ascontiguousarray(xyz.reshape(-1, 3)), dtype=torch.float64)
    y = o3.spherical_harmonics(list(range(lmax + 1)), t, True, normalization=normalization)
    return y.numpy().reshape(*xyz.shape[:-1], (lmax + 1) ** 2)


def _torus_points(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """(x, y, z) = (sin t sin p, cos t, sin t cos p): the torus lifted to the sphere."""
    return np.stack([np.sin(theta) * np.sin(phi), np.cos(theta),
                     np.sin(theta) * np.cos(phi)], axis=-1)


def _evaluate(table: FourierTable, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """sum c[s, u, v] exp(i u theta + i v phi): (n,) points -> (n, dim)."""
    k = table.fourier_lmax
    u = np.arange(-k, k + 1)
    et = np.exp(1j * u[None, :] * theta[:, None])
    ep = np.exp(1j * u[None, :] * phi[:, None])
    return np.einsum("suv,nu,nv->ns", table.to_dense(), et, ep)


def _quadrature_gtp(x1, x2, l1, l2, lo, normalization):
    """z = (1/<Y,Y>) int f1 f2 Y dOmega / Y_00 by Gauss-Legendre(cos theta) x uniform phi."""
    n_t = (l1 + l2 + lo) // 2 + 2
    n_p = l1 + l2 + lo + 3
    ct, wt = np.polynomial.legendre.leggauss(n_t)
    phi = 2 * np.pi * np.arange(n_p) / n_p
    st = np.sqrt(1 - ct**2)
    xyz = np.stack(np.broadcast_arrays(st[:, None] * np.sin(phi)[None, :], ct[:, None],
                                       st[:, None] * np.cos(phi)[None, :]), axis=-1)
    w = (wt[:, None] * np.full(n_p, 2 * np.pi / n_p)[None, :]).reshape(-1)
    y1 = _e3nn_sh(l1, xyz, normalization).reshape(-1, (l1 + 1) ** 2)
    y2 = _e3nn_sh(l2, xyz, normalization).reshape(-1, (l2 + 1) ** 2)
    yo = _e3nn_sh(lo, xyz, normalization).reshape(-1, (lo + 1) ** 2)
    f = (x1 @ y1.T) * (x2 @ y2.T)  # (batch, points)
    z = (f * w) @ yo
    ls = np.concatenate([np.full(2 * l + 1, l) for l in range(lo + 1)])
    if normalization == "component":
        z = z / (4 * np.pi)
    elif normalization == "norm":
        z = z * (2 * ls + 1) / (4 * np.pi)
    else:
        z = z * math.sqrt(4 * np.pi)  # <Y,Y> = 1 and 1/Y_00 = sqrt(4 pi)
    return z


# ----------------------------------------------------------------------------- forward table


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_sh_to_fourier_matches_e3nn_at_random_points(normalization):
    lmax = 10
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(300, 3))
    xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
    theta, phi = np.arccos(xyz[:, 1]), np.arctan2(xyz[:, 0], xyz[:, 2])
    table = sh_to_fourier(lmax, normalization)
    val = _evaluate(table, theta, phi)
    ref = _e3nn_sh(lmax, xyz, normalization)
    np.testing.assert_allclose(val.real, ref, rtol=0, atol=1e-13)
    assert np.abs(val.imag).max() < 1e-13


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_sh_to_fourier_equals_fft_of_e3nn_on_torus(normalization):
    """Every coefficient (zeros included) against an alias-free 2D DFT of e3nn values."""
    lmax = 12
    n = 2 * lmax + 1
    t = 2 * np.pi * np.arange(n) / n
    theta, phi = np.meshgrid(t, t, indexing="ij")
    vals = _e3nn_sh(lmax, _torus_points(theta, phi), normalization)  # (n, n, dim)
    coef = np.fft.fft2(np.moveaxis(vals, -1, 0)) / n**2  # index u mod n, v mod n
    coef = np.roll(coef, (lmax, lmax), axis=(1, 2))  # offset by lmax
    dense = sh_to_fourier(lmax, normalization).to_dense()
    np.testing.assert_allclose(dense, coef, rtol=0, atol=1e-14)
    # every entry left out of the sparse table is (numerically) zero, every kept one is not
    kept = np.zeros(dense.shape, dtype=bool)
    idx = sh_to_fourier(lmax, normalization).indices
    kept[idx[:, 0], idx[:, 1] + lmax, idx[:, 2] + lmax] = True
    assert np.abs(coef[~kept]).max() < 1e-14
    assert np.abs(coef[kept]).min() > 1e-6


def test_sparsity_structure_and_count():
    for lmax in range(13):
        ex = sh_to_fourier_exact(lmax)
        s, u, v = ex.indices.T
        l = np.floor(np.sqrt(s)).astype(int)
        m = s - l * l - l
        assert np.all(np.abs(v) == np.abs(m))  # only v = +-m
        assert np.all(np.abs(u) <= l) and np.all((u - l) % 2 == 0)
        assert not np.any((u == 0) & (l % 2 == 0) & (m % 2 != 0))
        assert ex.nnz <= fourier_nnz_bound(lmax)
        if lmax <= 7:
            assert ex.nnz == fourier_nnz_bound(lmax)
        # the bound, counted directly from the rule it states
        count = sum(1 for ll in range(lmax + 1) for mm in range(-ll, ll + 1)
                    for _vv in ({mm, -mm}) for uu in range(-ll, ll + 1, 2)
                    if not (uu == 0 and ll % 2 == 0 and mm % 2 != 0))
        assert count == fourier_nnz_bound(lmax)
    # O(L^3): (l+1)(4l+1) per degree
    assert fourier_nnz_bound(20) < 2 * 21**3
    # accidental zeros at l = 8: |m| = 2, u = +-6 and |m| = 6, u = +-2, for m = +-|m|, v = +-|m|
    assert sh_to_fourier_exact(8).nnz == fourier_nnz_bound(8) - 16


def test_real_imaginary_structure_and_symmetries():
    ex = sh_to_fourier_exact(9)
    s, u, v = ex.indices.T
    l = np.floor(np.sqrt(s)).astype(int)
    m = s - l * l - l
    # i^(-|m|) from sin^|m| theta, and an extra i from sin(|m| phi) for m < 0
    assert np.array_equal(ex.imag, (np.abs(m) + (m < 0)) % 2 == 1)
    dense = sh_to_fourier(9).to_dense()
    # Y real: c[-u, -v] = conj(c[u, v]);  Y(-theta, phi + pi) = Y(theta, phi)
    np.testing.assert_array_equal(dense[:, ::-1, ::-1], np.conj(dense))
    sign_v = (-1.0) ** np.arange(-9, 10)
    np.testing.assert_allclose(dense[:, ::-1, :] * sign_v[None, None, :], dense, atol=0)


def test_float32_tables():
    t64 = sh_to_fourier(6)
    t32 = sh_to_fourier(6, dtype=np.float32)
    assert t64.values.dtype == np.complex128 and t32.values.dtype == np.complex64
    np.testing.assert_array_equal(t32.indices, t64.indices)
    np.testing.assert_allclose(t32.values, t64.values, rtol=1e-7, atol=0)
    p32 = fourier_to_sh(4, 6, "integral", dtype=np.float32)
    p64 = fourier_to_sh(4, 6, "integral")
    np.testing.assert_allclose(p32.values, p64.values, rtol=1e-7, atol=0)


# ----------------------------------------------------------------------------- exactness


def _sympy_coefficients(l: int, m: int):
    """Exact c[lm, u, v] (component) from Rodrigues' formula, expanded with sympy."""
    sp = pytest.importorskip("sympy")
    x, z, w = sp.symbols("x z w")
    am = abs(m)
    pl = sp.diff((x**2 - 1) ** l, x, l) / (2**l * sp.factorial(l))
    q = sp.diff(pl, x, am)
    cos_t, sin_t = (z + 1 / z) / 2, (z - 1 / z) / (2 * sp.I)
    theta_part = sp.expand(q.subs(x, cos_t) * sin_t**am)
    if m > 0:
        phi_part = (w**am + w**-am) / 2
    elif m < 0:
        phi_part = (w**am - w**-am) / (2 * sp.I)
    else:
        phi_part = sp.Integer(1)
    n2 = sp.Rational((2 * l + 1) * math.factorial(l - am), math.factorial(l + am))
    norm = sp.sqrt(2 * n2) if m else sp.sqrt(n2)
    expr = sp.expand(norm * theta_part * phi_part * z ** l * w ** am)
    poly = sp.Poly(expr, z, w)
    return {(i - l, j - am): c for (i, j), c in poly.terms()}


def test_exact_forward_entries_match_sympy():
    sp = pytest.importorskip("sympy")
    lmax = 4
    ex = sh_to_fourier_exact(lmax)
    assert ex.pi_power == 0
    got = {}
    for (s, u, v), im, val in zip(ex.indices.tolist(), ex.imag, ex.values, strict=True):
        got[(s, u, v)] = (sp.I if im else 1) * val.sign * sp.sqrt(sp.Rational(val.p, val.q))
    want = {}
    for l in range(lmax + 1):
        for m in range(-l, l + 1):
            for (u, v), c in _sympy_coefficients(l, m).items():
                if c != 0:
                    want[(l * l + l + m, u, v)] = c
    assert set(got) == set(want)
    for key, c in want.items():
        assert sp.expand(got[key] - c) == 0, key


def test_squares_are_rational():
    for normalization, pi2 in (("component", 0), ("norm", 0), ("integral", -1)):
        ex = sh_to_fourier_exact(7, normalization)
        assert ex.pi_power == Fraction(pi2, 2)
        fl = ex.to_float().values
        sq = ex.squares()
        assert all(isinstance(q, Fraction) and q != 0 for q in sq)
        np.testing.assert_allclose(fl**2, np.array([float(q) for q in sq]) * np.pi**pi2,
                                   rtol=1e-14)
    pr = fourier_to_sh_exact(5, 7, "integral")
    assert pr.pi_power == Fraction(1, 2)
    np.testing.assert_allclose(pr.to_float().values ** 2,
                               np.array([float(q) for q in pr.squares()]) * np.pi, rtol=1e-14)
    assert isinstance(pr, ExactFourierTable)


# ----------------------------------------------------------------------------- projection


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_roundtrip_is_identity(normalization):
    for lmax in range(11):
        fwd = sh_to_fourier(lmax, normalization).to_dense()
        for k in (lmax, lmax + 3):
            back = fourier_to_sh(lmax, k, normalization).to_dense()
            fpad = np.pad(fwd, ((0, 0), (k - lmax, k - lmax), (k - lmax, k - lmax)))
            ident = np.einsum("suv,tuv->ts", fpad, back)
            np.testing.assert_allclose(ident, np.eye((lmax + 1) ** 2), rtol=0, atol=1e-13)


def test_projection_drops_higher_degrees():
    fwd = sh_to_fourier(7).to_dense()
    back = fourier_to_sh(4, 7).to_dense()
    proj = np.einsum("suv,tuv->ts", fwd, back)  # (25, 64)
    want = np.zeros((25, 64))
    want[:, :25] = np.eye(25)
    np.testing.assert_allclose(proj, want, rtol=0, atol=1e-13)


def test_projection_table_is_the_half_torus_integral():
    """T[lm,u,v] = (1/(4 pi)) int_0^pi int_0^2pi e^{iu t + iv p} Y_lm sin t dp dt, u = l mod 2."""
    lo, k = 4, 6
    table = fourier_to_sh(lo, k).to_dense()
    ct, wt = np.polynomial.legendre.leggauss(40)  # t in [0, pi] via cos t
    theta = np.arccos(ct)
    n_p = 2 * (k + lo) + 3
    phi = 2 * np.pi * np.arange(n_p) / n_p
    tt, pp = np.meshgrid(theta, phi, indexing="ij")
    y = _e3nn_sh(lo, _torus_points(tt, pp), "component")  # (nt, np, dim)
    u = np.arange(-k, k + 1)
    et = np.exp(1j * u[None, :] * theta[:, None])
    ep = np.exp(1j * u[None, :] * phi[:, None])
    integral = np.einsum("t,tps,tu,pv->suv", wt, y, et, ep) * (2 * np.pi / n_p) / (4 * np.pi)
    ls = np.floor(np.sqrt(np.arange((lo + 1) ** 2))).astype(int)
    parity_ok = (u[None, :] - ls[:, None]) % 2 == 0  # (dim, u)
    mask = np.broadcast_to(parity_ok[:, :, None], table.shape)
    np.testing.assert_allclose(table[mask], integral[mask], rtol=0, atol=1e-13)
    assert np.all(table[~mask] == 0)


# ----------------------------------------------------------------------------- GTP


CASES = [(0, 0, 0), (1, 1, 2), (2, 3, 4), (3, 3, 6), (4, 2, 6), (6, 5, 3), (6, 6, 6), (2, 2, 6),
         (5, 0, 5)]


@pytest.mark.parametrize(("l1", "l2", "lo"), CASES)
def test_gtp_matches_quadrature(l1, l2, lo):
    rng = np.random.default_rng(l1 * 100 + l2 * 10 + lo)
    x1 = rng.normal(size=(3, (l1 + 1) ** 2))
    x2 = rng.normal(size=(3, (l2 + 1) ** 2))
    for normalization in NORMALIZATIONS:
        got = fourier_gtp_reference(x1, x2, l1, l2, lo, normalization)
        want = _quadrature_gtp(x1, x2, l1, l2, lo, normalization)
        assert got.shape == (3, (lo + 1) ** 2) and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_gtp_unit(normalization):
    rng = np.random.default_rng(7)
    for lmax in (0, 1, 4, 7):
        x = rng.normal(size=(2, 5, (lmax + 1) ** 2))
        e0 = np.zeros((2, 5, 1))
        e0[..., 0] = 1.0
        np.testing.assert_allclose(fourier_gtp_reference(x, e0, lmax, 0, lmax, normalization),
                                   x, rtol=0, atol=1e-13)
        np.testing.assert_allclose(fourier_gtp_reference(e0, x, 0, lmax, lmax, normalization),
                                   x, rtol=0, atol=1e-13)


def test_gtp_is_sqrt_4pi_times_gaunt():
    """component GTP = sqrt(4 pi) * sum G x1 x2 with the Gaunt formula of docs/conventions.md."""
    torch = pytest.importorskip("torch")
    o3 = pytest.importorskip("e3nn.o3")
    torch.set_default_dtype(torch.float64)
    l1, l2, lo = 3, 2, 4
    rng = np.random.default_rng(3)
    x1 = rng.normal(size=(l1 + 1) ** 2)
    x2 = rng.normal(size=(l2 + 1) ** 2)
    want = np.zeros((lo + 1) ** 2)
    for a in range(l1 + 1):
        for b in range(l2 + 1):
            for c in range(abs(a - b), min(a + b, lo) + 1):
                if (a + b + c) % 2:
                    continue
                j, g = a + b + c, (a + b + c) // 2
                w3j0 = math.sqrt(math.factorial(j - 2 * a) * math.factorial(j - 2 * b)
                                 * math.factorial(j - 2 * c) / math.factorial(j + 1)) \
                    * math.factorial(g) / (math.factorial(g - a) * math.factorial(g - b)
                                           * math.factorial(g - c))
                gaunt = math.sqrt((2 * a + 1) * (2 * b + 1) * (2 * c + 1) / (4 * math.pi)) \
                    * w3j0 * o3.wigner_3j(a, b, c).numpy()
                want[c * c:(c + 1) ** 2] += math.sqrt(4 * math.pi) * np.einsum(
                    "ijk,i,j->k", gaunt, x1[a * a:(a + 1) ** 2], x2[b * b:(b + 1) ** 2])
    got = fourier_gtp_reference(x1, x2, l1, l2, lo)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- errors, speed


def test_bad_input_raises():
    with pytest.raises(IrrepsError, match="lmax"):
        sh_to_fourier(-1)
    with pytest.raises(IrrepsError, match="lmax_in_fourier"):
        fourier_to_sh(2, 1.5)
    with pytest.raises(ValueError, match="normalization"):
        sh_to_fourier_exact(2, "unit")
    with pytest.raises(DTypeError, match="dtype"):
        sh_to_fourier(2, dtype=np.int32)
    x = np.zeros((2, 4))
    with pytest.raises(ShapeError, match="x2"):
        fourier_gtp_reference(x, np.zeros((2, 5)), 1, 1, 2)
    with pytest.raises(ShapeError, match="leading"):
        fourier_gtp_reference(x, np.zeros((3, 4)), 1, 1, 2)
    with pytest.raises(DTypeError, match="x1"):
        fourier_gtp_reference(np.zeros((2, 4), dtype=int), x, 1, 1, 2)


def test_tables_are_read_only():
    t = sh_to_fourier(3)
    with pytest.raises(ValueError):
        t.values[0] = 0
    with pytest.raises(ValueError):
        t.indices[0, 0] = 0


def test_build_speed():
    sh_to_fourier_exact.cache_clear()
    sh_to_fourier.cache_clear()
    t0 = time.perf_counter()
    sh_to_fourier(10)
    assert time.perf_counter() - t0 < 1.0
