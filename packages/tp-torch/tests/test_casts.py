"""Module casts and autocast: the constant tables stay exact whatever ``.float()``,
``.half()``, ``.to(dtype)`` or ``load_state_dict`` do to a module, and every module computes in
its inputs' own precision inside ``torch.autocast``."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import tp_spec as spec
import tp_torch
from conftest import CASES

#: one per executor family that holds float constants
MODULES = [("mimo", "fused"), ("uvw", "dense"), ("uvw", "sparse"), ("mimo_split", "fused"),
           ("uvu_sh", "fused"), ("gtp_broadcast_w", "grid"), ("gtp_all_pairs", "fourier"),
           ("mtp_all", "sparse"), ("mtp_broadcast_w", "dense")]


def _inputs(d, b=4, dtype=torch.float64, seed=0):
    g = np.random.default_rng(seed)
    x = (g.standard_normal((b, d.irreps_in1.dim)), g.standard_normal((b, d.irreps_in2.dim)),
         g.standard_normal((b, d.weight_numel)) if d.weight_numel else None)
    return x, tuple(None if a is None else torch.tensor(a, dtype=dtype) for a in x)


def _ref(d, x):
    return spec.reference.apply(d, *x)


@pytest.mark.parametrize(("name", "method"), MODULES)
@pytest.mark.parametrize("cast", ["float", "half", "bfloat16", "to_float32"])
def test_casts_leave_the_tables_exact(name, method, cast):
    d = CASES[name]
    tp = tp_torch.TensorProduct(d, method)
    x, t = _inputs(d)
    before = tp(*t)
    if cast == "to_float32":
        tp.to(torch.float32)
    else:
        getattr(tp, cast)()
    tp.double()  # a round trip through the lower precision
    after = tp(*t)
    assert torch.equal(before, after)
    np.testing.assert_allclose(after.numpy(), _ref(d, x), rtol=1e-12, atol=1e-12)
    for name_, buf in tp.named_buffers():
        if name_.endswith("__f64"):
            assert buf.dtype == torch.float64, name_
        if name_.endswith("__f32"):
            assert buf.dtype == torch.float32, name_


def test_state_dict_round_trip_after_a_cast():
    d = CASES["uvu_sh"]
    tp = tp_torch.TensorProduct(d, "fused").half()
    fresh = tp_torch.TensorProduct(d, "fused")
    fresh.load_state_dict(tp.state_dict(), strict=True)
    x, t = _inputs(d)
    np.testing.assert_allclose(tp.double()(*t).numpy(), _ref(d, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [
    lambda: tp_torch.SymmetricContraction("4x0e + 4x1o", "4x0e + 4x1o", 3, 2),
    lambda: tp_torch.GauntSymmetricContraction("4x0e + 4x1o", "4x0e + 4x1o", 3, 2),
])
def test_symmetric_contraction_tables_survive_half(make):
    ref = make().double()
    m = copy.deepcopy(ref)
    m.half().double()
    m.load_state_dict(ref.state_dict())  # the weights come back exact; the tables never left
    x = torch.randn(5, ref.irreps_in.dim, dtype=torch.float64)
    z = torch.tensor([0, 1, 1, 0, 1])
    assert torch.equal(m(x, z), ref(x, z))


@pytest.mark.parametrize(("name", "method"), MODULES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_autocast_computes_in_the_inputs_precision(name, method, dtype):
    d = CASES[name]
    tp = tp_torch.TensorProduct(d, method)
    x, t = _inputs(d, dtype=dtype)
    eager = tp(*t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tp(*t)
    assert out.dtype == dtype
    assert torch.equal(out, eager)


def test_autocast_bfloat16_inputs_are_computed_in_float32_and_rounded_once():
    d = CASES["uvu_sh"]
    tp = tp_torch.TensorProduct(d, "fused")
    x, t = _inputs(d, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tp(*t)
    want = tp(*(a.float() for a in t)).to(torch.bfloat16)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, want)


def test_autocast_layers_and_conv():
    d = CASES["uvu_sh"]
    conv = tp_torch.TensorProductConv(d)
    lin = tp_torch.Linear("3x0e + 3x1o", "2x0e + 2x1o")
    sc = tp_torch.SymmetricContraction("4x0e + 4x1o", "4x0e + 4x1o", 2, 2)
    g = torch.Generator().manual_seed(0)
    xn = torch.randn(5, d.irreps_in1.dim, generator=g)
    xe = torch.randn(9, d.irreps_in2.dim, generator=g)
    w = torch.randn(9, d.weight_numel, generator=g)
    s, r = torch.randint(0, 5, (9,), generator=g), torch.randint(0, 5, (9,), generator=g)
    xl = torch.randn(6, 12, generator=g)
    xs, z = torch.randn(5, 16, generator=g), torch.tensor([0, 1, 0, 1, 1])
    eager = (conv(xn, xe, w, s, r), lin(xl), sc(xs, z))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = (conv(xn, xe, w, s, r), lin(xl), sc(xs, z))
    for a, b in zip(auto, eager, strict=True):
        assert a.dtype == torch.float32
        assert torch.equal(a, b)
