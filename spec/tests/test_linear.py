"""tp_spec.linear: descriptor and NumPy reference against e3nn's o3.Linear, equivariance, the
indexed form against a loop over indices, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import tp_spec as spec
from tp_spec.errors import DTypeError, IndexRangeError, InstructionError, ShapeError
from tp_spec.linear import apply

CASES = {
    "mul": ("4x0e + 3x1o + 2x2e", "5x0e + 2x1o + 3x2e", None),
    "repeated": ("2x0e + 3x1o + 1x0e + 2x1o", "3x1o + 2x0e + 1x1o", None),
    "missing_out": ("3x0e + 2x1o", "2x0e + 2x1e + 3x1o", None),
    "missing_in": ("3x0e + 2x1o + 2x2o", "2x0e + 2x1o", None),
    "zero_mul": ("0x0e + 2x1o", "2x0e + 0x1o + 1x1o", None),
    "explicit": ("3x0e + 2x0e + 2x1o", "3x0e + 2x0e + 2x1o", [(0, 0), (1, 1), (0, 1), (2, 2)]),
    "empty": ("3x0e", "2x1o", []),
}


def _e3nn_linear(irreps_in, irreps_out, **kw):
    torch = pytest.importorskip("torch")
    o3 = pytest.importorskip("e3nn.o3")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return torch, o3.Linear(irreps_in, irreps_out, **kw)
    finally:
        torch.set_default_dtype(old)


@pytest.mark.parametrize("path_normalization", ["element", "path"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_e3nn(name, path_normalization):
    irreps_in, irreps_out, instructions = CASES[name]
    torch, ref = _e3nn_linear(irreps_in, irreps_out, instructions=instructions,
                              path_normalization=path_normalization)
    d = spec.linear(irreps_in, irreps_out, instructions=instructions,
                    path_normalization=path_normalization)
    assert d.weight_numel == ref.weight_numel
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, d.irreps_in.dim))
    w = rng.normal(size=d.weight_numel)
    with torch.no_grad():
        if ref.weight_numel:
            ref.weight.copy_(torch.from_numpy(w))
        expected = ref(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(apply(d, x, w), expected, rtol=1e-12, atol=1e-12)
    for ours, theirs in zip(d.instructions, [i for i in ref.instructions if i.i_in >= 0],
                            strict=True):
        assert (ours.i_in, ours.i_out, ours.weight_shape) == (theirs.i_in, theirs.i_out,
                                                             theirs.path_shape)
        assert ours.alpha == pytest.approx(theirs.path_weight, rel=1e-15)


def test_biases_match_e3nn():
    irreps_in, irreps_out = "3x0e + 2x1o", "2x0e + 2x1o + 1x0e + 2x0o"
    torch, ref = _e3nn_linear(irreps_in, irreps_out, biases=True)
    d = spec.linear(irreps_in, irreps_out, biases=True)
    assert d.biases == (True, False, True, False)
    assert d.bias_numel == ref.bias_numel == 3
    rng = np.random.default_rng(1)
    x, w, b = (rng.normal(size=s) for s in ((4, d.irreps_in.dim), d.weight_numel, 3))
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(w))
        ref.bias.copy_(torch.from_numpy(b))
        expected = ref(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(apply(d, x, w, bias=b), expected, rtol=1e-12, atol=1e-12)


def test_per_sample_weights_match_e3nn():
    irreps_in, irreps_out = "2x0e + 2x1o", "3x0e + 1x1o"
    torch, ref = _e3nn_linear(irreps_in, irreps_out, shared_weights=False)
    d = spec.linear(irreps_in, irreps_out)
    rng = np.random.default_rng(2)
    x, w = rng.normal(size=(5, d.irreps_in.dim)), rng.normal(size=(5, d.weight_numel))
    expected = ref(torch.from_numpy(x), torch.from_numpy(w)).numpy()
    np.testing.assert_allclose(apply(d, x, w), expected, rtol=1e-12, atol=1e-12)


def test_unit_variance():
    """N(0, 1) weights and inputs give outputs of variance ~1 (the point of alpha)."""
    d = spec.linear("16x0e + 8x0e + 8x1o", "8x0e + 8x1o")
    rng = np.random.default_rng(3)
    w = rng.normal(size=(2000, d.weight_numel))
    y = apply(d, rng.normal(size=(2000, d.irreps_in.dim)), w)
    assert abs(y.var() - 1) < 0.1


@pytest.mark.parametrize("improper", [False, True])  # improper: the parities too
def test_equivariance(improper):
    d = spec.linear("3x0e + 2x1o + 2x2e + 1x1e", "2x0e + 3x1o + 1x2e + 2x1e")
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=(6, d.irreps_in.dim)), rng.normal(size=d.weight_numel)
    R = spec.random_rotation(5, improper=improper)
    Din, Dout = spec.wigner_D(d.irreps_in, R), spec.wigner_D(d.irreps_out, R)
    np.testing.assert_allclose(apply(d, x @ Din.T, w), apply(d, x, w) @ Dout.T, atol=1e-12)


def test_indexed_is_a_loop_over_shared():
    d = spec.linear("3x0e + 2x1o", "2x0e + 3x1o", biases=True)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 3, d.irreps_in.dim))
    w, b = rng.normal(size=(5, d.weight_numel)), rng.normal(size=(5, d.bias_numel))
    idx = rng.integers(0, 5, size=(4, 3))
    out = apply(d, x, w, idx, b)
    for pos in np.ndindex(4, 3):
        k = idx[pos]
        np.testing.assert_allclose(out[pos], apply(d, x[pos], w[k], bias=b[k]), atol=1e-14)


def test_descriptor_layout():
    d = spec.linear("2x0e + 3x1o + 1x0e", "4x0e + 2x1o", path_normalization="path")
    assert [(i.i_in, i.i_out) for i in d.instructions] == [(0, 0), (1, 1), (2, 0)]
    assert [i.weight_offset for i in d.instructions] == [0, 8, 14]
    # path: fan-in = (paths into the output) * mul_in of this path
    assert [i.alpha for i in d.instructions] == pytest.approx([4 ** -0.5, 3 ** -0.5, 2 ** -0.5])
    assert d.flops(10) == 10 * 2 * (2 * 4 + 3 * 2 * 3 + 1 * 4)
    assert hash(d) == hash(spec.linear("2x0e + 3x1o + 1x0e", "4x0e + 2x1o",
                                       path_normalization="path"))


def test_bad_descriptors():
    with pytest.raises(InstructionError, match="different irreps"):
        spec.linear("0e + 1o", "0e + 1o", instructions=[(0, 1)])
    with pytest.raises(InstructionError, match="out of range"):
        spec.linear("0e", "0e", instructions=[(0, 1)])
    with pytest.raises(InstructionError, match="path_normalization"):
        spec.linear("0e", "0e", path_normalization="norm")
    with pytest.raises(InstructionError, match="0e output"):
        spec.linear("1o", "1o", biases=[True])
    with pytest.raises(InstructionError, match="one per output"):
        spec.linear("0e", "0e", biases=[True, False])


def test_bad_inputs():
    d = spec.linear("2x0e + 1x1o", "1x0e + 1x1o")
    x, w = np.zeros((3, 5)), np.zeros(d.weight_numel)
    with pytest.raises(ShapeError, match="x must be"):
        apply(d, np.zeros((3, 4)), w)
    with pytest.raises(ShapeError, match="weight_numel"):
        apply(d, x, np.zeros(d.weight_numel + 1))
    with pytest.raises(ShapeError, match="per sample"):
        apply(d, x, np.zeros((2, d.weight_numel)))
    with pytest.raises(ShapeError, match="required"):
        apply(d, x)
    with pytest.raises(DTypeError, match="share one dtype"):
        apply(d, x.astype(np.float32), w)
    with pytest.raises(DTypeError, match="int64"):
        apply(d, np.zeros((3, 5), np.int64), w)
    with pytest.raises(ShapeError, match="bias"):
        apply(d, x, w, bias=np.zeros(1))
    W = np.zeros((4, d.weight_numel))
    with pytest.raises(IndexRangeError, match=r"\[0, 4\)"):
        apply(d, x, W, np.array([0, 4, 1]))
    with pytest.raises(IndexRangeError, match=r"\[0, 4\)"):
        apply(d, x, W, np.array([0, -1, 1]))
    with pytest.raises(IndexRangeError, match="integer dtype"):
        apply(d, x, W, np.zeros(3))
    with pytest.raises(ShapeError, match="batch shape"):
        apply(d, x, W, np.zeros(2, np.int64))
    with pytest.raises(ShapeError, match="num_indices"):
        apply(d, x, w, np.zeros(3, np.int64))
