"""``tensor_product(descriptor, method)``: method registry, validation, batching, jit.

Every method is a :class:`Method`: ``available(d)`` (``None`` or the reason it cannot run ``d``),
``build(d)`` (a plan of NumPy constants, built once per ``(d, method)`` and cached) and
``run(plan, x1, x2, w)`` (the JAX kernel on flattened inputs: ``x1 (N, dim1)``, ``x2 (N, dim2)``,
``w`` ``None``, ``(numel,)`` shared or ``(N, numel)`` per sample; returns ``(N, dim_out)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tp_spec import DeviceError, DTypeError, InstructionError, TensorProductDescriptor

__all__ = ["Method", "TRACE_COUNT", "default_method", "methods", "register", "tensor_product"]

#: Number of times each ``(descriptor, method)`` kernel was traced (for no-retrace tests).
TRACE_COUNT: dict[tuple[Any, str], int] = {}

_FLOAT_DTYPES = (jnp.float64, jnp.float32, jnp.bfloat16, jnp.float16)


@dataclass(frozen=True)
class Method:
    """One algorithm for one descriptor family."""

    kind: str
    name: str
    available: Callable[[TensorProductDescriptor], str | None]
    build: Callable[[TensorProductDescriptor], Any]
    run: Callable[..., jax.Array]
    doc: str = ""


_REGISTRY: dict[str, dict[str, Method]] = {"cgtp": {}, "gtp": {}, "mtp": {}}

# Default choice per family on CPU (float32, batch 10,000, one XLA thread, medians; numbers and
# commands in the package README's performance section, script scripts/bench_cpu.py): CGTP
# "fused" ran 2.9-6.3x faster than e3nn-jax's tensor_product forward on MIMO L = 3..10 and
# 1.7-3.1x faster backward (dense per path is on par with e3nn-jax); GTP "grid" beat "fourier"
# 7-35x at L = 1..10; MTP "dense" was level with or ahead of "sparse" (0.93-1.25x of e3x's
# FusedTensor vs 0.85-0.96x).
_DEFAULTS = {"cgtp": "fused", "gtp": "grid", "mtp": "sparse"}


def register(method: Method) -> Method:
    """Add ``method`` to the registry (used by the method modules at import)."""
    _REGISTRY[method.kind][method.name] = method
    return method


def _ensure_loaded() -> None:
    from . import _cgtp, _cueq, _gtp, _mtp  # noqa: F401  (registration side effects)


def _kind(d: Any) -> str:
    if not isinstance(d, TensorProductDescriptor):
        raise TypeError(f"expected a tp_spec descriptor (cgtp/gtp/mtp), got {type(d).__name__}")
    if d.kind not in _REGISTRY:
        raise InstructionError(f"unsupported descriptor kind {d.kind!r}")
    return d.kind


def methods(d: TensorProductDescriptor) -> dict[str, str | None]:
    """Every method of ``d``'s family mapped to ``None`` (runs) or the reason it cannot."""
    _ensure_loaded()
    out: dict[str, str | None] = {}
    for name, m in _REGISTRY[_kind(d)].items():
        try:
            out[name] = m.available(d)
        except Exception as e:  # noqa: BLE001 - reported, not raised
            out[name] = f"{type(e).__name__}: {e}"
    return out


def default_method(d: TensorProductDescriptor) -> str:
    """The method ``tensor_product(d, None)`` uses (fastest available on CPU)."""
    avail = methods(d)
    first = _DEFAULTS[d.kind]
    if avail.get(first) is None and first in avail:
        return first
    for name, reason in avail.items():
        if reason is None:
            return name
    raise InstructionError(f"no method can run this descriptor: {avail}")


def _resolve(d: TensorProductDescriptor, method: str | None) -> str:
    _ensure_loaded()
    kind = _kind(d)
    if method is None:
        return default_method(d)
    known = _REGISTRY[kind]
    if method not in known:
        raise InstructionError(
            f"unknown method {method!r} for {kind}; valid methods: {sorted(known)}"
        )
    reason = known[method].available(d)
    if reason is not None:
        valid = sorted(k for k, v in methods(d).items() if v is None)
        raise InstructionError(
            f"method {method!r} cannot run this {kind}: {reason}; valid methods: {valid}"
        )
    return method


@lru_cache(maxsize=256)
def get_plan(d: TensorProductDescriptor, method: str) -> Any:
    """The cached NumPy constants of ``(d, method)``."""
    _ensure_loaded()
    return _REGISTRY[d.kind][method].build(d)


def _check_dtypes(x1: Any, x2: Any, w: Any) -> Any:
    dts = [("x1", x1.dtype), ("x2", x2.dtype)] + ([("weights", w.dtype)] if w is not None else [])
    for name, dt in dts:
        if not any(dt == f for f in _FLOAT_DTYPES):
            raise DTypeError(
                f"{name} has dtype {dt}; expected a floating dtype (float32, float64, bfloat16)"
            )
    if len({dt for _, dt in dts}) != 1:
        raise DTypeError(
            "inputs must share one dtype (nothing is cast silently); got "
            + ", ".join(f"{n}={dt}" for n, dt in dts)
        )
    return dts[0][1]


