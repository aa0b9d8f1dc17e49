"""The compiled CPU kernels as custom ops (:mod:`tp_torch._ops`): torch's own op checks,
``torch.compile(fullgraph=True)`` keeping the kernels, ``torch.export`` with a dynamic batch,
TorchScript tracing, and a clear refusal of ``torch.jit.script``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tp_spec as spec
import tp_torch
from tp_torch import _cpu_kernels
from tp_torch._conv_kernels import edge_orders

pytestmark = pytest.mark.skipif(not _cpu_kernels.available(), reason="Numba missing")

#: channelwise with weighted and unweighted paths, two paths into one output block
D = spec.cgtp("4x0e + 4x1o", "0e + 1o", "4x0e + 4x1o + 4x2e",
              instructions=[(0, 0, 0, "uvu", True), (1, 1, 0, "uvu", False),
                            (0, 1, 1, "uvu", False), (1, 0, 1, "uvu", True)])


def _inputs(b, rng, per_sample=True, dtype=torch.float64, grad=False):
    x1 = torch.tensor(rng.standard_normal((b, D.irreps_in1.dim)), dtype=dtype)
    x2 = torch.tensor(rng.standard_normal((b, D.irreps_in2.dim)), dtype=dtype)
    shape = (b, D.weight_numel) if per_sample else (D.weight_numel,)
    w = torch.tensor(rng.standard_normal(shape), dtype=dtype)
    return tuple(t.requires_grad_(grad) for t in (x1, x2, w))


def _reference(x1, x2, w):
    return torch.tensor(spec.reference.apply(D, x1.detach().numpy(), x2.detach().numpy(),
                                             w.detach().numpy()))


def _graph(rng, n_nodes=7, n_edges=23):
    s = torch.tensor(rng.integers(0, n_nodes, n_edges))
    r = torch.tensor(rng.integers(0, n_nodes, n_edges))
    return s, r


def test_the_module_runs_the_op(rng):
    tp = tp_torch.TensorProduct(D, "fused")
    assert tp.kernel.uses_cpu_kernels(torch.zeros(1))
    x1, x2, w = _inputs(5, rng)
    torch.testing.assert_close(tp(x1, x2, w), _reference(x1, x2, w), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per_sample", [True, False])
def test_opcheck_batch_ops(per_sample, rng):
    key = tp_torch.TensorProduct(D, "fused").kernel.kernel_key
    x1, x2, w = _inputs(6, rng, per_sample, grad=True)
    torch.library.opcheck(torch.ops.tp_torch.channelwise.default, (x1, x2, w, key, False))
    g = torch.randn(6, D.irreps_out.dim, dtype=torch.float64)
    torch.library.opcheck(torch.ops.tp_torch.channelwise_backward.default,
                          (x1.detach(), x2.detach(), w.detach(), g, key, True, True, True,
                           False))


def test_opcheck_conv_ops(rng):
    conv = tp_torch.TensorProductConv(D, "fused")
    s, r = _graph(rng)
    x1 = torch.randn(7, D.irreps_in1.dim, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(23, D.irreps_in2.dim, dtype=torch.float64, requires_grad=True)
    w = torch.randn(23, D.weight_numel, dtype=torch.float64, requires_grad=True)
    by_r, by_s = edge_orders(s, r, True)
    torch.library.opcheck(torch.ops.tp_torch.channelwise_conv.default,
                          (x1, x2, w, by_r, by_s, conv.conv_key, False))


def _op_targets(gm: torch.fx.GraphModule) -> set[str]:
    """Every call target in ``gm`` and its subgraphs, as strings."""
    names = set()
    for mod in gm.modules():
        if isinstance(mod, torch.fx.GraphModule):
            names |= {str(n.target) for n in mod.graph.nodes if n.op == "call_function"}
    return names


def test_compile_fullgraph_keeps_the_kernels(rng):
    torch._dynamo.reset()
    seen: list[set[str]] = []

    def backend(gm, example_inputs):
        seen.append(_op_targets(gm))
        return gm.forward

    tp = tp_torch.TensorProduct(D, "fused")
    compiled = torch.compile(tp, fullgraph=True, backend=backend)
    a = _inputs(5, rng, grad=True)
    b = tuple(t.detach().clone().requires_grad_() for t in a)
    out = compiled(*a)
    assert any("tp_torch.channelwise" in " ".join(s) for s in seen), seen
    torch.testing.assert_close(out, tp(*b), rtol=1e-12, atol=1e-12)
    out.square().sum().backward()
    tp(*b).square().sum().backward()
    for ta, tb in zip(a, b, strict=True):
        torch.testing.assert_close(ta.grad, tb.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.compile
def test_compile_inductor_energy_and_forces(rng):
    """Inductor: a molecular-dynamics step, energy and its gradient along the edge features
    (forces), through the op and its registered backward. (A compiled graph's backward cannot
    be differentiated again: torch's AOTAutograd does not support double backward, so force
    *training* runs eager.)"""
    torch._dynamo.reset()
    tp = tp_torch.TensorProduct(D, "fused")

    def energy(x1, x2, w):
        return tp(x1, x2, w).square().sum()

    compiled = torch.compile(energy)
    a = _inputs(8, rng, grad=True)
    b = tuple(t.detach().clone().requires_grad_() for t in a)
    e1, e2 = compiled(*a), energy(*b)
    torch.testing.assert_close(e1, e2, rtol=1e-12, atol=1e-12)
    (f1,) = torch.autograd.grad(e1, a[1])
    (f2,) = torch.autograd.grad(e2, b[1])
    torch.testing.assert_close(f1, f2, rtol=1e-12, atol=1e-12)


def test_export_dynamic_batch(rng, tmp_path):
    tp = tp_torch.TensorProduct(D, "fused")
    batch = torch.export.Dim("batch", min=2)
    args = _inputs(5, rng)
    ep = torch.export.export(tp, args, dynamic_shapes=({0: batch}, {0: batch}, {0: batch}))
    assert "tp_torch.channelwise" in str(ep.graph)
    path = tmp_path / "tp.pt2"
    torch.export.save(ep, path)
    loaded = torch.export.load(path).module()
    for b in (3, 17):
        x = _inputs(b, rng)
        torch.testing.assert_close(loaded(*x), _reference(*x), rtol=1e-12, atol=1e-12)


@pytest.mark.compile
def test_aot_inductor_package(rng, tmp_path):
    """An AOTInductor package of the exported product: C++ code around the op, which it calls
    through PyTorch's dispatcher (``import tp_torch`` registers it)."""
    tp = tp_torch.TensorProduct(D, "fused")
    batch = torch.export.Dim("batch", min=2)
    ep = torch.export.export(tp, _inputs(5, rng),
                             dynamic_shapes=({0: batch}, {0: batch}, {0: batch}))
    path = torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / "tp.pt2"))
    loaded = torch._inductor.aoti_load_package(path)
    x = _inputs(11, rng)
    torch.testing.assert_close(loaded(*x), _reference(*x), rtol=1e-12, atol=1e-12)


