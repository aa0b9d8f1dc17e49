"""The e3x FusedTensor <-> tp_spec MTP conversion (benchmarks.e3x_mtp), checked three ways:
e3x's spherical harmonics and Clebsch-Gordan tables against tp_spec's through ``M_l``, and the
whole product against :func:`tp_spec.reference.apply`. Skipped without e3x."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

spec = pytest.importorskip("tp_spec")
e3x = pytest.importorskip("e3x")

from benchmarks import e3x_mtp, runner  # noqa: E402
from benchmarks.subjects import E3xMTP  # noqa: E402
from benchmarks.timing import engine  # noqa: E402
from benchmarks.workloads import Workload  # noqa: E402

from .conftest import FAST  # noqa: E402


def _unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    r = np.random.default_rng(seed).standard_normal((n, 3))
    return r / np.linalg.norm(r, axis=1, keepdims=True)


def test_cartesian_order_reads_xyz_at_degree_one() -> None:
    # e3x documents degree 1 in Cartesian order as (x, y, z); tp_spec's degree 1 is (x, y, z).
    np.testing.assert_allclose(e3x_mtp.e3x_basis(1), np.eye(3), atol=1e-15)
    for l in range(6):
        assert sorted(e3x_mtp.e3x_cartesian_order(l)) == list(range(2 * l + 1))


LMAX = 4


@pytest.fixture(scope="module")
def sh_pair() -> tuple[np.ndarray, np.ndarray]:
    """tp_spec (component) and e3x (racah, Cartesian order) harmonics up to LMAX, 40 points;
    e3x evaluates them in float32 here (JAX without x64) and slowly: once per module."""
    r = _unit_vectors(40)
    ours = spec.spherical_harmonics(LMAX, r, normalization="component")
    theirs = np.asarray(e3x.so3.spherical_harmonics(r, LMAX, r_is_normalized=True,
                                                    cartesian_order=True,
                                                    normalization="racah"), dtype=np.float64)
    return ours, theirs


@pytest.mark.parametrize("l", range(LMAX + 1))
def test_spherical_harmonics_basis(l: int, sh_pair: tuple[np.ndarray, np.ndarray]) -> None:
    ours, theirs = (y[:, l * l:(l + 1) ** 2] for y in sh_pair)
    m = e3x_mtp.e3x_basis(l)
    np.testing.assert_allclose(m @ m.T, np.eye(2 * l + 1), atol=1e-13)
    np.testing.assert_allclose(np.sqrt(2 * l + 1) * theirs, ours @ m.T, atol=2e-5)
    if l >= 2:  # the rotation matters: reordering alone does not relate the two bases
        perm = np.eye(2 * l + 1)[e3x_mtp.e3x_cartesian_order(l)]
        assert np.max(np.abs(np.sqrt(2 * l + 1) * theirs - ours @ perm.T)) > 0.1


@pytest.fixture(scope="module")
def cg_table() -> np.ndarray:
    return np.asarray(e3x.so3.clebsch_gordan(3, 3, 5, cartesian_order=True), dtype=np.float64)


@pytest.mark.parametrize("l1, l2, l3", [(1, 1, 0), (1, 1, 1), (1, 1, 2), (2, 2, 1), (2, 2, 4),
                                        (3, 3, 5), (2, 1, 3), (3, 2, 2)])
def test_clebsch_gordan_basis(l1: int, l2: int, l3: int, cg_table: np.ndarray) -> None:
    theirs = cg_table[l1 * l1:(l1 + 1) ** 2, l2 * l2:(l2 + 1) ** 2, l3 * l3:(l3 + 1) ** 2]
    ours = spec.clebsch_gordan(l1, l2, l3)
    m1, m2, m3 = (e3x_mtp.e3x_basis(l) for l in (l1, l2, l3))
    carried = np.einsum("abc,ia,jb,kc->ijk", ours, m1, m2, m3)
    # e3x's table is float32 here: compare at float32 precision; no sign, scale sqrt(2 l3 + 1)
    np.testing.assert_allclose(theirs, np.sqrt(2 * l3 + 1) * carried, atol=2e-7)


CASES = [
    ("0e+1o", "0e+1o", None),  # MIMO L=1 (reaches the antisymmetric 1o x 1o -> 1e)
    ("0e+1o+2e+3o", "0e+1o+2e+3o", None),  # MIMO L=3, lt = 2
    ("0e+1o+2e", "0e+1o+2e", "0e+1o+1e+2e+2o+3o+3e+4e"),  # outputs up to 2L (lt = 2)
    ("3x0e+3x1o+3x1e+3x0o", "0e+1o", None),  # both parities, broadcast second input
    ("2x0o+2x2e", "2x1e+2x0e", None),  # class -1 pieces on both sides, channelwise
    ("0e+1o+2e", "0e", None),  # e3x drops its pseudotensor axis here (P3 = 1)
]


def _e3x_forward(d: Any, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    wl = Workload("test", "case", "mtp", str(d.irreps_in1), str(d.irreps_in2),
                  str(d.irreps_out), len(x1))
    built = E3xMTP().build(wl, "float32", "cpu")
    native = built.to_native([x1, x2])
    out = engine("jax", "cpu").forward_numpy(built.fn, native, "float32")
    return built.from_native(out)


@pytest.mark.parametrize("in1, in2, out", CASES)
def test_fused_tensor_equals_reference_mtp(in1: str, in2: str, out: str | None) -> None:
    d = spec.mtp(in1, in2, out)
    rng = np.random.default_rng(3)
    x1 = rng.standard_normal((7, d.irreps_in1.dim))
    x2 = rng.standard_normal((7, d.irreps_in2.dim))
    ref = spec.reference.apply(d, x1, x2)
    got = _e3x_forward(d, x1, x2)
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) <= 2e-6 * np.max(np.abs(ref))


def _forward_with_basis(monkeypatch: pytest.MonkeyPatch, basis: Any) -> float:
    d = spec.mtp("0e+1o+2e", "0e+1o+2e")
    rng = np.random.default_rng(4)
    x1, x2 = rng.standard_normal((5, d.irreps_in1.dim)), rng.standard_normal((5, 9))
    monkeypatch.setattr(e3x_mtp, "e3x_basis", basis)
    got = _e3x_forward(d, x1, x2)
    ref = spec.reference.apply(d, x1, x2)
    return float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))


def test_any_common_rotation_is_also_a_valid_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    # M_l = P_l D^l(R) for ANY fixed rotation R works, because the MTP is equivariant: here
    # R = identity (pure reordering) and R = a random rotation.
    def perm_only(l: int) -> np.ndarray:
        return np.eye(2 * l + 1)[e3x_mtp.e3x_cartesian_order(l)]

    q, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((3, 3)))
    rot = q * np.sign(np.linalg.det(q))

    def rotated(l: int) -> np.ndarray:
        d = spec.wigner_D(spec.Irreps([(1, spec.Irrep(l, 1))]), rot)
        return np.asarray(d)[e3x_mtp.e3x_cartesian_order(l)]

    assert _forward_with_basis(monkeypatch, perm_only) <= 2e-6
    assert _forward_with_basis(monkeypatch, rotated) <= 2e-6


@pytest.mark.parametrize("wrong", ["identity", "sign"])
def test_a_wrong_conversion_is_caught(monkeypatch: pytest.MonkeyPatch, wrong: str) -> None:
    # Not a rotation at degree 2: no reordering, or one flipped sign. The reference sees it.
    def basis(l: int) -> np.ndarray:
        if wrong == "identity":
            return np.eye(2 * l + 1)
        m = real_basis(l).copy()
        if l == 2:
            m[0] *= -1
        return m

    real_basis = e3x_mtp.e3x_basis
    assert _forward_with_basis(monkeypatch, basis) > 1e-2


def test_wrong_output_kernel_fails_the_harness_check(monkeypatch: pytest.MonkeyPatch) -> None:
    wl = Workload("test", "MIMO", "mtp", "0e+1o", "0e+1o", None, 8, L=1)
    good = runner.run([wl], [E3xMTP()], passes=("fwd",), progress=False, timing=FAST)
    (r,) = good["results"]
    assert r["status"] == "ok", r["reason"]
    assert r["check"]["rel_err"] < 1e-5
    real = e3x_mtp.plan
    # lt + 1 instead of lt: output kernels sqrt(5) instead of sqrt(3)
    monkeypatch.setattr(e3x_mtp, "plan", lambda d: dataclasses.replace(real(d), lt=real(d).lt + 1))
    bad = runner.run([wl], [E3xMTP()], passes=("fwd",), progress=False, timing=FAST)
    (r,) = bad["results"]
    assert r["status"] in ("failed check", "error")


def test_plan_refuses_weighted_mtp() -> None:
    d = spec.mtp("0e+1o", "0e+1o", per_degree_weights=True)
    with pytest.raises(ValueError, match="per-degree weights"):
        e3x_mtp.plan(d)
    wl = Workload("test", "w", "mtp", "0e+1o", "0e+1o", None, 4)
    object.__setattr__(wl, "descriptor", d)  # cached_property slot on a frozen dataclass
    assert "per-degree weights" in (E3xMTP().applicable(wl, "cpu") or "")
