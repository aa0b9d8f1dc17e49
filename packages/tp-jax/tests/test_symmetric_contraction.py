"""tp_jax symmetric contraction (pure functions and Flax modules) against the tp_spec reference."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tp_spec
from tp_jax.symmetric_contraction import gaunt_symmetric_contraction, symmetric_contraction

sc = importlib.import_module("tp_spec.symmetric_contraction")
plans = importlib.import_module("tp_spec.plan.symmetric_contraction")

CASES = [
    ("3x0e+3x1o+3x2e", "3x0e+3x1o+3x2e", 3, 3),
    ("2x0e+2x1o", "2x1e+2x0e", 2, 2),
    ("2x0e+2x1o", "2x0e+2x1o", 4, 2),
    ("2x1o", "2x0e+2x1e", 1, 1),
]


def _inputs(d, n=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d.irreps_in.dim))
    w = rng.normal(size=(d.num_species, d.weight_numel))
    s = rng.integers(0, d.num_species, size=n)
    return x, w, s


@pytest.mark.parametrize("case", CASES + [(*CASES[0], "reduced")],
                         ids=lambda c: f"{c[0]}-{c[2]}{'-' + c[4] if len(c) > 4 else ''}")
def test_matches_reference(case):
    d = tp_spec.symmetric_contraction(*case[:4], basis=(list(case[4:]) or ["mace"])[0])
    x, w, s = _inputs(d)
    out = symmetric_contraction(d)(x, w, s)
    assert out.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(out), sc.apply(d, x, w, s), atol=1e-11, rtol=1e-11)
    out32 = symmetric_contraction(d)(x.astype(np.float32), w.astype(np.float32), s)
    assert out32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out32), sc.apply(d, x, w, s), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("first", [True, False], ids=["weights-first", "per-node-weights"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[2]}")
def test_both_contraction_orders(case, first, monkeypatch):
    """Both orders of :func:`tp_spec.plan.symmetric_contraction.weights_first`, forced, match the
    reference in values and in the gradient of both inputs."""
    monkeypatch.setattr(plans, "weights_first", lambda d, n: first)
    d = tp_spec.symmetric_contraction(*case)
    x, w, s = _inputs(d)
    f = symmetric_contraction.__wrapped__(d)  # a fresh trace under the forced order
    np.testing.assert_allclose(np.asarray(f(x, w, s)), sc.apply(d, x, w, s), atol=1e-11)
    v = np.random.default_rng(2).normal(size=(x.shape[0], d.irreps_out.dim))
    gx, gw = jax.grad(lambda x, w: jnp.sum(f(x, w, s) * v), argnums=(0, 1))(x, w)
    eps = 1e-6
    checks = [(x, gx, (1, 2))]
    if d.weight_numel:
        checks.append((w, gw, (d.num_species - 1, d.weight_numel - 1)))
    for arr, g, idx in checks:
        e = np.zeros_like(arr)
        e[idx] = eps
        args = [(x + e, w), (x - e, w)] if arr is x else [(x, w + e), (x, w - e)]
        fd = (np.sum(sc.apply(d, *args[0], s) * v) - np.sum(sc.apply(d, *args[1], s) * v))
        assert abs(float(g[idx]) - fd / (2 * eps)) < 1e-6


def test_species_captured_by_an_outer_jit():
    """Species held as a constant by the caller's jitted function: checked on the host."""
    d = tp_spec.symmetric_contraction(*CASES[1])
    x, w, s = _inputs(d)
    species = jnp.asarray(s)
    out = jax.jit(lambda x, w: symmetric_contraction(d)(x, w, species))(x, w)
    np.testing.assert_allclose(np.asarray(out), sc.apply(d, x, w, s), atol=1e-11, rtol=1e-11)
    bad = jnp.asarray(np.full_like(s, d.num_species))
    with pytest.raises(tp_spec.IndexRangeError):
        jax.jit(lambda x, w: symmetric_contraction(d)(x, w, bad))(x, w)


