"""Derivatives of the ``fused`` regimes that run compiled CPU kernels, against exact derivatives
of :func:`tp_spec.reference.apply`, float64: the channelwise regime (a
:mod:`tp_jax._multilinear` primitive whose transposes are written path by path) and the scalar
regime without weights or with shared weights on every path (:mod:`tp_jax._coupling`).

The product is linear in ``x1`` and in ``x2`` and affine in the weights (unweighted paths do
not read them), so every reference derivative here is exact: a gradient entry is the loss at a
basis vector minus the loss at zero, a directional derivative the function at the direction
minus the function at zero.

Every test runs both CPU lowerings (``lowering``): the compiled kernels of :mod:`tp_kernels`
through XLA's FFI (the CPU default) and the XLA code (``TP_JAX_CPU_KERNELS=0``; what GPUs run).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tp_jax
import tp_kernels
import tp_spec as spec
from tp_spec import plan as tp_plan
from tp_spec.plan import Tuning
from tp_spec.plan.fused import ChannelwisePlan, ScalarPlan
from tp_spec.plan.outer import OuterPlan

CASES = {
    # degree-0 x1 block (outer products), degree-0 x2 block (scale paths), d_out = 1 paths
    "mace_like": spec.cgtp("3x0e+3x1o+3x2e", "0e+1o+2e+3o", "3x0e+3x1o+3x2e+3x3o",
                           mode="uvu"),
    # x1 blocks of different multiplicities
    "mixed_mul": spec.cgtp("4x0e+2x1o+3x2e", "0e+1o+2e", mode="uvu"),
    # two paths into one output block, unweighted paths among weighted ones
    "shared_out": spec.cgtp("4x0e+4x1o", "0e+1o", "4x0e+4x1o+4x2e", instructions=[
        (0, 0, 0, "uvu", True), (1, 1, 0, "uvu", False), (0, 1, 1, "uvu", False),
        (1, 0, 1, "uvu", True)]),
    # an x1 block without any path (its gradient is zero)
    "idle_x1_block": spec.cgtp("3x0e+3x1o+3x3o", "0e+1o", "3x0e+3x1o", mode="uvu"),
    # no weights at all
    "unweighted": spec.cgtp("2x0e+2x1o", "0e+1o", "2x0e+2x1o", instructions=[
        (0, 0, 0, "uvu", False), (1, 1, 0, "uvu", False), (1, 0, 1, "uvu", False)]),
}
#: single-channel products (the scalar regime's coupling kernels): the full CGTP (every path its
#: own output), the fully connected one (every path weighted, outputs summed per irrep) and the
#: elementwise one
SCALAR_CASES = {
    "full": spec.cgtp("0e+1o+2e", "0e+1o+2e", mode="full"),
    "uvw": spec.cgtp("0e+1o+2e", "0e+1o+2e", "0e+1o+1e+2e+2o+3o+4e", mode="uvw"),
    "uuu": spec.cgtp("0e+1o+2e+3o", "0e+1o+2e+3o", mode="uuu"),
}
CASES.update(SCALAR_CASES)
#: the FFI targets' name prefix per regime
TARGETS = {"channelwise": "tp_jax_cw_", "scalar": "tp_jax_cp_"}
B = 2
#: no channel folding: these small multiplicities run the channelwise regime
TUNING = Tuning(fold_max_channels=1)


def _inputs(d, weights, seed):
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=(B, d.irreps_in1.dim))
    x2 = rng.normal(size=(B, d.irreps_in2.dim))
    if d.weight_numel == 0:
        return [x1, x2]
    return [x1, x2, rng.normal(size=((B,) if weights == "per_sample" else ()) + (d.weight_numel,))]


def _weight_modes(d):
    return ["shared", "per_sample"] if d.weight_numel else ["none"]


def _params():
    return [(k, m) for k, d in CASES.items() for m in _weight_modes(d)]


def _ref(d, args):
    return spec.reference.apply(d, *args) if len(args) == 3 else \
        spec.reference.apply(d, args[0], args[1], None)


def _terms_loss(d, cot):
    """Per-sample ``<ref(args), cot>`` ``(B,)``."""
    return lambda args: np.sum(_ref(d, args) * cot, axis=1)


def _ref_grads(terms, args):
    """Gradient of ``sum(terms(args))`` w.r.t. every argument, for ``terms`` affine in each
    argument separately, per sample (a shared weight vector sums the samples)."""
    out = []
    for a, x in enumerate(args):
        per_sample = x.ndim == 2
        zero = list(args)
        zero[a] = np.zeros_like(x)
        base = terms(zero)
        g = np.zeros_like(x)
        for k in range(x.shape[-1]):
            e = list(args)
            e[a] = np.zeros_like(x)
            e[a][..., k] = 1.0
            t = terms(e) - base
            if per_sample:
                g[:, k] = t
            else:
                g[k] = t.sum()
        out.append(g)
    return out


def _check(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(1.0, float(np.max(np.abs(b))))
    np.testing.assert_allclose(a, b, atol=1e-11 * scale, rtol=0, err_msg=what)


@pytest.fixture(params=["kernels", "xla"], autouse=True)
def lowering(request, monkeypatch):
    """The CPU lowering the products of a test are traced with."""
    if request.param == "kernels" and not tp_kernels.available():
        pytest.skip("Numba missing")
    monkeypatch.setenv("TP_JAX_CPU_KERNELS", "1" if request.param == "kernels" else "0")
    jax.clear_caches()
    yield request.param
    jax.clear_caches()


@pytest.mark.parametrize("key,weights,regime", [("shared_out", "per_sample", "channelwise"),
                                                ("full", "none", "scalar"),
                                                ("uvw", "shared", "scalar")])
def test_lowering_is_the_one_asked_for(lowering, key, weights, regime):
    """The compiled CPU program of the product and of its gradient holds the kernels' FFI calls
    exactly when they are on, and the two lowerings agree."""
    d = CASES[key]
    args = [jnp.asarray(a) for a in _inputs(d, weights, 5)]
    f = jax.jit(tp_jax.tensor_product(d, "fused", tuning=TUNING))
    grad = jax.jit(jax.grad(lambda *a: jnp.sum(f(*a) ** 2), tuple(range(len(args)))))
    for fn in (f, grad):
        hlo = fn.lower(*args).compile().as_text()
        assert (TARGETS[regime] in hlo) == (lowering == "kernels")
    _check(f(*args), _ref(d, [np.asarray(a) for a in args]), "forward")


def test_cases_run_their_regime():
    for key, d in CASES.items():
        p = tp_plan.plan(d, "fused", TUNING)
        if key in SCALAR_CASES:
            p = p.scalar if isinstance(p, OuterPlan) else p
            assert isinstance(p, ScalarPlan), key
        else:
            assert isinstance(p, ChannelwisePlan), key


@pytest.mark.parametrize("key,weights", _params())
def test_gradients(key, weights):
    d = CASES[key]
    args = _inputs(d, weights, 1)
    cot = np.random.default_rng(2).normal(size=(B, d.irreps_out.dim))
    f = tp_jax.tensor_product(d, "fused", tuning=TUNING)
    got = jax.grad(lambda xs: jnp.sum(f(*xs) * cot))([jnp.asarray(x) for x in args])
    want = _ref_grads(_terms_loss(d, cot), args)
    for name, g, r in zip(("x1", "x2", "w"), got, want, strict=False):
        _check(g, r, f"grad {name}")
    # one argument at a time: the other tangents are symbolic zeros
    for a in range(len(args)):
        g = jax.grad(lambda x, a=a: jnp.sum(f(*[x if i == a else args[i]
                                                for i in range(len(args))]) * cot))(args[a])
        _check(g, want[a], f"grad of argument {a} alone")


@pytest.mark.parametrize("key,weights", _params())
def test_double_backward(key, weights):
    """The force-training pass: gradient of ``sum_i <grad_i, v_i>``."""
    d = CASES[key]
    args = _inputs(d, weights, 3)
    rng = np.random.default_rng(4)
    cot = rng.normal(size=(B, d.irreps_out.dim))
    vs = [rng.normal(size=x.shape) for x in args]
    f = tp_jax.tensor_product(d, "fused", tuning=TUNING)

    def phi(xs):
        gs = jax.grad(lambda a: jnp.sum(f(*a) * cot))(xs)
        return sum(jnp.sum(g * v) for g, v in zip(gs, vs, strict=True))

    got = jax.grad(phi)([jnp.asarray(x) for x in args])
    loss = _terms_loss(d, cot)

    def phi_terms(xs):
        # <grad_i L, v_i> = L(x_i -> v_i) - L(x_i -> 0) (L is affine in each argument)
        t = np.zeros(B)
        for i, v in enumerate(vs):
            sub, zero = list(xs), list(xs)
            sub[i] = v
            zero[i] = np.zeros_like(v)
            t = t + loss(sub) - loss(zero)
        return t

    want = _ref_grads(phi_terms, args)
    for name, g, r in zip(("x1", "x2", "w"), got, want, strict=False):
        _check(g, r, f"double backward {name}")


@pytest.mark.parametrize("key,weights", _params())
def test_forward_mode(key, weights):
    """``jax.jvp`` and forward-over-reverse (``jvp`` of ``grad``)."""
    d = CASES[key]
    args = _inputs(d, weights, 5)
    rng = np.random.default_rng(6)
    ts = [rng.normal(size=x.shape) for x in args]
    f = tp_jax.tensor_product(d, "fused", tuning=TUNING)
    _, jv = jax.jvp(f, tuple(jnp.asarray(x) for x in args), tuple(jnp.asarray(t) for t in ts))
    want = 0.0
    for i, t in enumerate(ts):
        sub, zero = list(args), list(args)
        sub[i] = t
        zero[i] = np.zeros_like(t)
        want = want + _ref(d, sub) - _ref(d, zero)
    _check(jv, want, "jvp")
    # forward over reverse: d/ds grad_x1 L(x1, x2 + s t2, w) = grad_x1 L(x1, t2, w)
    cot = rng.normal(size=(B, d.irreps_out.dim))

    def grad_x1(x2):
        rest = list(args[2:])
        return jax.grad(lambda a: jnp.sum(f(a, x2, *rest) * cot))(args[0])

    _, hv = jax.jvp(grad_x1, (jnp.asarray(args[1]),), (jnp.asarray(ts[1]),))
    sub = list(args)
    sub[1] = ts[1]
    _check(hv, _ref_grads(_terms_loss(d, cot), sub)[0], "jvp of grad")


@pytest.mark.parametrize("key,weights", [("shared_out", "shared"), ("mace_like", "per_sample"),
                                         ("full", "none"), ("uvw", "shared")])
def test_vmap(key, weights):
    """vmap over a leading axis (the rows joined into one call): values and every gradient
    per mapped example equal the unmapped calls'."""
    d = CASES[key]
    f = tp_jax.tensor_product(d, "fused", tuning=TUNING)
    stacks = [_inputs(d, weights, s) for s in (11, 12, 13)]
    xs = [jnp.stack([jnp.asarray(s[i]) for s in stacks]) for i in range(len(stacks[0]))]
    cot = jnp.asarray(np.random.default_rng(14).normal(size=(B, d.irreps_out.dim)))

    def loss(*a):
        return jnp.sum(f(*a) * cot)

    got = jax.vmap(f)(*xs)
    grads = jax.vmap(jax.grad(loss, tuple(range(len(xs)))))(*xs)
    for k, s in enumerate(stacks):
        _check(got[k], _ref(d, s), f"vmap value {k}")
        want = _ref_grads(_terms_loss(d, np.asarray(cot)), s)
        for g, r in zip(grads, want, strict=True):
            _check(g[k], r, f"vmap gradient {k}")


@pytest.mark.parametrize("key", ["shared_out", "uvw"])
def test_export_lowers_portable_code(key):
    """``jax.export`` of the product and of its gradient holds no FFI call (it accepts only
    custom calls with a compatibility guarantee) and runs to the same values."""
    d = CASES[key]
    args = [jnp.asarray(a) for a in _inputs(d, "shared", 15)]
    f = tp_jax.tensor_product(d, "fused", tuning=TUNING)
    cot = jnp.asarray(np.random.default_rng(16).normal(size=(B, d.irreps_out.dim)))
    grad = jax.grad(lambda *a: jnp.sum(f(*a) * cot), (0, 1, 2))
    for fn in (f, grad):
        exp = jax.export.export(jax.jit(fn))(*args)
        assert not any(t in exp.mlir_module() for t in TARGETS.values())
        for a, b in zip(jax.tree.leaves(exp.call(*args)), jax.tree.leaves(jax.jit(fn)(*args)),
                        strict=True):
            _check(a, b, "exported")
