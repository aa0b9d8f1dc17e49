"""Module behaviour: errors before any kernel, pickling, copies, convenience modules, backend."""

from __future__ import annotations

import copy
import io
import subprocess
import sys

import numpy as np
import pytest
import torch
import tp_spec as spec
import tp_torch
from conftest import CASES, random_inputs, tensors
from tp_spec import DeviceError, DTypeError, InstructionError, ShapeError, reference


@pytest.fixture
def tp():
    return tp_torch.TensorProduct(CASES["uvw"], "fused")


def _inputs(tp, rng, batch=(3,)):
    return tensors(*random_inputs(tp.descriptor, batch, rng))


def test_dtype_errors(tp, rng):
    x1, x2, w = _inputs(tp, rng)
    with pytest.raises(DTypeError, match="share one dtype"):
        tp(x1.float(), x2, w)
    with pytest.raises(DTypeError, match="share one dtype"):
        tp(x1, x2, w.float())
    with pytest.raises(DTypeError, match="float32 or"):
        tp(x1.long(), x2.long(), w.long())
    with pytest.raises(DTypeError, match="share one dtype"):
        tp(x1.half(), x2.half(), w)
    with pytest.raises(DTypeError, match="torch.Tensor"):
        tp(x1.numpy(), x2, w)


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_computes_in_float32_rounded_once(tp, rng, half):
    x1, x2, w = (t.to(half) for t in _inputs(tp, rng))
    out = tp(x1, x2, w)
    assert out.dtype == half
    want = tp(x1.float(), x2.float(), w.float()).to(half)  # float32 math, one rounding
    assert torch.equal(out, want)
    exact = reference.apply(tp.descriptor, *(t.double().numpy() for t in (x1, x2, w)))
    np.testing.assert_allclose(out.double().numpy(), exact, rtol=0,
                               atol=4 * torch.finfo(half).eps * np.abs(exact).max())


def test_device_errors(tp, rng):
    x1, x2, w = _inputs(tp, rng)
    with pytest.raises(DeviceError, match="device mix"):
        tp(x1, x2.to("meta"), w)
    with pytest.raises(DeviceError, match="device mix"):
        tp(x1, x2, w.to("meta"))
    with pytest.raises(DeviceError, match="module"):
        tp(x1.to("meta"), x2.to("meta"), w.to("meta"))


def test_shape_errors(tp, rng):
    x1, x2, w = _inputs(tp, rng)
    with pytest.raises(ShapeError, match="last axis"):
        tp(x1[:, :-1], x2, w)
    with pytest.raises(ShapeError, match="batch shapes differ"):
        tp(x1, x2[:2], w)
    with pytest.raises(ShapeError, match="weights"):
        tp(x1, x2, w[:-1])
    with pytest.raises(ShapeError, match="needs weights"):
        tp(x1, x2)
    with pytest.raises(ShapeError, match="scalar"):
        tp(x1[0, 0], x2, w)
    fixed = tp_torch.TensorProduct(CASES["gtp_all_pairs"])
    a, b, _ = _inputs(fixed, rng)
    with pytest.raises(ShapeError, match="no weights"):
        fixed(a, b, torch.zeros(3, dtype=torch.float64))


def test_method_errors():
    with pytest.raises(InstructionError, match="valid methods"):
        tp_torch.TensorProduct(CASES["uvw"], "grid")
    with pytest.raises(InstructionError, match="valid methods"):
        tp_torch.TensorProduct(CASES["gtp_all_pairs"], "fused")
    with pytest.raises(InstructionError, match="needs CUDA and openequivariance"):
        tp_torch.TensorProduct(CASES["uvw"], "oeq")
    with pytest.raises(InstructionError, match="descriptor"):
        tp_torch.TensorProduct("0e x 0e", "dense")
    m = tp_torch.methods(CASES["uvw"])
    assert set(m) == {"fused", "dense", "sparse", "cueq", "oeq"}
    assert m["fused"] is None and m["dense"] is None and m["sparse"] is None
    assert "needs CUDA and openequivariance" in m["oeq"]
    assert set(tp_torch.methods(CASES["gtp_all_pairs"])) == {"grid", "fourier"}
    assert set(tp_torch.methods(CASES["mtp_all"])) == {"dense", "sparse"}


def test_import_is_light():
    code = ("import sys, tp_torch; "
            "bad = [m for m in sys.modules "
            "if m.startswith(('cuequivariance', 'openequivariance'))]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", ["uvw", "mimo", "gtp_pairs_w", "mtp_broadcast_w"])
