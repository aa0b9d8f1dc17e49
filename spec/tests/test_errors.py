"""Bad input raises the tp_spec.errors classes with messages naming the problem."""

from __future__ import annotations

import numpy as np
import pytest
import tp_spec as spec
from tp_spec import reference as ref
from tp_spec.errors import (
    DeviceError,
    DTypeError,
    InstructionError,
    IrrepsError,
    ShapeError,
)


def test_hierarchy():
    for cls in (IrrepsError, InstructionError, ShapeError, DeviceError):
        assert issubclass(cls, ValueError)
    assert issubclass(DTypeError, TypeError)


# ----------------------------------------------------------------------------- descriptors
def test_malformed_irreps():
    with pytest.raises(IrrepsError, match="malformed irreps '2x1q'"):
        spec.cgtp("2x1q", "0e", "0e")
    with pytest.raises(IrrepsError, match="malformed irreps"):
        spec.gtp("0e + ", "0e")
    with pytest.raises(IrrepsError, match="malformed"):
        spec.mtp("1", "0e")


def test_selection_rules():
    with pytest.raises(InstructionError, match="violates parity"):
        spec.cgtp("1o", "1o", "1o", instructions=[(0, 0, 0, "uvw", True)])
    with pytest.raises(InstructionError, match="triangle rule"):
        spec.cgtp("0e", "1o", "2e", instructions=[(0, 0, 0, "uvw", True)])
    with pytest.raises(InstructionError, match="triangle rule"):
        spec.CGTPDescriptor.from_paths("1o", "1o", "3o", [(0, 0, 0, "uuu", False, 1.0)])


def test_bad_instructions():
    with pytest.raises(InstructionError, match="not a valid block index"):
        spec.cgtp("0e", "0e", "0e", instructions=[(0, 1, 0, "uvw", True)])
    with pytest.raises(InstructionError, match="unknown connection mode 'uwv'"):
        spec.cgtp("0e", "0e", "0e", instructions=[(0, 0, 0, "uwv", True)])
    with pytest.raises(InstructionError, match="unknown mode"):
        spec.cgtp("0e", "0e", "0e", mode="nonsense")
    with pytest.raises(InstructionError, match="must be"):
        spec.cgtp("0e", "0e", "0e", instructions=[(0, 0, 0)])
    with pytest.raises(InstructionError, match="need irreps_out"):
        spec.cgtp("0e", "0e", instructions=[(0, 0, 0, "uvw", True)])
    with pytest.raises(InstructionError, match="needs irreps_out"):
        spec.cgtp("0e", "0e", mode="uvw")
    with pytest.raises(InstructionError, match="path_weight"):
        spec.cgtp("0e", "0e", "0e", instructions=[(0, 0, 0, "uvw", True, -1.0)])
    with pytest.raises(InstructionError, match="irrep_normalization"):
        spec.cgtp("0e", "0e", "0e", mode="uvw", irrep_normalization="unit")
    with pytest.raises(InstructionError, match="path_normalization"):
        spec.cgtp("0e", "0e", "0e", mode="uvw", path_normalization="paths")


def test_incompatible_multiplicities():
    with pytest.raises(InstructionError, match="incompatible multiplicities for mode 'uuu'"):
        spec.cgtp("2x0e", "3x0e", "2x0e", instructions=[(0, 0, 0, "uuu", False)])
    with pytest.raises(InstructionError, match="incompatible multiplicities for mode 'uvu'"):
        spec.cgtp("2x0e", "3x0e", "3x0e", instructions=[(0, 0, 0, "uvu", True)])
    with pytest.raises(InstructionError, match="incompatible multiplicities for mode 'uvuv'"):
        spec.cgtp("2x0e", "3x0e", "5x0e", instructions=[(0, 0, 0, "uvuv", True)])
    with pytest.raises(InstructionError, match="same number of irreps"):
        spec.cgtp("2x0e", "3x0e", mode="uuu")


