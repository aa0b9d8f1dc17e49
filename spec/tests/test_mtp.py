"""Matrix tensor product: basis, path identity, unit, emulation, equivariance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tp_spec as spec
from channelwise_helpers import block as _block
from channelwise_helpers import inputs as _inputs
from channelwise_helpers import s2 as _s2
from channelwise_helpers import times as _times
from tp_spec import reference as ref
from tp_spec.errors import InstructionError
from tp_spec.mtp import mtp_basis, mtp_coefficient

TOL = 1e-12


# ----------------------------------------------------------------------------- basis, identity
@pytest.mark.parametrize("lt", [1, 2, 3])
def test_basis_orthonormal_and_symmetry(lt):
    n = 2 * lt + 1
    mats = []
    for l in range(2 * lt + 1):
        B = mtp_basis(lt, l)
        assert B.shape == (n, n, 2 * l + 1)
        sign = 1 if l % 2 == 0 else -1
        np.testing.assert_allclose(B, sign * B.transpose(1, 0, 2), atol=1e-15)
        mats.extend(B[:, :, m].ravel() for m in range(2 * l + 1))
    M = np.array(mats)
    assert M.shape == (n * n, n * n)
    np.testing.assert_allclose(M @ M.T, np.eye(n * n), atol=1e-14)
    np.testing.assert_allclose(mtp_basis(lt, 0)[:, :, 0], np.eye(n) / math.sqrt(n), atol=1e-15)


@pytest.mark.parametrize("lt", [1, 2])
def test_path_identity(lt):
    """<B^(l3)_m3, B^(l1)_m1 B^(l2)_m2>_F = (-1)^l3 sqrt(...) 6j C, i.e. coefficient / sqrt(n)."""
    n = 2 * lt + 1
    for l1 in range(2 * lt + 1):
        for l2 in range(2 * lt + 1):
            for l3 in range(abs(l1 - l2), min(l1 + l2, 2 * lt) + 1):
                B1, B2, B3 = mtp_basis(lt, l1), mtp_basis(lt, l2), mtp_basis(lt, l3)
                lhs = np.einsum("abk,aci,cbj->ijk", B3, B1, B2)
                rhs = (mtp_coefficient(l1, l2, l3, lt) / math.sqrt(n)
                       * spec.clebsch_gordan(l1, l2, l3))
                np.testing.assert_allclose(lhs, rhs, atol=1e-14)


# ----------------------------------------------------------------------------- descriptor
def test_descriptor_basics():
    d = spec.mtp("0e + 1o", "0e + 1o")
    assert (d.lt, d.n, d.kind) == (1, 3, "mtp")
    assert d.irreps_out == spec.Irreps("0e + 1o + 1e + 2e")
    triples = {(str(p.ir_in1), str(p.ir_in2), str(p.ir_out)) for p in d.paths}
    assert ("1o", "1o", "1e") in triples  # the cross product: antisymmetric, reached
    assert ((1, -1), (1, -1), (1, 1)) in spec.interactability(d)
    # default outputs stop at 2 ceil(max(L1, L2) / 2)
    d3 = spec.mtp(_s2(3), _s2(3))
    assert d3.lt == 2 and d3.irreps_out.lmax == 4
    # a given irreps_out enlarges lt
    d6 = spec.mtp(_s2(3), _s2(3), _s2(6))
    assert d6.lt == 3
    assert all(p.coefficient != 0 for p in d6.paths)
    d_b = spec.mtp("4x0e + 4x1o", "0e + 1o", per_degree_weights=True)
    assert all(p.mode == "uvu" for p in d_b.as_cgtp().paths) and d_b.broadcast
    with pytest.raises(InstructionError, match="channel mismatch"):
        spec.mtp("2x0e + 2x1o", "3x0e")


def test_cross_product():
    d = spec.mtp("1o", "1o", "1e")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3))
    z = ref.apply(d, a, b)
    cross = np.cross(a, b)
    np.testing.assert_allclose(z * np.dot(cross, cross) / np.dot(z, cross), cross, atol=1e-12)
    np.testing.assert_allclose(ref.apply(d, b, a), -z, atol=1e-14)  # antisymmetric


# ----------------------------------------------------------------------------- unit
@pytest.mark.parametrize("channels,broadcast", [(1, False), (2, False), (3, True)])
def test_unit(channels, broadcast):
    irreps1 = _times(_s2(3) + _s2(2, -1), channels)
    irreps2 = _times("0e + 1o + 2e", 1 if broadcast else channels)
    d = spec.mtp(irreps1, irreps2)
    x = np.random.default_rng(1).normal(size=(4, irreps1.dim))
    e0 = np.zeros((4, irreps2.dim))
    e0[..., : irreps2[0].mul] = 1.0
    for fn in (ref.apply, ref.apply_emulated):
        out = fn(d, x, e0)
        for s, (_, ir) in zip(irreps1.slices(), irreps1, strict=False):
            np.testing.assert_allclose(_block(out, d.irreps_out, ir), x[..., s], atol=TOL)
    if not broadcast:
        out = ref.apply(spec.mtp(irreps2, irreps1), e0, x)  # left unit
        d2 = spec.mtp(irreps2, irreps1)
        for s, (_, ir) in zip(irreps1.slices(), irreps1, strict=False):
            np.testing.assert_allclose(_block(out, d2.irreps_out, ir), x[..., s], atol=TOL)


# ----------------------------------------------------------------------------- emulation
CASES = [
    (_s2(4), _s2(4), None),
    (_s2(3), _s2(3), _s2(6) + _s2(5, -1)),                  # MIMO, lt = 3
    (_s2(6), _s2(5), None),
    (_s2(2) + _s2(2, -1), _s2(3, -1) + _s2(1), None),       # all parity pairs
    (_times(_s2(2) + _s2(1, -1), 3), _s2(2), None),          # broadcast
    (_times("0e + 1o + 1e + 2o", 2), _times("0o + 1e + 2e", 2), "2x0e + 2x1e + 2x3o"),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("per_degree", [False, True])
def test_matrix_equals_emulated(case, per_degree):
    i1, i2, io = CASES[case]
    d = spec.mtp(i1, i2, io, per_degree_weights=per_degree)
    x1, x2, w = _inputs(d, seed=case, per_sample=case % 2 == 0)
    z = ref.apply(d, x1, x2, w)
    assert np.abs(z).max() > 0.1
    np.testing.assert_allclose(ref.apply_emulated(d, x1, x2, w), z, atol=TOL, rtol=0)


def test_outputs_without_paths_are_zero():
    d = spec.mtp("0e", "0e", "0e + 1o")
    out = ref.apply(d, np.array([2.0]), np.array([3.0]))
    np.testing.assert_allclose(out, [6.0, 0, 0, 0], atol=1e-14)


# ----------------------------------------------------------------------------- equivariance
@pytest.mark.parametrize("improper", [False, True])
def test_equivariance(improper):
    d = spec.mtp(_times(_s2(3) + _s2(1, -1), 2), _times(_s2(2) + _s2(2, -1), 2),
                 per_degree_weights=True)
    x1, x2, w = _inputs(d, seed=3)
    rng = np.random.default_rng(4)
    for _ in range(2):
        R = spec.random_rotation(rng, improper=improper)
        D1, D2, Do = (spec.wigner_D(i, R) for i in (d.irreps_in1, d.irreps_in2, d.irreps_out))
        np.testing.assert_allclose(ref.apply(d, x1 @ D1.T, x2 @ D2.T, w),
                                   ref.apply(d, x1, x2, w) @ Do.T, atol=1e-11)


def test_batch_shapes():
    d = spec.mtp("2x0e + 2x1o", "0e + 1o", per_degree_weights=True)
    for batch in ((), (0,), (2, 3)):
        x1, x2, w = _inputs(d, batch=batch, per_sample=True)
        out = ref.apply(d, x1, x2, w)
        assert out.shape == batch + (d.irreps_out.dim,)
        np.testing.assert_allclose(ref.apply_emulated(d, x1, x2, w), out, atol=TOL)


def test_explicit_matrix_degree_keeps_the_operation():
    """With ``lt`` fixed, adding output irreps does not change the existing outputs."""
    rng = np.random.default_rng(7)
    small = spec.mtp("1o", "1o", lt=2)
    large = spec.mtp("1o", "1o", "0e + 1e + 2e + 3o + 4e", lt=2)
    x1, x2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    y_small, y_large = ref.apply(small, x1, x2), ref.apply(large, x1, x2)
    for i, (_, ir) in enumerate(small.irreps_out):
        j = [b.ir for b in large.irreps_out].index(ir)
        np.testing.assert_allclose(y_small[..., small.irreps_out.slices()[i]],
                                   y_large[..., large.irreps_out.slices()[j]], atol=1e-13)
    # The default matrix degree grows with the outputs, which changes the operation.
    assert spec.mtp("1o", "1o").lt == 1
    assert spec.mtp("1o", "1o", "0e + 1e + 2e + 3o + 4e").lt == 2
    with pytest.raises(spec.InstructionError, match="lt=1 is too small"):
        spec.mtp("1o", "1o", "4e", lt=1)
