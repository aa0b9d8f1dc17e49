"""The CGTP reference against e3nn's ``o3.TensorProduct`` (float64) and O(3) equivariance."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tp_spec as spec
from tp_spec import reference as ref

TOL = 1e-12


# ----------------------------------------------------------------------------- helpers
def _random_inputs(d, batch=(5,), weights="shared", seed=0):
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=batch + (d.irreps_in1.dim,))
    x2 = rng.normal(size=batch + (d.irreps_in2.dim,))
    if d.weight_numel == 0:
        w = None
    elif weights == "shared":
        w = rng.normal(size=(d.weight_numel,))
    else:
        w = rng.normal(size=batch + (d.weight_numel,))
    return x1, x2, w


def _match_blocks(ours, theirs):
    """Permutation of flat components mapping ``theirs`` layout to ``ours`` (same irreps, both
    stable sorts of one list: the k-th block of an irrep in one is the k-th in the other)."""
    ours, theirs = spec.Irreps(ours), spec.Irreps(theirs)
    assert sorted(str(b) for b in ours) == sorted(str(b) for b in theirs)
    their_slices = theirs.slices()
    used = [False] * len(theirs)
    index = []
    for mul, ir in ours:
        for j, (mul2, ir2) in enumerate(theirs):
            if not used[j] and (mul2, ir2) == (mul, ir):
                used[j] = True
                index.extend(range(their_slices[j].start, their_slices[j].stop))
                break
    return np.array(index, dtype=int)


@pytest.fixture(scope="module")
def e3nn_o3():
    pytest.importorskip("e3nn")
    torch = pytest.importorskip("torch")
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # BEFORE building any e3nn module
    from e3nn import o3

    yield o3
    torch.set_default_dtype(old)


def _run_e3nn(tp, x1, x2, w):
    import torch

    args = [torch.from_numpy(x1), torch.from_numpy(x2)]
    if w is not None:
        args.append(torch.from_numpy(w))
    with torch.no_grad():
        return tp(*args).numpy()


def _e3nn_tp(o3, d, shared=True):
    """The e3nn module with the same instructions as descriptor ``d`` (built by ``spec.cgtp``)."""
    instr = [(p.i_in1, p.i_in2, p.i_out, p.mode, p.has_weight, p.path_weight) for p in d.paths]
    return o3.TensorProduct(str(d.irreps_in1), str(d.irreps_in2), str(d.irreps_out), instr,
                            irrep_normalization=d.irrep_normalization,
                            path_normalization=d.path_normalization,
                            internal_weights=False, shared_weights=shared)


# ----------------------------------------------------------------------------- e3nn oracle
IRREPS_A = "2x0e + 3x1o + 1x2e + 1x1e"
IRREPS_B = "1x0e + 2x1o + 1x2e"


@pytest.mark.parametrize("irrep_norm,path_norm",
                         list(itertools.product(("component", "norm", "none"),
                                                ("element", "path", "none"))))
def test_fully_connected_all_normalizations(e3nn_o3, irrep_norm, path_norm):
    out = "2x0e + 2x1o + 3x1e + 2x2e + 1x2o + 1x3o"
    d = spec.cgtp(IRREPS_A, IRREPS_B, out, mode="uvw", irrep_normalization=irrep_norm,
                  path_normalization=path_norm)
    tp = e3nn_o3.FullyConnectedTensorProduct(IRREPS_A, IRREPS_B, out,
                                             irrep_normalization=irrep_norm,
                                             path_normalization=path_norm,
                                             internal_weights=False, shared_weights=True)
    assert d.weight_numel == tp.weight_numel
    x1, x2, w = _random_inputs(d)
    np.testing.assert_allclose(ref.apply(d, x1, x2, w), _run_e3nn(tp, x1, x2, w), atol=TOL, rtol=0)


@pytest.mark.parametrize("shared", [True, False])
def test_channelwise_mace_style(e3nn_o3, shared):
    """MACE builds uvu instructions, one output block per path, sorted (e3nn order)."""
    irreps1, irreps2, target = "4x0e + 4x1o + 4x2e", "0e + 1o + 2e + 3o", "0e + 1o + 2e + 3o"
    d = spec.cgtp(irreps1, irreps2, target, mode="uvu")
    o3 = e3nn_o3
    i1s, i2s = o3.Irreps(irreps1), o3.Irreps(irreps2)
    targets = set(o3.Irreps(target))
    blocks, instr = [], []
    for i, (mul, ir_in) in enumerate(i1s):
        for j, (_, ir_edge) in enumerate(i2s):
            for ir_out in ir_in * ir_edge:
                if any(ir_out == t.ir for t in targets):
                    instr.append((i, j, len(blocks), "uvu", True))
                    blocks.append((mul, ir_out))
    out, perm, _ = o3.Irreps(blocks).sort()
    instr = [(a, b, perm[c], m, t) for a, b, c, m, t in instr]
    tp = o3.TensorProduct(i1s, i2s, out, instr, internal_weights=False, shared_weights=shared)
    assert d.weight_numel == tp.weight_numel
    x1, x2, w = _random_inputs(d, batch=(3, 2), weights="shared" if shared else "batched")
    ours = ref.apply(d, x1, x2, w)
    theirs = _run_e3nn(tp, x1.reshape(6, -1), x2.reshape(6, -1),
                       w if shared else w.reshape(6, -1)).reshape(3, 2, -1)
    assert str(d.irreps_out) == str(out)  # same layout as MACE's, no permutation needed
    np.testing.assert_allclose(ours, theirs, atol=TOL, rtol=0)


def test_elementwise(e3nn_o3):
    irreps1, irreps2 = "2x0e + 3x1o + 1x2e", "2x1o + 3x1e + 1x2o"
    d = spec.cgtp(irreps1, irreps2, mode="uuu")
    tp = e3nn_o3.ElementwiseTensorProduct(irreps1, irreps2)
    assert str(d.irreps_out) == str(tp.irreps_out)
    x1, x2, _ = _random_inputs(d)
    np.testing.assert_allclose(ref.apply(d, x1, x2), _run_e3nn(tp, x1, x2, None), atol=TOL)


@pytest.mark.parametrize(
    "irreps1, irreps2",
    [("2x0e + 1x1o + 1x2e", "3x0e + 1x1o + 2x1e"), ("2x0e + 0o + 1o + 1e", "0e + 0o + 1o")],
)
def test_full(e3nn_o3, irreps1, irreps2):
    """Same output layout as e3nn's FullTensorProduct (both parities of a degree included)."""
    d = spec.cgtp(irreps1, irreps2, mode="full")
    tp = e3nn_o3.FullTensorProduct(irreps1, irreps2)
    assert str(d.irreps_out) == str(tp.irreps_out)
    x1, x2, _ = _random_inputs(d)
    np.testing.assert_allclose(ref.apply(d, x1, x2), _run_e3nn(tp, x1, x2, None), atol=TOL, rtol=0)
    natural = spec.cgtp(irreps1, irreps2, mode="full", output_order="natural")
    assert natural.irreps_out == d.irreps_out.sort().irreps
    np.testing.assert_allclose(
        ref.apply(natural, x1, x2)[..., _match_blocks(d.irreps_out, natural.irreps_out)],
        ref.apply(d, x1, x2), atol=TOL, rtol=0)