def test_gradient_matches_finite_differences():
    d = tp_spec.symmetric_contraction("2x0e+2x1o", "2x0e+2x1o", 3, 2)
    x, w, s = _inputs(d, n=3)
    f = symmetric_contraction(d)
    v = np.random.default_rng(1).normal(size=(3, d.irreps_out.dim))
    gx = jax.grad(lambda x: jnp.sum(f(x, w, s) * v))(x)
    e = np.zeros_like(x)
    e[1, 3] = 1e-6
    fd = (np.sum(sc.apply(d, x + e, w, s) * v) - np.sum(sc.apply(d, x - e, w, s) * v)) / 2e-6
    assert abs(float(gx[1, 3]) - fd) < 1e-6


def test_gaunt_matches_reference():
    d = tp_spec.gaunt_symmetric_contraction("3x0e+3x1o+3x2e", "3x0e+3x1o+3x2e", 3, 2)
    x, w, s = _inputs(d)
    out = gaunt_symmetric_contraction(d)(x, w, s)
    ref = sc.gaunt_apply_reference(d, x, w, s)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-10 * np.abs(ref).max(), rtol=1e-10)


def test_flax_modules():
    from tp_jax.flax import GauntSymmetricContraction, SymmetricContraction

    m = SymmetricContraction("2x0e+2x1o", "2x0e+2x1o", 3, 2, param_dtype=jnp.float64)
    d = tp_spec.symmetric_contraction("2x0e+2x1o", "2x0e+2x1o", 3, 2)
    x, _, s = _inputs(d)
    params = m.init(jax.random.PRNGKey(0), x, s)
    shapes = {k: v.shape for k, v in params["params"].items()}
    assert shapes["weights_1_3"] == d.weight_shapes[1][2]
    flat = np.concatenate(
        [np.asarray(params["params"][f"weights_{i}_{nu}"]).reshape(2, -1)
         for i in range(2) for nu in (1, 2, 3)], axis=1)
    np.testing.assert_allclose(np.asarray(m.apply(params, x, s)), sc.apply(d, x, flat, s),
                               atol=1e-11)
    g = GauntSymmetricContraction("2x0e+2x1o", "2x0e+2x1o", 2, 2, param_dtype=jnp.float64)
    gd = tp_spec.gaunt_symmetric_contraction("2x0e+2x1o", "2x0e+2x1o", 2, 2)
    gp = g.init(jax.random.PRNGKey(1), x, s)["params"]
    w = np.concatenate([np.asarray(gp["u"]).reshape(2, -1), np.asarray(gp["v"]).reshape(2, -1)],
                       axis=1)
    np.testing.assert_allclose(np.asarray(g.apply({"params": gp}, x, s)),
                               sc.gaunt_apply_reference(gd, x, w, s), atol=1e-10)


def test_bad_inputs():
    d = tp_spec.symmetric_contraction("2x0e+2x1o", "2x0e", 2, 2)
    f = symmetric_contraction(d)
    x, w, s = _inputs(d, n=3)
    with pytest.raises(tp_spec.ShapeError, match="x must have shape"):
        f(x[:, :-1], w, s)
    with pytest.raises(tp_spec.ShapeError, match="weights must have shape"):
        f(x, w[:1], s)
    with pytest.raises(tp_spec.ShapeError, match="species must have shape"):
        f(x, w, s[:2])
    with pytest.raises(tp_spec.DTypeError, match="nothing is cast"):
        f(x.astype(np.float32), w, s)
    with pytest.raises(tp_spec.DTypeError, match="integers"):
        f(x, w, s.astype(float))
    with pytest.raises(tp_spec.IndexRangeError, match="species must lie"):
        f(x, w, s + 2)
    with pytest.raises(tp_spec.InstructionError, match="SymmetricContractionDescriptor"):
        symmetric_contraction(tp_spec.gaunt_symmetric_contraction("2x0e", "2x0e", 1, 1))
