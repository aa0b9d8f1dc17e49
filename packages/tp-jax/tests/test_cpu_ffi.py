"""``tp_jax._cpu_ffi``: the kernels' thread count follows XLA's CPU flags, and a Python
function registered as an FFI target writes its results in place inside jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tp_jax import _cpu_ffi


@pytest.mark.parametrize(("flags", "want"), [
    ("--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1", 1),
    ("intra_op_parallelism_threads=3", 3),
    ("--xla_cpu_multi_thread_eigen=false", 1),
])
def test_threads_follow_xla_flags(monkeypatch, flags, want):
    monkeypatch.setenv("XLA_FLAGS", flags)
    _cpu_ffi.num_threads.cache_clear()
    try:
        assert _cpu_ffi.num_threads() == want
    finally:
        _cpu_ffi.num_threads.cache_clear()


def test_default_threads_are_the_cores_of_the_process(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "")
    _cpu_ffi.num_threads.cache_clear()
    try:
        assert _cpu_ffi.num_threads() == len(__import__("os").sched_getaffinity(0))
    finally:
        _cpu_ffi.num_threads.cache_clear()


def test_target_runs_in_place_on_xla_buffers():
    seen = []

    def axpy(x, y, out):  # out = 2 x + y, written into XLA's result buffer
        seen.append((x.shape, y.dtype, out.flags.writeable))
        np.multiply(x, 2, out=out)
        out += y

    name = _cpu_ffi.register("tp_jax_test_axpy", axpy)
    x = jnp.arange(12.0, dtype=jnp.float32).reshape(3, 4)
    y = jnp.ones((3, 4), jnp.float32)
    (got,) = jax.jit(lambda a, b: _cpu_ffi.call(name, [jax.ShapeDtypeStruct((3, 4), a.dtype)],
                                                  a, b))(x, y)
    np.testing.assert_array_equal(got, 2 * np.asarray(x) + 1)
    assert seen == [((3, 4), np.float32, True)]
