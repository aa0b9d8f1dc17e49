"""Numerics at the edges (docs/numerics.md): products without paths, float32 overflow of the
fused scalar plan, and where a NaN in one input block may reach other outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tp_spec as spec
import tp_torch
from tp_spec import plan as tp_plan
from tp_spec import reference
from tp_spec.plan.fused import ScalarPlan
from tp_spec.plan.outer import OuterPlan

NO_PATH = {
    "cgtp_empty_instructions": lambda: spec.cgtp("0e + 1o", "0e", "1o + 2e", instructions=[]),
    "cgtp_channels_empty_instructions": lambda: spec.cgtp("2x0e + 2x1o", "0e", "2x1o",
                                                          instructions=[]),
    "cgtp_empty_out": lambda: spec.cgtp("0e", "0e", ""),
    "gtp_no_pair": lambda: spec.gtp("0e", "0e", "1o"),
    "gtp_no_pair_weights": lambda: spec.gtp("2x0e", "2x0e", "2x1o", per_degree_weights=True),
    "gtp_no_path_active_classes": lambda: spec.gtp("2x1o", "0e", "2x0e",
                                                   per_degree_weights=True),
    "mtp_no_pair": lambda: spec.mtp("0e", "0e", "1o"),
    "mtp_no_pair_weights": lambda: spec.mtp("2x0e", "2x0e", "2x1o", per_degree_weights=True),
}


def _usable(d):
    return [m for m, r in tp_torch.methods(d).items() if r is None]


def _no_path_cases():
    return [pytest.param(name, m, id=f"{name}-{m}")
            for name, make in NO_PATH.items() for m in _usable(make())]


def _inputs(d, batch, per_sample=False, fill=None):
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(batch, d.irreps_in1.dim, generator=g, dtype=torch.float64)
    x2 = torch.randn(batch, d.irreps_in2.dim, generator=g, dtype=torch.float64)
    if fill is not None:
        x1.fill_(fill)
    shape = (batch, d.weight_numel) if per_sample else (d.weight_numel,)
    w = torch.randn(shape, generator=g, dtype=torch.float64) if d.weight_numel else None
    return [t.requires_grad_() if t is not None else None for t in (x1, x2, w)]


@pytest.mark.parametrize("name, method", _no_path_cases())
def test_no_path_product_is_zero_on_the_graph(name, method):
    d = NO_PATH[name]()
    assert d.paths == ()
    tp = tp_torch.TensorProduct(d, method)
    for per_sample in (False, True) if d.weight_numel else (False,):
        x1, x2, w = _inputs(d, 4, per_sample)
        ins = [t for t in (x1, x2, w) if t is not None]
        out = tp(x1, x2, w)
        assert out.shape == (4, d.irreps_out.dim) and not out.any()
        assert out.requires_grad
        grads = torch.autograd.grad((out * torch.randn_like(out)).sum(), ins, create_graph=True)
        for g, t in zip(grads, ins, strict=True):
            assert g.shape == t.shape and not g.any()
        second = sum((g * g).sum() for g in grads)
        assert second.requires_grad  # double backward reaches the inputs
        for h in torch.autograd.grad(second, ins, allow_unused=True):
            assert h is None or not h.any()


@pytest.mark.parametrize("name, method", _no_path_cases()[:8])
def test_no_path_product_reads_no_value(name, method):
    d = NO_PATH[name]()
    x1, x2, w = _inputs(d, 3, fill=float("nan"))
    out = tp_torch.TensorProduct(d, method)(x1, x2, w)
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("name", ["cgtp_empty_instructions", "gtp_no_pair_weights",
                                  "mtp_no_pair"])
def test_no_path_convolution_is_zero_on_the_graph(name):
    d = NO_PATH[name]()
    conv = tp_torch.TensorProductConv(d)
    x_nodes, x_edges, w = _inputs(d, 5)
    senders = torch.tensor([0, 1, 2, 4, 4])
    receivers = torch.tensor([1, 2, 0, 0, 3])
    ins = [t for t in (x_nodes, x_edges, w) if t is not None]
    out = conv(x_nodes, x_edges, w, senders, receivers)
    assert out.shape == (5, d.irreps_out.dim) and not out.any()
    grads = torch.autograd.grad(out.sum(), ins, create_graph=True)
    assert all(g.shape == t.shape and not g.any() for g, t in zip(grads, ins, strict=True))
    second = sum((g * g).sum() for g in grads)
    for h in torch.autograd.grad(second, ins, allow_unused=True):
        assert h is None or not h.any()


F32_MAX = float(np.finfo(np.float32).max)
def _small(*args, **kwargs):
    """The CGTP with ``out_var = 0.01``: every coefficient 10x smaller, so the terms stay 10x
    below the products ``x1 x2``."""
    n = len(spec.cgtp(*args, **kwargs).irreps_out)
    return spec.cgtp(*args, **kwargs, out_var=[0.01] * n)


SCALAR = {
    "uvw": _small("0e + 1o + 2e", "0e + 1o", "0e + 1o + 1e + 2e"),
    "uvu": _small("0e + 1o + 2e", "0e + 1o + 2e", mode="uvu"),
    "uuu": _small("0e + 1o + 2e", "0e + 1o + 2e", mode="uuu"),
    "split": _small("0e+1o+2e+3o+1e+2o", "0e+1o+2e+3o+1e+2o", "0e+1o+2e+3o+1e+2o"),
}


def _abs_terms(d, x1, x2):
    """Per output entry, the sum of the absolute values of its unweighted terms (float64;
    weights in [0.5, 1] only shrink them): below the float32 maximum no partial sum of the
    terms or of one path's terms overflows."""
    out = np.zeros((x1.shape[0], d.irreps_out.dim))
    s1, s2, so = d.irreps_in1.slices(), d.irreps_in2.slices(), d.irreps_out.slices()
    for p in d.paths:  # every multiplicity is 1: one weight per path
        c = np.abs(p.coefficient * spec.clebsch_gordan(*p.lll))
        t = np.einsum("ijk,bi,bj->bk", c, np.abs(x1[:, s1[p.i_in1]]), np.abs(x2[:, s2[p.i_in2]]))
        out[:, so[p.i_out]] += t
    return out


