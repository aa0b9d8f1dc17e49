"""Bad text and bad options raise naming what is wrong; descriptors without paths are zero.

Irreps strings take ASCII digits only; numeric options of the descriptor constructors take real
numbers (no strings, no bools); MTP's ``lt`` and the ``per_degree_weights`` flags have a type;
a CGTP output filter that no generated path reaches raises (docs/numerics.md: a product that is
identically zero is built on purpose with ``instructions=[]``).
"""

from __future__ import annotations

import numpy as np
import pytest
import tp_spec as spec
from tp_spec import InstructionError, IrrepsError, reference


@pytest.mark.parametrize("text, bad", [
    ("\u0661x0e", "\u0661"),            # Arabic-Indic digit one as the multiplicity
    ("\uff12x0e", "\uff12"),            # full-width digit two
    ("1x\uff11e", "\uff11"),            # full-width degree
    ("0e + \u0661o", "\u0661"),         # in a later term
    ("2x0e + \u0968x1o", "\u0968"),     # Devanagari digit two
])
def test_irreps_reject_non_ascii_digits(text, bad):
    with pytest.raises(IrrepsError) as err:
        spec.Irreps(text)
    assert repr(bad) in str(err.value) and "ASCII digits" in str(err.value)


def test_irrep_rejects_non_ascii_degree():
    with pytest.raises(IrrepsError, match="ASCII digits"):
        spec.Irrep("\u0661e")
    assert spec.Irrep("1e") == spec.Irrep(1, 1)  # ASCII still parses


@pytest.mark.parametrize("value", ["1.0", b"1", True, None, [1.0]])
def test_path_weight_must_be_a_real_number(value):
    with pytest.raises(InstructionError) as err:
        spec.cgtp("0e", "0e", "0e", instructions=[(0, 0, 0, "uvw", True, value)])
    assert "path_weight" in str(err.value) and repr(value) in str(err.value)


def test_numeric_options_accept_numpy_reals():
    d = spec.cgtp("0e", "0e", "0e", instructions=[(0, 0, 0, "uvw", True, np.float32(0.5))],
                  in1_var=[np.float64(2.0)])
    assert d.paths[0].path_weight == 0.5


@pytest.mark.parametrize("name", ["in1_var", "in2_var", "out_var"])
def test_variances_must_be_real_numbers(name):
    with pytest.raises(InstructionError, match=f"{name} entry must be a real number, got '2'"):
        spec.cgtp("0e", "0e", "0e", **{name: ["2"]})


def test_from_paths_coefficient_must_be_a_real_number():
    with pytest.raises(InstructionError, match="path coefficient must be a real number"):
        spec.CGTPDescriptor.from_paths("0e", "0e", "0e", [(0, 0, 0, "uuu", False, "1")])


@pytest.mark.parametrize("lt", [True, False, 1.0, "1", -1, np.float64(1.0)])
def test_mtp_lt_type_named(lt):
    with pytest.raises(InstructionError) as err:
        spec.mtp("0e + 1o", "0e + 1o", lt=lt)
    msg = str(err.value)
    assert f"lt={lt!r}" in msg and "non-negative int" in msg and "too small" not in msg


def test_mtp_lt_too_small_names_the_minimum():
    with pytest.raises(InstructionError, match=r"lt=0 is too small.*use lt >= 1"):
        spec.mtp("0e + 1o", "0e + 1o", lt=0)
    assert spec.mtp("0e + 1o", "0e + 1o", lt=np.int64(2)).lt == 2


@pytest.mark.parametrize("make", [spec.gtp, spec.mtp])
@pytest.mark.parametrize("flag", [1, "yes", None])
def test_per_degree_weights_must_be_bool(make, flag):
    with pytest.raises(InstructionError, match=f"per_degree_weights must be True or False, "
                                               f"got {flag!r}"):
        make("0e + 1o", "0e + 1o", per_degree_weights=flag)


@pytest.mark.parametrize("args, kwargs, reachable", [
    (("0e", "0e", "1o"), {}, "0e"),
    (("2x0e", "3x0e", "4x1o"), {}, "0e"),
    (("0e + 1o", "0e", "2e"), {"mode": "uvu"}, "0e + 1o"),
    (("0e + 1o", "1o", "2o"), {"mode": "uvv"}, "1o + 0e + 1e + 2e"),
    (("0e", "0e", "1o"), {"mode": "uuu"}, "0e"),
    (("0e", "1o", "0e"), {"mode": "full"}, "1o"),
    (("2x0e", "3x0e", "1x0e"), {"mode": "uuw"}, "none"),
])
def test_output_filter_matching_no_path_raises(args, kwargs, reachable):
    with pytest.raises(InstructionError) as err:
        spec.cgtp(*args, **kwargs)
    msg = str(err.value)
    assert f"irreps_out = {spec.Irreps(args[2])} matches no path" in msg
    for ir in reachable.split(" + "):
        assert ir in msg.split("reachable outputs are ")[1]
    assert "instructions=[]" in msg


def test_output_filter_partially_reached_is_kept():
    # e3nn semantics: an output block no path reaches is zero when another one is reached
    d = spec.cgtp("0e", "0e", "0e + 1o")
    assert len(d.paths) == 1 and d.irreps_out == spec.Irreps("0e + 1o")


@pytest.mark.parametrize("make", [
    lambda: spec.cgtp("0e + 1o", "0e", "1o + 2e", instructions=[]),
    lambda: spec.cgtp("0e", "0e", ""),
    lambda: spec.cgtp("", "0e", mode="uvu"),
    lambda: spec.gtp("0e", "0e", "1o"),
    lambda: spec.gtp("2x1o", "0e", "2x0e", per_degree_weights=True),
    lambda: spec.mtp("0e", "0e", "1o"),
    lambda: spec.mtp("2x0e", "2x0e", "2x1o", per_degree_weights=True),
])
def test_no_path_descriptors_are_zero(make):
    d = make()
    assert d.paths == ()
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((3, d.irreps_in1.dim))
    x2 = rng.standard_normal((3, d.irreps_in2.dim))
    w = rng.standard_normal(d.weight_numel) if d.weight_numel else None
    out = reference.apply(d, x1, x2, w)
    assert out.shape == (3, d.irreps_out.dim) and not out.any()
