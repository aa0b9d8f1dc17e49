"""Gaunt tensor product: descriptor, unit, emulation, grid and Fourier forms, definition."""

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
from tp_spec.errors import InstructionError, IrrepsError, ShapeError

TOL = 1e-12


# ----------------------------------------------------------------------------- descriptor
def test_default_outputs_and_paths():
    d = spec.gtp("0e + 1o", "0e + 1o")
    assert d.irreps_out == spec.Irreps("0e + 1o + 2e")
    triples = {(str(p.ir_in1), str(p.ir_in2), str(p.ir_out)) for p in d.paths}
    assert ("1o", "1o", "1e") not in triples  # odd-sum path: unreachable
    assert triples == {("0e", "0e", "0e"), ("0e", "1o", "1o"), ("1o", "0e", "1o"),
                       ("1o", "1o", "0e"), ("1o", "1o", "2e")}
    assert d.weight_numel == 0 and d.kind == "gtp"
    # class (-1) x class (-1) -> class (+1): the dot product of two pseudovectors is reachable
    assert spec.gtp("1e", "1e").irreps_out == spec.Irreps("0e + 2e")
    assert spec.gtp("1e", "1o").irreps_out == spec.Irreps("0o + 2o")
    assert spec.gtp("3x1o + 3x2o", "1x1e").irreps_out == _times("0o + 1o + 2o + 3o", 3)


def test_paths_equal_scaled_gaunt():
    """coefficient * C(l1,l2,l3) == sqrt(4 pi) * gaunt(l1,l2,l3) for every path."""
    d = spec.gtp(_s2(4) + _s2(3, -1), _s2(4))
    for p in d.paths:
        np.testing.assert_allclose(
            p.coefficient * spec.clebsch_gordan(*p.lll),
            math.sqrt(4 * math.pi) * spec.gaunt(*p.lll), atol=1e-14)
        assert (p.ir_in1.l + p.ir_in2.l + p.ir_out.l) % 2 == 0
        assert p.ir_out.p == p.ir_in1.p * p.ir_in2.p
        assert p.mode == "uuu" and not p.has_weight
    assert len(d.paths) == len(spec.interactability(d))


def test_as_cgtp_modes_and_weights():
    d = spec.gtp("4x0e + 4x1o", "0e + 1o", per_degree_weights=True)
    assert d.broadcast and d.channels == 4 and d.channels_in2 == 1
    cg = d.as_cgtp()
    assert isinstance(cg, spec.CGTPDescriptor)
    assert all(p.mode == "uvu" and p.weight_shape == (4, 1) for p in cg.paths)
    assert d.weight_numel == 4 * 2 + 1 * 2 + 4 * len(d.irreps_out)
    w = np.random.default_rng(0).normal(size=(2, d.weight_numel))
    assert d.cgtp_weights(w).shape == (2, cg.weight_numel)
    d0 = spec.gtp("4x0e + 4x1o", "4x0e + 4x1o")
    assert all(p.mode == "uuu" and not p.has_weight for p in d0.as_cgtp().paths)
    assert d0.cgtp_weights(None) is None and d0.as_cgtp().weight_numel == 0


def test_grid_shape_and_classes():
    d = spec.gtp("2x0e + 2x1o + 2x1e + 2x2e", "0e + 1o + 2e")
    L1, L2, Lo = d.lmax
    assert (L1, L2, Lo) == (2, 2, 4)
    assert d.grid_shape() == (math.ceil((L1 + L2 + Lo + 1) / 2), L1 + L2 + Lo + 1)
    assert d.blocks_by_class("in1") == {1: (0, 1, 3), -1: (2,)}
    assert d.blocks_by_class("in2") == {1: (0, 1, 2), -1: ()}
    assert set(d.class_pairs()) == {(1, 1, 1), (-1, 1, -1)}


# ----------------------------------------------------------------------------- unit
@pytest.mark.parametrize("channels,broadcast", [(1, False), (3, False), (3, True)])
def test_unit(channels, broadcast):
    irreps1 = _times(_s2(3) + _s2(2, -1), channels)
    irreps2 = _times("0e + 1o + 1e + 2e", 1 if broadcast else channels)
    d = spec.gtp(irreps1, irreps2)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, irreps1.dim))
    e0 = np.zeros((4, irreps2.dim))
    e0[..., : irreps2[0].mul] = 1.0  # the 0e block (first), every channel
    for fn in (ref.apply, ref.apply_emulated, ref.apply_gtp_grid, ref.apply_gtp_fourier):
        out = fn(d, x, e0)
        for s, (_, ir) in zip(irreps1.slices(), irreps1, strict=False):
            np.testing.assert_allclose(_block(out, d.irreps_out, ir), x[..., s], atol=TOL)
    # and the unit on the left
    d2 = spec.gtp(_times("0e + 1o", channels), irreps1)
    e0l = np.zeros((4, d2.irreps_in1.dim))
    e0l[..., :channels] = 1.0
    if not broadcast:
        out = ref.apply(d2, e0l, x)
        for s, (_, ir) in zip(irreps1.slices(), irreps1, strict=False):
            np.testing.assert_allclose(_block(out, d2.irreps_out, ir), x[..., s], atol=TOL)


