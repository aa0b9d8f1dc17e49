"""``backend``: tp_jax behind the :class:`tp_spec.backend.Backend` protocol (NumPy in and out).

Registered as the entry point ``tp_spec.backends: tp_jax``. Every call validates (method,
dtype string, device, real floating operands of exactly the requested dtype, shapes) before
computing; nothing is cast silently (only the cotangent and tangents, which are not operands of
the product, are converted, as in tp_torch's adapter).

Each operation (forward, VJP, force-loss gradient, HVP) is one jitted function per
``(descriptor, method, dtype, weight layout)``, compiled once under ``jax.enable_x64`` for
float64 (the caller's global JAX configuration is left alone). The leading batch dimensions are
flattened and zero-padded to a power of two (at least 8), so the many small batch shapes of the
conformance suite reuse a handful of executables instead of paying an XLA compile each; padded
rows have zero inputs and zero cotangent, so they add nothing to any result (the product is
row-wise) and are sliced away.

The convolution (``conv``, ``conv_vjp``, ``conv_force_loss_grad``) runs
:func:`tp_jax.tensor_product_conv` the same way, one jitted function per ``(descriptor, method,
op, weight layout)`` (the graph is not padded); the index arrays are checked here, before
compute, since inside ``jit`` they are traced. Without ``tp_jax.tensor_product_conv`` the
backend has no conv methods and the conformance suite skips those checks.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tp_spec as spec
from tp_spec.errors import DeviceError, DTypeError, InstructionError, ShapeError
from tp_spec.validation import check_conv_call, check_index_range

from . import _api

try:
    from ._conv import tensor_product_conv
except ImportError:  # a tp_jax without the convolution
    tensor_product_conv = None

Grads = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]
log = logging.getLogger(__name__)
MIN_BUCKET = 8

#: At most this many ``(descriptor, method)`` pairs keep compiled executables; the next new pair
#: first drops every JAX cache (``jax.clear_caches()``). XLA:CPU maps about three memory regions
#: per executable and JAX keeps them while its caches hold the executable: the few thousand
#: compiles of a conformance run exceed Linux's ``vm.max_map_count`` (65,530) and the next
#: compile segfaults (measured: MIMO L = 4 CGTP, three methods, forward/VJP/force loss, +3,100
#: maps; ``jax.clear_caches()`` returns to ~500). Runs group the tests of one pair together, so
#: little is recompiled.
MAX_LIVE_PAIRS = 8
_LIVE_PAIRS: dict[tuple[Any, str], None] = {}


def _use_pair(d: spec.TensorProductDescriptor, method: str) -> None:
    key = (d, method)
    if key in _LIVE_PAIRS:
        return
    if len(_LIVE_PAIRS) >= MAX_LIVE_PAIRS:
        log.info("%d (descriptor, method) pairs compiled: clearing JAX's caches before the next "
                 "one (MAX_LIVE_PAIRS)", len(_LIVE_PAIRS))
        _compiled.cache_clear()
        _conv_compiled.cache_clear()
        jax.clear_caches()
        _LIVE_PAIRS.clear()
    _LIVE_PAIRS[key] = None


def _x64(dtype: str, method: str):
    """x64 for float64, and always for ``s2fft`` (its float32 path needs x64, see _s2fft)."""
    return jax.enable_x64(dtype == "float64" or method == "s2fft")


def _platform(device: str) -> str:
    return {"cuda": "gpu"}.get(device, device)


def bucket(n: int) -> int:
    """The padded row count for ``n`` rows: the next power of two, at least ``MIN_BUCKET``."""
    return max(MIN_BUCKET, 1 << max(n - 1, 0).bit_length())


@lru_cache(maxsize=512)
def _compiled(d: spec.TensorProductDescriptor, method: str, op: str, weights: str) -> Any:
    """The jitted ``op`` on rows: ``a (N, d1)``, ``b (N, d2)``, ``w`` (``None``,
    ``(numel,)`` or ``(N, numel)`` as ``weights`` says), cotangent ``c (N, dout)``, tangents."""
    f = _api.tensor_product(d, method)
    weighted = weights != "none"

    def call(a, b, w):
        return f(a, b, w) if weighted else f(a, b)

    def energy(c, a, b, w):
        return jnp.sum(c * call(a, b, w))

    argnums = (1, 2, 3) if weighted else (1, 2)

    if op == "apply":
        def fn(a, b, w):
            return call(a, b, w)
    elif op == "vjp":
        def fn(a, b, w, c):
            return jax.grad(energy, argnums)(c, a, b, w)
    elif op == "force":
        def loss(c, a, b, w):
            return jnp.sum(jax.grad(energy, 1)(c, a, b, w) ** 2)

        def fn(a, b, w, c):
            return jax.grad(loss, argnums)(c, a, b, w)
    elif op == "hvp":
        def fn(a, b, w, c, t1, t2, tw):
            if weighted:
                def g3(p, q, r):
                    return jax.grad(energy, argnums)(c, p, q, r)

                return jax.jvp(g3, (a, b, w), (t1, t2, tw))[1]

            def g2(p, q):
                return jax.grad(energy, argnums)(c, p, q, None)

            return jax.jvp(g2, (a, b), (t1, t2))[1]
    else:  # pragma: no cover - internal
        raise ValueError(op)
    return jax.jit(fn)


@lru_cache(maxsize=512)
def _conv_compiled(d: spec.TensorProductDescriptor, method: str, op: str, weights: str) -> Any:
    """The jitted conv ``op`` on ``(x_nodes, x_edges, w, senders, receivers[, cotangent])``
    (``w``: ``None``, ``(numel,)`` or ``(n_edges, numel)`` as ``weights`` says)."""
    f = tensor_product_conv(d, method)
    argnums = (0, 1, 2) if weights != "none" else (0, 1)

    def energy(xn, xe, w, s, r, c):
        return jnp.sum(c * f(xn, xe, w, s, r))

    if op == "apply":
        return jax.jit(f)
    if op == "vjp":
        return jax.jit(jax.grad(energy, argnums))
    if op == "force":
        def loss(xn, xe, w, s, r, c):
            return jnp.sum(jax.grad(energy, 1)(xn, xe, w, s, r, c) ** 2)

        return jax.jit(jax.grad(loss, argnums))
    raise ValueError(op)  # pragma: no cover - internal


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
    def _prep(self, d, method, dtype, device, x1, x2, w, *others):
        """Validate; return the operands and ``others`` (cotangent, tangents) as float arrays
        of ``dtype``."""
        (a, b, w), rest = self._operands(d, method, dtype, device,
                                         (("x1", x1), ("x2", x2), ("weights", w)), others)
        d.check_shapes(a.shape, b.shape, None if w is None else w.shape)
        return a, b, w, rest

    def _operands(self, d, method, dtype, device, named, others):
        """Method, dtype string, device; the ``(label, array)`` operands real floating arrays
        of exactly ``dtype`` (``None`` kept); ``others`` (cotangent, tangents) as ``dtype``."""
        if dtype not in ("float64", "float32"):
            raise DTypeError(f"tp_jax: dtype must be 'float64' or 'float32', got {dtype!r}")
        if device not in self.devices():
            raise DeviceError(f"tp_jax: device {device!r} not available; "
                              f"devices: {self.devices()}")
        ms = self.methods(d, device)
        if method not in ms:
            raise InstructionError(f"tp_jax: unknown method {method!r}; valid: {sorted(ms)}")
        if ms[method] is not None:
            raise InstructionError(f"tp_jax: method {method!r} not applicable: {ms[method]}")
        operands = []
        for label, a in named:
            if a is None:
                operands.append(None)
                continue
            a = np.asarray(a)
            if not np.issubdtype(a.dtype, np.floating):
                raise DTypeError(f"tp_jax: {label} must be a real floating array, got {a.dtype}")
            operands.append(a)
        kinds = sorted({str(a.dtype) for a in operands if a is not None})
        if len(kinds) > 1:
            raise DTypeError(f"tp_jax: inputs have mixed dtypes {kinds}")
        if kinds[0] != dtype:
            raise DTypeError(f"tp_jax: inputs have dtype {kinds[0]} but dtype={dtype!r} was "
                             "requested (no silent casts)")
        rest = []
        for a in others:
            if a is not None and not np.issubdtype(np.asarray(a).dtype, np.floating):
                raise DTypeError(f"tp_jax: cotangent/tangent must be real floating arrays, got "
                                 f"{np.asarray(a).dtype}")
            rest.append(None if a is None else np.asarray(a, dtype=dtype))
        return operands, rest

    @staticmethod
    def _check_cotangent(d, x1: np.ndarray, c: np.ndarray) -> None:
        want = tuple(x1.shape[:-1]) + (d.irreps_out.dim,)
        if c.shape != want:
            raise ShapeError(f"cotangent has shape {c.shape}; expected {want}")

    @staticmethod
    def _rows(a: np.ndarray | None, n: int, padded: int) -> np.ndarray | None:
        """``(*batch, k) -> (padded, k)``: flattened, zero rows appended."""
        if a is None:
            return None
        a = a.reshape(n, a.shape[-1])
        return np.concatenate([a, np.zeros((padded - n, a.shape[-1]), a.dtype)]) \
            if padded > n else a

    def _run(self, d, method, op, dtype, device, a, b, w, rows=(), tw=None) -> tuple:
        """Run the compiled ``op`` on flattened, padded rows (``rows``: per-row extras such as
        the cotangent; ``tw``: the weight tangent, laid out like ``w``); NumPy results."""
        batch = a.shape[:-1]
        n = math.prod(batch)
        padded = bucket(n)
        layout = "none" if w is None else ("shared" if w.ndim == 1 else "batched")
        if layout == "batched":
            w, tw = self._rows(w, n, padded), self._rows(tw, n, padded)
        args = [self._rows(a, n, padded), self._rows(b, n, padded), w,
                *(self._rows(r, n, padded) for r in rows)]
        if op == "hvp":
            args.append(tw)
        _use_pair(d, method)
        with _x64(dtype, method), jax.default_device(jax.devices(_platform(device))[0]):
            out = _compiled(d, method, op, layout)(*args)
        out = out if isinstance(out, tuple) else (out,)
        return tuple(np.asarray(o) for o in out), batch, n, layout

    @staticmethod
    def _unrows(g: np.ndarray, batch, n: int) -> np.ndarray:
        return g[:n].reshape(tuple(batch) + (g.shape[-1],))

    def _grads(self, out, batch, n, layout, w) -> Grads:
        g1, g2 = (self._unrows(g, batch, n) for g in out[:2])
        if layout == "none":
            return g1, g2, None
        gw = out[2] if layout == "shared" else self._unrows(out[2], batch, n)
        return g1, g2, gw.reshape(w.shape)

    # ------------------------------------------------------------------ protocol
    def apply(self, descriptor, method, x1, x2, weights=None, *, dtype="float64", device="cpu"):
        a, b, w, _ = self._prep(descriptor, method, dtype, device, x1, x2, weights)
        (out,), batch, n, _ = self._run(descriptor, method, "apply", dtype, device, a, b, w)
        return self._unrows(out, batch, n)

    def vjp(self, descriptor, method, x1, x2, weights, cotangent, *, dtype="float64",
            device="cpu") -> Grads:
        a, b, w, (c,) = self._prep(descriptor, method, dtype, device, x1, x2, weights, cotangent)
        self._check_cotangent(descriptor, a, c)
        out, batch, n, layout = self._run(descriptor, method, "vjp", dtype, device, a, b, w, (c,))
        return self._grads(out, batch, n, layout, w)

    def force_loss_grad(self, descriptor, method, x1, x2, weights, cotangent, *,
                        dtype="float64", device="cpu") -> Grads:
        a, b, w, (c,) = self._prep(descriptor, method, dtype, device, x1, x2, weights, cotangent)
        self._check_cotangent(descriptor, a, c)
        out, batch, n, layout = self._run(descriptor, method, "force", dtype, device, a, b, w,
                                          (c,))
        return self._grads(out, batch, n, layout, w)

    def hvp(self, descriptor, method, x1, x2, weights, cotangent, tangents, *, dtype="float64",
            device="cpu") -> Grads:
        v1, v2, vw = tangents
        a, b, w, (c, t1, t2, tw) = self._prep(descriptor, method, dtype, device, x1, x2,
                                              weights, cotangent, v1, v2, vw)
        self._check_cotangent(descriptor, a, c)
        if (tw is None) != (w is None) or (tw is not None and tw.shape != w.shape):
            raise ShapeError("the weight tangent must match the weights' shape (or be None)")
        if t1.shape != a.shape or t2.shape != b.shape:
            raise ShapeError("tangents must match the shapes of x1 and x2")
        out, batch, n, layout = self._run(descriptor, method, "hvp", dtype, device, a, b, w,
                                          (c, t1, t2), tw)
        return self._grads(out, batch, n, layout, w)

    # ------------------------------------------------------------------ convolution
    def _conv_run(self, d, method, op, dtype, device, x_nodes, x_edges, weights, senders,
                  receivers, cotangent=None) -> Any:
        """Validate (operands, shapes, index dtypes and range, before compute) and run the
        jitted conv ``op``."""
        (xn, xe, w), rest = self._operands(
            d, method, dtype, device, (("x_nodes", x_nodes), ("x_edges", x_edges),
                                       ("weights", weights)),
            () if cotangent is None else (cotangent,))
        s, r = np.asarray(senders), np.asarray(receivers)
        n_nodes, n_edges, _ = check_conv_call(d, xn, xe, w, s, r)
        if n_edges:
            for label, idx in (("senders", s), ("receivers", r)):
                check_index_range(label, int(idx.min()), int(idx.max()), n_nodes)
        args = [xn, xe, w, s, r]
        if rest:
            if rest[0].shape != (n_nodes, d.irreps_out.dim):
                raise ShapeError(f"cotangent has shape {rest[0].shape}; expected "
                                 f"{(n_nodes, d.irreps_out.dim)}")
            args.append(rest[0])
        layout = "none" if w is None else ("shared" if w.ndim == 1 else "edges")
        _use_pair(d, method)
        with _x64(dtype, method), jax.default_device(jax.devices(_platform(device))[0]):
            out = _conv_compiled(d, method, op, layout)(*args)
        if op == "apply":
            return np.asarray(out)
        return (np.asarray(out[0]), np.asarray(out[1]),
                None if w is None else np.asarray(out[2]))

    def conv(self, descriptor, method, x_nodes, x_edges, weights, senders, receivers, *,
             dtype="float64", device="cpu") -> np.ndarray:
        return self._conv_run(descriptor, method, "apply", dtype, device, x_nodes, x_edges,
                              weights, senders, receivers)

    def conv_vjp(self, descriptor, method, x_nodes, x_edges, weights, senders, receivers,
                 cotangent, *, dtype="float64", device="cpu") -> Grads:
        return self._conv_run(descriptor, method, "vjp", dtype, device, x_nodes, x_edges,
                              weights, senders, receivers, cotangent)

    def conv_force_loss_grad(self, descriptor, method, x_nodes, x_edges, weights, senders,
                             receivers, cotangent, *, dtype="float64", device="cpu") -> Grads:
        """Gradients of ``L = sum(F**2)``, ``F = dE/dx_edges``, by ``jax.grad`` of
        ``jax.grad``."""
        return self._conv_run(descriptor, method, "force", dtype, device, x_nodes, x_edges,
                              weights, senders, receivers, cotangent)


if tensor_product_conv is None:  # no convolution in this tp_jax: the optional methods are absent
    for _name in ("conv", "conv_vjp", "conv_force_loss_grad"):
        delattr(JaxBackend, _name)

backend = JaxBackend()

__all__ = ["MAX_LIVE_PAIRS", "JaxBackend", "backend", "bucket"]
