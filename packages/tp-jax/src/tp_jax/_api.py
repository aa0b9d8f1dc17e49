"""``tensor_product(descriptor, method)``: method choice, validation, batching, jit.

The method names, their availability and the default come from :mod:`tp_spec.plan` (one
registry for every backend). A planned method runs its tp_spec plan through the executor of the
plan's type (:data:`tp_jax._executors.RUNNERS`); adapters of outside libraries (``cueq``,
``s2fft``) plan through their library. An executor takes flat inputs ``x1 (N, dim1)``,
``x2 (N, dim2)``, ``w`` ``None``, ``(numel,)`` shared or ``(N, numel)`` per sample in the
compute dtype and returns ``(N, dim_out)``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tp_spec import DeviceError, InstructionError, TensorProductDescriptor
from tp_spec import plan as tp_plan
from tp_spec.validation import check_call

from ._executors import ADAPTERS, RUNNERS

__all__ = ["TRACE_COUNT", "default_method", "methods", "tensor_product"]

log = logging.getLogger(__name__)

#: Number of times each ``(descriptor, method)`` kernel was traced (for no-retrace tests).
TRACE_COUNT: dict[tuple[Any, str], int] = {}


def methods(d: TensorProductDescriptor, device: str = "cpu") -> dict[str, str | None]:
    """The methods of ``d``'s family that tp_jax runs and whether each can run ``d``.

    Args:
        d: a tp_spec descriptor (CGTP, GTP, MTP or VSTP).
        device: accepted for symmetry with ``tp_torch.methods``: every method runs on every
            JAX platform.

    Returns:
        ``{method name: None if it runs, else the reason it cannot}``.

    >>> import tp_spec, tp_jax
    >>> tp_jax.methods(tp_spec.gtp("0e + 1o", "0e + 1o"))["grid"] is None
    True
    """
    out = tp_plan.methods(d, "jax")
    for name, reason in out.items():
        adapter = ADAPTERS.get((d.kind, name))
        if reason is None and adapter is not None:
            out[name] = adapter[0](d)
            if out[name] is not None:
                log.debug("method %r unavailable: %s", name, out[name])
    return out


def default_method(d: TensorProductDescriptor, device: str = "cpu") -> str:
    """The method ``tensor_product(d, None)`` uses (:data:`tp_spec.plan.DEFAULT_METHODS`).

    >>> import tp_spec, tp_jax
    >>> tp_jax.default_method(tp_spec.cgtp("0e + 1o", "0e + 1o", "0e + 1o", mode="uvw"))
    'fused'
    """
    return tp_plan.default_method(d)


def _resolve(d: TensorProductDescriptor, method: str | None) -> str:
    name = default_method(d) if method is None else method
    if method is None:
        log.debug("method=None: %r, the default of %s", name, d.kind)
    tp_plan.get_method(d, name, framework="jax")
    adapter = ADAPTERS.get((d.kind, name))
    if adapter is not None:
        reason = adapter[0](d)
        if reason is not None:
            usable = [k for k, v in methods(d).items() if v is None]
            raise InstructionError(
                f"method {name!r} cannot run this {d.kind}: {reason}; usable methods: {usable}")
    return name


@lru_cache(maxsize=256)
def _executor(d: TensorProductDescriptor, method: str,
              tuning: tp_plan.Tuning | None) -> tuple[Callable[..., jax.Array], Any]:
    """``(run, state)`` of ``(d, method)``: the plan's executor and the plan (built with
    ``tuning``), or an adapter's run function and its NumPy state, built once."""
    t0 = time.perf_counter()
    if tp_plan.METHODS[d.kind][method].build is not None:
        p = tp_plan.plan(d, method, tuning)
        out = RUNNERS[type(p)], p
    else:
        build, run = ADAPTERS[(d.kind, method)][1:]
        out = run, build(d)
    log.debug("%s %s x %s -> %s, method %r: constants built in %.3f s (cached)", d.kind,
              d.irreps_in1, d.irreps_in2, d.irreps_out, method, time.perf_counter() - t0)
    return out


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


