"""Every plan, run by its NumPy executor, equals the reference; the registry's contract.

Each method with a plan is run on descriptors chosen to reach each of its regimes (listed in
``DESCRIPTORS``), with shared, per-sample and no weights, under the default tuning and under a
tuning that forces the small-size code paths (chunks, splits, padding) on tiny inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import tp_spec as spec
from tp_spec import InstructionError, plan, reference
from tp_spec.plan import METHODS, Tuning

#: A tuning whose thresholds are all crossed by the small descriptors below.
SMALL = Tuning(split_min_entries=1, bmm_min_macs=8, pad_max=4, pad_from_macs=1,
               scalar_chunk_entries=8, scalar_chunk_min_rows=2, channelwise_chunk_entries=8,
               channelwise_chunk_min_rows=2, function_chunk_entries=8, function_chunk_min_rows=2,
               mtp_transpose_min_n=1, fold_max_channels=3)

S2 = "0e + 1o + 2e"
DESCRIPTORS = {
    "cgtp": {
        "scalar-uvw": lambda: spec.cgtp(S2, S2, "0e + 1o + 1e + 2e + 2o + 3o", mode="uvw"),
        "scalar-unweighted": lambda: spec.cgtp(S2, "0e + 1o", mode="full"),
        "channelwise": lambda: spec.cgtp("4x0e + 4x1o + 4x2e", "0e + 1o + 2e", mode="uvu"),
        "channelwise-mixed-mul": lambda: spec.cgtp("3x0e + 2x1o", "0e + 1o", mode="uvu"),
        # default tuning: the 1o and 2e contractions zero padded (kp > d1)
        "channelwise-padded": lambda: spec.cgtp("9x0e + 9x1o + 9x2e", "0e + 1o + 2e",
                                                mode="uvu"),
        "folded": lambda: spec.cgtp("2x0e + 2x1o", "0e + 1o", mode="uvu"),
        "grouped-uvw": lambda: spec.cgtp("2x0e + 3x1o + 2e", "0e + 1o + 2x2e",
                                         "2x0e + 1o + 3x1e + 2e", mode="uvw"),
        "grouped-uuu": lambda: spec.cgtp("2x0e + 2x1o", "2x0e + 2x1o", mode="uuu"),
        "grouped-uuw": lambda: spec.cgtp("2x0e + 2x1o", "2x0e + 2x1o", "3x0e + 1x1e",
                                         mode="uuw"),
        "grouped-uvv": lambda: spec.cgtp("2x0e + 1o", "3x0e + 3x1o", "3x1o + 3x0e",
                                         mode="uvv"),
        "grouped-uvuv": lambda: spec.cgtp("2x0e + 1o", "3x1o", mode="uvuv"),
    },
    "gtp": {
        "natural": lambda: spec.gtp(S2, S2),
        "channels": lambda: spec.gtp("3x0e + 3x1o + 3x2e", "0e + 1o + 2e"),
        "all-parities": lambda: spec.gtp("0e + 0o + 1o + 1e + 2e", "0e + 1e + 1o + 2o"),
        "given-out": lambda: spec.gtp("0e + 1o + 2e", "0e + 1o", "0e + 1o + 1e + 3o + 5e"),
        "weights-broadcast": lambda: spec.gtp("3x0e + 3x1o + 3x2e", "0e + 1o + 2e",
                                              per_degree_weights=True),
        "no-pair": lambda: spec.gtp("0e + 1o", "0e", "1e + 2o"),
    },
    "mtp": {
        "natural": lambda: spec.mtp(S2, S2),
        "channels": lambda: spec.mtp("2x0e + 2x1o + 2x2e", "2x0e + 2x1o + 2x2e"),
        "all-parities": lambda: spec.mtp("0e + 0o + 1o + 1e + 2e", "0e + 1e + 1o + 2o"),
        "transpose-n7": lambda: spec.mtp("0e + 1o + 2e", "0e + 1o", lt=3),
        "pseudo-channels": lambda: spec.mtp("2x0o + 2x1e + 2x2o", "0e + 1o + 2e"),
        "broadcast-weights": lambda: spec.mtp("3x0e + 3x1o + 3x2e", "0e + 1o + 2e + 3o",
                                              per_degree_weights=True),
        "one-pair": lambda: spec.mtp("2x0e + 2x1o", "2x0e + 2x1o", "2x0e + 2x1e"),
        "two-pairs-weights": lambda: spec.mtp("2x0e + 2x1e", "0e + 1o + 0o",
                                              per_degree_weights=True),
        "unreached-parity": lambda: spec.mtp("0e + 2e", "0e + 2e", "0e + 1o + 2e"),
        "no-pair": lambda: spec.mtp("0e", "0e", "0o"),
    },
    "vstp": {
        "natural": lambda: spec.vstp(S2, S2),
        "all-parities": lambda: spec.vstp("0e + 0o + 1o + 1e + 2e", "0e + 1e + 1o + 2o"),
        "channels-weights": lambda: spec.vstp("3x0e + 3x1o + 3x2e", "3x0e + 3x1o + 3x1e",
                                              per_degree_weights=True),
        "broadcast-weights": lambda: spec.vstp("3x0o + 3x1e + 3x2e", "0e + 1o + 2e",
                                               per_degree_weights=True),
        "given-out": lambda: spec.vstp("0e + 1o + 2e", "0e + 1o", "0e + 0o + 1e + 2e + 3o"),
        "scalars-only": lambda: spec.vstp("2x0e + 2x1o", "0o", "2x0o + 2x1e"),
        "no-path": lambda: spec.vstp("0e + 1o", "0e", "1e + 2o"),
    },
}

PLANNED = [(fam, name) for fam, ms in METHODS.items() for name, m in ms.items()
           if m.build is not None]
CASES = [(fam, name, case) for fam, name in PLANNED for case in DESCRIPTORS[fam]]


def _inputs(d, rng, batch=7):
    x1 = rng.standard_normal((batch, d.irreps_in1.dim))
    x2 = rng.standard_normal((batch, d.irreps_in2.dim))
    return x1, x2


@pytest.mark.parametrize("tuning", [None, SMALL], ids=["default", "small"])
@pytest.mark.parametrize(("fam", "name", "case"), CASES)
def test_plan_numpy_executor_equals_reference(fam, name, case, tuning):
    d = DESCRIPTORS[fam][case]()
    if METHODS[fam][name].available(d) is not None:
        pytest.skip(METHODS[fam][name].available(d))
    p = plan.plan(d, name, tuning)
    rng = np.random.default_rng(0)
    x1, x2 = _inputs(d, rng)
    weight_sets = [None] if d.weight_numel == 0 else [
        rng.standard_normal(d.weight_numel), rng.standard_normal((7, d.weight_numel))]
    for w in weight_sets:
        got = plan.execute(p, x1, x2, w)
        want = reference.apply(d, x1, x2, w)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_fused_regime_follows_the_descriptor_structure():
    from tp_spec.plan.fused import fused_regime

    fold4 = Tuning(fold_max_channels=4)
    assert fused_regime(spec.cgtp(S2, S2, "0e + 1o + 2e", mode="uvw"), fold4) == "scalar"
    assert fused_regime(spec.cgtp("4x0e + 4x1o", "0e + 1o", mode="uvu"), fold4) == "folded"
    assert fused_regime(spec.cgtp("5x0e + 5x1o", "0e + 1o", mode="uvu"), fold4) == "channelwise"
    assert fused_regime(spec.cgtp("4x0e + 2x1o", "0e + 1o", mode="uvu"), fold4) == "channelwise"
    assert fused_regime(spec.cgtp("4x0e + 4x1o", "2x0e + 1o", mode="uvu"), fold4) == "grouped"
    assert fused_regime(spec.cgtp("2x0e", "2x0e", "2x0e", mode="uvw"), fold4) == "grouped"


def test_scalar_regime_splits_by_parity_from_the_tuned_size():
    d = spec.cgtp(S2, S2, "0e + 1o + 1e + 2e", mode="uvw")  # 9 * 9 * 12 = 972 dense entries
    assert not plan.plan(d, "fused", Tuning(split_min_entries=973)).split
    assert plan.plan(d, "fused", Tuning(split_min_entries=972)).split


def test_scalar_plan_x1_scale_is_the_power_of_two_under_the_smallest_coupling():
    p = plan.plan(spec.cgtp(S2, S2, "0e + 1o + 1e + 2e", mode="uvw"), "fused")
    smallest = min(np.abs(v[v != 0]).min() for v in (p.w_val, p.cg_stack))
    q = -np.log2(p.x1_scale)
    assert q == int(q) and 0 < q <= 24
    assert p.x1_scale <= smallest < 2 * p.x1_scale


def test_plan_is_cached_per_descriptor_method_and_tuning():
    d = DESCRIPTORS["cgtp"]["grouped-uvw"]()
    assert plan.plan(d, "dense") is plan.plan(d, "dense")
    assert plan.plan(d, "dense") is not plan.plan(d, "dense", SMALL)
    assert plan.plan(d, "dense", SMALL).tuning is SMALL


def test_every_method_is_known_to_a_framework_and_planned_methods_have_a_flop_model():
    for fam, ms in METHODS.items():
        d = next(iter(DESCRIPTORS[fam].values()))()
        for name, m in ms.items():
            assert (m.family, m.name) == (fam, name)
            assert m.frameworks and set(m.frameworks) <= set(plan.FRAMEWORKS)
            assert (m.build is None) == (m.adapter is not None), name
            if m.build is not None:
                assert plan.flops(d, 10, name) == round(10 * m.flops(d)) > 0, (fam, name)


def test_default_method_is_a_planned_method_of_its_family():
    for fam, cases in DESCRIPTORS.items():
        d = next(iter(cases.values()))()
        name = plan.default_method(d)
        assert METHODS[fam][name].build is not None


def test_bad_descriptor_and_method_raise_instruction_error():
    d = DESCRIPTORS["gtp"]["natural"]()
    with pytest.raises(InstructionError, match="expected a tp_spec descriptor"):
        plan.methods("0e x 0e")
    with pytest.raises(InstructionError, match="valid methods"):
        plan.plan(d, "dense")
    with pytest.raises(InstructionError, match="valid methods"):
        plan.get_method(d, "s2fft", framework="torch")


def test_execute_validates_shapes_before_running():
    d = DESCRIPTORS["cgtp"]["grouped-uvw"]()
    p = plan.plan(d, "dense")
    with pytest.raises(spec.ShapeError):
        plan.execute(p, np.zeros((2, d.irreps_in1.dim + 1)), np.zeros((2, d.irreps_in2.dim)),
                     np.zeros(d.weight_numel))