@pytest.mark.parametrize("shared", [True, False])
def test_every_mode_with_user_path_weights(e3nn_o3, shared):
    """Explicit instructions in all six modes, mixed has_weight, user path weights."""
    irreps1, irreps2 = "2x0e + 2x1o + 2x2e", "2x0e + 2x1o"
    out = "2x0e + 2x1o + 4x1e + 1x2e + 2x2e + 4x2e"
    instr = [
        (0, 0, 0, "uvw", True, 1.0),
        (1, 1, 0, "uvw", True, 2.5),
        (1, 1, 2, "uvuv", True, 1.0),
        (1, 1, 2, "uvuv", False, 0.3),
        (2, 0, 4, "uvu", True, 1.0),
        (1, 1, 4, "uvv", True, 1.7),
        (2, 0, 4, "uuu", False, 1.0),
        (2, 0, 4, "uuu", True, 0.7),
        (1, 1, 3, "uuw", True, 1.0),
        (0, 1, 1, "uvv", False, 1.0),
        (2, 1, 1, "uuu", True, 0.2),
        (1, 1, 5, "uvuv", True, 1.0),
    ]
    for path_norm in ("element", "path"):
        d = spec.cgtp(irreps1, irreps2, out, instructions=instr, path_normalization=path_norm)
        tp = _e3nn_tp(e3nn_o3, d, shared=shared)
        assert d.weight_numel == tp.weight_numel
        x1, x2, w = _random_inputs(d, batch=(4,), weights="shared" if shared else "batched")
        np.testing.assert_allclose(ref.apply(d, x1, x2, w), _run_e3nn(tp, x1, x2, w),
                                   atol=TOL, rtol=0)


def test_uuw_unweighted_sums_channels(e3nn_o3):
    d = spec.cgtp("3x1o", "3x1o", "1x0e", instructions=[(0, 0, 0, "uuw", False)])
    tp = _e3nn_tp(e3nn_o3, d)
    x1, x2, _ = _random_inputs(d)
    np.testing.assert_allclose(ref.apply(d, x1, x2), _run_e3nn(tp, x1, x2, None), atol=TOL)


