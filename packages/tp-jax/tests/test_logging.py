"""tp_jax logs the method it picks, the constants it builds, its traces, unavailable adapters
and cache clears under "tp_jax.<module>", and prints nothing unless the application configures
logging."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import tp_jax
import tp_spec as spec
from tp_jax import _backend


def _messages(caplog, logger: str, level: int = logging.DEBUG) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno == level]


def test_package_logger_has_a_null_handler():
    handlers = logging.getLogger("tp_jax").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_default_method_build_and_trace_are_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="tp_jax")
    d = spec.cgtp("5x0e + 3x2o", "1e + 2o", "3x1o + 2x2e", mode="uvw")  # used nowhere else
    f = tp_jax.tensor_product(d)
    x1 = jnp.ones((4, d.irreps_in1.dim))
    x2 = jnp.ones((4, d.irreps_in2.dim))
    w = jnp.ones(d.weight_numel)
    f(x1, x2, w)
    f(x1, x2, w)  # same shapes: no second trace
    msgs = _messages(caplog, "tp_jax._api")
    default = tp_jax.default_method(d)
    assert f"method=None: {default!r}, the default of cgtp" in msgs
    assert sum("constants built" in m and repr(default) in m for m in msgs) == 1
    traces = [m for m in msgs if m.startswith("tracing cgtp")]
    assert len(traces) == 1 and "(trace 1 " in traces[0]
    assert f"x1 (4, {d.irreps_in1.dim})" in traces[0]


def test_unavailable_adapter_is_logged(monkeypatch, caplog):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("cuequivariance")
                        else real(name, *a))
    d = spec.cgtp("2x0e + 1x1o", "0e + 1o", "0e + 1o", mode="uvw")
    with caplog.at_level(logging.DEBUG, logger="tp_jax"):
        reason = tp_jax.methods(d)["cueq"]
    assert "cuequivariance is not installed" in reason
    assert f"method 'cueq' unavailable: {reason}" in _messages(caplog, "tp_jax._api")


def test_cache_clear_of_the_backend_is_logged(monkeypatch, caplog):
    monkeypatch.setattr(_backend, "MAX_LIVE_PAIRS", 1)
    monkeypatch.setattr(_backend, "_LIVE_PAIRS", {("other", "pair"): None})
    monkeypatch.setattr(jax, "clear_caches", lambda: None)  # the other tests keep theirs
    d = spec.cgtp("1x0e", "0e", "0e", mode="uvw")
    with caplog.at_level(logging.INFO, logger="tp_jax"):
        _backend._use_pair(d, "dense")
    [msg] = _messages(caplog, "tp_jax._backend", logging.INFO)
    assert msg.startswith("1 (descriptor, method) pairs compiled: clearing JAX's caches")
    assert _backend._LIVE_PAIRS == {(d, "dense"): None}


def test_silent_without_logging_configuration():
    """A product with the default method, built, traced and run, in a process that never
    configures logging: nothing from tp_jax or tp_spec on stderr."""
    d = spec.cgtp("2x0e + 1x1o", "0e + 1o", "0e + 1o", mode="uvw")
    code = (
        "import jax.numpy as jnp, tp_spec as spec, tp_jax\n"
        "d = spec.cgtp('2x0e + 1x1o', '0e + 1o', '0e + 1o', mode='uvw')\n"
        "f = tp_jax.tensor_product(d)\n"
        "print(f(jnp.ones((3, 5)), jnp.ones((3, 4)), jnp.ones(d.weight_numel)).shape)\n"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       check=True, timeout=300)
    assert r.stdout.strip() == str((3, d.irreps_out.dim))
    assert "tp_jax" not in r.stderr and "tp_spec" not in r.stderr
    assert "method=None" not in r.stderr and "tracing" not in r.stderr
