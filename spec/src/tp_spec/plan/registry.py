"""The one method registry: every method of every family, read by both backends, the cost
model and the benchmarks; plan building (cached) and the NumPy executor dispatch."""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import Any

import numpy as np

from ..descriptor import TensorProductDescriptor
from ..errors import InstructionError
from . import cgtp, gtp, mtp, vstp
from .base import Method, Plan
from .tuning import DEFAULT_TUNING, Tuning

__all__ = ["DEFAULT_METHODS", "METHODS", "default_method", "execute", "family", "flops",
           "get_method", "methods", "plan"]

log = logging.getLogger(__name__)

#: Every method, per family, in the order the backends list them.
METHODS: dict[str, dict[str, Method]] = {
    fam: {m.name: m for m in module.METHODS}
    for fam, module in (("cgtp", cgtp), ("gtp", gtp), ("mtp", mtp), ("vstp", vstp))
}

#: What ``method=None`` picks, in every backend and on every device: the fastest measured on
#: CPU (float32, batch 10,000; the committed benchmark records): CGTP ``fused`` (faster than
#: ``dense``/``sparse`` and than e3nn / e3nn-jax on every workload measured), GTP ``grid``
#: (7-35x faster than ``fourier`` at L = 1..10), MTP ``sparse`` (block-sparse change of basis:
#: 1.4-1.7x faster than ``dense`` from L = 6), VSTP ``grid`` (its only method). The GPU
#: adapters are opt-in.
DEFAULT_METHODS = {"cgtp": "fused", "gtp": "grid", "mtp": "sparse", "vstp": "grid"}


def family(d: Any) -> str:
    """``d``'s family (``"cgtp"``, ``"gtp"``, ``"mtp"`` or ``"vstp"``); :class:`InstructionError`
    if ``d`` is not a tp_spec descriptor of a known family."""
    if not isinstance(d, TensorProductDescriptor) or d.kind not in METHODS:
        raise InstructionError(
            f"expected a tp_spec descriptor (cgtp, gtp, mtp or vstp), got {type(d).__name__}")
    return d.kind


def methods(d: TensorProductDescriptor, framework: str | None = None) -> dict[str, str | None]:
    """Every method of ``d``'s family (that ``framework`` executes, if given) -> ``None`` if it
    can run ``d``, else the descriptor-level reason it cannot."""
    out: dict[str, str | None] = {}
    for name, m in METHODS[family(d)].items():
        if framework is None or framework in m.frameworks:
            out[name] = m.available(d)
    return out


def default_method(d: TensorProductDescriptor) -> str:
    """The method ``method=None`` picks for ``d`` (:data:`DEFAULT_METHODS`)."""
    return DEFAULT_METHODS[family(d)]


def get_method(d: TensorProductDescriptor, name: str, framework: str | None = None) -> Method:
    """The :class:`Method` ``name`` of ``d``'s family; :class:`InstructionError` naming the
    valid methods if it is unknown (to ``framework``) or cannot run ``d``."""
    fam = family(d)
    valid = methods(d, framework)
    if name not in valid:
        raise InstructionError(
            f"unknown method {name!r} for a {fam} descriptor; valid methods: {list(valid)}")
    if valid[name] is not None:
        usable = [k for k, v in valid.items() if v is None]
        raise InstructionError(
            f"method {name!r} cannot run this {fam} descriptor: {valid[name]}. "
            f"Usable methods: {usable}")
    return METHODS[fam][name]


@lru_cache(maxsize=512)
def _plan(d: TensorProductDescriptor, name: str, tuning: Tuning) -> Plan:
    m = get_method(d, name)
    if m.build is None:
        raise InstructionError(f"method {name!r} is an adapter of {m.adapter}: it has no plan")
    t0 = time.perf_counter()
    p = m.build(d, tuning)
    log.debug("planned %s %s x %s -> %s, method %r, in %.3f s (cached)", d.kind,
              d.irreps_in1, d.irreps_in2, d.irreps_out, name, time.perf_counter() - t0)
    return p


def plan(d: TensorProductDescriptor, method: str | None = None,
         tuning: Tuning | None = None) -> Plan:
    """The plan of ``d`` under ``method`` (``None``: :func:`default_method`), built once per
    ``(d, method, tuning)`` and cached."""
    name = default_method(d) if method is None else method
    return _plan(d, name, DEFAULT_TUNING if tuning is None else tuning)


def flops(d: TensorProductDescriptor, batch: int, method: str) -> int:
    """FLOPs of ``batch`` samples of ``d`` computed by ``method`` as it is planned (forward
    pass; a multiply-add counts 2; the models are described in :mod:`tp_spec.cost`).
    :class:`InstructionError` if the method has no model (the adapters of outside libraries
    other than OpenEquivariance's published one)."""
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 0:
        raise ValueError(f"batch must be a non-negative int, got {batch!r}")
    m = get_method(d, method)
    if m.flops is None:
        raise InstructionError(f"method {method!r} has no FLOP model")
    return int(round(batch * m.flops(d)))


def execute(p: Plan, x1: Any, x2: Any, weights: Any = None) -> np.ndarray:
    """Run plan ``p`` in NumPy (float64): ``x1 (*batch, dim1)``, ``x2 (*batch, dim2)``,
    ``weights`` ``None``, ``(numel,)`` or ``(*batch, numel)`` -> ``(*batch, dim_out)``."""
    d = p.descriptor
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = np.asarray(x2, dtype=np.float64)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    batch = d.check_shapes(x1.shape, x2.shape, None if w is None else w.shape)
    n = int(np.prod(batch, dtype=np.int64))
    a, b = x1.reshape(n, -1), x2.reshape(n, -1)
    if w is not None and w.ndim > 1:
        w = w.reshape(n, -1)
    run = METHODS[d.kind][p.method].numpy
    if run is None:
        raise InstructionError(f"method {p.method!r} has no NumPy executor")
    return run(p, a, b, w).reshape(batch + (d.irreps_out.dim,))
