"""The ``grid`` GTP over a batch larger than its chunk: checkpointed ``lax.map`` chunks (the
last one padded) against tp_spec.reference, in value, gradient and forward-over-reverse."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tp_spec as spec
from conftest import random_inputs
from tp_jax import _gtp
from tp_spec import plan as tp_plan

CHUNKED = tp_plan.Tuning(function_chunk_entries=1, function_chunk_min_rows=7)


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / max(np.max(np.abs(b)), 1e-30))


@pytest.mark.parametrize("shared", [False, True], ids=["per_sample_w", "shared_w"])
def test_grid_chunked_vs_reference(shared):
    # both parity classes on each side, two channels, x2 broadcast over them
    d = spec.gtp("2x0e+2x1o+2x1e+2x2e", "0e+1o+1e+2e", "2x0e+2x1o+2x1e+2x2o+2x3e",
                 per_degree_weights=True)
    p = tp_plan.plan(d, "grid", CHUNKED)
    assert p.chunk_rows(23) == 6  # 23 rows as 6 + 6 + 6 + 5 (padded to 6)
    x1, x2, w = random_inputs(d, (23,), shared=shared, seed=21)
    f = jax.jit(lambda a, b, c: _gtp.run_grid(p, a, b, c))
    assert _rel(f(x1, x2, w), spec.reference.apply(d, x1, x2, w)) < 1e-10

    # bilinear: <grad_x1 <c, f>, v> = <c, f(v, x2)>, and the x1-derivative of grad_x2 <c, f>
    # along v is grad_x2 <c, f(v, x2)> = sum_s c_s d/dx2 f(v, x2)_s (forward over reverse)
    rng = np.random.default_rng(22)
    c = rng.standard_normal((23, d.irreps_out.dim))
    v = rng.standard_normal(x1.shape)
    g1 = jax.grad(lambda a: jnp.sum(c * f(a, x2, w)))(jnp.asarray(x1))
    want = np.sum(c * spec.reference.apply(d, v, x2, w))
    assert abs(float(np.sum(np.asarray(g1) * v)) - want) < 1e-10 * max(abs(want), 1.0)
    u = rng.standard_normal(x2.shape)
    _, hv = jax.jvp(lambda a: jax.grad(lambda b: jnp.sum(c * f(a, b, w)))(jnp.asarray(x2)),
                    (jnp.asarray(x1),), (jnp.asarray(v),))
    want = np.sum(c * spec.reference.apply(d, v, u, w))
    assert abs(float(np.sum(np.asarray(hv) * u)) - want) < 1e-10 * max(abs(want), 1.0)


def test_grid_one_piece_below_the_chunk():
    d = spec.gtp("0e+1o+2e", "0e+1o+2e", "0e+1o+2e+3o+4e")
    assert tp_plan.plan(d, "grid").chunk_rows(5) is None
