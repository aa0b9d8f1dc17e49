"""Tests for the exact real Clebsch-Gordan tables (docs/conventions.md)."""

from __future__ import annotations

import importlib.util
import itertools
import os
import random
import subprocess
import sys
import textwrap
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from tp_spec.clebsch_gordan import (
    SHIPPED_LMAX,
    ExactTable,
    _shipped_tables,
    clebsch_gordan,
    clebsch_gordan_exact,
    complex_clebsch_gordan_exact,
    compute_real_cg_exact,
    wigner_3j_exact,
)
from tp_spec.errors import DTypeError, InstructionError
from tp_spec.sqrt_rational import SqrtRational

SPEC_ROOT = Path(__file__).resolve().parents[1]


def triples(lmax: int, l3max: int | None = None):
    l3max = lmax if l3max is None else l3max
    for l1 in range(lmax + 1):
        for l2 in range(lmax + 1):
            for l3 in range(abs(l1 - l2), min(l1 + l2, l3max) + 1):
                yield l1, l2, l3


def _nearest_check(x: float, v: SqrtRational, dtype) -> None:
    """x is the nearest dtype value to v (independent decimal evaluation, 60 digits)."""
    with localcontext() as ctx:
        ctx.prec = 60
        exact = v.sign * (Decimal(v.p) / Decimal(v.q)).sqrt()
        xs = dtype(x)
        d = abs(Decimal(float(xs)) - exact)
        for nb in (np.nextafter(xs, dtype(np.inf)), np.nextafter(xs, dtype(-np.inf))):
            assert d <= abs(Decimal(float(nb)) - exact)