def test_pickle_deepcopy_state_dict(name, rng):
    d = CASES[name]
    tp = tp_torch.TensorProduct(d)
    x1, x2, w = tensors(*random_inputs(d, (2,), rng))
    ref = tp(x1, x2, w)
    buf = io.BytesIO()
    torch.save(tp, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert loaded.method == tp.method and loaded.descriptor == d
    torch.testing.assert_close(loaded(x1, x2, w), ref)
    torch.testing.assert_close(copy.deepcopy(tp)(x1, x2, w), ref)
    fresh = tp_torch.TensorProduct(d, tp.method)
    fresh.load_state_dict(tp.state_dict())
    torch.testing.assert_close(fresh(x1, x2, w), ref)


def test_module_dtype_cast_and_move(rng):
    tp = tp_torch.TensorProduct(CASES["gtp_broadcast_w"]).double()
    x1, x2, w = random_inputs(tp.descriptor, (2,), rng)
    ref = reference.apply(tp.descriptor, x1, x2, w)
    for dt in (torch.float32, torch.float64):
        out = tp(*tensors(x1, x2, w, dtype=dt))
        np.testing.assert_allclose(out.double().numpy(), ref, atol=1e-4)
    tp.to("cpu")


def test_convenience_modules(rng):
    torch.manual_seed(0)
    fc = tp_torch.FullyConnectedTensorProduct("8x0e+8x1o+4x2e", "0e+1o+2e", "8x0e+8x1o+8x2e")
    assert fc.weight.shape == (fc.weight_numel,)
    x1 = torch.randn(4000, fc.irreps_in1.dim)
    x2 = torch.randn(4000, fc.irreps_in2.dim)
    var = fc(x1, x2).var().item()
    assert 0.5 < var < 2.0, var  # e3nn-style normalization: output variance ~ 1
    torch.testing.assert_close(
        fc(x1[:3], x2[:3]), fc.tp(x1[:3], x2[:3], fc.weight))
    with pytest.raises(ShapeError):
        fc(x1[:3], x2[:3], fc.weight)

    cw = tp_torch.ChannelwiseTensorProduct("4x0e+4x1o", "0e+1o+2e", "4x0e+4x1o")
    assert cw.descriptor.irreps_out.dim > 0 and cw.weight.shape == (cw.weight_numel,)
    ext = tp_torch.ChannelwiseTensorProduct("4x0e+4x1o", "0e+1o", internal_weights=False)
    a, b = torch.randn(5, ext.irreps_in1.dim), torch.randn(5, ext.irreps_in2.dim)
    assert ext(a, b, torch.randn(5, ext.weight_numel)).shape == (5, ext.irreps_out.dim)

    for cls, fam in ((tp_torch.GauntTensorProduct, spec.gtp), (tp_torch.MatrixTensorProduct,
                                                               spec.mtp)):
        m = cls("2x0e+2x1o+2x2e", "0e+1o").double()
        assert torch.all(m.weight == 1)
        fixed = fam("2x0e+2x1o+2x2e", "0e+1o")
        x1, x2, _ = random_inputs(fixed, (3,), rng)
        out = m(*tensors(x1, x2)).detach().numpy()
        np.testing.assert_allclose(out, reference.apply(fixed, x1, x2), atol=1e-12)


def test_backend_protocol(rng):
    from tp_spec.backend import Backend, load_backends

    backends = load_backends()
    assert "tp_torch" in backends
    b = backends["tp_torch"]
    assert isinstance(b, Backend) and b.is_oracle is False and "cpu" in b.devices()
    d = CASES["uvu_sh"]
    x1, x2, w = random_inputs(d, (3,), rng, per_sample=True)
    ct = rng.normal(size=(3, d.irreps_out.dim))
    np.testing.assert_allclose(b.apply(d, "fused", x1, x2, w), reference.apply(d, x1, x2, w),
                               atol=1e-12)
    out32 = b.apply(d, "dense", *(a.astype(np.float32) for a in (x1, x2, w)), dtype="float32")
    assert out32.dtype == np.float32
    g1, g2, gw = b.vjp(d, "sparse", x1, x2, w, ct)
    h = 1e-4
    e = rng.normal(size=x2.shape)
    fd = (np.sum(ct * reference.apply(d, x1, x2 + h * e, w))
          - np.sum(ct * reference.apply(d, x1, x2 - h * e, w))) / (2 * h)
    np.testing.assert_allclose(np.sum(g2 * e), fd, rtol=1e-8)
    assert g1.shape == x1.shape and gw.shape == w.shape
    f1, f2, fw = b.force_loss_grad(d, "fused", x1, x2, w, ct)
    r1, r2, rw = b.force_loss_grad(d, "dense", x1, x2, w, ct)
    np.testing.assert_allclose(f2, r2, atol=1e-10)
    np.testing.assert_allclose(fw, rw, atol=1e-10)
    np.testing.assert_allclose(f1, 0.0, atol=1e-12)  # dE/dx1 does not depend on x1
    with pytest.raises(DTypeError):
        b.apply(d, "fused", x1.astype(int), x2, w)
    with pytest.raises(DTypeError):  # no silent casts: arrays must have the requested dtype
        b.apply(d, "fused", x1.astype(np.float32), x2, w, dtype="float32")
    v = [rng.normal(size=a.shape) for a in (x1, x2, w)]
    h1, h2, hw = b.hvp(d, "fused", x1, x2, w, ct, v)
    g_plus = b.vjp(d, "dense", x1 + h * v[0], x2 + h * v[1], w + h * v[2], ct)
    g_minus = b.vjp(d, "dense", x1 - h * v[0], x2 - h * v[1], w - h * v[2], ct)
    for an, gp, gm in zip((h1, h2, hw), g_plus, g_minus, strict=True):
        np.testing.assert_allclose(an, (gp - gm) / (2 * h), rtol=1e-6, atol=1e-8)
    m = b.methods(spec.gtp("0e", "0e"))
    assert m == {"grid": None, "fourier": None}


def test_tuning_reaches_the_plan(rng):
    from tp_spec.plan import Tuning

    d = CASES["mimo"]
    tp = tp_torch.TensorProduct(d, "fused", tuning=Tuning(split_min_entries=1))
    unsplit = tp_torch.TensorProduct(d, "fused", tuning=Tuning(split_min_entries=10 ** 9))
    assert tp.kernel.split and not unsplit.kernel.split
    x1, x2, w = random_inputs(d, (5,), rng)
    np.testing.assert_allclose(tp(*tensors(x1, x2, w)).numpy(), reference.apply(d, x1, x2, w),
                               rtol=0, atol=1e-12)
