"""Every method equals tp_spec.reference: float64 to 1e-10 relative, float32 to 2e-5."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tp_jax
import tp_spec as spec
from conftest import all_cases, random_inputs
from tp_spec import plan as tp_plan

CASES = all_cases()
IDS = [c[0] for c in CASES]


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / max(np.max(np.abs(b)), 1e-30))


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("shared", [False, True], ids=["per_sample_w", "shared_w"])
def test_matches_reference_float64(case, shared):
    _, d, method = case
    if shared and not d.weight_numel:
        pytest.skip("no weights")
    x1, x2, w = random_inputs(d, (4,), shared=shared)
    ref = spec.reference.apply(d, x1, x2, w)
    out = tp_jax.tensor_product(d, method)(jnp.asarray(x1), jnp.asarray(x2),
                                           None if w is None else jnp.asarray(w))
    assert out.dtype == jnp.float64
    assert out.shape == ref.shape
    assert _rel(out, ref) < 1e-10


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_reference_float32(case):
    _, d, method = case
    x1, x2, w = random_inputs(d, (5,), shared=True, seed=3)
    ref = spec.reference.apply(d, x1.astype(np.float32), x2.astype(np.float32),
                               None if w is None else w.astype(np.float32))
    f = tp_jax.tensor_product(d, method)
    out = f(jnp.asarray(x1, jnp.float32), jnp.asarray(x2, jnp.float32),
            None if w is None else jnp.asarray(w, jnp.float32))
    assert out.dtype == jnp.float32
    assert _rel(out, ref) < 2e-5


def test_bfloat16_accuracy():
    """bfloat16 in/out, float32 accumulation: error ~ one bf16 rounding of the output."""
    d = spec.cgtp("4x0e+4x1o", "0e+1o", "4x0e+4x1o", mode="uvw")
    x1, x2, w = random_inputs(d, (32,), shared=True)
    b = [jnp.asarray(a, jnp.bfloat16) for a in (x1, x2, w)]
    ref = spec.reference.apply(d, *[np.asarray(a, np.float64) for a in b])
    for method in ("dense", "fused", "sparse"):
        out = tp_jax.tensor_product(d, method)(*b)
        assert out.dtype == jnp.bfloat16
        assert _rel(out, ref) < 1e-2


def test_methods_listing():
    d = spec.cgtp("0e+1o", "0e+1o", "0e+1o", mode="uvw")
    ms = tp_jax.methods(d)
    assert {"dense", "fused", "sparse", "cueq"} <= set(ms)
    g = tp_jax.methods(spec.gtp("0e+1o", "0e+1o"))
    assert {"grid", "fourier", "s2fft"} <= set(g)
    assert set(tp_jax.methods(spec.mtp("0e+1o", "0e+1o"))) == {"dense", "sparse"}
    assert tp_jax.default_method(d) == "fused"


@pytest.mark.parametrize("family", ["gtp", "mtp"])
def test_unit(family):
    """The constant function is the unit: TP(x, e0) = x."""
    make = getattr(spec, family)
    d = make("2x0e+2x1o+2x2e", "0e+1o+2e", "2x0e+2x1o+2x2e")
    x = np.random.default_rng(0).normal(size=(3, d.irreps_in1.dim))
    e0 = np.zeros((3, d.irreps_in2.dim))
    e0[:, 0] = 1.0
    for method, reason in tp_jax.methods(d).items():
        if reason is None:
            np.testing.assert_allclose(tp_jax.tensor_product(d, method)(x, e0), x, atol=1e-12)


def test_large_mimo_fused_vs_reference():
    """The order-blocked fused kernel at a larger degree (L = 4, all paths, shared weights)."""
    ir = "+".join(f"{l}{'eo'[l % 2]}" for l in range(5))
    iro = "+".join(f"{l}{'eo'[l % 2]}" for l in range(9))
    d = spec.cgtp(ir, ir, iro, mode="uvw")
    x1, x2, w = random_inputs(d, (2,), shared=True)
    ref = spec.reference.apply(d, x1, x2, w)
    assert _rel(tp_jax.tensor_product(d, "fused")(x1, x2, w), ref) < 1e-10


@pytest.mark.parametrize("method", ["fused", "dense"])
def test_chunked_batch_vs_reference(method):
    """Batches larger than the kernels' chunk (and not a multiple of it) go through the
    chunked loop with padding; shared weights fold into the order-blocked GEMMs."""
    ir = "+".join(f"{l}{'eo'[l % 2]}" for l in range(3))
    iro = "+".join(f"{l}{'eo'[l % 2]}" for l in range(5)) + "+1e+2o+3e"
    d = spec.cgtp(ir, ir, iro, mode="uvw")
    x1, x2, w = random_inputs(d, (301,), shared=True, seed=11)
    ref = spec.reference.apply(d, x1, x2, w)
    assert _rel(tp_jax.tensor_product(d, method)(x1, x2, w), ref) < 1e-10


def test_fused_duplicate_paths_and_unweighted():
    """Two instructions on the same (in1, in2, out) triple (the folded CG matrix gets two
    weights at one position) plus an unweighted path and an output no path reaches."""
    d = spec.cgtp("0e+1o+2e", "1o+2e", "1e+2e+1o+0o", instructions=[
        (1, 0, 0, "uvw", True), (1, 0, 0, "uvw", True, 3.0), (2, 1, 1, "uvw", False),
        (0, 0, 2, "uvw", True)])
    x1, x2, w = random_inputs(d, (300,), shared=True, seed=12)
    ref = spec.reference.apply(d, x1, x2, w)
    assert _rel(tp_jax.tensor_product(d, "fused")(x1, x2, w), ref) < 1e-10


@pytest.mark.parametrize("method", ["dense", "sparse"])
def test_mtp_chunked_batch_vs_reference(method):
    """A batch over the chunking bound runs in checkpointed chunks (the last one padded)."""
    from tp_jax import _mtp

    d = spec.mtp("2x0e+2x1o+2x1e+2x2e", "0e+1o+1e+2e", per_degree_weights=True, lt=2)
    p = tp_plan.plan(d, method, tp_plan.Tuning(jax_mtp_chunk_elements=1))
    assert p.jax_chunk_rows == 256
    x1, x2, w = random_inputs(d, (1030,), seed=13)
    ref = spec.reference.apply(d, x1, x2, w)
    f = jax.jit(lambda a, b, c: _mtp.RUNNERS[type(p)](p, a, b, c))
    assert _rel(f(x1, x2, w), ref) < 1e-10
    # The product is linear in x1: <grad_x1 <c, f>, v> = <c, f(v, x2)> for any v.
    rng = np.random.default_rng(14)
    c, v = rng.standard_normal(ref.shape), rng.standard_normal(x1.shape)
    g = jax.grad(lambda a: jnp.sum(c * f(a, x2, w)))(jnp.asarray(x1))
    want = np.sum(c * spec.reference.apply(d, v, x2, w))
    assert abs(float(np.sum(np.asarray(g) * v)) - want) < 1e-10 * np.abs(want).max()


@pytest.mark.parametrize("args", [
    ("0e+1o+2e", "0e+1o+2e", None),  # all four parity pairs: one [P, Q] product
    ("0e+2e", "1o", None),  # one class each side
    ("0e+1o+2e", "0e+1o", "0e+1e+2e"),  # two pairs summed into one output class
    ("1o+2e", "0o+1e", "1e+2o+3e"),  # explicit output, odd-led classes
    ("0e+2e", "0e+2e", "0e+1o+2e"),  # an output parity no pair reaches: zeros
], ids=["pq", "one-class", "summed-pairs", "explicit-out", "unreached-parity"])
@pytest.mark.parametrize("weights", [False, True], ids=["plain", "per_degree"])
def test_mtp_one_channel_folded_vs_reference(args, weights):
    """One channel, ``sparse``: the gathers folded into the GEMMs (value and gradient)."""
    d = spec.mtp(*args[:2], args[2], per_degree_weights=weights)
    p = tp_plan.plan(d, "sparse")
    assert p.index1 is None and p.index2 is None  # the gathers folded into the matrices
    x1, x2, w = random_inputs(d, (7,), seed=21)
    f = tp_jax.tensor_product(d, "sparse")
    ref = spec.reference.apply(d, x1, x2, w)
    assert _rel(f(x1, x2, w), ref) < 1e-10
    rng = np.random.default_rng(22)
    c, v = rng.standard_normal(ref.shape), rng.standard_normal(x2.shape)
    g = jax.grad(lambda b: jnp.sum(c * f(x1, b, w)))(jnp.asarray(x2))
    want = np.sum(c * spec.reference.apply(d, x1, v, w))
    assert abs(float(np.sum(np.asarray(g) * v)) - want) < 1e-10 * max(abs(want), 1.0)


@pytest.mark.parametrize("args", [
    ("0e+1o+2e", "0e+1o+2e", None),  # natural x natural: anticommutator and commutator
    ("0o+1e+2o", "0e+1o", None),  # pseudo x natural
    ("0e+1o+2e", "1o+2e", "0e+1e+2o+3e"),  # explicit output, odd-led x2
    ("2x0e+2x1o", "0e+1o", None),  # two channels: per-class read-out, not read_tr
], ids=["natural", "pseudo", "explicit-out", "two-channels"])
def test_mtp_transpose_regime_vs_reference(args):
    """``sparse`` in the transpose regime (forced with a small ``mtp_transpose_min_n``): one
    channel reads ``[X1 X2, X2 X1]`` through ``plan.read_tr`` (value and gradient)."""
    from tp_jax import _mtp

    d = spec.mtp(*args[:2], args[2])
    p = tp_plan.plan(d, "sparse", tp_plan.Tuning(mtp_transpose_min_n=3))
    assert p.transpose and (p.read_tr is not None) == (d.channels == 1)
    x1, x2, _ = random_inputs(d, (9,), seed=23)
    f = jax.jit(lambda a, b: _mtp.RUNNERS[type(p)](p, a, b, None))
    ref = spec.reference.apply(d, x1, x2)
    assert _rel(f(x1, x2), ref) < 1e-10
    rng = np.random.default_rng(24)
    c, v = rng.standard_normal(ref.shape), rng.standard_normal(x1.shape)
    g = jax.grad(lambda a: jnp.sum(c * f(a, x2)))(jnp.asarray(x1))
    want = np.sum(c * spec.reference.apply(d, v, x2))
    assert abs(float(np.sum(np.asarray(g) * v)) - want) < 1e-10 * max(abs(want), 1.0)
