"""Numerics at the edges (docs/numerics.md): products without paths, float32 overflow of the
fused scalar plan, and where a NaN in one input block may reach other outputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tp_jax
import tp_spec as spec
from tp_spec import plan as tp_plan
from tp_spec import reference
from tp_spec.plan.fused import FoldedPlan, ScalarPlan
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
    return [m for m, r in tp_jax.methods(d).items() if r is None]


def _no_path_cases():
    return [pytest.param(name, m, id=f"{name}-{m}")
            for name, make in NO_PATH.items() for m in _usable(make())]


def _inputs(d, batch, per_sample=False):
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((batch, d.irreps_in1.dim))
    x2 = rng.standard_normal((batch, d.irreps_in2.dim))
    shape = (batch, d.weight_numel) if per_sample else (d.weight_numel,)
    w = rng.standard_normal(shape) if d.weight_numel else None
    return x1, x2, w


@pytest.mark.parametrize("name, method", _no_path_cases())
def test_no_path_product_is_zero_with_zero_derivatives(name, method):
    """Exact zeros, whatever the inputs (NaN too); gradients and second derivatives zero."""
    d = NO_PATH[name]()
    assert d.paths == ()
    f = tp_jax.tensor_product(d, method)
    for per_sample in (False, True) if d.weight_numel else (False,):
        x1, x2, w = _inputs(d, 4, per_sample)
        out = f(x1, x2, w)
        assert out.shape == (4, d.irreps_out.dim) and not np.asarray(out).any()
        nan_out = f(np.full_like(x1, np.nan), np.full_like(x2, np.inf), w)
        assert np.array_equal(np.asarray(nan_out), np.zeros_like(nan_out))
        args = (0, 1, 2) if w is not None else (0, 1)

        def energy(a, b, c):
            return jnp.sum(f(a, b, c) * 1.5)

        grads = jax.grad(energy, argnums=args)(x1, x2, w)
        for g, t in zip(grads, (x1, x2, w), strict=False):
            assert g.shape == t.shape and not np.asarray(g).any()

        def force_loss(a, b, c):
            return jnp.sum(jax.grad(energy)(a, b, c) ** 2)

        for h in jax.grad(force_loss, argnums=args)(x1, x2, w):
            assert not np.asarray(h).any()


@pytest.mark.parametrize("name", ["cgtp_empty_instructions", "gtp_no_pair_weights",
                                  "mtp_no_pair"])
def test_no_path_convolution_is_zero(name):
    d = NO_PATH[name]()
    conv = tp_jax.tensor_product_conv(d)
    x_nodes, x_edges, w = _inputs(d, 5)
    x_nodes[2] = np.nan
    senders = np.array([0, 1, 2, 4, 4])
    receivers = np.array([1, 2, 0, 0, 3])
    out = conv(x_nodes, x_edges, w, senders, receivers)
    assert out.shape == (5, d.irreps_out.dim) and not np.asarray(out).any()
    g = jax.grad(lambda e: jnp.sum(conv(x_nodes, e, w, senders, receivers)))(x_edges)
    assert g.shape == x_edges.shape and not np.asarray(g).any()


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
    "folded": _small("2x0e + 2x1o", "0e + 1o", mode="uvu"),
}


def _abs_terms(d, x1, x2):
    """Per output entry, the sum of the absolute values of its unweighted terms (float64):
    below the float32 maximum no partial sum overflows."""
    out = np.zeros((x1.shape[0], d.irreps_out.dim))
    s1, s2, so = d.irreps_in1.slices(), d.irreps_in2.slices(), d.irreps_out.slices()
    for p in d.paths:
        c = np.abs(p.coefficient * spec.clebsch_gordan(*p.lll))
        a = np.abs(x1[:, s1[p.i_in1]]).reshape(len(x1), p.mul_in1, -1)
        b = np.abs(x2[:, s2[p.i_in2]]).reshape(len(x2), p.mul_in2, -1)
        t = np.einsum("ijk,bui,bvj->buk", c, a, b)  # uvu / uuu / uvw with one x2 channel
        out[:, so[p.i_out]] += t.reshape(len(x1), -1)
    return out


@pytest.mark.parametrize("name", list(SCALAR))
@pytest.mark.parametrize("per_sample", [False, True])
def test_fused_scalar_float32_near_1e19_matches_reference(name, per_sample):
    """|x| in [1e19, 2.5e19]: products x1 x2 up to 6e38 overflow float32; the terms (times
    coefficients below 0.1, weights below 1) do not. Where no sum of terms can overflow the
    product is finite and agrees with the reference."""
    d = SCALAR[name]
    assert isinstance(tp_plan.plan(d, "fused"), (ScalarPlan, FoldedPlan, OuterPlan))
    if per_sample and not d.weight_numel:
        pytest.skip("no weights")
    rng = np.random.default_rng(1)
    shape = (64, d.irreps_in1.dim), (64, d.irreps_in2.dim)
    x1, x2 = (rng.choice([-1, 1], s) * rng.uniform(1e19, 2.5e19, s) for s in shape)
    x1, x2 = x1.astype(np.float32), x2.astype(np.float32)
    w = None
    if d.weight_numel:
        wshape = (64, d.weight_numel) if per_sample else (d.weight_numel,)
        w = rng.uniform(0.5, 1.0, wshape).astype(np.float32)
    x1d, x2d = x1.astype(np.float64), x2.astype(np.float64)
    ref = reference.apply(d, x1d, x2d, None if w is None else w.astype(np.float64))
    safe = _abs_terms(d, x1d, x2d) < F32_MAX
    assert np.abs(x1d).max() * np.abs(x2d).max() > F32_MAX  # products do overflow
    assert safe.mean() > 0.3
    out = np.asarray(tp_jax.tensor_product(d, "fused")(x1, x2, w)).astype(np.float64)
    assert np.isfinite(out[safe]).all()
    np.testing.assert_allclose(out[safe], ref[safe], rtol=1e-5, atol=1e-6 * F32_MAX)


NAN_CASES = {
    "scalar_uvw": spec.cgtp("0e + 1o + 2e", "0e + 1o", "0e + 1o + 2e + 1e"),
    "scalar_uuu": spec.cgtp("0e + 1o + 2e", "0e + 1o + 1e", mode="uuu"),
    "folded_uvu": spec.cgtp("4x0e + 4x1o + 4x2e", "0e + 1o", mode="uvu"),
    "channelwise_uvu": spec.cgtp("32x0e + 32x1o + 32x2e", "0e + 1o", mode="uvu"),
    "grouped_uvw": spec.cgtp("4x0e + 4x1o + 4x2e", "2x0e + 2x1o", "4x0e + 4x1o + 4x2e + 4x1e"),
    "gtp": spec.gtp("0e + 1o + 2e", "0e + 1o"),
    "mtp": spec.mtp("0e + 1o + 2e", "0e + 1o"),
}


def spreads(d, method: str) -> bool:
    """The contract of docs/numerics.md: which methods may carry a NaN of one input block to
    outputs that do not read it (within its sample only)."""
    if d.kind in ("gtp", "mtp"):
        return True
    if method != "fused":
        return False
    plan = tp_plan.plan(d, "fused")
    # tp_jax runs small single-channel outer (full / uuu) products in the scalar layout
    return isinstance(plan, (ScalarPlan, FoldedPlan)) or getattr(plan, "scalar", None) is not None


@pytest.mark.parametrize("name", list(NAN_CASES))
def test_nan_in_one_block_reaches_the_outputs_the_contract_says(name):
    d = NAN_CASES[name]
    last = len(d.irreps_in1) - 1
    tainted = {p.i_out for p in d.as_cgtp().paths if p.i_in1 == last}
    slices = d.irreps_out.slices()
    clean = np.concatenate([np.arange(s.start, s.stop) for i, s in enumerate(slices)
                            if i not in tainted])
    dirty = np.concatenate([np.arange(slices[i].start, slices[i].stop) for i in tainted])
    x1, x2, w = _inputs(d, 4)
    x1[0, d.irreps_in1.slices()[last]] = np.nan  # sample 0 only
    for method in _usable(d):
        out = np.asarray(tp_jax.tensor_product(d, method)(x1, x2, w))
        assert np.isfinite(out[1:]).all(), method  # never across samples
        assert np.isnan(out[0, dirty]).all(), method  # outputs that read the block
        if not spreads(d, method):
            assert np.isfinite(out[0, clean]).all(), method