def test_export_conv_dynamic_edges(rng):
    conv = tp_torch.TensorProductConv(D, "fused")
    s, r = _graph(rng)
    x1 = torch.randn(7, D.irreps_in1.dim, dtype=torch.float64)
    x2 = torch.randn(23, D.irreps_in2.dim, dtype=torch.float64)
    w = torch.randn(23, D.weight_numel, dtype=torch.float64)
    nodes, edges = torch.export.Dim("nodes", min=2), torch.export.Dim("edges", min=2)
    with torch.no_grad():
        ep = torch.export.export(conv, (x1, x2, w, s, r), dynamic_shapes=(
            {0: nodes}, {0: edges}, {0: edges}, {0: edges}, {0: edges}))
    g = np.random.default_rng(5)
    s2, r2 = _graph(g, 11, 40)
    args = (torch.randn(11, D.irreps_in1.dim, dtype=torch.float64),
            torch.randn(40, D.irreps_in2.dim, dtype=torch.float64),
            torch.randn(40, D.weight_numel, dtype=torch.float64), s2, r2)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(*args), conv(*args), rtol=1e-12, atol=1e-12)


def test_jit_trace_and_save(rng, tmp_path):
    tp = tp_torch.TensorProduct(D, "fused")
    args = _inputs(5, rng)
    traced = torch.jit.trace(tp, args, check_trace=False)
    path = tmp_path / "tp.ts"
    torch.jit.save(traced, path)
    loaded = torch.jit.load(path)
    x = _inputs(9, rng)
    torch.testing.assert_close(loaded(*x), _reference(*x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda: tp_torch.TensorProduct(D),
    lambda: tp_torch.TensorProductConv(D),
    lambda: tp_torch.Linear("2x0e + 1o", "3x0e + 1o"),
])
def test_jit_script_is_refused_clearly(make):
    with pytest.raises(TypeError, match="TorchScript"):
        torch.jit.script(make())


def test_ops_refuse_when_kernels_are_off(monkeypatch, rng):
    key = tp_torch.TensorProduct(D, "fused").kernel.kernel_key
    monkeypatch.setenv("TP_TORCH_CPU_KERNELS", "0")
    monkeypatch.setattr(_cpu_kernels, "available", lambda: False)
    monkeypatch.setattr("tp_torch._ops.available", lambda: False)
    x1, x2, w = _inputs(3, rng)
    with pytest.raises(RuntimeError, match="tp_torch::channelwise"):
        torch.ops.tp_torch.channelwise(x1, x2, w, key, False)