# ----------------------------------------------------------------------------- four forms agree
CASES = [
    # (irreps_in1, irreps_in2, irreps_out) ; None = default outputs
    (_s2(6), _s2(6), None),                                   # (+,+), L = 6, Lout = 12
    (_s2(6), _s2(5), _s2(6)),                                 # truncated output
    (_s2(3, -1), _s2(4, -1), None),                           # (-,-) -> +
    (_s2(4) + _s2(3, -1), _s2(2, -1) + _s2(3), None),          # all four class pairs
    (_s2(6) + _s2(6, -1), _s2(6, -1) + _s2(6), _s2(6) + _s2(6, -1)),  # all four pairs at L = 6
    (_times(_s2(2) + _s2(2, -1), 3), _s2(3) + _s2(1, -1), None),  # broadcast x2
    (_times(_s2(2), 2), _times(_s2(2, -1), 2), "2x0o + 2x2o + 2x7e + 2x3o"),  # unreachable 7e
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("per_degree", [False, True])
def test_gaunt_equals_emulated_grid_fourier(case, per_degree):
    i1, i2, io = CASES[case]
    d = spec.gtp(i1, i2, io, per_degree_weights=per_degree)
    x1, x2, w = _inputs(d, seed=case, per_sample=case % 2 == 1)
    z = ref.apply(d, x1, x2, w)
    assert z.shape == (3, d.irreps_out.dim) and np.abs(z).max() > 0.1
    for fn in (ref.apply_emulated, ref.apply_gtp_grid, ref.apply_gtp_fourier):
        np.testing.assert_allclose(fn(d, x1, x2, w), z, atol=TOL, rtol=0, err_msg=fn.__name__)


def test_definition_by_independent_quadrature():
    """z_{l3 m3} = (1/4pi) int f1 f2 Y_{l3 m3} with f = sum x Y (component SH), per class."""
    irreps1 = spec.Irreps("0e + 1o + 2e + 1e")      # class +1 (0e,1o,2e) and class -1 (1e)
    irreps2 = spec.Irreps("1o + 0o + 2o")           # class +1 (1o) and class -1 (0o, 2o)
    d = spec.gtp(irreps1, irreps2)
    x1, x2, _ = _inputs(d, batch=(2,), seed=9)
    # a generous product quadrature built here with numpy only
    t, wt = np.polynomial.legendre.leggauss(20)
    phi = 2 * np.pi * np.arange(41) / 41
    st = np.sqrt(1 - t**2)
    pts = np.stack([st[:, None] * np.sin(phi)[None], np.broadcast_to(t[:, None], (20, 41)),
                    st[:, None] * np.cos(phi)[None]], -1).reshape(-1, 3)
    wq = (wt[:, None] * np.full(41, 2 * np.pi / 41)[None]).reshape(-1)
    Y = spec.spherical_harmonics(8, pts)  # (npts, 81), component

    def func(x, irreps, cls):
        f = np.zeros(x.shape[:-1] + (len(pts),))
        for s, (_, ir) in zip(irreps.slices(), irreps, strict=False):
            if ir.p * (-1) ** ir.l == cls:
                f += x[..., s] @ Y[:, ir.l**2:(ir.l + 1) ** 2].T
        return f

    expect = np.zeros((2, d.irreps_out.dim))
    for s, (_, ir) in zip(d.irreps_out.slices(), d.irreps_out, strict=False):
        q3 = ir.p * (-1) ** ir.l
        for q1 in (1, -1):
            prod = func(x1, irreps1, q1) * func(x2, irreps2, q1 * q3)
            expect[:, s] += (prod * wq) @ Y[:, ir.l**2:(ir.l + 1) ** 2] / (4 * np.pi)
    np.testing.assert_allclose(ref.apply(d, x1, x2), expect, atol=1e-12)


def test_per_degree_weights_by_hand():
    d = spec.gtp("2x0e + 2x1o + 2x2e", "0e + 1o", per_degree_weights=True)
    fixed = spec.gtp("2x0e + 2x1o + 2x2e", "0e + 1o")
    x1, x2, w = _inputs(d, seed=2)
    n1, n2, no = 3 * 2, 2 * 1, len(d.irreps_out) * 2
    w1, w2, w3 = w[:n1].reshape(3, 2), w[n1:n1 + n2].reshape(2, 1), w[n1 + n2:].reshape(-1, 2)
    assert n1 + n2 + no == d.weight_numel
    s1 = np.concatenate([np.repeat(w1[i], 2 * l + 1) for i, l in enumerate((0, 1, 2))])
    s2 = np.concatenate([np.repeat(w2[i], 2 * l + 1) for i, l in enumerate((0, 1))])
    so = np.concatenate([np.repeat(w3[i], ir.dim) for i, (_, ir) in enumerate(d.irreps_out)])
    np.testing.assert_allclose(ref.apply(d, x1, x2, w), ref.apply(fixed, x1 * s1, x2 * s2) * so,
                               atol=TOL)


def test_grid_one_point_fewer_is_inexact():
    d = spec.gtp(_s2(3), _s2(3))
    x1, x2, _ = _inputs(d, seed=4)
    nt, nph = d.grid_shape()
    from tp_spec.s2grid import S2Grid

    exact = ref.apply(d, x1, x2)
    np.testing.assert_allclose(ref.apply_gtp_grid(d, x1, x2, grid=S2Grid.gauss_legendre(nt, nph)),
                               exact, atol=TOL)
    for shape in ((nt - 1, nph), (nt, nph - 1)):
        approx = ref.apply_gtp_grid(d, x1, x2, grid=S2Grid.gauss_legendre(*shape))
        assert np.abs(approx - exact).max() > 1e-3


# ----------------------------------------------------------------------------- equivariance
@pytest.mark.parametrize("improper", [False, True])
def test_equivariance(improper):
    d = spec.gtp(_times(_s2(3) + _s2(2, -1), 2), _s2(2) + _s2(1, -1))
    x1, x2, _ = _inputs(d, seed=7)
    R = spec.random_rotation(np.random.default_rng(8), improper=improper)
    D1, D2, Do = (spec.wigner_D(i, R) for i in (d.irreps_in1, d.irreps_in2, d.irreps_out))
    np.testing.assert_allclose(ref.apply(d, x1 @ D1.T, x2 @ D2.T), ref.apply(d, x1, x2) @ Do.T,
                               atol=1e-11)


def test_batch_shapes():
    d = spec.gtp("2x0e + 2x1o", "0e + 1o", per_degree_weights=True)
    for batch in ((), (0,), (2, 3)):
        x1, x2, w = _inputs(d, batch=batch, per_sample=True)
        out = ref.apply(d, x1, x2, w)
        assert out.shape == batch + (d.irreps_out.dim,)
        np.testing.assert_allclose(ref.apply_gtp_grid(d, x1, x2, w), out, atol=TOL)


# ----------------------------------------------------------------------------- errors
def test_channel_rules():
    with pytest.raises(InstructionError, match="same multiplicity"):
        spec.gtp("2x0e + 3x1o", "0e")
    with pytest.raises(InstructionError, match="channel mismatch"):
        spec.gtp("2x0e + 2x1o", "3x0e")
    with pytest.raises(InstructionError, match="channel mismatch"):
        spec.gtp("2x0e + 2x1o", "2x0e + 1x1o")
    with pytest.raises(InstructionError, match="more than once"):
        spec.gtp("0e + 1o + 1o", "0e")
    with pytest.raises(InstructionError, match="multiplicity C = 2"):
        spec.gtp("2x0e", "0e", "3x0e")
    with pytest.raises(InstructionError, match="more than once in irreps_out"):
        spec.gtp("0e", "0e", "0e + 0e")
    with pytest.raises(IrrepsError, match="empty"):
        spec.gtp("", "0e")


def test_weight_errors():
    d = spec.gtp("2x0e", "0e", per_degree_weights=True)
    x1, x2, w = _inputs(d)
    with pytest.raises(ShapeError, match="weights"):
        ref.apply(d, x1, x2, None)
    with pytest.raises(ShapeError, match="weights have shape"):
        ref.apply(d, x1, x2, w[:-1])
    with pytest.raises(ShapeError, match="no weights"):
        ref.apply(spec.gtp("2x0e", "0e"), x1, x2, w)