def _device_set(x: Any) -> frozenset | None:
    if isinstance(x, jax.core.Tracer) or not isinstance(x, jax.Array):
        return None
    if not getattr(x, "committed", True):
        return None
    try:
        return frozenset(x.devices())
    except Exception:  # noqa: BLE001
        return None


def _check_devices(*xs: Any) -> None:
    sets = [s for s in (_device_set(x) for x in xs if x is not None) if s is not None]
    if len(set(sets)) > 1:
        raise DeviceError(
            "inputs live on different devices: " + " vs ".join(str(sorted(map(str, s)))
                                                               for s in sets)
        )


def _as_array(x: Any) -> Any:
    if isinstance(x, (jax.Array, np.ndarray)) or hasattr(x, "shape") and hasattr(x, "dtype"):
        return x
    return np.asarray(x)


def _make_kernel(d: TensorProductDescriptor, method: str) -> Callable:
    m = _REGISTRY[d.kind][method]
    plan = get_plan(d, method)
    dim_out = d.irreps_out.dim
    key = (d, method)

    def kernel(x1: jax.Array, x2: jax.Array, w: jax.Array | None) -> jax.Array:
        TRACE_COUNT[key] = TRACE_COUNT.get(key, 0) + 1
        batch = x1.shape[:-1]
        n = math.prod(batch)
        dtype = x1.dtype
        cdt = jnp.float32 if dtype in (jnp.bfloat16, jnp.float16) else dtype
        if n == 0 or dim_out == 0:
            # Keep the dependence on the inputs (zero gradients, not None).
            zero = (jnp.sum(x1) * 0 + jnp.sum(x2) * 0).astype(dtype)
            return jnp.zeros(batch + (dim_out,), dtype) + zero
        a = x1.reshape(n, x1.shape[-1]).astype(cdt)
        b = x2.reshape(n, x2.shape[-1]).astype(cdt)
        if w is not None:
            w = w.astype(cdt)
            if w.ndim > 1:
                w = w.reshape(n, w.shape[-1])
        out = m.run(plan, a, b, w)
        return out.astype(dtype).reshape(batch + (dim_out,))

    return jax.jit(kernel)


@lru_cache(maxsize=256)
def _function(d: TensorProductDescriptor, method: str) -> Callable:
    kernel = _make_kernel(d, method)

    def f(x1: Any, x2: Any, weights: Any = None) -> jax.Array:
        x1, x2 = _as_array(x1), _as_array(x2)
        w = None if weights is None else _as_array(weights)
        _check_dtypes(x1, x2, w)
        d.check_shapes(tuple(x1.shape), tuple(x2.shape), None if w is None else tuple(w.shape))
        _check_devices(x1, x2, w)
        return kernel(x1, x2, w)

    f.__doc__ = (
        f"{d.kind.upper()} {d.irreps_in1} x {d.irreps_in2} -> {d.irreps_out} (method "
        f"{method!r}).\n\nx1: (*batch, {d.irreps_in1.dim}), x2: (*batch, {d.irreps_in2.dim}), "
        f"weights: None, ({d.weight_numel},) or (*batch, {d.weight_numel}); "
        f"returns (*batch, {d.irreps_out.dim})."
    )
    f.descriptor = d  # type: ignore[attr-defined]
    f.method = method  # type: ignore[attr-defined]
    return f


def tensor_product(d: TensorProductDescriptor, method: str | None = None) -> Callable:
    """A pure function ``f(x1, x2, weights=None) -> (*batch, irreps_out.dim)`` computing ``d``.

    ``x1``: ``(*batch, irreps_in1.dim)``, ``x2``: ``(*batch, irreps_in2.dim)`` (same ``batch``,
    nothing broadcast), ``weights``: ``None`` iff ``d.weight_numel == 0``, else
    ``(weight_numel,)`` (shared) or ``(*batch, weight_numel)``. One dtype for all: float64,
    float32 or bfloat16/float16 (computed in float32, rounded once at the end). ``f`` is jitted,
    and safe under ``jit``/``grad``/``vmap``/``jvp``/``vjp`` to any order; the constants are
    NumPy arrays built once per ``(d, method)``. ``method=None`` picks the CPU default
    (:func:`default_method`); see :func:`methods` for the valid names.
    """
    return _function(d, _resolve(d, method))


#: Matmul precision of every contraction in tp_jax: exact float32 products on GPUs too (XLA's
#: default lets float32 dots run as TF32, ~1e-3 relative error, on NVIDIA Ampere and later).
HIGHEST = jax.lax.Precision.HIGHEST


def einsum(*operands: Any, **kwargs: Any) -> jax.Array:
    """``jnp.einsum`` at :data:`HIGHEST` precision."""
    return jnp.einsum(*operands, precision=HIGHEST, **kwargs)


def const(a: np.ndarray, dtype: Any) -> jax.Array:
    """A NumPy constant as a JAX constant of the compute dtype (trace-time only)."""
    return jnp.asarray(np.asarray(a, dtype=np.dtype(dtype)))


def ix(a: np.ndarray) -> np.ndarray:
    """A static gather/scatter index as int32 (independent of the x64 mode)."""
    return np.asarray(a, dtype=np.int32)
