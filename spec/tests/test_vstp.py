"""The vector-signal tensor product: definition (grid quadrature) vs CGTP emulation (Gaunt
algebra), the cross product, equivariance, bilinearity, field-parity pairs, errors, cost."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tp_spec as spec
from tp_spec import InstructionError, IrrepsError, ShapeError
from tp_spec import reference as ref
from tp_spec.s2grid import S2Grid
from tp_spec.vsh import coupling, embedding, slots
from tp_spec.vstp import _slot_tensor, vstp_coefficient

TOL = 1e-12

DESCRIPTORS = {
    "natural": lambda: spec.vstp("0e + 1o + 2e", "0e + 1o + 2e"),
    "class-pp": lambda: spec.vstp("0e + 1o + 2e", "0e + 1o + 2e + 3o"),
    "class-pm": lambda: spec.vstp("0e + 1o + 2e", "0o + 1e + 2o"),
    "class-mp": lambda: spec.vstp("0o + 1e + 2o", "0e + 1o + 2e"),
    "class-mm": lambda: spec.vstp("0o + 1e + 2o", "0o + 1e + 2o"),
    "mixed": lambda: spec.vstp("0e + 0o + 1o + 1e + 2e", "0e + 1o + 1e + 0o"),
    "channels": lambda: spec.vstp("3x0e + 3x1o + 3x2e", "3x0e + 3x1o + 3x1e"),
    "broadcast-weights": lambda: spec.vstp("3x0e + 3x1o + 3x2e + 3x3o", "0e + 1o + 2e",
                                           per_degree_weights=True),
    "given-out": lambda: spec.vstp("2x1o + 2x2e", "2x1o", "2x0e + 2x1e + 2x2o + 2x4e"),
}


def _inputs(d, seed=0, batch=(4,), per_sample=True):
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal(batch + (d.irreps_in1.dim,))
    x2 = rng.standard_normal(batch + (d.irreps_in2.dim,))
    w = None
    if d.weight_numel:
        w = rng.standard_normal((batch if per_sample else ()) + (d.weight_numel,))
    return x1, x2, w


def _close(a, b, tol=TOL):
    scale = max(1.0, np.abs(b).max()) if np.size(b) else 1.0
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale)


# ----------------------------------------------------------------------------- definition
@pytest.mark.parametrize("case", sorted(DESCRIPTORS))
def test_grid_definition_equals_cgtp_emulation(case):
    """The reference (vector fields on a quadrature grid) and ``as_cgtp`` (Gaunt tables and
    the Levi-Civita symbol) are computed independently; they agree to 1e-12."""
    d = DESCRIPTORS[case]()
    assert d.paths, case
    x1, x2, w = _inputs(d)
    _close(ref.apply(d, x1, x2, w), ref.apply_emulated(d, x1, x2, w))


def test_minimal_grid_is_exact_and_a_coarse_grid_is_not():
    d = spec.vstp("0e + 1o + 2e", "1o + 2e + 2o")
    x1, x2, _ = _inputs(d, seed=3)
    exact = ref.apply(d, x1, x2)
    nt, nph = d.grid_shape()
    _close(ref.apply_vstp_grid(d, x1, x2, grid=S2Grid.gauss_legendre(nt + 3, nph + 4)), exact)
    for shape in ((nt // 2, nph), (nt, nph // 2)):
        approx = ref.apply_vstp_grid(d, x1, x2, grid=S2Grid.gauss_legendre(*shape))
        assert np.abs(approx - exact).max() > 1e-6


def test_vsh_are_orthonormal_on_the_sphere():
    g = S2Grid.gauss_legendre(8, 15)
    pts = g.points.reshape(-1, 3)
    y = spec.spherical_harmonics(4, pts)
    fields = []
    for J in range(4):
        for l in (J - 1, J, J + 1):
            if l >= 0 and abs(l - 1) <= J:
                q = coupling(J, l)  # (3, 2l+1, 2J+1)
                fields.append(np.einsum("iam,pa->mpi", q, y[:, l * l:(l + 1) ** 2]))
    v = np.concatenate(fields)  # (n, npts, 3)
    gram = np.einsum("apk,bpk,p->ab", v, v, g.weights.reshape(-1)) / (4 * math.pi)
    np.testing.assert_allclose(gram, np.eye(len(v)), atol=1e-13)


def test_slots_follow_the_parity_of_the_vsh():
    for J in range(4):
        for p in (1, -1):
            for P in (1, -1):
                for l in slots(J, p, P):
                    assert P * (-1) ** l == p and abs(l - 1) <= J <= l + 1
    assert slots(1, -1, -1) == (0, 2) and slots(1, -1, 1) == (1,)
    assert slots(0, 1, -1) == (1,) and slots(0, 1, 1) == ()
    with pytest.raises(InstructionError, match="P must be"):
        slots(1, 1, 0)


# ----------------------------------------------------------------------------- paths
def test_cross_product_is_reached():
    """``1o x 1o -> 1e`` is a fixed multiple of ``x cross y`` (an odd-sum path GTP lacks)."""
    d = spec.vstp("1o", "1o")
    assert [str(ir) for _, ir in d.irreps_out] == ["1e"]
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2, 5, 3))
    out = ref.apply(d, x, y)
    ratio = out / np.cross(x, y)
    assert abs(ratio[0, 0]) > 1.0
    np.testing.assert_allclose(ratio, ratio[0, 0], rtol=1e-12)
    assert not spec.gtp("1o", "1o", "1e").paths


def test_equal_inputs_give_only_antisymmetric_paths():
    """The same VSH embedding on both sides and the antisymmetric cross product: for equal
    irreps the VSTP is antisymmetric, so exactly the odd-sum paths (GTP's complement)."""
    d = spec.vstp("0o + 1o + 2e + 3o", "0o + 1o + 2e + 3o")
    x1, x2, _ = _inputs(d, seed=5)
    scal = [i for i, (_, ir) in enumerate(d.irreps_out) if ir.l == 0]
    sl = d.irreps_out.slices()
    vec = np.concatenate([np.arange(s.start, s.stop) for i, s in enumerate(sl) if i not in scal])
    _close(ref.apply(d, x1, x2)[..., vec], -ref.apply(d, x2, x1)[..., vec])
    for p in d.paths:
        if p.ir_in1 == p.ir_in2 and p.ir_in1.l > 0:
            assert sum(p.lll) % 2 == 1, p


def test_scalar_part_is_a_cgtp_of_the_scalars_only():
    d = spec.vstp("0e + 0o + 1o", "0e + 0o + 2e")
    assert {(str(p.ir_in1), str(p.ir_in2), str(p.ir_out), p.coefficient) for p in d.paths
            if p.ir_in1.l == 0 or p.ir_in2.l == 0} == {
        ("0e", "0e", "0e", 1.0), ("0e", "0o", "0o", 1.0), ("0o", "0e", "0o", 1.0),
        ("0o", "0o", "0e", 1.0)}
    x1, x2, _ = _inputs(d, seed=2)
    out = ref.apply(d, x1, x2)
    s1e, s1o, s2e, s2o = x1[..., 0], x1[..., 1], x2[..., 0], x2[..., 1]
    i0e = [i for i, (_, ir) in enumerate(d.irreps_out) if str(ir) == "0e"][0]
    i0o = [i for i, (_, ir) in enumerate(d.irreps_out) if str(ir) == "0o"][0]
    sl = d.irreps_out.slices()
    # 1o x 2e reaches no scalar (J1 != J2), so the scalar outputs are the CGTP alone
    np.testing.assert_allclose(out[..., sl[i0e].start], s1e * s2e + s1o * s2o, atol=TOL)
    np.testing.assert_allclose(out[..., sl[i0o].start], s1e * s2o + s1o * s2e, atol=TOL)


@pytest.mark.parametrize("pair", [(1, 1), (1, -1), (-1, 1), (-1, -1)])
def test_every_field_parity_pair_contributes(pair):
    """Each of the four field pairs ``(P1, P2)`` adds a nonzero share to some path with
    nonscalar inputs of both parity classes, so none can be dropped."""
    P1, P2 = pair
    found = False
    for ir1 in ("1o", "1e", "2e", "2o"):
        for ir2 in ("1o", "1e", "2e", "2o"):
            a, b = spec.Irrep(ir1), spec.Irrep(ir2)
            for c in a * b:
                t = sum((_slot_tensor(a.l, l1, b.l, l2, c.l, l3)
                         for l1 in slots(a.l, a.p, P1) for l2 in slots(b.l, b.p, P2)
                         for l3 in slots(c.l, c.p, P1 * P2)), np.zeros((a.dim, b.dim, c.dim)))
                found |= bool(np.abs(t).max() > 1e-6)
    assert found


def test_embedding_reads_back_by_its_transpose():
    irreps = spec.Irreps("1o + 2e + 3o")
    for P in (1, -1):
        e = embedding(irreps, P, 4).reshape(irreps.dim, -1)
        gram = e @ e.T  # each block's slots in this field, orthonormal columns
        want = np.concatenate([[len(slots(ir.l, ir.p, P))] * ir.dim for _, ir in irreps])
        np.testing.assert_allclose(gram, np.diag(want), atol=1e-13)


# ----------------------------------------------------------------------------- properties
@pytest.mark.parametrize("improper", [False, True])
def test_equivariance(improper):
    d = spec.vstp("2x0e + 2x1o + 2x1e + 2x2e + 2x3o", "0o + 1o + 2e + 2o")
    x1, x2, _ = _inputs(d, seed=7)
    R = spec.random_rotation(np.random.default_rng(8), improper=improper)
    D1, D2, Do = (spec.wigner_D(i, R) for i in (d.irreps_in1, d.irreps_in2, d.irreps_out))
    _close(ref.apply(d, x1 @ D1.T, x2 @ D2.T), ref.apply(d, x1, x2) @ Do.T, 1e-11)


def test_bilinear():
    d = DESCRIPTORS["mixed"]()
    x1, x2, _ = _inputs(d, seed=9)
    y1, y2, _ = _inputs(d, seed=10)
    a, b = 0.7, -1.3
    _close(ref.apply(d, a * x1 + b * y1, x2), a * ref.apply(d, x1, x2) + b * ref.apply(d, y1, x2))
    _close(ref.apply(d, x1, a * x2 + b * y2), a * ref.apply(d, x1, x2) + b * ref.apply(d, x1, y2))


def test_per_degree_weights_scale_blocks():
    d = spec.vstp("2x0e + 2x1o + 2x2e", "0e + 1o", per_degree_weights=True)
    plain = spec.vstp("2x0e + 2x1o + 2x2e", "0e + 1o")
    x1, x2, _ = _inputs(d, seed=4)
    w1 = np.array([[1.5, -0.5], [2.0, 0.25], [-1.0, 3.0]])
    w2, w3 = np.array([[0.5], [-2.0]]), np.arange(1.0, 1.0 + 2 * len(d.irreps_out)).reshape(-1, 2)
    w = np.concatenate([w1.ravel(), w2.ravel(), w3.ravel()])
    s1 = np.concatenate([np.repeat(w1[i], ir.dim) for i, (_, ir) in enumerate(d.irreps_in1)])
    s2 = np.concatenate([np.repeat(w2[i], ir.dim) for i, (_, ir) in enumerate(d.irreps_in2)])
    so = np.concatenate([np.repeat(w3[i], ir.dim) for i, (_, ir) in enumerate(d.irreps_out)])
    _close(ref.apply(d, x1, x2, w), ref.apply(plain, x1 * s1, x2 * s2) * so)


def test_batch_shapes():
    d = spec.vstp("2x0e + 2x1o", "0e + 1o", per_degree_weights=True)
    for batch in ((), (0,), (2, 3)):
        x1, x2, w = _inputs(d, batch=batch)
        out = ref.apply(d, x1, x2, w)
        assert out.shape == batch + (d.irreps_out.dim,)
        _close(ref.apply_emulated(d, x1, x2, w), out)


def test_coefficient_zero_off_parity_scalar_nonscalar_and_symmetric():
    assert vstp_coefficient(spec.Irrep("1o"), spec.Irrep("1o"), spec.Irrep("1o")) == 0.0
    assert vstp_coefficient(spec.Irrep("0e"), spec.Irrep("1o"), spec.Irrep("1o")) == 0.0
    assert vstp_coefficient(spec.Irrep("1o"), spec.Irrep("1o"), spec.Irrep("1e")) != 0.0
    assert vstp_coefficient(spec.Irrep("1o"), spec.Irrep("1o"), spec.Irrep("2e")) == 0.0


# ----------------------------------------------------------------------------- registry, cost
def test_family_methods_cost_and_expressivity():
    from tp_spec import plan
    from tp_spec.cost import flops

    d = spec.vstp("0e + 1o + 2e", "0e + 1o")
    assert plan.family(d) == "vstp" and plan.default_method(d) == "grid"
    assert plan.methods(d) == {"grid": None}
    assert plan.flops(d, 10, "grid") > flops(d, 10) > 0
    assert ((1, -1), (1, -1), (1, 1)) in spec.interactability(d)
    assert ((1, -1), (1, -1), (1, 1)) not in spec.interactability(spec.gtp("0e + 1o + 2e",
                                                                             "0e + 1o"))
    assert 0 < spec.expressivity(d) <= len(d.paths)
    assert d.as_cgtp().metadata == (("family", "vstp"),)


# ----------------------------------------------------------------------------- errors
def test_channel_rules_and_options():
    with pytest.raises(InstructionError, match="vstp: every block of irreps_in1"):
        spec.vstp("2x0e + 3x1o", "0e")
    with pytest.raises(InstructionError, match="channel mismatch"):
        spec.vstp("2x0e + 2x1o", "3x0e")
    with pytest.raises(InstructionError, match="more than once"):
        spec.vstp("0e + 1o + 1o", "0e")
    with pytest.raises(InstructionError, match="multiplicity C = 2"):
        spec.vstp("2x1o", "1o", "3x1e")
    with pytest.raises(IrrepsError, match="empty"):
        spec.vstp("", "1o")
    with pytest.raises(InstructionError, match="per_degree_weights must be True or False"):
        spec.vstp("1o", "1o", per_degree_weights=1)


def test_weight_errors():
    d = spec.vstp("2x1o", "1o", per_degree_weights=True)
    x1, x2, w = _inputs(d)
    with pytest.raises(ShapeError, match="weights"):
        ref.apply(d, x1, x2, None)
    with pytest.raises(ShapeError, match="weights have shape"):
        ref.apply(d, x1, x2, w[..., :-1])
    with pytest.raises(ShapeError, match="no weights"):
        ref.apply(spec.vstp("2x1o", "1o"), x1, x2, w)
