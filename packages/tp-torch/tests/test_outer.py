"""tp_torch ``fused``, ``"outer"`` regime (unweighted full / uuu CGTP): values against
``tp_spec.reference``, gradients and second derivatives against finite differences, on the
compiled kernel (threads split and not) and on the torch-ops path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tp_spec as spec
import tp_torch
from tp_spec import reference
from tp_spec.plan import Tuning
from tp_torch import _cpu_kernels

S2 = "0e + 1o + 2e"
CASES = {
    "full-mimo": lambda: spec.cgtp(S2, S2, mode="full"),
    "uuu": lambda: spec.cgtp("0e + 1o + 2e + 3o", "0e + 1o + 2e + 3o", mode="uuu"),
    "full-channels": lambda: spec.cgtp("3x0e + 2x1o + 2x2e", S2, mode="full"),
    "full-both-channels": lambda: spec.cgtp("2x0e + 3x1o", "2x1o + 1x2e", mode="full"),
}
#: every batch split over threads, two rows at least per thread
THREADED = Tuning(kernel_thread_min_rows=2)

needs_numba = pytest.mark.skipif(not _cpu_kernels.available(), reason="needs Numba")


@pytest.fixture(params=["kernel", "torch-ops"])
def path(request, monkeypatch):
    if request.param == "kernel":
        if not _cpu_kernels.available():
            pytest.skip("needs Numba")
    else:
        monkeypatch.setenv("TP_TORCH_CPU_KERNELS", "0")
    return request.param


def _inputs(d, b, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, d.irreps_in1.dim, generator=g, dtype=dtype),
            torch.randn(b, d.irreps_in2.dim, generator=g, dtype=dtype))


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_equal_reference(name, dtype, path):
    d = CASES[name]()
    tp = tp_torch.TensorProduct(d, "fused")
    assert type(tp.kernel).__name__ == "OuterExecutor"
    x1, x2 = _inputs(d, 70, dtype)
    ref = reference.apply(d, x1.double().numpy(), x2.double().numpy())
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    y = tp(x1, x2)
    assert y.dtype == dtype and y.shape == (70, d.irreps_out.dim)
    np.testing.assert_allclose(y.double().numpy(), ref, atol=tol, rtol=tol)


@needs_numba
@pytest.mark.parametrize("threads", [1, 2])
def test_threaded_split_equals_reference(threads):
    d = CASES["full-both-channels"]()
    tp = tp_torch.TensorProduct(d, "fused", tuning=THREADED)
    x1, x2 = _inputs(d, 131)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y = tp(x1, x2).numpy()
    finally:
        torch.set_num_threads(old)
    np.testing.assert_allclose(y, reference.apply(d, x1.numpy(), x2.numpy()), atol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_gradients_and_second_derivatives(name, path):
    d = CASES[name]()
    tp = tp_torch.TensorProduct(d, "fused", tuning=THREADED)
    x1, x2 = _inputs(d, 4)
    x1.requires_grad_()
    x2.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: tp(a, b), (x1, x2))
    assert torch.autograd.gradgradcheck(lambda a, b: tp(a, b), (x1, x2))


def test_gradients_equal_reference_contraction(path):
    """``d <g, out> / d x1`` against the reference's own derivative: the reference of the
    product with ``x1`` replaced by each basis vector, contracted with ``g``."""
    d = CASES["full-channels"]()
    tp = tp_torch.TensorProduct(d, "fused")
    x1, x2 = _inputs(d, 3)
    g = torch.randn(3, d.irreps_out.dim, dtype=torch.float64)
    x1.requires_grad_()
    (gx1,) = torch.autograd.grad((tp(x1, x2) * g).sum(), x1)
    eye = np.eye(d.irreps_in1.dim)
    expected = np.stack([
        np.einsum("io,o->i", reference.apply(d, eye, np.repeat(x2[s:s + 1].numpy(), len(eye), 0)),
                  g[s].numpy()) for s in range(3)])
    np.testing.assert_allclose(gx1.numpy(), expected, atol=1e-12)


def test_empty_batch(path):
    d = CASES["full-mimo"]()
    tp = tp_torch.TensorProduct(d, "fused")
    x1, x2 = _inputs(d, 0)
    assert tp(x1, x2).shape == (0, d.irreps_out.dim)