def test_gtp_mtp_channel_rules():
    for fn in (spec.gtp, spec.mtp):
        with pytest.raises(InstructionError, match="channel mismatch"):
            fn("4x0e + 4x1o", "2x0e + 2x1o")
        with pytest.raises(InstructionError, match="same multiplicity"):
            fn("4x0e + 2x1o", "0e")
        with pytest.raises(InstructionError, match="appears more than once"):
            fn("1o + 1o", "0e")
        with pytest.raises(InstructionError, match="multiplicity C = 4"):
            fn("4x0e", "0e", "2x0e")


# ----------------------------------------------------------------------------- inputs
@pytest.fixture
def weighted():
    return spec.cgtp("2x0e + 1x1o", "1x1o", "2x1o", mode="uvw")


def _good(d, batch=(3,)):
    rng = np.random.default_rng(0)
    return (rng.normal(size=batch + (d.irreps_in1.dim,)),
            rng.normal(size=batch + (d.irreps_in2.dim,)),
            rng.normal(size=(d.weight_numel,)))


def test_wrong_input_shapes(weighted):
    x1, x2, w = _good(weighted)
    with pytest.raises(ShapeError, match=r"x1 has last axis of size 4, but its irreps .* dim 5"):
        ref.apply(weighted, x1[..., :4], x2, w)
    with pytest.raises(ShapeError, match="x2 has last axis of size 2"):
        ref.apply(weighted, x1, x2[..., :2], w)
    with pytest.raises(ShapeError, match="x1 must have at least one axis"):
        ref.apply(weighted, np.float64(1.0), x2, w)


def test_batch_mismatch_is_not_broadcast(weighted):
    x1, x2, w = _good(weighted)
    with pytest.raises(ShapeError, match="batch shapes differ"):
        ref.apply(weighted, x1, x2[:1], w)
    with pytest.raises(ShapeError, match="batch shapes differ"):
        ref.apply(weighted, x1, x2[0], w)
    with pytest.raises(ShapeError, match="batch shapes differ"):
        ref.apply(weighted, x1[None], x2, w)


def test_wrong_weight_shapes(weighted):
    x1, x2, w = _good(weighted)
    with pytest.raises(ShapeError, match="needs weights"):
        ref.apply(weighted, x1, x2)
    with pytest.raises(ShapeError, match="weights have shape"):
        ref.apply(weighted, x1, x2, w[:-1])
    with pytest.raises(ShapeError, match="weights have shape"):
        ref.apply(weighted, x1, x2, np.zeros((2, weighted.weight_numel)))  # batch is (3,)
    with pytest.raises(ShapeError, match="weights have shape"):
        ref.apply(weighted, x1, x2, np.zeros((1, weighted.weight_numel)))  # no broadcasting
    fixed = spec.gtp("0e", "0e")
    with pytest.raises(ShapeError, match="no weights"):
        ref.apply(fixed, np.ones((3, 1)), np.ones((3, 1)), np.ones(1))


def test_dtypes(weighted):
    x1, x2, w = _good(weighted)
    with pytest.raises(DTypeError, match="x1 must be a float32 or float64 array"):
        ref.apply(weighted, x1.astype(int), x2, w)
    with pytest.raises(DTypeError, match="x2 must be a float32 or float64 array, got dtype compl"):
        ref.apply(weighted, x1, x2.astype(complex), w)
    with pytest.raises(DTypeError, match="weights must be a float32 or float64 array"):
        ref.apply(weighted, x1, x2, w > 0)
    for fn in (ref.apply_gtp_grid, ref.apply_gtp_fourier, ref.apply_gtp_gaunt):
        with pytest.raises(DTypeError, match="x1"):
            fn(spec.gtp("0e", "0e"), np.ones((2, 1), dtype=np.int32), np.ones((2, 1)))


def test_apply_rejects_non_descriptors():
    with pytest.raises(TypeError, match="descriptor"):
        ref.apply("0e x 0e", np.ones(1), np.ones(1))


def test_cgtp_weights_errors():
    d = spec.gtp("2x0e", "0e", per_degree_weights=True)
    with pytest.raises(ShapeError, match="weights have shape"):
        d.cgtp_weights(np.ones(3))
    with pytest.raises(ShapeError, match="no weights"):
        spec.gtp("2x0e", "0e").cgtp_weights(np.ones(3))