# ----------------------------------------------------------------------------- oracles
def test_matches_e3nn_wigner_3j():
    torch = pytest.importorskip("torch")
    o3 = pytest.importorskip("e3nn.o3")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        count = 0
        for l1, l2, l3 in triples(6):
            ref = o3.wigner_3j(l1, l2, l3).numpy()
            ours = clebsch_gordan(l1, l2, l3)
            assert ours.shape == ref.shape == (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
            np.testing.assert_allclose(ours, ref, rtol=0, atol=4e-16, err_msg=str((l1, l2, l3)))
            count += 1
        assert count == len(list(triples(6)))
        # degrees above the shipped range are computed on the fly
        for l1, l2, l3 in [(11, 3, 9), (6, 6, 12)]:
            ref = o3.wigner_3j(l1, l2, l3).numpy()
            np.testing.assert_allclose(clebsch_gordan(l1, l2, l3), ref, rtol=0, atol=1e-13)
    finally:
        torch.set_default_dtype(old)


def test_matches_cuequivariance():
    cue = pytest.importorskip("cuequivariance")
    for l1, l2, l3 in triples(4):
        ref = cue.SO3.clebsch_gordan(cue.SO3(l1), cue.SO3(l2), cue.SO3(l3))
        assert ref.shape == (1, 2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
        np.testing.assert_allclose(np.sqrt(2 * l3 + 1) * clebsch_gordan(l1, l2, l3), ref[0],
                                   rtol=0, atol=2e-15, err_msg=str((l1, l2, l3)))


def test_complex_cg_and_3j_match_sympy():
    wigner = pytest.importorskip("sympy.physics.wigner")
    sympy = pytest.importorskip("sympy")
    rng = random.Random(3)
    n = 0
    while n < 300:
        j1, j2 = rng.randrange(0, 7), rng.randrange(0, 7)
        j3 = rng.randrange(abs(j1 - j2), j1 + j2 + 1)
        m1, m2 = rng.randrange(-j1, j1 + 1), rng.randrange(-j2, j2 + 1)
        m3 = m1 + m2 if rng.random() < 0.9 else rng.randrange(-j3, j3 + 1)
        if abs(m3) > j3:
            continue
        ours = complex_clebsch_gordan_exact(j1, m1, j2, m2, j3, m3)
        ref = wigner.clebsch_gordan(j1, j2, j3, m1, m2, m3)
        assert sympy.Rational(ours.signed_square()) == sympy.sign(ref) * ref**2
        ours3 = wigner_3j_exact(j1, m1, j2, m2, j3, -m3)
        ref3 = wigner.wigner_3j(j1, j2, j3, m1, m2, -m3)
        assert sympy.Rational(ours3.signed_square()) == sympy.sign(ref3) * ref3**2
        n += 1
    assert complex_clebsch_gordan_exact(1, 0, 1, 0, 3, 0) == 0  # triangle -> 0
    with pytest.raises(InstructionError):
        complex_clebsch_gordan_exact(1, 2, 1, 0, 1, 2)


def test_real_basis_construction_matches_sympy_exactly():
    """Independent exact construction of section 2 with sympy (complex CG, Q_l, real part)."""
    sympy = pytest.importorskip("sympy")
    wigner = pytest.importorskip("sympy.physics.wigner")
    I, sqrt2 = sympy.I, sympy.sqrt(2)

    def q_matrix(l):
        Q = sympy.zeros(2 * l + 1, 2 * l + 1)
        for m in range(-l, l + 1):
            if m < 0:
                Q[m + l, abs(m) + l] = 1 / sqrt2
                Q[m + l, -abs(m) + l] = -I / sqrt2
            elif m == 0:
                Q[l, l] = 1
            else:
                Q[m + l, m + l] = (-1) ** m / sqrt2
                Q[m + l, -m + l] = I * (-1) ** m / sqrt2
        return (-I) ** l * Q

    for l1, l2, l3 in [(1, 1, 1), (1, 1, 2), (1, 2, 2), (2, 2, 2), (2, 1, 3), (2, 3, 3)]:
        Q1, Q2, Q3 = q_matrix(l1), q_matrix(l2), q_matrix(l3)
        ours = clebsch_gordan_exact(l1, l2, l3).to_object_array()
        for a, b, c in itertools.product(range(2 * l1 + 1), range(2 * l2 + 1), range(2 * l3 + 1)):
            total = 0
            for m1 in range(-l1, l1 + 1):
                for m2 in range(-l2, l2 + 1):
                    m3 = m1 + m2
                    if abs(m3) > l3:
                        continue
                    coef = Q1[m1 + l1, a] * Q2[m2 + l2, b] * sympy.conjugate(Q3[m3 + l3, c])
                    if coef != 0:
                        total += coef * wigner.clebsch_gordan(l1, l2, l3, m1, m2, m3)
            total = sympy.expand(total / sympy.sqrt(2 * l3 + 1))
            assert sympy.im(total) == 0
            v = ours[a, b, c]
            assert sympy.Rational(v.signed_square()) == sympy.sign(total) * total**2, (
                (l1, l2, l3), (a, b, c), v, total)


# ----------------------------------------------------------------------------- exactness
def test_exact_norm_and_squares_rational():
    for l1, l2, l3 in list(triples(6)) + [(10, 10, 10), (12, 7, 9)]:
        t = clebsch_gordan_exact(l1, l2, l3)
        assert isinstance(t, ExactTable) and t.shape == (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
        assert t.nnz > 0 and all(v for v in t.values)
        assert t.square_sum() == 1, (l1, l2, l3)
        assert all(isinstance(v.square(), Fraction) for v in t.values)
        assert t.indices.shape == (t.nnz, 3) and not t.indices.flags.writeable


def _exact_dot(xs: list[SqrtRational]) -> Fraction | None:
    """Exact sum of +-sqrt(r_i) if all r_i are rational squares times one common radicand."""
    sympy = pytest.importorskip("sympy")
    total = sum((x.sign * sympy.sqrt(sympy.Rational(x.p, x.q)) for x in xs), sympy.Integer(0))
    assert total.is_rational, total
    return Fraction(int(total.p), int(total.q))


def test_exact_orthogonality_sample():
    for l1, l2, l3 in [(1, 1, 1), (1, 2, 2), (2, 2, 3), (3, 2, 4), (3, 3, 2)]:
        arr = clebsch_gordan_exact(l1, l2, l3).to_object_array()
        d3 = 2 * l3 + 1
        for c in range(d3):
            for c2 in range(d3):
                prods = [arr[a, b, c] * arr[a, b, c2] for a in range(2 * l1 + 1)
                         for b in range(2 * l2 + 1)]
                expected = Fraction(1, d3) if c == c2 else Fraction(0)
                assert _exact_dot(prods) == expected, ((l1, l2, l3), c, c2)


def test_float_orthogonality_all():
    for l1, l2, l3 in triples(8):
        C = clebsch_gordan(l1, l2, l3).reshape(-1, 2 * l3 + 1)
        np.testing.assert_allclose(C.T @ C, np.eye(2 * l3 + 1) / (2 * l3 + 1), atol=2e-15)


def test_sign_rules():
    eps = np.zeros((3, 3, 3))
    for (i, j, k), s in {(0, 1, 2): 1, (1, 2, 0): 1, (2, 0, 1): 1,
                         (0, 2, 1): -1, (2, 1, 0): -1, (1, 0, 2): -1}.items():
        eps[i, j, k] = s
    t = clebsch_gordan_exact(1, 1, 1).to_object_array()
    for idx in itertools.product(range(3), repeat=3):
        assert t[idx] == SqrtRational(int(eps[idx]), 1, 6)
    np.testing.assert_array_equal(clebsch_gordan(1, 1, 1), eps * SqrtRational(1, 1, 6).to_float())
    for l in range(0, 12):
        d = 2 * l + 1
        inv = SqrtRational(1, 1, d)
        blocks = (clebsch_gordan_exact(0, l, l).to_object_array()[0, :, :],
                  clebsch_gordan_exact(l, 0, l).to_object_array()[:, 0, :],
                  clebsch_gordan_exact(l, l, 0).to_object_array()[:, :, 0])
        for block in blocks:
            for i in range(d):
                for j in range(d):
                    assert block[i, j] == (inv if i == j else 0)


def test_permutation_symmetry_exact():
    for l1, l2, l3 in triples(4):
        base = clebsch_gordan_exact(l1, l2, l3).to_object_array()
        J = l1 + l2 + l3
        for perm in itertools.permutations(range(3)):
            ls = (l1, l2, l3)
            other = clebsch_gordan_exact(*(ls[p] for p in perm)).to_object_array()
            odd = perm in ((1, 0, 2), (0, 2, 1), (2, 1, 0))
            sign = -1 if (odd and J % 2) else 1
            np.testing.assert_array_equal(
                other, np.transpose(base, perm) * sign, err_msg=str(((l1, l2, l3), perm)))


# ----------------------------------------------------------------------------- floats
def test_float64_float32_correctly_rounded_sample():
    rng = random.Random(5)
    sample = rng.sample(list(triples(10)), 40) + [(10, 10, 10), (3, 5, 7), (13, 6, 8)]
    for l1, l2, l3 in sample:
        t = clebsch_gordan_exact(l1, l2, l3)
        C64 = clebsch_gordan(l1, l2, l3)
        C32 = clebsch_gordan(l1, l2, l3, dtype=np.float32)
        assert C64.dtype == np.float64 and C32.dtype == np.float32
        mask = np.zeros(t.shape, dtype=bool)
        mask[tuple(t.indices.T)] = True
        assert not C64[~mask].any() and not C32[~mask].any()
        picks = rng.sample(range(t.nnz), min(t.nnz, 25))
        for k in picks:
            idx = tuple(t.indices[k])
            _nearest_check(float(C64[idx]), t.values[k], np.float64)
            _nearest_check(float(C32[idx]), t.values[k], np.float32)


def test_shipped_floats_equal_rounded_exact_all():
    shipped = _shipped_tables()
    if shipped is None:
        pytest.skip("no shipped tables")
    a = shipped.arrays
    for k in range(0, len(a["cg_sign"]), 7):
        v = SqrtRational(int(a["cg_sign"][k]), int(a["cg_p"][k]), int(a["cg_q"][k]))
        assert a["cg_f64"][k] == v.to_float(np.float64)
        assert a["cg_f32"][k] == np.float32(v.to_float(np.float32))


def test_cached_readonly_and_errors():
    C = clebsch_gordan(2, 3, 4)
    assert C is clebsch_gordan(2, 3, 4)
    assert C is clebsch_gordan(np.int64(2), 3, 4)
    assert not C.flags.writeable
    with pytest.raises(ValueError):
        C[0, 0, 0] = 1.0
    assert not clebsch_gordan(2, 3, 4, dtype=np.float32).flags.writeable
    with pytest.raises(InstructionError, match=r"\(1, 1, 3\)"):
        clebsch_gordan(1, 1, 3)
    with pytest.raises(InstructionError, match=r"\(4, 1, 2\)"):
        clebsch_gordan_exact(4, 1, 2)
    with pytest.raises(InstructionError):
        clebsch_gordan(-1, 1, 1)
    with pytest.raises(InstructionError):
        clebsch_gordan(1.0, 1, 1)
    with pytest.raises(InstructionError):
        clebsch_gordan(True, 1, 1)
    with pytest.raises(DTypeError):
        clebsch_gordan(1, 1, 1, dtype=np.float16)
    with pytest.raises(DTypeError):
        clebsch_gordan(1, 1, 1, dtype=np.int64)


# ----------------------------------------------------------------------------- shipped data
def _load_generator():
    path = SPEC_ROOT / "tools" / "generate_tables.py"
    spec = importlib.util.spec_from_file_location("_tp_generate_tables", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_regenerating_a_sample_reproduces_shipped_data():
    shipped = _shipped_tables()
    if shipped is None:
        pytest.skip("no shipped tables")
    gen = _load_generator()
    all_t = gen.all_triples(SHIPPED_LMAX)
    assert sorted(shipped.slices) == sorted(all_t) and len(all_t) == len(set(all_t))
    rng = random.Random(11)
    sample = rng.sample(all_t, 25) + [(10, 10, 10), (0, 0, 0), (10, 10, 0), (7, 10, 4),
                                      (10, 10, 20), (9, 10, 17)]
    fresh = gen.build_tables(sample)
    for t, (f_lo, f_hi) in zip(sample, zip(fresh["offsets"][:-1], fresh["offsets"][1:],
                                           strict=True), strict=True):
        lo, hi = shipped.slices[t]
        for key in ("cg_index", "cg_sign", "cg_p", "cg_q", "cg_f64", "cg_f32",
                    "gaunt_f64", "gaunt_f32"):
            np.testing.assert_array_equal(shipped.arrays[key][lo:hi], fresh[key][f_lo:f_hi],
                                          err_msg=f"{key} {t}")
        # the exact form served from the shipped data equals the direct computation
        direct = compute_real_cg_exact(*t)
        served = clebsch_gordan_exact(*t)
        assert served.values == direct.values
        np.testing.assert_array_equal(served.indices, direct.indices)


def test_all_tables_up_to_10_fast_in_fresh_process():
    """Every table a product of two inputs of degree <= 10 needs (l3 up to 20), import included."""
    code = textwrap.dedent("""
        import time
        t0 = time.perf_counter()
        from tp_spec.clebsch_gordan import clebsch_gordan
        from tp_spec.gaunt import gaunt
        n = 0
        for l1 in range(11):
            for l2 in range(11):
                for l3 in range(abs(l1 - l2), l1 + l2 + 1):
                    assert clebsch_gordan(l1, l2, l3).dtype.name == "float64"
                    gaunt(l1, l2, l3)
                    n += 1
        print(n, time.perf_counter() - t0)
    """)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SPEC_ROOT / "src"), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, check=True)
    n, seconds = out.stdout.split()
    assert int(n) == 891
    assert float(seconds) < 2.0, f"building all l1, l2 <= 10 tables took {seconds} s"
