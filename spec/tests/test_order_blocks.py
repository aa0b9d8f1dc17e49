"""The order-blocked layout of the ``"scalar"`` fused plans (what tp_jax runs) equals the
reference, with paired rows, bucketed groups and unweighted or unreached outputs."""

from __future__ import annotations

import numpy as np
import pytest
import tp_spec as spec
from tp_spec.plan import Tuning, plan
from tp_spec.plan.order_blocks import buckets, run_order_blocks_numpy
from tp_spec.plan.outer import OuterPlan

S2 = "0e + 1o + 2e"
CASES = {
    "mimo": lambda: spec.cgtp(S2, S2, "0e + 1o + 1e + 2e + 2o + 3o + 4e", mode="uvw"),
    "no-weights": lambda: spec.cgtp(S2, "0e + 1o", mode="full"),
    "unweighted-unreached": lambda: spec.cgtp("0e + 1o + 2e", "1o + 2e", "1e + 2e + 1o + 0o",
                                              instructions=[(1, 0, 0, "uvw", True),
                                                            (1, 0, 0, "uvw", True, 3.0),
                                                            (2, 1, 1, "uvw", False),
                                                            (0, 0, 2, "uvw", True)]),
}


@pytest.mark.parametrize("split", [False, True], ids=["groups", "split"])
@pytest.mark.parametrize("slack", [0.0, 0.35, 10.0])
@pytest.mark.parametrize("case", sorted(CASES))
def test_order_blocks_match_reference(case, slack, split):
    d = CASES[case]()
    fused = plan(d, "fused", Tuning(jax_bucket_slack=slack))
    # an unweighted full product plans the outer regime, which carries the scalar plan JAX runs
    scalar = fused.scalar if isinstance(fused, OuterPlan) else fused
    ob = scalar.order_blocks_split if split else scalar.order_blocks
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((6, d.irreps_in1.dim))
    x2 = rng.standard_normal((6, d.irreps_in2.dim))
    w = rng.standard_normal(d.weight_numel) if d.weight_numel else None
    ref = spec.reference.apply(d, x1, x2, w)
    np.testing.assert_allclose(run_order_blocks_numpy(ob, x1, x2, w), ref, atol=1e-12)
    if case == "mimo":
        assert any(b.paired for b in ob.buckets)


def test_buckets_bound_the_padding():
    sizes = [(10, 10), (9, 10), (3, 2), (2, 2), (1, 1)]
    out = buckets(sizes, 0.35)
    assert sorted(i for b in out for i in b) == list(range(5))
    for b in out:
        own = sum(sizes[i][0] * sizes[i][1] for i in b)
        pad = len(b) * max(sizes[i][0] for i in b) * max(sizes[i][1] for i in b)
        assert pad <= 1.35 * own
    assert buckets(sizes, 0.0) == [[0], [1], [2], [3], [4]]


def _macs(ob) -> int:
    return sum(b.n_groups * b.n_cols * b.n_rows for b in ob.buckets)


def test_split_cuts_the_full_product_per_input_pair():
    # full CGTP of 0e+1o+2e with itself: every path writes its own output, so each order group
    # is block diagonal by input pair
    full = plan(spec.cgtp(S2, S2, mode="full"), "fused").scalar
    ob, cut = full.order_blocks, full.order_blocks_split
    assert sum(b.n_groups for b in cut.buckets) > sum(b.n_groups for b in ob.buckets)
    assert _macs(cut) < 0.5 * _macs(ob)