@pytest.mark.parametrize("name", list(SCALAR))
@pytest.mark.parametrize("per_sample", [False, True])
def test_fused_scalar_float32_near_1e19_matches_reference(name, per_sample):
    """|x| in [1e19, 2.5e19]: products x1 x2 up to 6e38 overflow float32; the terms (times
    coefficients below 0.1) do not. Where no sum of terms can overflow the product is finite
    and agrees with the reference."""
    d = SCALAR[name]
    assert isinstance(tp_plan.plan(d, "fused"), (ScalarPlan, OuterPlan))  # uuu: outer regime
    if per_sample and not d.weight_numel:
        pytest.skip("no weights")
    rng = np.random.default_rng(1)
    shape = (64, d.irreps_in1.dim), (64, d.irreps_in2.dim)
    x1, x2 = (rng.choice([-1, 1], s) * rng.uniform(1e19, 2.5e19, s) for s in shape)
    x1, x2 = x1.astype(np.float32).astype(np.float64), x2.astype(np.float32).astype(np.float64)
    w = None
    if d.weight_numel:
        wshape = (64, d.weight_numel) if per_sample else (d.weight_numel,)
        w = rng.uniform(0.5, 1.0, wshape).astype(np.float32).astype(np.float64)
    ref = reference.apply(d, x1, x2, w)
    safe = _abs_terms(d, x1, x2) < F32_MAX
    assert np.abs(x1).max() * np.abs(x2).max() > F32_MAX  # products do overflow
    assert safe.mean() > 0.3
    f32 = [None if t is None else torch.from_numpy(t.astype(np.float32)) for t in (x1, x2, w)]
    out = tp_torch.TensorProduct(d, "fused")(*f32).numpy().astype(np.float64)
    assert np.isfinite(out[safe]).all()
    np.testing.assert_allclose(out[safe], ref[safe], rtol=1e-5, atol=1e-6 * F32_MAX)


NAN_CASES = {
    "scalar_uvw": spec.cgtp("0e + 1o + 2e", "0e + 1o", "0e + 1o + 2e + 1e"),
    "scalar_uuu": spec.cgtp("0e + 1o + 2e", "0e + 1o + 1e", mode="uuu"),
    "channels_uvw": spec.cgtp("4x0e + 4x1o + 4x2e", "2x0e + 2x1o", "4x0e + 4x1o + 4x2e + 4x1e"),
    "gtp": spec.gtp("0e + 1o + 2e", "0e + 1o"),
    "mtp": spec.mtp("0e + 1o + 2e", "0e + 1o"),
}


def spreads(d, method: str) -> bool:
    """The contract of docs/numerics.md: which methods may carry a NaN of one input block to
    outputs that do not read it (within its sample only)."""
    if d.kind in ("gtp", "mtp"):
        return True
    return method == "fused" and isinstance(tp_plan.plan(d, "fused"), ScalarPlan)


@pytest.mark.parametrize("name", list(NAN_CASES))
def test_nan_in_one_block_reaches_the_outputs_the_contract_says(name):
    d = NAN_CASES[name]
    last = len(d.irreps_in1) - 1
    tainted = {p.i_out for p in d.as_cgtp().paths if p.i_in1 == last}
    slices = d.irreps_out.slices()
    clean = np.concatenate([np.arange(s.start, s.stop) for i, s in enumerate(slices)
                            if i not in tainted])
    dirty = np.concatenate([np.arange(slices[i].start, slices[i].stop) for i in tainted])
    x1, x2, w = (t.detach() if t is not None else None for t in _inputs(d, 4))
    x1[0, d.irreps_in1.slices()[last]] = float("nan")  # sample 0 only
    for method in _usable(d):
        out = tp_torch.TensorProduct(d, method)(x1, x2, w).numpy()
        assert np.isfinite(out[1:]).all(), method  # never across samples
        assert np.isnan(out[0, dirty]).all(), method  # outputs that read the block
        if not spreads(d, method):
            assert np.isfinite(out[0, clean]).all(), method


def test_nan_contract_names_the_spreading_methods_in_the_docs():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "docs" / "numerics.md").read_text()
    for name in ("grid", "fourier", "MTP", "scalar"):
        assert name in text
