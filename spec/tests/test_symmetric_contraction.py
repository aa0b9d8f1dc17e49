"""tp_spec.symmetric_contraction: MACE's product basis and its Gaunt variant (NumPy)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tp_spec
from tp_spec import symmetric_contraction as make
from tp_spec.mace_basis import weights_from_mace
from tp_spec.plan.symmetric_contraction import (
    run_monomial_numpy,
    run_suffix_numpy,
    suffix_plan,
    weights_first,
)
from tp_spec.symmetric_basis import symmetrized
from tp_spec.symmetric_contraction import (
    apply,
    gaunt_apply,
    gaunt_apply_reference,
    gaunt_symmetric_contraction,
    split_weights,
)

RNG = np.random.default_rng(7)


def _inputs(d, n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d.irreps_in.dim))
    w = rng.normal(size=(d.num_species, d.weight_numel))
    s = rng.integers(0, d.num_species, size=n)
    return x, w, s


def _brute(d, x, w, s):
    """The module docstring's formula, one node, channel, index tuple at a time."""
    n, k = x.shape[0], d.mul
    A = np.zeros((n, k, d.coupling.dim))
    col = 0
    for sl, (mul, ir) in zip(d.irreps_in.slices(), d.irreps_in, strict=True):
        A[:, :, col : col + ir.dim] = x[:, sl].reshape(n, mul, ir.dim)
        col += ir.dim
    W = split_weights(d, w)
    out = np.zeros((n, d.irreps_out.dim))
    for b in range(n):
        start = 0
        for i, (_, ir) in enumerate(d.irreps_out):
            for c in range(k):
                for M in range(ir.dim):
                    total = 0.0
                    for nu in range(1, d.correlation + 1):
                        U = d.U[i][nu - 1]
                        for idx in itertools.product(range(d.coupling.dim), repeat=nu):
                            mono = np.prod([A[b, c, j] for j in idx])
                            total += mono * (U[(M, *idx)] @ W[i][nu - 1][s[b], :, c])
                    out[b, start + c * ir.dim + M] = total
            start += k * ir.dim
    return out


