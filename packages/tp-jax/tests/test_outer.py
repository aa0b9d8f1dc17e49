"""tp_jax ``fused``, ``"outer"`` regime (unweighted full / uuu CGTP): values against
``tp_spec.reference`` on both of its layouts (per-pair matmuls, scalar order-blocked), first and
second derivatives against finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tp_jax
import tp_spec as spec
from jax.test_util import check_grads
from tp_spec import reference
from tp_spec.plan import Tuning

S2 = "0e + 1o + 2e"
CASES = {
    "full-mimo": lambda: spec.cgtp(S2, S2, mode="full"),
    "uuu": lambda: spec.cgtp("0e + 1o + 2e + 3o", "0e + 1o + 2e + 3o", mode="uuu"),
    "full-channels": lambda: spec.cgtp("3x0e + 2x1o + 2x2e", S2, mode="full"),
    "full-both-channels": lambda: spec.cgtp("2x0e + 3x1o", "2x1o + 1x2e", mode="full"),
}
#: per-pair matmuls for every size / the scalar layout for every single-channel size
TUNINGS = {"pairs": Tuning(outer_jax_scalar_max_entries=0),
           "scalar": Tuning(outer_jax_scalar_max_entries=10 ** 12)}


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _inputs(d, b, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(b, d.irreps_in1.dim)), rng.normal(size=(b, d.irreps_in2.dim))


@pytest.mark.parametrize("layout", TUNINGS)
@pytest.mark.parametrize("name", CASES)
def test_values_equal_reference(name, layout):
    d = CASES[name]()
    f = jax.jit(tp_jax.tensor_product(d, "fused", tuning=TUNINGS[layout]))
    x1, x2 = _inputs(d, 9)
    ref = reference.apply(d, x1, x2)
    np.testing.assert_allclose(np.asarray(f(jnp.asarray(x1), jnp.asarray(x2))), ref, atol=1e-12)
    y32 = f(jnp.asarray(x1, jnp.float32), jnp.asarray(x2, jnp.float32))
    assert y32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y32), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", TUNINGS)
@pytest.mark.parametrize("name", CASES)
def test_derivatives_equal_finite_differences(name, layout):
    d = CASES[name]()
    f = tp_jax.tensor_product(d, "fused", tuning=TUNINGS[layout])
    x1, x2 = _inputs(d, 3, seed=1)
    check_grads(f, (jnp.asarray(x1), jnp.asarray(x2)), order=2, modes=("rev",), atol=1e-6,
                rtol=1e-6)


def test_empty_batch():
    d = CASES["full-channels"]()
    f = tp_jax.tensor_product(d, "fused")
    x1, x2 = _inputs(d, 0)
    assert f(jnp.asarray(x1), jnp.asarray(x2)).shape == (0, d.irreps_out.dim)
