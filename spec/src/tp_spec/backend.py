"""The backend protocol: how the conformance suite and the benchmarks drive any implementation.

A backend is an object registered under the entry-point group ``tp_spec.backends`` (for
example ``tp_torch = "tp_torch._backend:backend"``). Callers exchange NumPy arrays with it, so
they never import jax or torch themselves. Adding a backend needs no change to its callers.

All arrays are NumPy; ``dtype`` is ``"float64"`` or ``"float32"`` (the precision the backend
computes in); ``device`` is one of :meth:`Backend.devices`. Every method validates its inputs and
raises the exception classes of :mod:`tp_spec.errors` before computing anything.

Callers pass arrays that already have the dtype ``dtype``; an adapter must not cast them
silently: a non-floating input, or inputs whose dtypes differ from each other, raise
:class:`~tp_spec.errors.DTypeError` exactly as the framework API does for the same tensors (the
conformance suite checks this). Gradients are returned with the shapes of the inputs (shared
weights ``(numel,)`` get the gradient summed over the batch); a batch may be empty or ``()``.

Optional methods (checked by the conformance suite when present, skipped with a reason where
missing; see the commented signatures in :class:`Backend`): ``hvp``, and the tensor-product
convolution (:func:`tp_spec.reference.conv`) as ``conv``, ``conv_vjp`` and
``conv_force_loss_grad``. The convolution takes ``x_nodes (n_nodes, dim1)``, ``x_edges
(n_edges, dim2)``, weights ``None``, ``(numel,)`` shared or ``(n_edges, numel)`` per edge, and
``senders``, ``receivers`` ``(n_edges,)`` int32 or int64 arrays, passed to the framework with
their dtype; a sender or receiver outside ``[0, n_nodes)``, or a non-integer index array,
raises :class:`~tp_spec.errors.IndexRangeError` before computing.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

import numpy as np

from .descriptor import TensorProductDescriptor

__all__ = ["ENTRY_POINT_GROUP", "Backend", "load_backends", "registered_backend_names"]

ENTRY_POINT_GROUP = "tp_spec.backends"

Grads = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


@runtime_checkable
class Backend(Protocol):
    """What a backend provides (see the module docstring for the conventions)."""

    #: Short unique name, e.g. ``"tp_torch"`` or ``"e3nn"``.
    name: str

    #: True for oracle adapters around outside libraries (e3nn, cuEquivariance, ...).
    is_oracle: bool

    def devices(self) -> list[str]:
        """Devices usable on this machine, e.g. ``["cpu"]`` or ``["cpu", "cuda"]``."""
        ...

    def methods(
        self, descriptor: TensorProductDescriptor, device: str = "cpu"
    ) -> dict[str, str | None]:
        """Every method this backend knows for ``descriptor``'s family, mapped to ``None`` if it
        can run ``descriptor`` on ``device`` or to the reason it cannot (for a skip message)."""
        ...

    def apply(
        self,
        descriptor: TensorProductDescriptor,
        method: str,
        x1: np.ndarray,
        x2: np.ndarray,
        weights: np.ndarray | None = None,
        *,
        dtype: str = "float64",
        device: str = "cpu",
    ) -> np.ndarray:
        """Forward: ``(*batch, irreps_out.dim)``."""
        ...

    def vjp(
        self,
        descriptor: TensorProductDescriptor,
        method: str,
        x1: np.ndarray,
        x2: np.ndarray,
        weights: np.ndarray | None,
        cotangent: np.ndarray,
        *,
        dtype: str = "float64",
        device: str = "cpu",
    ) -> Grads:
        """Gradients of ``E = sum(cotangent * f(x1, x2, w))`` w.r.t. ``(x1, x2, weights)``
        (the last is ``None`` when there are no weights)."""
        ...

    def force_loss_grad(
        self,
        descriptor: TensorProductDescriptor,
        method: str,
        x1: np.ndarray,
        x2: np.ndarray,
        weights: np.ndarray | None,
        cotangent: np.ndarray,
        *,
        dtype: str = "float64",
        device: str = "cpu",
    ) -> Grads:
        """Second order, as force training uses it: with ``E = sum(cotangent * f(x1, x2, w))``
        and ``F = dE/dx1``, the gradients of ``L = sum(F**2)`` w.r.t. ``(x1, x2, weights)``,
        computed by the backend's double backward (not by finite differences)."""
        ...

    # Optional (the conformance suite skips the check, with a reason, where it is missing):
    #
    # def hvp(self, descriptor, method, x1, x2, weights, cotangent, tangents, *,
    #         dtype="float64", device="cpu") -> Grads:
    #     """Hessian-vector product of ``E = sum(cotangent * f(x1, x2, w))``: with
    #     ``tangents = (v1, v2, vw)`` (``vw`` None when there are no weights), the directional
    #     derivative ``d/dt grad E((x1, x2, w) + t (v1, v2, vw))`` at ``t = 0``, as
    #     ``(h1, h2, hw)``, computed by the backend's own second-order autodiff."""
    #
    # def conv(self, descriptor, method, x_nodes, x_edges, weights, senders, receivers, *,
    #          dtype="float64", device="cpu") -> np.ndarray:
    #     """The convolution: ``(n_nodes, irreps_out.dim)``, row ``i`` the sum over the edges
    #     ``e`` with ``receivers[e] == i`` of ``f(x_nodes[senders[e]], x_edges[e], w[e])``."""
    #
    # def conv_vjp(self, descriptor, method, x_nodes, x_edges, weights, senders, receivers,
    #              cotangent, *, dtype="float64", device="cpu") -> Grads:
    #     """Gradients of ``E = sum(cotangent * conv(...))`` (``cotangent (n_nodes,
    #     irreps_out.dim)``) w.r.t. ``(x_nodes, x_edges, weights)``."""
    #
    # def conv_force_loss_grad(self, descriptor, method, x_nodes, x_edges, weights, senders,
    #                          receivers, cotangent, *, dtype="float64", device="cpu") -> Grads:
    #     """Second order, as force training uses it: with ``E = sum(cotangent * conv(...))``
    #     and the forces ``F = dE/dx_edges``, the gradients of ``L = sum(F**2)`` w.r.t.
    #     ``(x_nodes, x_edges, weights)`` by the backend's double backward."""


def registered_backend_names() -> list[str]:
    """Names of every backend registered in the entry-point group (nothing is imported)."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def load_backends(errors: dict[str, str] | None = None,
                  names: Iterable[str] | None = None) -> dict[str, Backend]:
    """The registered backends that import on this machine, by name (import errors skipped).

    ``names``: load only these entry points (default: all). Loading imports the backend's
    framework, so callers that test one backend should not load the others (importing torch
    and jax into one process costs time and memory for nothing).
    ``errors``: if given, filled with ``{entry point name: "ExcType: message"}`` for every
    requested backend that failed to load, so callers can report why it is unavailable.
    """
    wanted = None if names is None else set(names)
    found: dict[str, Backend] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if wanted is not None and ep.name not in wanted:
            continue
        try:
            backend = ep.load()
        except Exception as exc:  # a backend whose framework is missing is simply not available
            if errors is not None:
                errors[ep.name] = f"{type(exc).__name__}: {exc}"
            continue
        found[backend.name] = backend
    return found
