"""The ``fused`` CGTP runners, one per regime plan of ``tp_spec.plan.fused``: the regime is the
plan's, and each runner equals tp_spec.reference (values and gradients) under the default
tuning and a tuning that forces the small-size paths (chunks, split, padding)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tp_jax
import tp_spec as spec
from conftest import random_inputs
from tp_jax import _fused
from tp_spec import plan as tp_plan
from tp_spec.plan.fused import ChannelwisePlan, FoldedPlan, GroupedPlan, ScalarPlan

#: Forces the small-size code paths: 7-row chunks of the scalar product (the last one padded),
#: the parity split, contraction padding in the channelwise plan.
SMALL = tp_plan.Tuning(split_min_entries=1, bmm_min_macs=8, pad_max=4, pad_from_macs=1,
                       jax_scalar_chunk_rows=7, jax_bucket_slack=0.0)

CASES = {
    "scalar": (spec.cgtp("0e+1o+2e", "0e+1o+2e", "0e+1o+1e+2e+2o+3o+4e", mode="uvw"), ScalarPlan),
    "scalar_unweighted": (spec.cgtp("0e+1o+2e", "1o+2e", "1e+2e+1o+0o", instructions=[
        (1, 0, 0, "uvw", True), (1, 0, 0, "uvw", True, 3.0), (2, 1, 1, "uvw", False),
        (0, 0, 2, "uvw", True)]), ScalarPlan),
    "scalar_no_weights": (spec.cgtp("0e+1o", "0e+1o", "0e+1o+1e", instructions=[
        (0, 0, 0, "uvw", False), (1, 1, 2, "uvw", False), (1, 0, 1, "uvw", False)]), ScalarPlan),
    "channelwise": (spec.cgtp("9x0e+9x1o+9x2e", "0e+1o+2e", mode="uvu"), ChannelwisePlan),
    "channelwise_shared_out": (spec.cgtp("12x0e+12x1o", "0e+1o", "12x0e+12x1o+12x2e", instructions=[
        (0, 0, 0, "uvu", True), (1, 1, 0, "uvu", False), (0, 1, 1, "uvu", False),
        (1, 0, 1, "uvu", True)]), ChannelwisePlan),
    "folded": (spec.cgtp("3x0e+3x1o+3x2e", "0e+1o+2e", mode="uvu"), FoldedPlan),
    "grouped_uvw": (spec.cgtp("2x0e+3x1o", "2x0e+1x1o", "3x0e+2x1o+1x1e", mode="uvw"),
                    GroupedPlan),
    "grouped_uuw": (spec.cgtp("3x0e+3x1o", "3x0e+3x1o", "2x0e+2x1o+1x1e", mode="uuw"),
                    GroupedPlan),
}


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / max(np.max(np.abs(b)), 1e-30))


def _run(p):
    return jax.jit(lambda a, b, c: _fused.RUNNERS[type(p)](p, a, b, c))


@pytest.mark.parametrize("tuning", [None, SMALL], ids=["default", "small"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared_w", "per_sample_w"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_runner_matches_reference(case, shared, tuning):
    d, kind = CASES[case]
    p = tp_plan.plan(d, "fused", tuning)
    assert type(p) is kind
    x1, x2, w = random_inputs(d, (23,), shared=shared, seed=3)
    if not d.weight_numel:
        w = None
    ref = spec.reference.apply(d, x1, x2, w)
    assert _rel(_run(p)(x1, x2, w), ref) < 1e-10


@pytest.mark.parametrize("tuning", [None, SMALL], ids=["default", "small"])
@pytest.mark.parametrize("case", ["scalar", "channelwise", "folded", "grouped_uvw"])
def test_runner_gradients(case, tuning):
    """Reverse mode of every runner (through the chunked ``lax.map``, the row gathers and the
    channel fold): the product is bilinear in ``(x1, x2)`` and linear in ``w``, so
    ``<grad_x1 <c, f>, v> = <c, f(v, x2, w)>`` and the same for ``x2`` and ``w``."""
    d, _ = CASES[case]
    p = tp_plan.plan(d, "fused", tuning)
    f = _run(p)
    x1, x2, w = random_inputs(d, (19,), shared=True, seed=5)
    v1, v2, vw = random_inputs(d, (19,), shared=True, seed=6)
    c = np.random.default_rng(7).standard_normal((19, d.irreps_out.dim))
    g1, g2, gw = jax.grad(lambda a, b, ww: jnp.sum(f(a, b, ww) * c), argnums=(0, 1, 2))(x1, x2, w)
    ref = spec.reference.apply
    np.testing.assert_allclose(np.sum(g1 * v1), np.sum(c * ref(d, v1, x2, w)), rtol=1e-10)
    np.testing.assert_allclose(np.sum(g2 * v2), np.sum(c * ref(d, x1, v2, w)), rtol=1e-10)
    np.testing.assert_allclose(np.sum(gw * vw), np.sum(c * ref(d, x1, x2, vw)), rtol=1e-10)


def test_regime_is_the_plans():
    """``tensor_product(d, "fused")`` runs the plan ``fused_regime`` picks (tuning passed
    through): a 3-channel descriptor is folded by default, channelwise when folding is off."""
    d = CASES["folded"][0]
    assert type(tp_plan.plan(d, "fused")) is FoldedPlan
    off = tp_plan.Tuning(fold_max_channels=1)
    assert type(tp_plan.plan(d, "fused", off)) is ChannelwisePlan
    x1, x2, w = random_inputs(d, (5,), shared=True, seed=8)
    ref = spec.reference.apply(d, x1, x2, w)
    assert _rel(_run(tp_plan.plan(d, "fused", off))(x1, x2, w), ref) < 1e-10
    assert _rel(tp_jax.tensor_product(d, "fused")(x1, x2, w), ref) < 1e-10


def test_scalar_order_blocks_pair_rows():
    """The scalar plan's order-blocked layout pairs the ``(+-a, +-b)`` products (fewer rows than
    the nonzero products of the plain outer product) and reaches every output feature."""
    d = CASES["scalar"][0]
    ob = tp_plan.plan(d, "fused").order_blocks
    assert any(b.paired for b in ob.buckets)
    assert np.all(ob.out_index < ob.out_size)
    assert sorted(set(ob.out_index.tolist())) == sorted(ob.out_index.tolist())
