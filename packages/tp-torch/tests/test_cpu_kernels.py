"""The compiled CPU kernels of the channelwise ``fused`` plan (:mod:`tp_torch._cpu_kernels`):
forward and first-order gradients against the NumPy reference, through batch chunks and
threads, every weight layout, any subset of gradients, float32; second derivatives
(compiled too) against finite differences, up to third against the torch-op plan, which
they replace and which is checked when turned off."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tp_torch
from conftest import CASES, random_inputs, tensors
from test_autograd import _reference_grads, test_first_and_second_order
from tp_spec import reference
from tp_spec.plan import DEFAULT_TUNING, Tuning
from tp_spec.plan.fused import fused_regime
from tp_torch import _cpu_kernels

pytestmark = pytest.mark.skipif(not _cpu_kernels.available(),
                                reason="Numba missing or TP_TORCH_CPU_KERNELS=0")

CHANNELWISE = [n for n, d in CASES.items()
               if d.kind == "cgtp"
               and fused_regime(d, DEFAULT_TUNING) in ("channelwise", "folded")]


def _fused(tp):
    return tp.kernel


@pytest.fixture
def chunks_and_threads(monkeypatch):
    """Chunks of 4 rows, batches of 10 rows or more split over two threads (the executors of
    plans built with a small ``Tuning``)."""
    from conftest import use_fused_tuning

    use_fused_tuning(monkeypatch, Tuning(kernel_chunk_entries=1, kernel_chunk_min_rows=4,
                                         kernel_thread_min_rows=5))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_cases_exist():
    assert {"uvu_sh", "uvu_pad", "uvu_shared_out"} <= set(CHANNELWISE)


@pytest.mark.parametrize("batch", [1, 23])
@pytest.mark.parametrize("name", CHANNELWISE)
def test_shared_weights_against_reference(name, batch, rng, chunks_and_threads):
    """Forward and every first-order gradient against the reference (gradients from unit
    vectors, see ``_reference_grads``); 23 rows: two threads of 12 + 11 rows in chunks of 4."""
    d = CASES[name]
    tp = tp_torch.TensorProduct(d, "fused")
    assert _fused(tp).cpu_kernels.rows == 4
    x1, x2, w = random_inputs(d, (batch,), rng)
    ins = [t for t in tensors(x1, x2, w, grad=True) if t is not None]
    assert _fused(tp).uses_cpu_kernels(ins[0])
    y = tp(*ins)
    np.testing.assert_allclose(y.detach().numpy(), reference.apply(d, x1, x2, w),
                               rtol=1e-12, atol=1e-12)
    ct = rng.normal(size=(batch, d.irreps_out.dim))
    grads = torch.autograd.grad((y * torch.tensor(ct)).sum(), ins)
    for g, ref in zip(grads, _reference_grads(d, x1, x2, w, ct), strict=True):
        np.testing.assert_allclose(g.numpy(), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", CHANNELWISE)
def test_per_sample_weights_and_gradient_subsets(name, rng, chunks_and_threads):
    """Per-sample weights, and each input alone requiring a gradient, against the torch-op
    plan (itself checked against the reference and finite differences in test_autograd)."""
    d = CASES[name]
    if not d.weight_numel:
        pytest.skip("no weights")
    tp = tp_torch.TensorProduct(d, "fused")
    x1, x2, w = random_inputs(d, (23,), rng, per_sample=True)
    ct = torch.tensor(rng.normal(size=(23, d.irreps_out.dim)))
    for k in range(3):
        ins = list(tensors(x1, x2, w))
        ins[k].requires_grad_(True)
        (g,) = torch.autograd.grad((tp(*ins) * ct).sum(), ins[k])
        (ref,) = torch.autograd.grad((_fused(tp).torch_forward(*ins) * ct).sum(), ins[k])
        torch.testing.assert_close(g, ref, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("name", ["uvu_sh", "uvu_shared_out"])
def test_float32(name, rng, chunks_and_threads):
    """float32 forward and gradients within float32 rounding of the float64 reference."""
    d = CASES[name]
    tp = tp_torch.TensorProduct(d, "fused")
    x1, x2, w = random_inputs(d, (23,), rng)
    ins = [t for t in tensors(x1, x2, w, dtype=torch.float32, grad=True) if t is not None]
    y = tp(*ins)
    assert y.dtype == torch.float32
    np.testing.assert_allclose(y.detach().numpy(), reference.apply(d, x1, x2, w),
                               rtol=1e-5, atol=1e-5)
    ct = rng.normal(size=(23, d.irreps_out.dim))
    grads = torch.autograd.grad((y * torch.tensor(ct, dtype=torch.float32)).sum(), ins)
    for g, ref in zip(grads, _reference_grads(d, x1, x2, w, ct), strict=True):
        assert g.dtype == torch.float32
        np.testing.assert_allclose(g.numpy(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("name", ["uvu_sh", "uvu_pad", "uvu_shared_out"])
def test_double_backward(name, per_sample, rng):
    """Compiled forward, backward and second derivatives (``create_graph``): first and second
    order against finite differences."""
    if per_sample and not CASES[name].weight_numel:
        pytest.skip("no weights")
    test_first_and_second_order(name, "fused", per_sample, rng, batch=3)


@pytest.mark.parametrize("name", CHANNELWISE)
def test_torch_plan_when_turned_off(name, rng, monkeypatch):
    """Without the kernels (no Numba, ``TP_TORCH_CPU_KERNELS=0``) the torch-op plan runs, and
    is checked to second order."""
    monkeypatch.setattr(_cpu_kernels, "available", lambda: False)
    d = CASES[name]
    x1 = torch.zeros(2, d.irreps_in1.dim)
    assert not _fused(tp_torch.TensorProduct(d, "fused")).uses_cpu_kernels(x1)
    test_first_and_second_order(name, "fused", False, rng, batch=3)


def test_off_switch(monkeypatch):
    _cpu_kernels.available.cache_clear()
    try:
        monkeypatch.setenv("TP_TORCH_CPU_KERNELS", "0")
        assert not _cpu_kernels.available()
        _cpu_kernels.available.cache_clear()
        monkeypatch.setenv("TP_TORCH_CPU_KERNELS", "1")
        assert _cpu_kernels.available()
    finally:
        _cpu_kernels.available.cache_clear()


def test_supports():
    """Every path channelwise with a CG block small enough; not the other modes."""
    assert _cpu_kernels.supports(CASES["uvu_sh"])
    for name in ("uvw", "uvv", "uuw", "uuu", "full", "mixed"):
        assert not _cpu_kernels.supports(CASES[name])
    from tp_spec import cgtp
    assert len(_cpu_kernels.cg_nonzeros(8, 8, 8)) > DEFAULT_TUNING.kernel_max_nonzeros
    assert not _cpu_kernels.supports(cgtp("2x8e", "8e", "2x8e", mode="uvu"))
    assert not _cpu_kernels.supports(CASES["uvu_sh"], Tuning(kernel_max_nonzeros=1))
    with pytest.raises(ValueError, match="channelwise"):
        _cpu_kernels.ChannelwiseKernels(CASES["uvw"])


def test_cg_nonzeros_rebuild_the_table():
    from tp_spec import clebsch_gordan
    c = np.zeros((5, 3, 7))
    for i, j, k, v in _cpu_kernels.cg_nonzeros(2, 1, 3):
        c[i, j, k] = v
    np.testing.assert_array_equal(c, np.asarray(clebsch_gordan(2, 1, 3), dtype=np.float64))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_threads_after_fork(rng, chunks_and_threads, monkeypatch):
    """A forked child (e.g. a multiprocessing worker) runs the threaded kernels with a pool of
    its own: the parent's pool threads do not exist there. (Two kernel threads through
    ``num_threads``: torch's own OpenMP threads must not be re-enabled in a forked child.)"""
    import multiprocessing as mp

    monkeypatch.setattr(_cpu_kernels, "num_threads", lambda: 2)

    d = CASES["uvu_sh"]
    tp = tp_torch.TensorProduct(d, "fused")
    x1, x2, w = random_inputs(d, (23,), rng)
    ins = [t for t in tensors(x1, x2, w) if t is not None]
    ref = tp(*ins)  # the parent's pool exists now
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        out = pool.apply_async(_child_forward, (tp, ins)).get(timeout=60)
    np.testing.assert_array_equal(out, ref.numpy())


def _child_forward(tp, ins):
    # a NumPy copy back: torch's pickling of a tensor through a pool queue goes through
    # shared-memory file descriptors
    return tp(*ins).numpy().copy()


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("name", ["uvu_sh", "uvu_shared_out"])
def test_third_order_against_torch_plan(name, per_sample, rng):
    """Up to third derivatives, with a cotangent that depends on the output (``2 y``, so the
    second-order step also differentiates through ``gout``), equal to the torch-op plan's."""
    d = CASES[name]
    tp = tp_torch.TensorProduct(d, "fused")
    x1, x2, w = random_inputs(d, (3,), rng, per_sample)
    ins = list(tensors(x1, x2, w, grad=True))

    def derivatives():
        g = torch.autograd.grad(tp(*ins).pow(2).sum(), ins, create_graph=True)
        h = torch.autograd.grad(sum(t.pow(2).sum() for t in g), ins, create_graph=True)
        t3 = torch.autograd.grad(sum(t.pow(2).sum() for t in h), ins)
        return (*g, *h, *t3)

    assert _fused(tp).uses_cpu_kernels(ins[0])
    compiled = derivatives()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_cpu_kernels, "available", lambda: False)
        plan = derivatives()
    for a, b in zip(compiled, plan, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-9)