def test_weight_layout_matches_e3nn(e3nn_o3):
    """Each path's weights sit at the same flat offsets, C-order, as in e3nn."""
    d = spec.cgtp("2x0e + 3x1o", "2x1o + 1x0e", "4x1o + 2x0e", mode="uvw")
    tp = e3nn_o3.FullyConnectedTensorProduct("2x0e + 3x1o", "2x1o + 1x0e", "4x1o + 2x0e",
                                             internal_weights=False, shared_weights=True)
    e3nn_shapes = [tuple(ins.path_shape) for ins in tp.instructions]
    assert [p.weight_shape for p in d.paths] == e3nn_shapes
    offsets = np.cumsum([0] + [int(np.prod(s)) for s in e3nn_shapes])[:-1]
    assert [p.weight_offset for p in d.paths] == list(offsets)
    # one-hot weights light up the same single path output in both
    x1, x2, _ = _random_inputs(d)
    for k in (0, 7, d.weight_numel - 1):
        w = np.zeros(d.weight_numel)
        w[k] = 1.0
        np.testing.assert_allclose(ref.apply(d, x1, x2, w), _run_e3nn(tp, x1, x2, w), atol=TOL)


# ----------------------------------------------------------------------------- batching
def test_batch_shapes_and_shared_vs_batched_weights():
    d = spec.cgtp("2x0e + 1x1o", "1x1o", "2x1o + 1x0e", mode="uvw")
    rng = np.random.default_rng(3)
    x1 = rng.normal(size=(2, 3, d.irreps_in1.dim))
    x2 = rng.normal(size=(2, 3, d.irreps_in2.dim))
    w = rng.normal(size=(d.weight_numel,))
    out = ref.apply(d, x1, x2, w)
    assert out.shape == (2, 3, d.irreps_out.dim) and out.dtype == np.float64
    wb = np.broadcast_to(w, (2, 3, d.weight_numel)).copy()
    np.testing.assert_allclose(ref.apply(d, x1, x2, wb), out, atol=1e-14)
    for b in range(2):
        for c in range(3):
            np.testing.assert_allclose(ref.apply(d, x1[b, c], x2[b, c], w), out[b, c],
                                       atol=1e-14)
    assert ref.apply(d, x1[0, 0], x2[0, 0], w).shape == (d.irreps_out.dim,)
    empty = ref.apply(d, x1[:0], x2[:0], w)
    assert empty.shape == (0, 3, d.irreps_out.dim)


def test_float32_inputs_give_float64():
    d = spec.cgtp("1o", "1o", "1e", instructions=[(0, 0, 0, "uuu", False)])
    out = ref.apply(d, np.array([1, 0, 0], np.float32), np.array([0, 1, 0], np.float32))
    assert out.dtype == np.float64
    # C(1,1,1) = epsilon / sqrt(6) and the component normalization gives sqrt(3): x cross y / sqrt2
    np.testing.assert_allclose(out, [0, 0, 1 / np.sqrt(2)], atol=1e-15)


def test_outputs_without_paths_are_zero():
    d = spec.cgtp("1o", "1o", "0e + 3o", instructions=[(0, 0, 0, "uvw", True)])
    x1, x2, w = _random_inputs(d)
    assert np.all(ref.apply(d, x1, x2, w)[..., 1:] == 0)


# ----------------------------------------------------------------------------- equivariance
@pytest.mark.parametrize("improper", [False, True])
@pytest.mark.parametrize("mode", ["uvw", "uvu", "full"])
def test_equivariance(mode, improper):
    irreps1, irreps2 = "2x0e + 2x1o + 1x1e + 2x2e + 1x3o", "0e + 1o + 2e + 0o"
    if mode == "uvw":
        d = spec.cgtp(irreps1, irreps2, "2x0e + 2x0o + 3x1o + 2x1e + 2x2e + 2x2o + 1x3o + 1x4e",
                      mode="uvw")
    else:
        d = spec.cgtp(irreps1, irreps2, mode=mode)
    rng = np.random.default_rng(11)
    x1, x2, w = _random_inputs(d, batch=(3,), seed=12)
    for _ in range(2):
        R = spec.random_rotation(rng, improper=improper)
        D1, D2, Do = (spec.wigner_D(irr, R) for irr in (d.irreps_in1, d.irreps_in2,
                                                         d.irreps_out))
        lhs = ref.apply(d, x1 @ D1.T, x2 @ D2.T, w)
        rhs = ref.apply(d, x1, x2, w) @ Do.T
        np.testing.assert_allclose(lhs, rhs, atol=1e-11)


def test_weighted_paths_between_empty_blocks():
    """Weighted paths touching a multiplicity-0 block have no weights and contribute nothing."""
    d = spec.cgtp("0x0e + 2x1o", "1x1o", "2x0e + 0x1e", mode="uvw")
    assert d.weight_numel == 2 * 1 * 2 and len(d.paths) == 2
    x1, x2, w = _random_inputs(d)
    empty = spec.cgtp("0x0e", "1x1o", "0x1e + 0x1o", mode="uvw")
    assert empty.weight_numel == 0
    xe1, xe2 = np.zeros((4, 0)), np.ones((4, 3))
    assert ref.apply(empty, xe1, xe2).shape == (4, 0)
    # the 0x1e output block is empty and the 2x0e output comes from the one non-empty path only
    only = spec.cgtp("2x1o", "1x1o", "2x0e", mode="uvw")
    np.testing.assert_allclose(ref.apply(d, x1, x2, w), ref.apply(only, x1[:, 0:], x2, w),
                               atol=1e-14)
