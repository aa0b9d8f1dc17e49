"""tp_torch ``fused``, ``"scalar"`` regime (single-channel CGTPs) with no weights or shared
weights on every path: values against ``tp_spec.reference``, first and second derivatives
against finite differences, on the compiled coupling kernels (threads split and not) and on
the torch-ops path; the kernels run exactly where they apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tp_spec as spec
import tp_torch
from tp_spec import reference
from tp_spec.plan import Tuning
from tp_torch import _cpu_kernels, _scalar

S2 = "0e + 1o + 2e"
CASES = {
    "uvw": lambda: spec.cgtp(S2, S2, "0e + 1o + 1e + 2e + 2o + 3o + 4e", mode="uvw"),
    "uvw-sparse-out": lambda: spec.cgtp(S2, "1o + 3o", "0e + 1e + 2e + 5e", mode="uvw"),
}
#: every batch split over threads, two rows at least per thread
THREADED = Tuning(kernel_thread_min_rows=2)


@pytest.fixture(params=["kernel", "torch-ops"])
def path(request, monkeypatch):
    calls = []
    if request.param == "kernel":
        if not _cpu_kernels.available():
            pytest.skip("needs Numba")
        orig = _scalar._Coupling.forward
        monkeypatch.setattr(_scalar._Coupling, "forward",
                            staticmethod(lambda ctx, *a: calls.append(1) or orig(ctx, *a)))
    else:
        monkeypatch.setenv("TP_TORCH_CPU_KERNELS", "0")
    return request.param, calls


def _inputs(d, b, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, d.irreps_in1.dim, generator=g, dtype=dtype),
            torch.randn(b, d.irreps_in2.dim, generator=g, dtype=dtype),
            torch.randn(d.weight_numel, generator=g, dtype=dtype))


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_equal_reference(name, dtype, path):
    d = CASES[name]()
    tp = tp_torch.TensorProduct(d, "fused", tuning=THREADED).to(dtype)
    x1, x2, w = _inputs(d, 9, dtype)
    y = tp(x1, x2, w).numpy()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(y, reference.apply(d, x1.double().numpy(), x2.double().numpy(),
                                                  w.double().numpy()), rtol=tol, atol=tol)
    assert bool(path[1]) == (path[0] == "kernel")


@pytest.mark.parametrize("name", CASES)
def test_gradients_and_second_derivatives(name, path):
    d = CASES[name]()
    tp = tp_torch.TensorProduct(d, "fused", tuning=THREADED)
    x1, x2, w = (t.requires_grad_() for t in _inputs(d, 4))
    assert torch.autograd.gradcheck(lambda a, b, c: tp(a, b, c), (x1, x2, w))
    assert torch.autograd.gradgradcheck(lambda a, b, c: tp(a, b, c), (x1, x2, w))
    # one input at a time
    for i in range(3):
        args = [x1.detach(), x2.detach(), w.detach()]
        args[i] = args[i].clone().requires_grad_()
        assert torch.autograd.gradcheck(
            lambda a, i=i, args=args: tp(*[a if k == i else args[k] for k in range(3)]),
            (args[i],))


def test_per_sample_weights_keep_the_torch_ops(path):
    d = CASES["uvw"]()
    tp = tp_torch.TensorProduct(d, "fused")
    x1, x2, _ = _inputs(d, 5)
    w = torch.randn(5, d.weight_numel, dtype=torch.float64)
    y = tp(x1, x2, w).numpy()
    np.testing.assert_allclose(y, reference.apply(d, x1.numpy(), x2.numpy(), w.numpy()),
                               atol=1e-12)
    assert not path[1]
