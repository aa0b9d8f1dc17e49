"""Every method equals tp_spec.reference on a spread of descriptors, dtypes and batch shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tp_torch
from conftest import CASES, NATIVE, random_inputs, tensors
from tp_spec import reference

BATCHES = [(), (0,), (1,), (3, 4)]
#: float32 results agree with the float64 reference to this (relative to max |reference|).
F32_RTOL = 2e-5


@pytest.mark.parametrize(("name", "method"), NATIVE)
def test_matches_reference(name, method, rng):
    d = CASES[name]
    tp = tp_torch.TensorProduct(d, method)
    assert tp.method == method and tp.descriptor is d and tp.weight_numel == d.weight_numel
    for batch in BATCHES:
        for per_sample in ([False, True] if d.weight_numel else [False]):
            x1, x2, w = random_inputs(d, batch, rng, per_sample)
            ref = reference.apply(d, x1, x2, w)
            scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
            for dtype, tol in ((torch.float64, 1e-12), (torch.float32, F32_RTOL)):
                out = tp(*tensors(x1, x2, w, dtype=dtype))
                assert out.dtype == dtype
                assert tuple(out.shape) == batch + (d.irreps_out.dim,)
                err = float(np.abs(out.double().numpy() - ref).max(initial=0.0))
                assert err <= tol * scale, (name, method, batch, dtype, err)


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n].kind == "cgtp"])
def test_fused_runs_the_executor_of_its_plan(name):
    from tp_spec import plan

    d = CASES[name]
    kernel = tp_torch.TensorProduct(d, "fused").kernel
    assert type(kernel) is tp_torch._module.EXECUTORS[type(plan.plan(d, "fused"))]


def test_gtp_unit_and_emulation(rng):
    """GTP(x, e0) = x, and GTP/MTP equal their emulating CGTP run by tp_torch."""
    import tp_spec as spec

    d = spec.gtp("0e+1o+2e", "0e")
    x = rng.normal(size=(5, d.irreps_in1.dim))
    e0 = np.zeros((5, 1))
    e0[:, 0] = 1.0
    for m in ("grid", "fourier"):
        out = tp_torch.TensorProduct(d, m)(*tensors(x, e0)).numpy()
        np.testing.assert_allclose(out[:, : x.shape[1]], x, atol=1e-13)
    for name in ("gtp_pairs_w", "mtp_broadcast_w"):
        d = CASES[name]
        x1, x2, w = random_inputs(d, (4,), rng)
        c = d.as_cgtp()
        wc = d.cgtp_weights(w)
        a = tp_torch.TensorProduct(d)(*tensors(x1, x2, w)).numpy()
        b = tp_torch.TensorProduct(c, "fused")(*tensors(x1, x2, wc)).numpy()
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_default_methods():
    import tp_spec as spec

    assert tp_torch.TensorProduct(CASES["uvw"]).method == "fused"
    assert tp_torch.TensorProduct(CASES["gtp_all_pairs"]).method == "grid"
    assert tp_torch.TensorProduct(CASES["mtp_all"]).method == "sparse"
    big = spec.mtp("0e+1o+2e+3o+4e+5o+6e", "0e+1o+2e+3o+4e+5o+6e", "0e+1o+2e+12e")
    assert tp_torch.default_method(big) == "sparse"  # see the choice table in _module.py


@pytest.mark.parametrize("channels, plan", [(2, "folded"), (8, "folded"), (9, "channelwise")])
def test_folded_plan_by_channel_count(channels, plan, rng):
    """Channelwise products with few channels run per channel through the single-channel
    ``scalar`` plan; the output (every channel in ``mul_ir`` order) and the gradients equal the
    channelwise plan's, which the same descriptor gets when folding is switched off."""
    import tp_spec as spec
    from conftest import fused_executor
    from tp_spec.plan import Tuning
    from tp_spec.plan.fused import fused_regime
    from tp_torch._channelwise import ChannelwiseExecutor

    d = spec.cgtp(f"{channels}x0e+{channels}x1o+{channels}x2e", "0e+1o+2e", mode="uvu")
    fold8 = Tuning(fold_max_channels=8)
    assert fused_regime(d, fold8) == plan
    x1, x2, w = random_inputs(d, (7,), rng)
    folded = fused_executor(d, fold8).double()
    per_path = fused_executor(d, Tuning(fold_max_channels=1)).double()
    assert isinstance(per_path, ChannelwiseExecutor)
    results = []
    for kernel in (folded, per_path):
        t = tensors(x1, x2, w, grad=True)
        out = kernel(*t)
        grads = torch.autograd.grad((out * out).sum(), t)
        results.append([out.detach(), *grads])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["uvu_pad", "uvu_shared_out"])
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_channelwise_degree0_shortcut(name, compiled, rng):
    """Channelwise paths with a degree-0 ``x2`` block skip the matmul (the plan's ``scale``
    paths) unless the weight gradient needs the unweighted products: both cases against the
    reference."""
    from tp_spec import reference
    from tp_torch._channelwise import ChannelwiseExecutor

    d = CASES[name]
    tp = tp_torch.TensorProduct(d, "fused")
    kernel = tp.kernel
    assert isinstance(kernel, ChannelwiseExecutor)
    assert kernel.scale, "the case has degree-0 x2 paths"
    fn = tp
    if compiled:
        torch._dynamo.reset()
        fn = torch.compile(tp, fullgraph=True, dynamic=False, backend="aot_eager")
    x1, x2, w = random_inputs(d, (6,), rng)
    ref = reference.apply(d, x1, x2, w)
    for grad in (False, True):
        out = fn(*tensors(x1, x2, w, grad=grad))
        np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-12, atol=1e-12)
