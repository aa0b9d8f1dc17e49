"""The ``"outer"`` regime of ``fused`` (unweighted ``uvuv`` / ``uuu`` CGTPs): chosen for those
descriptors only, its pair layout and its three sparse bilinear forms equal the reference."""

from __future__ import annotations

import numpy as np
import pytest
import tp_spec as spec
from tp_spec import plan, reference
from tp_spec.plan import Tuning
from tp_spec.plan.fused import fused_regime
from tp_spec.plan.outer import OuterPlan, build_outer, run_bilinear_numpy

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
    np.testing.assert_allclose(run_bilinear_numpy(p.forward_form, x1, x2, d.irreps_out.dim),
                               ref, atol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_gradient_forms_equal_finite_differences(name):
    """``grad1_form(g, x2)`` and ``grad2_form(g, x1)`` are the gradients of ``<g, out>``."""
    d = CASES[name]()
    p = build_outer(d, Tuning())
    x1, x2 = _inputs(d, b=3, seed=1)
    g = np.random.default_rng(2).normal(size=(3, d.irreps_out.dim))
    g1 = run_bilinear_numpy(p.grad1_form, g, x2, d.irreps_in1.dim)
    g2 = run_bilinear_numpy(p.grad2_form, g, x1, d.irreps_in2.dim)
    eps = 1e-6

    def loss(a, b):
        return np.sum(g * reference.apply(d, a, b), axis=1)

    for i in range(d.irreps_in1.dim):
        e = np.zeros(d.irreps_in1.dim)
        e[i] = eps
        np.testing.assert_allclose((loss(x1 + e, x2) - loss(x1 - e, x2)) / (2 * eps), g1[:, i],
                                   atol=1e-7)
    for j in range(d.irreps_in2.dim):
        e = np.zeros(d.irreps_in2.dim)
        e[j] = eps
        np.testing.assert_allclose((loss(x1, x2 + e) - loss(x1, x2 - e)) / (2 * eps), g2[:, j],
                                   atol=1e-7)


def test_forms_hold_only_nonzero_entries():
    d = CASES["full-mimo-l3"]()
    p = build_outer(d, Tuning())
    for f in (p.forward_form, p.grad1_form, p.grad2_form):
        assert np.all(f.c != 0)
        assert f.starts[0] == 0 and f.starts[-1] == len(f.c) == len(p.forward_form.c)
        assert np.all(np.diff(f.starts) >= 0)
    dense = sum((2 * p_.ir_in1.l + 1) * (2 * p_.ir_in2.l + 1) * (2 * p_.ir_out.l + 1)
                for p_ in d.paths)
    assert len(p.forward_form.c) < 0.3 * dense


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
