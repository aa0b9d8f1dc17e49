"""The ``"outer"`` regime of ``fused`` (unweighted ``uvuv`` / ``uuu`` CGTPs): chosen for those
descriptors only, its pair layout and its coupling entries (:mod:`tp_spec.plan.coupling`)
equal the reference; the coupling entries of single-channel weighted products too."""

from __future__ import annotations

import numpy as np
import pytest
import tp_spec as spec
from tp_spec import plan, reference
from tp_spec.plan import Tuning
from tp_spec.plan.coupling import build_coupling, run_coupling_numpy
from tp_spec.plan.fused import fused_regime
from tp_spec.plan.outer import OuterPlan, build_outer

S2 = "0e + 1o + 2e"
CASES = {
    "full-mimo": lambda: spec.cgtp(S2, S2, mode="full"),
    "full-mimo-l3": lambda: spec.cgtp("0e + 1o + 2e + 3o", "0e + 1o + 2e + 3o", mode="full"),
    "uuu": lambda: spec.cgtp(S2, S2, mode="uuu"),
    "full-channels": lambda: spec.cgtp("3x0e + 3x1o + 2x2e", S2, mode="full"),
    "full-both-channels": lambda: spec.cgtp("2x0e + 3x1o", "2x1o + 1x2e", mode="full"),
    "uuu-channels": lambda: spec.cgtp("3x0e + 2x1o", "3x0e + 2x1o", mode="uuu"),
}


def _inputs(d, b=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(b, d.irreps_in1.dim)), rng.normal(size=(b, d.irreps_in2.dim))


@pytest.mark.parametrize("name", CASES)
def test_outer_regime_equals_reference(name):
    d = CASES[name]()
    assert fused_regime(d, Tuning()) == "outer"
    p = plan.plan(d, "fused")
    assert isinstance(p, OuterPlan)
    x1, x2 = _inputs(d)
    ref = reference.apply(d, x1, x2)
    np.testing.assert_allclose(plan.execute(p, x1, x2, None), ref, atol=1e-12)
    np.testing.assert_allclose(run_coupling_numpy(p.coupling, x1, x2, None, d.irreps_out.dim),
                               ref, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda: spec.cgtp(S2, S2, "0e + 1o + 1e + 2e + 2o + 3o + 4e", mode="uvw"),
    lambda: spec.cgtp("0e + 1o", "0e + 1o", "0e + 1o + 1e", instructions=[
        (0, 0, 0, "uvw", True), (1, 1, 0, "uvw", False), (1, 1, 2, "uvw", True, 2.0),
        (1, 0, 1, "uvw", True)]),
])
def test_coupling_of_single_channel_weighted_products(make):
    """Shared weights (unweighted paths among weighted ones read the 1 of ``[w, 1]``)."""
    d = make()
    x1, x2 = _inputs(d, seed=3)
    w = np.random.default_rng(4).normal(size=d.weight_numel)
    np.testing.assert_allclose(run_coupling_numpy(build_coupling(d), x1, x2, w,
                                                  d.irreps_out.dim),
                               reference.apply(d, x1, x2, w), atol=1e-12)


def test_coupling_refuses_weighted_channels():
    with pytest.raises(ValueError, match="neither single-channel nor unweighted"):
        build_coupling(spec.cgtp("2x0e + 2x1o", S2, mode="uvu"))


def test_coupling_holds_only_nonzero_entries_sorted_by_input_pair():
    d = CASES["full-mimo-l3"]()
    cp = build_outer(d, Tuning()).coupling
    assert np.all(cp.value != 0)
    assert np.all(np.diff(cp.i * d.irreps_in2.dim + cp.j) >= 0)
    dense = sum((2 * p_.ir_in1.l + 1) * (2 * p_.ir_in2.l + 1) * (2 * p_.ir_out.l + 1)
                for p_ in d.paths)
    assert len(cp.value) < 0.3 * dense


@pytest.mark.parametrize("make", [
    lambda: spec.cgtp(S2, S2, "0e + 1o + 2e", mode="uvw"),         # weighted
    lambda: spec.cgtp("2x0e + 2x1o", S2, mode="uvu"),              # weighted channelwise
    lambda: spec.cgtp("0e + 1o", "0e + 1o", "0e + 1o + 1e",        # weighted uvuv
                      instructions=[(0, 0, 0, "uvuv", True), (1, 1, 2, "uvuv", True)]),
])
def test_weighted_descriptors_are_not_outer(make):
    d = make()
    assert fused_regime(d, Tuning()) != "outer"
    with pytest.raises(ValueError, match="unweighted uvuv or uuu"):
        build_outer(d, Tuning())