@pytest.mark.parametrize(
    "irreps_in, irreps_out, corr",
    [("2x0e+2x1o", "2x0e+2x1o", 3), ("1x0e+1x1o+1x2e", "1x1e+1x2e+1x0e", 2)],
)
def test_reference_matches_brute_force(irreps_in, irreps_out, corr):
    d = make(irreps_in, irreps_out, corr, 2)
    x, w, s = _inputs(d, n=3)
    np.testing.assert_allclose(apply(d, x, w, s), _brute(d, x, w, s), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("run", [run_monomial_numpy, run_suffix_numpy],
                         ids=["monomial_plan", "suffix_plan"])
@pytest.mark.parametrize(
    "irreps_in, irreps_out, corr",
    [("3x0e+3x1o+3x2e+3x3o", "3x0e+3x1o+3x2e", 3), ("2x0e+2x1o", "2x1e+2x0e", 2),
     ("2x1o", "2x0e+2x1e", 1), ("2x0e+2x1o", "2x0e+2x1o", 4)],
)
def test_plan_matches_reference(irreps_in, irreps_out, corr, run):
    d = make(irreps_in, irreps_out, corr, 3)
    x, w, s = _inputs(d, n=5)
    np.testing.assert_allclose(run(d, x, w, s), apply(d, x, w, s), atol=1e-11)


def test_suffix_plan_layout():
    """The monomial suffixes and the top degree's zero rows, counted by hand for D = 4
    (``1x0e+1x1o``), correlation 4: degrees 2 and 3 are built (the top, 4, is not); of the 4
    monomials of degree 1 those from ``i`` on start at ``i``; of the 10 of degree 2 in
    lexicographic order 4 start with 0, 3 with 1, 2 with 2, 1 with 3. A top row ``(j,) + m``
    (``m`` one of the 20 monomials of degree 3) is lexicographic iff ``m`` starts at ``j`` or
    later."""
    d = make("1x0e+1x1o", "1x0e+1x1o", 4, 1)
    p = suffix_plan(d)
    assert [a.tolist() for a in p.suffix] == [[0, 1, 2, 3], [0, 4, 7, 9]]
    assert (p.num_low, p.num_top) == (4 + 10 + 20, 20)
    first = np.array([m[0] for m in itertools.combinations_with_replacement(range(4), 3)])
    for top in p.top:
        assert top.shape[:2] == (4, 20)
        for j in range(4):
            assert not np.any(top[j, first < j])
    assert np.any(p.top[0][1, first == 1])  # 0e from four odd components: (1, 1, 1, 1) ...


def test_weights_first_rule():
    """Few species: the weights go into the coefficients first; many species and nodes: the
    per-node weights (the coefficient product no longer grows with the species). The rule
    counts: it does not build the suffix plan (hundreds of MB at correlation 4) it may reject."""
    suffix_plan.cache_clear()
    assert weights_first(make("8x0e+8x1o+8x2e", "8x0e+8x1o", 3, 1), 1000)
    assert not weights_first(make("8x0e+8x1o+8x2e", "8x0e+8x1o", 3, 200), 1000)
    assert suffix_plan.cache_info().currsize == 0


def test_mace_medium_path_counts():
    # the numbers of paths MACE 0.3.16 builds for MACE-medium (its U_matrix_{nu} last axes)
    d = make("128x0e+128x1o+128x2e+128x3o", "128x0e+128x1o", 3, 10)
    assert d.num_paths == ((1, 4, 23), (1, 6, 51))
    assert d.weight_shapes[1][2] == (10, 51, 128)
    assert d.weight_numel == (1 + 4 + 23 + 1 + 6 + 51) * 128


@pytest.mark.parametrize("corr", [1, 2, 3])
def test_u_equivariant_and_orthogonal(corr):
    d = make("1x0e+1x1o+1x2e", "1x0e+1x1o+1x2e+1x1e", corr, 1)
    R = tp_spec.random_rotation(3) * -1.0  # an improper rotation checks parity too
    Din = tp_spec.wigner_D(d.coupling, R)
    for i, (_, ir) in enumerate(d.irreps_out):
        Dout = tp_spec.wigner_D(tp_spec.Irreps([(1, ir)]), R)
        for nu in range(1, corr + 1):
            U = d.U[i][nu - 1]
            K = U.shape[-1]
            if K == 0:  # no coupling of nu copies reaches ir (1e from one copy)
                continue
            flat = U.reshape(ir.dim, -1, K)
            # D_L(R) U = U (D_in(R) x ... x D_in(R)) for every path
            np.testing.assert_allclose(
                np.einsum("ab,bpe->ape", Dout, flat),
                _rotate_slots(U, Din).reshape(ir.dim, -1, K),
                atol=1e-12,
            )
            gram = np.einsum("pe,pf->ef", U.reshape(-1, K), U.reshape(-1, K))
            np.testing.assert_allclose(gram, ir.dim * np.eye(K), atol=1e-12)


def _rotate_slots(U, Din):
    """``U`` with every input slot transformed by ``Din`` (``U . Din^{x nu}``)."""
    out = U
    for axis in range(1, U.ndim - 1):
        out = np.moveaxis(np.tensordot(out, Din, axes=([axis], [0])), -1, axis)
    return out


def test_equivariance():
    d = make("3x0e+3x1o+3x2e", "3x0e+3x1o+3x2e", 3, 3)
    x, w, s = _inputs(d, n=5)
    for R in (tp_spec.random_rotation(1), -tp_spec.random_rotation(2)):
        lhs = apply(d, x @ tp_spec.wigner_D(d.irreps_in, R).T, w, s)
        rhs = apply(d, x, w, s) @ tp_spec.wigner_D(d.irreps_out, R).T
        np.testing.assert_allclose(lhs, rhs, atol=1e-10)


def test_symmetric_polynomial():
    d = make("2x0e+2x1o+2x2e", "2x0e+2x1o", 3, 2)
    x, w, s = _inputs(d, n=4)
    out = apply(d, x, w, s)
    # the contraction only sees the symmetric part of U: symmetrizing its slots changes nothing
    sym = []
    for us in d.U:
        row = []
        for nu, U in enumerate(us, start=1):
            perms = list(itertools.permutations(range(1, nu + 1)))
            row.append(sum(np.transpose(U, (0, *p, nu + 1)) for p in perms) / len(perms))
        sym.append(tuple(row))
    d_sym = tp_spec.SymmetricContractionDescriptor(
        d.irreps_in, d.irreps_out, d.correlation, d.num_species, d.mul, d.coupling, tuple(sym)
    )
    np.testing.assert_allclose(apply(d_sym, x, w, s), out, atol=1e-12)
    # degree nu is homogeneous of degree nu: keep only nu = 3's weights and scale x by t
    W = split_weights(d, w.copy())
    w3 = np.concatenate([(b if nu == 3 else 0 * b).reshape(2, -1)
                         for row in W for nu, b in enumerate(row, start=1)], axis=1)
    np.testing.assert_allclose(apply(d, 1.7 * x, w3, s), 1.7**3 * apply(d, x, w3, s), atol=1e-10)
    # channels do not mix: swapping channels 0 and 1 of x and weights swaps them in the output
    swap_in = _swap_channels(d.irreps_in, 2)
    swap_out = _swap_channels(d.irreps_out, 2)
    w_swapped = np.concatenate(
        [b[:, :, ::-1].reshape(2, -1) for row in W for b in row], axis=1
    )
    np.testing.assert_allclose(
        apply(d, x[:, swap_in], w_swapped, s), out[:, swap_out], atol=1e-12
    )


def _swap_channels(irreps, k):
    idx = []
    for sl, (_, ir) in zip(irreps.slices(), irreps, strict=True):
        block = np.arange(sl.start, sl.stop).reshape(k, ir.dim)
        idx.append(block[::-1].ravel())
    return np.concatenate(idx)


def test_weights_from_mace_maps_a_signed_basis():
    d = make("2x0e+2x1o+2x2e", "2x0e+2x1o", 2, 2)
    x, _, s = _inputs(d, n=3)
    rng = np.random.default_rng(5)
    u_mace, w_mace, parts = [], [], []
    for i, (_, ir) in enumerate(d.irreps_out):
        ru, rw = [], []
        for U in d.U[i]:
            sign = rng.choice([-1.0, 1.0], size=U.shape[-1])
            um = U * sign
            ru.append(um[0] if ir.l == 0 else um)  # MACE drops the M axis of L = 0
            rw.append(rng.normal(size=(2, U.shape[-1], 2)))
            parts.append((rw[-1] * sign[None, :, None]).reshape(2, -1))
        u_mace.append(ru)
        w_mace.append(rw)
    expected = apply(d, x, np.concatenate(parts, axis=1), s)
    np.testing.assert_allclose(apply(d, x, weights_from_mace(d, u_mace, w_mace), s), expected,
                               atol=1e-12)
    u_mace[1][1] = u_mace[1][1] + 0.1
    with pytest.raises(tp_spec.InstructionError, match="span"):
        weights_from_mace(d, u_mace, w_mace)



def test_reduced_basis_counts():
    # e3nn-jax's reduced_symmetric_tensor_product_basis for the same irreps has 8, 12 and 14
    # elements at order 3 for 0e, 1o and 2e (3,136 weights at 64 channels, one species)
    d = make("2x0e+2x1o+2x2e+2x3o", "2x0e+2x1o+2x2e", 3, 1, basis="reduced")
    assert d.num_paths == ((1, 4, 8), (1, 3, 12), (1, 5, 14))
    full = make("2x0e+2x1o+2x2e+2x3o", "2x0e+2x1o+2x2e", 3, 1)
    for us_r, us_f in zip(d.U, full.U, strict=True):
        for u_r, u_f in zip(us_r, us_f, strict=True):  # the rank of the symmetric parts
            a = symmetrized(u_f).reshape(-1, u_f.shape[-1])
            sv = np.linalg.svd(a, compute_uv=False)
            assert u_r.shape[-1] == int((sv > 1e-9 * sv[0]).sum())


@pytest.mark.parametrize("corr", [2, 3])
def test_reduced_basis_spans_maces(corr):
    """Every function of MACE's basis is one of the reduced basis: MACE's weights mapped onto
    it (weights_from_mace) give the same outputs."""
    full = make("2x0e+2x1o+2x2e", "2x0e+2x1o+2x1e", corr, 2)
    red = make("2x0e+2x1o+2x2e", "2x0e+2x1o+2x1e", corr, 2, basis="reduced")
    assert red.weight_numel < full.weight_numel and red.basis == "reduced"
    x, w, s = _inputs(full, n=4)
    u_mace = [[u[0] if ir.l == 0 else u for u in full.U[i]]
              for i, (_, ir) in enumerate(full.irreps_out)]
    w_mace = [list(ws) for ws in split_weights(full, w)]
    w_red = weights_from_mace(red, u_mace, w_mace)
    np.testing.assert_allclose(apply(red, x, w_red, s), apply(full, x, w, s), atol=1e-11)
    np.testing.assert_allclose(run_monomial_numpy(red, x, w_red, s), apply(full, x, w, s),
                               atol=1e-11)
    with pytest.raises(tp_spec.InstructionError, match="basis"):
        make("2x0e", "2x0e", 2, 1, basis="cueq")


@pytest.mark.parametrize(
    "irreps_in, irreps_out, corr",
    [("2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e", 3), ("3x1o+3x3o", "3x0e+3x2e", 2)],
)
def test_gaunt_grid_matches_gaunt_coefficients(irreps_in, irreps_out, corr):
    d = gaunt_symmetric_contraction(irreps_in, irreps_out, corr, 2)
    x, w, s = _inputs(d, n=4)
    ref = gaunt_apply_reference(d, x, w, s)
    np.testing.assert_allclose(gaunt_apply(d, x, w, s), ref, rtol=1e-11, atol=1e-11)
    R = -tp_spec.random_rotation(4)
    lhs = gaunt_apply(d, x @ tp_spec.wigner_D(d.irreps_in, R).T, w, s)
    np.testing.assert_allclose(lhs, ref @ tp_spec.wigner_D(d.irreps_out, R).T, atol=1e-9)


def test_gaunt_first_order_is_weighted_identity():
    # nu = 1: f itself projected on L: B = v * u_L * A_L (orthonormality of component Y / 4 pi)
    d = gaunt_symmetric_contraction("2x0e+2x1o", "2x1o", 1, 1)
    x, w, s = _inputs(d, n=2)
    u = w[0, :4].reshape(2, 2)  # (len(in), k)
    v = w[0, 4:].reshape(2)
    a1 = x[:, 2:].reshape(2, 2, 3)
    expected = (a1 * (u[1] * v)[None, :, None]).reshape(2, 6)
    np.testing.assert_allclose(gaunt_apply(d, x, w, s), expected, atol=1e-12)


def test_bad_inputs():
    with pytest.raises(tp_spec.IrrepsError, match="one positive multiplicity"):
        make("2x0e+3x1o", "2x0e", 2, 1)
    with pytest.raises(tp_spec.IrrepsError, match="multiplicity 2"):
        make("2x0e+2x1o", "3x0e", 2, 1)
    with pytest.raises(tp_spec.InstructionError, match="correlation"):
        make("2x0e", "2x0e", 0, 1)
    with pytest.raises(tp_spec.InstructionError, match="num_species"):
        make("2x0e", "2x0e", 1, True)
    with pytest.raises(tp_spec.IrrepsError, match="natural parity"):
        gaunt_symmetric_contraction("2x0e+2x1e", "2x0e", 2, 1)
    with pytest.raises(tp_spec.IrrepsError, match="at most once"):
        gaunt_symmetric_contraction("2x0e+2x0e", "2x0e", 2, 1)
    d = make("2x0e+2x1o", "2x0e", 2, 2)
    x, w, s = _inputs(d, n=3)
    with pytest.raises(tp_spec.ShapeError, match="x must have shape"):
        apply(d, x[:, :-1], w, s)
    with pytest.raises(tp_spec.ShapeError, match="weights must have shape"):
        apply(d, x, w[:1], s)
    with pytest.raises(tp_spec.ShapeError, match="species must have shape"):
        apply(d, x, w, s[:2])
    with pytest.raises(tp_spec.DTypeError, match="integers"):
        apply(d, x, w, s.astype(float))
    with pytest.raises(tp_spec.IndexRangeError, match="species must lie"):
        apply(d, x, w, s + 2)
    with pytest.raises(tp_spec.DTypeError, match="x must be float"):
        apply(d, x.astype(np.complex128), w, s)
    with pytest.raises(tp_spec.InstructionError, match="SymmetricContractionDescriptor"):
        apply(gaunt_symmetric_contraction("2x0e", "2x0e", 1, 2), x, w, s)
