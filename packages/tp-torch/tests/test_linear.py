"""tp_torch.Linear / IndexedLinear against e3nn's o3.Linear (copied weights) and the tp_spec
reference; gradcheck and gradgradcheck; torch.compile; bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tp_spec as spec
import tp_torch
from tp_spec.errors import DeviceError, DTypeError, IndexRangeError, ShapeError
from tp_spec.linear import apply

o3 = pytest.importorskip("e3nn.o3")

CASES = {
    "mul": ("4x0e + 3x1o + 2x2e", "5x0e + 2x1o + 3x2e", None),
    "repeated": ("2x0e + 3x1o + 1x0e + 2x1o", "3x1o + 2x0e + 1x1o", None),
    "missing_out": ("3x0e + 2x1o", "2x0e + 2x1e + 3x1o", None),
    "zero_mul": ("0x0e + 2x1o", "2x0e + 0x1o + 1x1o", None),
    "explicit": ("3x0e + 2x0e + 2x1o", "3x0e + 2x0e + 2x1o", [(0, 0), (1, 1), (0, 1), (2, 2)]),
    "empty": ("3x0e", "2x1o", []),
}


def _e3nn(dtype, *args, **kw):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return o3.Linear(*args, **kw)
    finally:
        torch.set_default_dtype(old)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_e3nn(name, dtype):
    irreps_in, irreps_out, instructions = CASES[name]
    ref = _e3nn(dtype, irreps_in, irreps_out, instructions=instructions)
    ours = tp_torch.Linear(irreps_in, irreps_out, instructions=instructions).to(dtype)
    assert ours.weight.shape == (ref.weight_numel,)
    with torch.no_grad():
        ours.weight.copy_(ref.weight)
    x = torch.randn(2, 3, ours.irreps_in.dim, dtype=dtype)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    out = ours(x)
    assert out.dtype == dtype
    torch.testing.assert_close(out, ref(x), rtol=tol, atol=tol)
    expected = apply(ours.descriptor, x.double().numpy(), ours.weight.detach().double().numpy())
    torch.testing.assert_close(out.double(), torch.from_numpy(expected), rtol=tol, atol=tol)


def test_biases_and_path_normalization_match_e3nn():
    args = ("3x0e + 2x1o + 2x0e", "2x0e + 2x1o + 1x0e")
    ref = _e3nn(torch.float64, *args, biases=True, path_normalization="path")
    ours = tp_torch.Linear(*args, biases=True, path_normalization="path").double()
    with torch.no_grad():
        ours.weight.copy_(ref.weight)
        ref.bias.normal_()
        ours.bias.copy_(ref.bias)
    x = torch.randn(5, ours.irreps_in.dim, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-12, atol=1e-12)


def test_per_sample_weights_match_e3nn():
    args = ("2x0e + 2x1o + 1x2e", "3x0e + 1x1o + 2x2e")
    ref = _e3nn(torch.float64, *args, shared_weights=False)
    ours = tp_torch.Linear(*args, shared_weights=False)
    x = torch.randn(4, ours.irreps_in.dim, dtype=torch.float64)
    w = torch.randn(4, ours.weight_numel, dtype=torch.float64)
    torch.testing.assert_close(ours(x, w), ref(x, w), rtol=1e-12, atol=1e-12)


def test_indexed_matches_reference():
    m = tp_torch.IndexedLinear("3x0e + 2x1o + 2x2e", "2x0e + 3x1o + 1x2e", 4).double()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, m.irreps_in.dim))
    idx = rng.integers(0, 4, size=(2, 7))
    idx[0, 0] = 3  # some index unused is fine; make sure the last is used
    for itype in (torch.int64, torch.int32):
        out = m(torch.from_numpy(x), torch.from_numpy(idx).to(itype))
        expected = apply(m.descriptor, x, m.weight.detach().numpy(), idx)
        np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_indexed_is_deterministic_and_exact_per_row():
    """Each row equals the shared Linear with that row's weights, bit for bit in float32."""
    m = tp_torch.IndexedLinear("8x0e + 4x1o", "8x0e + 4x1o", 3)
    x = torch.randn(20, m.irreps_in.dim)
    idx = torch.randint(0, 3, (20,))
    out = m(x, idx)
    torch.testing.assert_close(out, m(x, idx), rtol=0, atol=0)
    lin = tp_torch.Linear("8x0e + 4x1o", "8x0e + 4x1o")
    for k in range(3):
        with torch.no_grad():
            lin.weight.copy_(m.weight[k])
        rows = idx == k
        torch.testing.assert_close(out[rows], lin(x[rows]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["shared", "per_sample", "indexed"])
def test_gradcheck(kind):
    d = spec.linear("2x0e + 1x1o + 1x0e", "1x0e + 2x1o", biases=True)
    x = torch.randn(3, d.irreps_in.dim, dtype=torch.float64, requires_grad=True)
    lead = {"shared": (), "per_sample": (3,), "indexed": (2,)}[kind]
    w = torch.randn(*lead, d.weight_numel, dtype=torch.float64, requires_grad=True)
    b = torch.randn(*lead, d.bias_numel, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([1, 0, 1]) if kind == "indexed" else None

    def f(x, w, b):
        return tp_torch.linear.linear_forward(d, x, w, idx, b)

    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


def test_half_computes_in_float32():
    d = spec.linear("4x0e + 2x1o", "3x0e + 2x1o")
    x = torch.randn(6, d.irreps_in.dim).bfloat16()
    w = torch.randn(d.weight_numel).bfloat16()
    out = tp_torch.linear.linear_forward(d, x, w)
    assert out.dtype == torch.bfloat16
    expected = apply(d, x.double().numpy(), w.double().numpy())
    torch.testing.assert_close(out.float(), torch.from_numpy(expected).float(), rtol=1e-2,
                               atol=1e-2)


def test_bad_inputs():
    m = tp_torch.Linear("2x0e + 1x1o", "1x0e + 1x1o")
    with pytest.raises(ShapeError, match="x must be"):
        m(torch.randn(3, 4))
    with pytest.raises(DTypeError, match="share one dtype"):
        m(torch.randn(3, 5, dtype=torch.float64))
    with pytest.raises(DTypeError, match="torch.Tensor"):
        m(np.zeros((3, 5), np.float32))
    with pytest.raises(ShapeError, match="internal weights"):
        m(torch.randn(3, 5), torch.randn(m.weight_numel))
    ext = tp_torch.Linear("2x0e + 1x1o", "1x0e + 1x1o", internal_weights=False)
    with pytest.raises(ShapeError, match="required"):
        ext(torch.randn(3, 5))
    with pytest.raises(ShapeError, match="per sample"):
        ext(torch.randn(3, 5), torch.randn(2, ext.weight_numel))
    per = tp_torch.Linear("2x0e + 1x1o", "1x0e + 1x1o", shared_weights=False)
    with pytest.raises(ShapeError, match="shared_weights=False"):
        per(torch.randn(3, 5), torch.randn(per.weight_numel))
    with pytest.raises(ShapeError, match="internal_weights"):
        tp_torch.Linear("0e", "0e", internal_weights=True, shared_weights=False)
    with pytest.raises(DeviceError, match="device mix"):
        ext(torch.randn(3, 5), torch.randn(ext.weight_numel, device="meta"))
    im = tp_torch.IndexedLinear("2x0e + 1x1o", "1x0e + 1x1o", 3)
    x = torch.randn(4, 5)
    with pytest.raises(IndexRangeError, match=r"\[0, 3\)"):
        im(x, torch.tensor([0, 1, 3, 2]))
    with pytest.raises(IndexRangeError, match=r"\[0, 3\)"):
        im(x, torch.tensor([0, -1, 1, 2]))
    with pytest.raises(IndexRangeError, match="integer dtype"):
        im(x, torch.tensor([0.0, 1.0, 1.0, 2.0]))
    with pytest.raises(ShapeError, match="batch shape"):
        im(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ShapeError, match="num_indices"):
        tp_torch.IndexedLinear("0e", "0e", 0)


@pytest.mark.compile
def test_compile_fullgraph():
    torch._dynamo.reset()
    m = tp_torch.Linear("4x0e + 3x1o + 2x2e", "5x0e + 2x1o + 1x2e", biases=True)
    compiled = torch.compile(m, fullgraph=True, dynamic=False, backend="aot_eager")
    x1 = torch.randn(6, m.irreps_in.dim, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    out_c, out_e = compiled(x1), m(x2)
    torch.testing.assert_close(out_c, out_e, rtol=1e-6, atol=1e-6)
    (out_c ** 2).sum().backward()
    g_c = (x1.grad, m.weight.grad.clone())
    m.weight.grad = None
    (out_e ** 2).sum().backward()
    torch.testing.assert_close(g_c, (x2.grad, m.weight.grad), rtol=1e-5, atol=1e-5)
