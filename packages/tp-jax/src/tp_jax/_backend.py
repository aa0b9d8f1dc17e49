"""``backend``: tp_jax behind the :class:`tp_spec.backend.Backend` protocol (NumPy in and out).

Registered as the entry point ``tp_spec.backends: tp_jax``. Every call validates (method,
dtype string, device, real floating inputs of one dtype, shapes) before computing, casts the
inputs to ``dtype`` and runs under ``jax.enable_x64(dtype == "float64")`` so float64 works
without changing the caller's global JAX configuration. Gradients use ``jax.vjp``; the force
loss uses nested ``jax.grad`` (double backward); ``hvp`` is ``jax.jvp`` of ``jax.grad``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tp_spec as spec
from tp_spec.errors import DeviceError, DTypeError, InstructionError, ShapeError

from . import _api

Grads = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


def _x64(dtype: str, method: str):
    """x64 for float64, and always for ``s2fft`` (its float32 path needs x64, see _s2fft)."""
    return jax.enable_x64(dtype == "float64" or method == "s2fft")


def _platform(device: str) -> str:
    return {"cuda": "gpu"}.get(device, device)


class JaxBackend:
    """The JAX backend (``name = "tp_jax"``)."""

    name = "tp_jax"
    is_oracle = False

    def devices(self) -> list[str]:
        out = ["cpu"]
        for plat, label in (("gpu", "cuda"),):
            try:
                if jax.devices(plat):
                    out.append(label)
            except RuntimeError:
                pass
        return out

    def methods(self, descriptor: spec.TensorProductDescriptor, device: str = "cpu"
                ) -> dict[str, str | None]:
        ms = _api.methods(descriptor)
        if device not in self.devices():
            return {k: f"device {device!r} not available (devices: {self.devices()})"
                    for k in ms}
        return ms

    # ------------------------------------------------------------------ helpers
    def _prep(self, d, method, dtype, device, *arrays):
        ms = self.methods(d, device) if device in self.devices() else None
        if dtype not in ("float64", "float32"):
            raise DTypeError(f"tp_jax: dtype must be 'float64' or 'float32', got {dtype!r}")
        if ms is None:
            raise DeviceError(f"tp_jax: device {device!r} not available; "
                              f"devices: {self.devices()}")
        if method not in ms:
            raise InstructionError(f"tp_jax: unknown method {method!r}; valid: {sorted(ms)}")
        if ms[method] is not None:
            raise InstructionError(f"tp_jax: method {method!r} not applicable: {ms[method]}")
        kinds = set()
        labels = ("x1", "x2", "weights", "cotangent", "tangent x1", "tangent x2", "tangent w")
        for label, a in zip(labels, arrays, strict=False):
            if a is None:
                continue
            a = np.asarray(a)
            if not np.issubdtype(a.dtype, np.floating):
                raise DTypeError(f"tp_jax: {label} must be a real floating array, got {a.dtype}")
            kinds.add(a.dtype)
        if len(kinds) > 1:
            raise DTypeError(f"tp_jax: inputs have mixed dtypes {sorted(map(str, kinds))}")
        cast = np.float64 if dtype == "float64" else np.float32
        arrs = [None if a is None else np.asarray(a).astype(cast) for a in arrays]
        d.check_shapes(arrs[0].shape, arrs[1].shape, None if arrs[2] is None else arrs[2].shape)
        return arrs, cast, jax.devices(_platform(device))[0]

    @staticmethod
    def _check_cotangent(d, x1: np.ndarray, c: np.ndarray) -> None:
        want = tuple(x1.shape[:-1]) + (d.irreps_out.dim,)
        if c.shape != want:
            raise ShapeError(f"cotangent has shape {c.shape}; expected {want}")

    @staticmethod
    def _out(arrs, cast) -> Any:
        return tuple(None if a is None else np.asarray(a).astype(cast) for a in arrs)

    # ------------------------------------------------------------------ protocol
    def apply(self, descriptor, method, x1, x2, weights=None, *, dtype="float64", device="cpu"):
        (a, b, w), cast, dev = self._prep(descriptor, method, dtype, device, x1, x2, weights)
        with _x64(dtype, method), jax.default_device(dev):
            f = _api.tensor_product(descriptor, method)
            return np.asarray(f(jnp.asarray(a), jnp.asarray(b),
                                None if w is None else jnp.asarray(w))).astype(cast)

    def vjp(self, descriptor, method, x1, x2, weights, cotangent, *, dtype="float64",
            device="cpu") -> Grads:
        d = descriptor
        (a, b, w, c), cast, dev = self._prep(d, method, dtype, device, x1, x2, weights,
                                             cotangent)
        self._check_cotangent(d, a, c)
        with _x64(dtype, method), jax.default_device(dev):
            f = _api.tensor_product(d, method)
            if w is None:
                _, pull = jax.vjp(lambda p, q: f(p, q), jnp.asarray(a), jnp.asarray(b))
                ga, gb = pull(jnp.asarray(c))
                return self._out((ga, gb, None), cast)
            _, pull = jax.vjp(f, jnp.asarray(a), jnp.asarray(b), jnp.asarray(w))
            return self._out(pull(jnp.asarray(c)), cast)

    def force_loss_grad(self, descriptor, method, x1, x2, weights, cotangent, *,
                        dtype="float64", device="cpu") -> Grads:
        d = descriptor
        (a, b, w, c), cast, dev = self._prep(d, method, dtype, device, x1, x2, weights,
                                             cotangent)
        self._check_cotangent(d, a, c)
        with _x64(dtype, method), jax.default_device(dev):
            f = _api.tensor_product(d, method)
            cj = jnp.asarray(c)

            def energy(p, q, ww):
                return jnp.sum(cj * f(p, q, ww))

            def loss(p, q, ww):
                return jnp.sum(jax.grad(energy, argnums=0)(p, q, ww) ** 2)

            argnums = (0, 1) if w is None else (0, 1, 2)
            g = jax.grad(loss, argnums=argnums)(jnp.asarray(a), jnp.asarray(b),
                                                None if w is None else jnp.asarray(w))
            return self._out(tuple(g) + ((None,) if w is None else ()), cast)

    def hvp(self, descriptor, method, x1, x2, weights, cotangent, tangents, *, dtype="float64",
            device="cpu") -> Grads:
        d = descriptor
        v1, v2, vw = tangents
        (a, b, w, c, t1, t2, tw), cast, dev = self._prep(d, method, dtype, device, x1, x2,
                                                         weights, cotangent, v1, v2, vw)
        self._check_cotangent(d, a, c)
        if (tw is None) != (w is None) or (tw is not None and tw.shape != w.shape):
            raise ShapeError("the weight tangent must match the weights' shape (or be None)")
        if t1.shape != a.shape or t2.shape != b.shape:
            raise ShapeError("tangents must match the shapes of x1 and x2")
        with _x64(dtype, method), jax.default_device(dev):
            f = _api.tensor_product(d, method)
            cj = jnp.asarray(c)
            if w is None:
                def grad_e(p, q):
                    return jax.grad(lambda p_, q_: jnp.sum(cj * f(p_, q_)), (0, 1))(p, q)

                _, tan = jax.jvp(grad_e, (jnp.asarray(a), jnp.asarray(b)),
                                 (jnp.asarray(t1), jnp.asarray(t2)))
                return self._out(tuple(tan) + (None,), cast)

            def grad_ew(p, q, ww):
                return jax.grad(lambda p_, q_, w_: jnp.sum(cj * f(p_, q_, w_)), (0, 1, 2))(
                    p, q, ww)

            _, tan = jax.jvp(grad_ew, (jnp.asarray(a), jnp.asarray(b), jnp.asarray(w)),
                             (jnp.asarray(t1), jnp.asarray(t2), jnp.asarray(tw)))
            return self._out(tan, cast)


backend = JaxBackend()

__all__ = ["JaxBackend", "backend"]
