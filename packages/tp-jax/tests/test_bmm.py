"""The ``bmm`` primitive (batch-innermost small matrix products): values, every derivative
order the MTP needs, vmap, and its shape errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from tp_jax._bmm import bmm


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _operands(c2: int = 1):
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((3, 4, 2, 5)))
    b = jnp.asarray(rng.standard_normal((4, 2, c2, 5)))
    return a, b


@pytest.mark.parametrize("c2", [1, 2], ids=["broadcast", "equal"])
def test_values_match_einsum(c2):
    a, b = _operands(c2)
    want = np.einsum("ijcs,jkcs->ikcs", np.asarray(a), np.broadcast_to(b, (4, 2, 2, 5)))
    assert np.allclose(bmm(a, b), want, rtol=1e-14, atol=1e-14)
    assert np.allclose(jax.jit(bmm)(a, b), want, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("c2", [1, 2], ids=["broadcast", "equal"])
def test_derivatives_to_third_order(c2):
    check_grads(bmm, _operands(c2), order=3, modes=("fwd", "rev"))


def test_vmap_and_its_derivatives():
    a, b = _operands(1)
    per = jax.vmap(bmm, in_axes=(3, 3), out_axes=3)(a, b)
    assert np.allclose(per, bmm(a, b))
    check_grads(jax.vmap(bmm, in_axes=(3, 3)), (a, b), order=2)
    check_grads(jax.vmap(bmm, in_axes=(3, None)), (a, b[..., 0]), order=2)
    check_grads(jax.vmap(bmm, in_axes=(None, 3)), (a[..., 0], b), order=2)


def test_shape_errors_name_the_operands():
    a, b = _operands(1)
    with pytest.raises(ValueError, match="incompatible operands"):
        bmm(a, a)
    with pytest.raises(ValueError, match="do not broadcast"):
        bmm(a, jnp.zeros((4, 2, 3, 5)))