def _make_kernel(d: TensorProductDescriptor, method: str,
                 tuning: tp_plan.Tuning | None) -> Callable:
    run, state = _executor(d, method, tuning)
    dim_out = d.irreps_out.dim
    key = (d, method)

    def kernel(x1: jax.Array, x2: jax.Array, w: jax.Array | None) -> jax.Array:
        TRACE_COUNT[key] = TRACE_COUNT.get(key, 0) + 1
        log.debug("tracing %s method %r for x1 %s %s (trace %d of this product)", d.kind,
                  method, x1.shape, x1.dtype, TRACE_COUNT[key])
        batch = x1.shape[:-1]
        n = math.prod(batch)
        dtype = x1.dtype
        cdt = jnp.float32 if dtype in (jnp.bfloat16, jnp.float16) else dtype
        if n == 0 or dim_out == 0 or not d.paths:
            # No paths (every method): exact zeros. They keep a dependence on the inputs through
            # empty slices, which reads no value (a NaN input still gives zeros).
            zero = sum(jnp.sum(a[..., :0]) for a in (x1, x2, w) if a is not None)
            return jnp.zeros(batch + (dim_out,), dtype) + zero.astype(dtype)
        a = x1.reshape(n, x1.shape[-1]).astype(cdt)
        b = x2.reshape(n, x2.shape[-1]).astype(cdt)
        if w is not None:
            w = w.astype(cdt)
            if w.ndim > 1:
                w = w.reshape(n, w.shape[-1])
        out = run(state, a, b, w)
        return out.astype(dtype).reshape(batch + (dim_out,))

    return jax.jit(kernel)


@lru_cache(maxsize=256)
def _function(d: TensorProductDescriptor, method: str, tuning: tp_plan.Tuning | None) -> Callable:
    kernel = _make_kernel(d, method, tuning)

    def f(x1: Any, x2: Any, weights: Any = None) -> jax.Array:
        x1, x2 = _as_array(x1), _as_array(x2)
        w = None if weights is None else _as_array(weights)
        check_call(d, x1, x2, w)
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


def tensor_product(d: TensorProductDescriptor, method: str | None = None, *,
                   tuning: tp_plan.Tuning | None = None) -> Callable:
    """A pure function ``f(x1, x2, weights=None)`` computing the product of ``d``.

    ``f`` takes ``x1: [*batch, irreps_in1.dim]``, ``x2: [*batch, irreps_in2.dim]`` (the same
    batch, nothing broadcast) and ``weights``: ``None`` iff ``d.weight_numel == 0``, else
    ``[weight_numel]`` shared or ``[*batch, weight_numel]`` per sample; it returns
    ``[*batch, irreps_out.dim]``. One dtype for all: float64, float32, or bfloat16/float16
    (computed in float32, rounded once at the end; the policy of :mod:`tp_spec.validation`).
    ``f`` is jitted, and safe under ``jit``/``grad``/``vmap``/``jvp``/``vjp`` to any order;
    the constants are NumPy arrays built once per ``(d, method)``.

    Args:
        d: the tp_spec descriptor (CGTP, GTP, MTP or VSTP).
        method: a name from :func:`methods` (``None``: :func:`default_method`).
        tuning: a :class:`tp_spec.plan.Tuning` for the plan (``None``: default thresholds).

    Returns:
        ``f``, with attributes ``f.descriptor`` and ``f.method``.

    Raises:
        tp_spec.InstructionError: a method that does not exist or cannot run ``d``.

    >>> import jax, jax.numpy as jnp, tp_spec, tp_jax
    >>> d = tp_spec.gtp("0e + 1o + 2e", "0e + 1o + 2e")  # no weights
    >>> d.irreps_out
    1x0e+1x1o+1x2e+1x3o+1x4e
    >>> f = tp_jax.tensor_product(d)
    >>> f.method
    'grid'
    >>> x1, x2 = jnp.ones((3, 9)), jnp.ones((3, 9))
    >>> f(x1, x2).shape
    (3, 25)
    >>> jax.grad(lambda a: f(a, x2).sum())(x1).shape
    (3, 9)
    """
    return _function(d, _resolve(d, method), tuning)
