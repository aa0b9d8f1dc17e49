"""tp_torch.integrations.e3nn against the installed e3nn (float64): the same numbers, weights,
gradients and state-dict loading, both directions; e3nn Irreps accepted everywhere.

Runs in the torch session (e3nn 0.6) and the mace session (e3nn 0.4.4, whose Wigner 3j
differ in sign for some triples: the conversion carries those signs)."""

from __future__ import annotations

import pytest

e3nn = pytest.importorskip("e3nn")
o3 = pytest.importorskip("e3nn.o3")

import torch  # noqa: E402
import tp_spec  # noqa: E402
import tp_torch  # noqa: E402
from tp_torch.integrations.e3nn import Linear, TensorProduct, from_e3nn, to_e3nn  # noqa: E402

UVU = [(0, 0, 0, "uvu", True), (1, 1, 0, "uvu", True), (0, 1, 1, "uvu", True),
       (1, 0, 1, "uvu", True), (1, 1, 2, "uvu", True), (1, 2, 3, "uvu", True),
       (1, 2, 1, "uvu", True)]


def _e3nn_modules():
    yield o3.FullyConnectedTensorProduct("4x0e+2x1o+1x2e", "2x0e+1x1o", "3x0e+2x1o+2x2e+1x1e")
    yield o3.TensorProduct("4x0e+4x1o", "0e+1o+2e", "4x0e+4x1o+4x1e+4x2o", UVU,
                           shared_weights=False, internal_weights=False)
    yield o3.TensorProduct("3x1o+2x2e", "1o+2e", "3x1e+2x2e", [(0, 0, 0, "uvu", True),
                                                              (1, 1, 1, "uvu", True)],
                           irrep_normalization="norm", path_normalization="path",
                           in1_var=[1.0, 2.0], out_var=[0.5, 3.0])
    yield o3.FullTensorProduct("2x0e+1x1o+1x2e", "1x1o+1x2e")
    yield o3.ElementwiseTensorProduct("2x1o+1x2e", "2x2e+1x1o")
    yield o3.Linear("4x0e+2x1o", "3x0e+2x1o+1x2e")
    yield o3.Linear("4x0e+2x1o", "3x0e+5x1o", biases=True)


def _call(m, x, y, w):
    if isinstance(m, (o3.Linear, Linear)):
        return m(x)
    return m(x, y) if w is None else m(x, y, w)


@pytest.fixture(autouse=True)
def _float64():
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn builds its constants in the default dtype
    yield
    torch.set_default_dtype(default)


@pytest.mark.parametrize("index", range(7))
def test_from_e3nn_same_output_gradients_and_state_dict(index):
    torch.manual_seed(index)
    m = list(_e3nn_modules())[index]
    if isinstance(m, o3.Linear) and m.bias.numel():
        with torch.no_grad():
            m.bias.normal_()
    ours = from_e3nn(m)
    assert isinstance(ours, (TensorProduct, Linear))
    lin = isinstance(m, o3.Linear)
    x = torch.randn(6, (m.irreps_in if lin else m.irreps_in1).dim, requires_grad=True)
    y = None if lin else torch.randn(6, m.irreps_in2.dim, requires_grad=True)
    w = (None if lin or m.internal_weights or m.weight_numel == 0
         else torch.randn(6, m.weight_numel, requires_grad=True))
    a, b = _call(m, x, y, w), _call(ours, x, y, w)
    torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    ga = torch.autograd.grad(a.sin().sum(), [t for t in (x, y, w) if t is not None]
                             + [p for p in m.parameters()])
    gb = torch.autograd.grad(b.sin().sum(), [t for t in (x, y, w) if t is not None]
                             + [p for p in ours.parameters()])
    for u, v in zip(ga, gb, strict=True):
        torch.testing.assert_close(v, u, rtol=1e-11, atol=1e-12)
    # e3nn's state dict (its output_mask and generated-code constants included) loads strictly
    fresh = from_e3nn(m)
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    fresh.load_state_dict(m.state_dict(), strict=True)
    torch.testing.assert_close(_call(fresh, x, y, w), a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("index", range(7))
def test_to_e3nn_round_trip(index):
    torch.manual_seed(index)
    m = list(_e3nn_modules())[index]
    back = to_e3nn(from_e3nn(m))
    lin = isinstance(m, o3.Linear)
    x = torch.randn(5, (m.irreps_in if lin else m.irreps_in1).dim)
    y = None if lin else torch.randn(5, m.irreps_in2.dim)
    w = (None if lin or m.internal_weights or m.weight_numel == 0
         else torch.randn(5, m.weight_numel))
    torch.testing.assert_close(_call(back, x, y, w), _call(m, x, y, w), rtol=1e-12, atol=1e-12)
    assert sorted(back.state_dict()) == sorted(m.state_dict())


@pytest.mark.skipif(tuple(int(v) for v in e3nn.__version__.split(".")[:2]) < (0, 5),
                    reason="e3nn < 0.5 has other signs for some Wigner 3j (from_e3nn maps them)")
def test_e3nn_style_constructor_matches_e3nn():
    torch.manual_seed(3)
    kw = dict(shared_weights=False)
    e = o3.TensorProduct("4x0e+4x1o", "0e+1o+2e", "4x0e+4x1o+4x1e+4x2o", UVU, **kw)
    ours = TensorProduct("4x0e+4x1o", "0e+1o+2e", "4x0e+4x1o+4x1e+4x2o", UVU, **kw)
    assert ours.weight is None and not ours.internal_weights and not ours.shared_weights
    x, y = torch.randn(4, 16), torch.randn(4, 9)
    w = torch.randn(4, e.weight_numel)
    # tp_spec follows current e3nn's Wigner 3j: the same constructor gives the same numbers
    torch.testing.assert_close(ours(x, y, w), e(x, y, w), rtol=1e-12, atol=1e-12)
    with pytest.raises(tp_spec.ShapeError, match="shared_weights=False"):
        ours(x, y, w[0])
    with pytest.raises(tp_spec.ShapeError, match="required"):
        ours(x, y)
    shared = TensorProduct("2x1o", "1o", "2x0e", [(0, 0, 0, "uvu", True)])
    assert shared.internal_weights and shared.weight.shape == (2,)
    with pytest.raises(tp_spec.ShapeError, match="internal weights"):
        shared(torch.randn(3, 6), torch.randn(3, 3), torch.randn(2))


def test_e3nn_irreps_accepted():
    irreps = o3.Irreps("2x0e + 1x1o + 3x2e")
    assert tp_spec.Irreps(irreps) == tp_spec.Irreps("2x0e + 1x1o + 3x2e")
    assert tp_spec.Irreps([o3.Irrep("1o"), o3.Irrep(2, 1)]) == tp_spec.Irreps("1o + 2e")
    assert tp_spec.Irrep(o3.Irrep("3o")) == tp_spec.Irrep("3o")
    d = tp_spec.cgtp(irreps, o3.Irreps("1o"), mode="uvu")
    assert d == tp_spec.cgtp("2x0e + 1x1o + 3x2e", "1o", mode="uvu")
    lin = tp_torch.Linear(o3.Irreps("2x0e+1x1o"), o3.Irreps("3x0e"))
    assert lin.weight.shape == (6,)
    with pytest.raises(tp_spec.IrrepsError):
        tp_spec.Irrep(o3.Irrep("1o"), 1)


def test_wrong_module_types_raise():
    with pytest.raises(TypeError, match="o3.TensorProduct and o3.Linear"):
        from_e3nn(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="integrations.e3nn"):
        to_e3nn(torch.nn.Linear(2, 2))
