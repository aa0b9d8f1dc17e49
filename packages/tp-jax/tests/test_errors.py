"""Bad input raises the tp_spec exception classes before any kernel runs."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import tp_jax
import tp_spec as spec
from tp_spec import DTypeError, InstructionError, ShapeError

D = spec.cgtp("2x0e+1x1o", "0e+1o", "2x0e+1x1o", mode="uvw")
F = tp_jax.tensor_product(D, "dense")
X1, X2 = np.ones((3, 5)), np.ones((3, 4))
W = np.ones(D.weight_numel)


def test_unknown_method_lists_valid():
    with pytest.raises(InstructionError, match="fused"):
        tp_jax.tensor_product(D, "nope")


def test_method_of_other_family():
    with pytest.raises(InstructionError, match="valid"):
        tp_jax.tensor_product(D, "grid")
    with pytest.raises(InstructionError):
        tp_jax.tensor_product(spec.gtp("0e+1o", "0e+1o"), "fused")


def test_not_a_descriptor():
    with pytest.raises(InstructionError, match="expected a tp_spec descriptor"):
        tp_jax.tensor_product("0e+1o")


@pytest.mark.parametrize("args", [
    (np.ones((3, 6)), X2, W),            # wrong irreps dim
    (X1, np.ones((2, 4)), W),            # batch mismatch (nothing broadcast)
    (X1, X2, np.ones(D.weight_numel + 1)),  # wrong weight size
    (X1, X2, None),                      # missing weights
    (np.ones(()), X2, W),                # scalar
])
def test_shape_errors(args):
    with pytest.raises(ShapeError):
        F(*args)


def test_weights_on_unweighted():
    d = spec.gtp("0e+1o", "0e+1o")
    with pytest.raises(ShapeError):
        tp_jax.tensor_product(d)(np.ones((2, 4)), np.ones((2, 4)), np.ones(3))


def test_dtype_errors():
    with pytest.raises(DTypeError):
        F(X1.astype(np.float32), X2, W)
    with pytest.raises(DTypeError):
        F(X1, X2, W.astype(np.float32))
    with pytest.raises(DTypeError):
        F(X1.astype(np.int32), X2.astype(np.int32), W.astype(np.int32))
    with pytest.raises(DTypeError):
        F(jnp.ones((3, 5), jnp.bfloat16), jnp.ones((3, 4), jnp.float32), jnp.ones(W.shape))


def test_errors_raise_inside_jit():
    import jax

    with pytest.raises(ShapeError):
        jax.jit(F)(np.ones((3, 6)), X2, W)


def test_s2fft_needs_x64():
    import jax

    d = spec.gtp("0e+1o", "0e+1o")
    if tp_jax.methods(d)["s2fft"] is not None:
        pytest.skip(tp_jax.methods(d)["s2fft"])
    f = tp_jax.tensor_product(d, "s2fft")
    with jax.enable_x64(False), pytest.raises(DTypeError, match="x64"):
        f(np.ones((2, 4), np.float32), np.ones((2, 4), np.float32))
