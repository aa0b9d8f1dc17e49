"""What every plan and every method record has, and the small tables plans share.

A :class:`Plan` is how one method computes one descriptor, decided once: NumPy arrays (folded
coupling blocks, index tables, layouts) and plain flags, no framework types. An executor in a
backend binds the arrays as constants of its framework and runs kernels; the NumPy executor of
each plan (``Method.numpy``) runs the same plan in NumPy, so the spec's tests check every plan
against :func:`tp_spec.reference.apply` without torch or jax.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..clebsch_gordan import clebsch_gordan
from .tuning import Tuning

if TYPE_CHECKING:
    from ..descriptor import Path, TensorProductDescriptor

__all__ = ["FRAMEWORKS", "Method", "Plan", "always", "chunk_rows", "folded_cg", "offsets"]

#: The frameworks with a backend package.
FRAMEWORKS = ("torch", "jax")


@dataclass(frozen=True, eq=False)
class Plan:
    """Base of every plan: ``descriptor``, ``method`` and the ``tuning`` it was built with.
    Subclasses add NumPy arrays and flags; plans compare by identity (they are cached)."""

    descriptor: TensorProductDescriptor
    method: str
    tuning: Tuning


def always(d: Any) -> str | None:
    """Availability of a method that runs every descriptor of its family."""
    return None


@dataclass(frozen=True)
class Method:
    """One algorithm for one descriptor family: the same algorithm in every framework listed.

    * ``build(d, tuning) -> Plan``: the plan (``None`` for an adapter, planned by the outside
      library it calls);
    * ``numpy(plan, x1, x2, w) -> (B, dim_out)``: the plan run in NumPy on flat inputs
      (``x1 (B, dim1)``, ``x2 (B, dim2)``, ``w`` ``None``, ``(numel,)`` or ``(B, numel)``);
    * ``available(d)``: ``None`` or why the method cannot run ``d`` (descriptor-level reasons;
      a backend adds its own, such as a missing library or device);
    * ``frameworks``: the backends that execute it; ``adapter``: the outside library it calls,
      if any (framework-only adapters list one framework);
    * ``flops(d)``: its per-sample FLOP count as planned (``None``: no model;
      :func:`tp_spec.plan.flops`).
    """

    family: str
    name: str
    doc: str
    build: Callable[[TensorProductDescriptor, Tuning], Plan] | None = None
    numpy: Callable[..., np.ndarray] | None = None
    available: Callable[[TensorProductDescriptor], str | None] = always
    frameworks: tuple[str, ...] = FRAMEWORKS
    adapter: str | None = None
    flops: Callable[[TensorProductDescriptor], float] | None = None


def folded_cg(p: Path) -> np.ndarray:
    """Path ``p``'s Clebsch-Gordan block with its coefficient folded in, float64
    ``(2 l1 + 1, 2 l2 + 1, 2 l3 + 1)``."""
    return p.coefficient * np.asarray(clebsch_gordan(*p.lll), dtype=np.float64)


def offsets(irreps: Any) -> list[int]:
    """First column of every block of ``irreps`` in the ``mul_ir`` layout."""
    return [s.start for s in irreps.slices()]


def chunk_rows(batch: int, row_entries: int, entries: int, min_rows: int) -> int | None:
    """Rows per chunk of a ``batch`` run in chunks of about ``entries`` intermediate entries
    (``row_entries`` per row), at least ``min_rows`` rows, the batch split evenly; None where
    it runs in one piece."""
    rows = max(min_rows, entries // max(row_entries, 1))
    if batch <= rows:
        return None
    n = -(-batch // rows)
    return -(-batch // n)
