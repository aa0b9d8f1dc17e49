"""tp_jax.flax.Linear with e3nn-jax's Linear parameters: the same outputs (e3nn-jax as the
oracle), including irreps e3nn-jax sorts and merges internally, and biases."""

from __future__ import annotations

import jax
import numpy as np
import pytest

e3nn = pytest.importorskip("e3nn_jax")

from tp_jax.flax import Linear, linear_params_from_e3nn_jax  # noqa: E402
from tp_spec import InstructionError  # noqa: E402

CASES = [
    ("4x0e+2x1o+1x2e", "3x0e+2x1o+1x2e", False),
    ("4x0e+2x1o+1x2e+2x0e", "3x0e+2x1o+1x0e", True),  # input sorted and merged by e3nn-jax
    ("2x1o+3x0e+0x2e+1x1e", "2x1e+2x1o+1x0e+4x0e", True),  # odd order, empty block, merges
]


@pytest.mark.parametrize("irreps_in, irreps_out, biases", CASES)
def test_same_output_as_e3nn_jax_linear(irreps_in, irreps_out, biases):
    theirs = e3nn.flax.Linear(irreps_out, irreps_in=irreps_in, biases=biases)
    x = e3nn.normal(irreps_in, jax.random.PRNGKey(0), (6,))
    params = theirs.init(jax.random.PRNGKey(1), x)
    # random biases too (e3nn-jax initialises them to zero)
    params = jax.tree_util.tree_map(
        lambda a: a + jax.random.normal(jax.random.PRNGKey(2), a.shape), params)
    want = theirs.apply(params, x)
    # e3nn-jax returns irreps_out with consecutive equal irreps merged: the same layout
    assert want.irreps == e3nn.Irreps(irreps_out).simplify()
    ours = Linear(irreps_in, irreps_out, biases=biases)
    got = ours.apply(linear_params_from_e3nn_jax(params, irreps_in, irreps_out, biases=biases),
                     x.array)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want.array), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("gradient_normalization", ["element", 0.5, "path"])
@pytest.mark.parametrize("irreps_in, irreps_out, biases", CASES[1:])
def test_every_gradient_normalization(irreps_in, irreps_out, biases, gradient_normalization):
    theirs = e3nn.flax.Linear(irreps_out, irreps_in=irreps_in, biases=biases,
                              gradient_normalization=gradient_normalization)
    x = e3nn.normal(irreps_in, jax.random.PRNGKey(0), (6,))
    params = jax.tree_util.tree_map(
        lambda a: a + jax.random.normal(jax.random.PRNGKey(2), a.shape),
        theirs.init(jax.random.PRNGKey(1), x))
    got = Linear(irreps_in, irreps_out, biases=biases).apply(
        linear_params_from_e3nn_jax(params, irreps_in, irreps_out, biases=biases,
                                    gradient_normalization=gradient_normalization), x.array)
    np.testing.assert_allclose(np.asarray(got), np.asarray(theirs.apply(params, x).array),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", ["layer", 1.5, -0.1, True, [1.0]])
def test_bad_gradient_normalization_raises(bad):
    with pytest.raises(InstructionError, match="gradient_normalization"):
        linear_params_from_e3nn_jax({"params": {}}, "2x0e", "2x0e", gradient_normalization=bad)


def test_unexpected_parameter_raises():
    with pytest.raises(Exception, match="unexpected e3nn-jax Linear parameter"):
        linear_params_from_e3nn_jax({"params": {"kernel": np.zeros(2)}}, "2x0e", "2x0e")
