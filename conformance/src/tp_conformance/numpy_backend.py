"""The NumPy reference as a backend (``tp_spec.reference.apply``), with exact derivatives.

Every tensor product is multilinear in ``(x1, x2, weights)``: the energy
``E = sum(cotangent * f)`` is affine in any single input coordinate, and the force loss
``L = |dE/dx1|^2`` is quadratic in it. So central differences with step 1 are *exact* (up to
rounding) for both, and a five-point stencil is exact for the Hessian-vector product (``grad E``
is a polynomial of degree <= 4 along any line: at most x1, x2 and three per-degree weight
factors). All perturbations are stacked into one large batch: a few reference calls, no loops
over coordinates. This backend is the cross-backend reference for gradients.

The convolution (:func:`tp_spec.reference.conv`) runs through the conv plan's NumPy executor
(:func:`tp_spec.plan.conv.run_conv_numpy`); its derivatives are the chain rule through the
gather and the scatter, with each edge's product differentiated as above (the per-edge
cotangent is the receiver's row).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tp_spec as spec
from tp_spec.errors import DeviceError, DTypeError, InstructionError
from tp_spec.plan.conv import conv_plan, run_conv_numpy
from tp_spec.validation import check_call, check_conv_call, check_index_range

__all__ = ["NumpyBackend", "backend", "validate_common", "validate_conv"]

Grads = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]
METHOD = "reference"


def validate_common(name: str, d: spec.TensorProductDescriptor, methods: dict[str, str | None],
                    method: str, dtype: str, device: str, devices: list[str], x1: Any, x2: Any,
                    weights: Any = None, *extra: Any) -> tuple[int, ...]:
    """Checks every adapter shares: method, dtype string, device, then the call itself through
    :func:`tp_spec.validation.check_call` (one floating dtype, shapes), and that the cotangent
    or tangents ``extra`` have the inputs' dtype. Returns the batch shape; raises the
    :mod:`tp_spec.errors` classes."""
    _check_target(name, methods, method, dtype, device, devices)
    x1, x2 = np.asarray(x1), np.asarray(x2)
    weights = None if weights is None else np.asarray(weights)
    batch, _ = check_call(d, x1, x2, weights)
    _check_extra_dtypes(name, x1.dtype, extra)
    return batch


def validate_conv(name: str, d: spec.TensorProductDescriptor, methods: dict[str, str | None],
                  method: str, dtype: str, device: str, devices: list[str], x_nodes: Any,
                  x_edges: Any, weights: Any, senders: Any, receivers: Any,
                  *extra: Any) -> tuple[int, int]:
    """:func:`validate_common` for the convolution: the call through
    :func:`tp_spec.validation.check_conv_call` and the index values through
    ``check_index_range``. Returns ``(n_nodes, n_edges)``."""
    _check_target(name, methods, method, dtype, device, devices)
    x_nodes, x_edges = np.asarray(x_nodes), np.asarray(x_edges)
    weights = None if weights is None else np.asarray(weights)
    senders, receivers = np.asarray(senders), np.asarray(receivers)
    n_nodes, n_edges, _ = check_conv_call(d, x_nodes, x_edges, weights, senders, receivers)
    if n_edges:
        for label, idx in (("senders", senders), ("receivers", receivers)):
            check_index_range(label, int(idx.min()), int(idx.max()), n_nodes)
    _check_extra_dtypes(name, x_nodes.dtype, extra)
    return n_nodes, n_edges


def _check_target(name: str, methods: dict[str, str | None], method: str, dtype: str,
                  device: str, devices: list[str]) -> None:
    """The method, the dtype string and the device."""
    if method not in methods:
        raise InstructionError(f"{name}: unknown method {method!r}; valid: {sorted(methods)}")
    if methods[method] is not None:
        raise InstructionError(f"{name}: method {method!r} not applicable: {methods[method]}")
    if dtype not in ("float64", "float32"):
        raise DTypeError(f"{name}: dtype must be 'float64' or 'float32', got {dtype!r}")
    if device not in devices:
        raise DeviceError(f"{name}: device {device!r} not available; devices: {devices}")


def _check_extra_dtypes(name: str, dtype: np.dtype, extra: tuple) -> None:
    """The cotangent and tangents must have the inputs' dtype."""
    for label, a in zip(("cotangent", "tangent"), extra, strict=False):
        if a is not None and np.asarray(a).dtype != dtype:
            raise DTypeError(f"{name}: {label} has dtype {np.asarray(a).dtype}, the inputs "
                             f"{dtype} (nothing is cast silently)")


class NumpyBackend:
    """``tp_spec.reference`` behind the :class:`tp_spec.backend.Backend` protocol."""

    name = "numpy"
    is_oracle = False

    def devices(self) -> list[str]:
        return ["cpu"]

    def methods(self, descriptor: spec.TensorProductDescriptor, device: str = "cpu"
                ) -> dict[str, str | None]:
        return {METHOD: None if device == "cpu" else f"numpy runs on cpu only, not {device}"}

    # ------------------------------------------------------------------ helpers
    def _prep(self, d, method, dtype, device, x1, x2, weights, *extra):
        batch = validate_common(self.name, d, self.methods(d, device), method, dtype, device,
                                self.devices(), x1, x2, weights, *extra)
        cast = np.float64 if dtype == "float64" else np.float32
        arrs = [None if a is None else np.asarray(a).astype(cast).astype(np.float64)
                for a in (x1, x2, weights, *extra)]
        return arrs, batch, cast

    def _forward(self, d, x1, x2, w) -> np.ndarray:
        """The float64 forward every derivative is taken of (overridden by test doubles)."""
        return spec.reference.apply(d, x1, x2, w)

    def _energies(self, d, x1, x2, w, c) -> np.ndarray:
        """Per-sample energies ``sum(c * f)`` over the last axis: shape ``x1.shape[:-1]``."""
        return np.sum(c * self._forward(d, x1, x2, w), axis=-1)

    def _grad_exact(self, d, x1, x2, w, c, batch) -> Grads:
        """Exact ``dE/d(x1, x2, w)`` by unit central differences (E affine per coordinate)."""
        return _unit_central_grads(lambda a, b, ww: self._energies(d, a, b, ww, c[None]),
                                   x1, x2, w, batch)

    def _force(self, d, x1, x2, w, c, wrt: int = 0) -> np.ndarray:
        """``F = dE/dx1`` (``wrt=0``) or ``dE/dx2`` (``wrt=1``) for stacked leading axes (any
        shape ``(..., dim)``)."""
        x = (x1, x2)[wrt]
        k = x.shape[-1]
        eye = np.eye(k)
        lead = x.shape[:-1]
        # F[..., i] = E(x + e_i) - E(x - e_i) over 2 (exact: E affine in x1 and in x2).
        other = (x2, x1)[wrt]
        oe = np.broadcast_to(other[..., None, :], lead + (k, other.shape[-1]))
        ce = np.broadcast_to(c[..., None, :], lead + (k, c.shape[-1]))
        we = None if w is None else (
            w if w.ndim == 1 else np.broadcast_to(w[..., None, :], lead + (k, w.shape[-1])))
        diff = []
        for xs in (x[..., None, :] + eye, x[..., None, :] - eye):
            pair = (xs, oe) if wrt == 0 else (oe, xs)
            diff.append(self._energies(d, pair[0], pair[1], we, ce))
        return 0.5 * (diff[0] - diff[1])

    # ------------------------------------------------------------------ protocol
    def apply(self, descriptor, method, x1, x2, weights=None, *, dtype="float64", device="cpu"):
        (a, b, w), _, cast = self._prep(descriptor, method, dtype, device, x1, x2, weights)
        return self._forward(descriptor, a, b, w).astype(cast)

    def vjp(self, descriptor, method, x1, x2, weights, cotangent, *, dtype="float64",
            device="cpu") -> Grads:
        (a, b, w, c), batch, cast = self._prep(descriptor, method, dtype, device, x1, x2, weights,
                                               cotangent)
        _check_cotangent(descriptor, c, batch)
        g = self._grad_exact(descriptor, a, b, w, c, batch)
        return tuple(None if t is None else t.astype(cast) for t in g)  # type: ignore[return-value]

    def force_loss_grad(self, descriptor, method, x1, x2, weights, cotangent, *,
                        dtype="float64", device="cpu") -> Grads:
        d = descriptor
        (a, b, w, c), batch, cast = self._prep(d, method, dtype, device, x1, x2, weights,
                                               cotangent)
        _check_cotangent(d, c, batch)

        def loss(xa, xb, ww):  # per-sample |F|^2 for stacked perturbations (leading axis)
            ce = np.broadcast_to(c, xb.shape[:-1] + (c.shape[-1],))
            return np.sum(self._force(d, xa, xb, ww, ce) ** 2, axis=-1)

        # L is quadratic in each coordinate of x2 and w and constant in x1: unit central
        # differences are exact.
        g = _unit_central_grads(loss, a, b, w, batch, skip=0)
        return tuple(None if t is None else t.astype(cast) for t in g)  # type: ignore[return-value]

    def hvp(self, descriptor, method, x1, x2, weights, cotangent, tangents, *, dtype="float64",
            device="cpu") -> Grads:
        v1, v2, vw = tangents
        d = descriptor
        (a, b, w, c, t1, t2), batch, cast = self._prep(d, method, dtype, device, x1, x2, weights,
                                                       cotangent, v1, v2)
        _check_cotangent(d, c, batch)
        tw = None if vw is None else np.asarray(vw, dtype=np.float64)
        if (tw is None) != (w is None) or (tw is not None and tw.shape != w.shape):
            raise spec.ShapeError("the weight tangent must match the weights' shape (or be None)")
        # grad E along the line is a polynomial of degree <= 4: the 5-point stencil is exact.
        total = [np.zeros_like(a), np.zeros_like(b), None if w is None else np.zeros_like(w)]
        for s, coef in ((-2.0, 1 / 12), (-1.0, -8 / 12), (1.0, 8 / 12), (2.0, -1 / 12)):
            g = self._grad_exact(d, a + s * t1, b + s * t2, None if w is None else w + s * tw,
                                 c, batch)
            for i in range(3):
                if g[i] is not None:
                    total[i] = total[i] + coef * g[i]
        return tuple(None if t is None else t.astype(cast) for t in total)  # type: ignore

    # ------------------------------------------------------------------ convolution
    def _conv_prep(self, d, method, dtype, device, x_nodes, x_edges, weights, senders,
                   receivers, *extra):
        n_nodes, n_edges = validate_conv(self.name, d, self.methods(d, device), method, dtype,
                                         device, self.devices(), x_nodes, x_edges, weights,
                                         senders, receivers, *extra)
        cast = np.float64 if dtype == "float64" else np.float32
        arrs = [None if a is None else np.asarray(a).astype(cast).astype(np.float64)
                for a in (x_nodes, x_edges, weights, *extra)]
        for c in extra:
            if np.shape(c) != (n_nodes, d.irreps_out.dim):
                raise spec.ShapeError(f"cotangent has shape {np.shape(c)}; expected "
                                      f"{(n_nodes, d.irreps_out.dim)}")
        return arrs, np.asarray(senders), np.asarray(receivers), cast

    def _conv_forward(self, d, x_nodes, x_edges, w, senders, receivers) -> np.ndarray:
        """The float64 convolution: the default method's conv plan run in NumPy."""
        return run_conv_numpy(conv_plan(d), x_nodes, x_edges, w, senders, receivers)

    def conv(self, descriptor, method, x_nodes, x_edges, weights, senders, receivers, *,
             dtype="float64", device="cpu") -> np.ndarray:
        (a, b, w), s, r, cast = self._conv_prep(descriptor, method, dtype, device, x_nodes,
                                                x_edges, weights, senders, receivers)
        return self._conv_forward(descriptor, a, b, w, s, r).astype(cast)

    def conv_vjp(self, descriptor, method, x_nodes, x_edges, weights, senders, receivers,
                 cotangent, *, dtype="float64", device="cpu") -> Grads:
        """Gradients of ``E = sum(cotangent * conv)``: each edge's product differentiated with
        its receiver's cotangent row, the ``x_nodes`` part added into the senders."""
        (a, b, w, c), s, r, cast = self._conv_prep(descriptor, method, dtype, device, x_nodes,
                                                   x_edges, weights, senders, receivers,
                                                   cotangent)
        g1, g2, gw = self._grad_exact(descriptor, a[s], b, w, c[r], (len(s),))
        gn = np.zeros_like(a)
        np.add.at(gn, s, g1)
        return tuple(None if t is None else t.astype(cast)  # type: ignore[return-value]
                     for t in (gn, g2, gw))

    def conv_force_loss_grad(self, descriptor, method, x_nodes, x_edges, weights, senders,
                             receivers, cotangent, *, dtype="float64", device="cpu") -> Grads:
        """With ``E = sum(cotangent * conv)`` and the forces ``F = dE/dx_edges`` (one row per
        edge, from that edge's product alone), the gradients of ``L = sum(F**2)``."""
        d = descriptor
        (a, b, w, c), s, r, cast = self._conv_prep(d, method, dtype, device, x_nodes, x_edges,
                                                   weights, senders, receivers, cotangent)
        ce = c[r]

        def loss(xa, xb, ww):  # per-edge |F_e|^2 for stacked perturbations (leading axis)
            cs = np.broadcast_to(ce, xa.shape[:-1] + (ce.shape[-1],))
            return np.sum(self._force(d, xa, xb, ww, cs, wrt=1) ** 2, axis=-1)

        # L is quadratic in each coordinate of x_nodes and w and constant in x_edges.
        g1, g2, gw = _unit_central_grads(loss, a[s], b, w, (len(s),), skip=1)
        gn = np.zeros_like(a)
        np.add.at(gn, s, g1)
        return tuple(None if t is None else t.astype(cast)  # type: ignore[return-value]
                     for t in (gn, g2, gw))


def _check_cotangent(d, c: np.ndarray, batch: tuple[int, ...]) -> None:
    if c.shape != tuple(batch) + (d.irreps_out.dim,):
        raise spec.ShapeError(
            f"cotangent has shape {c.shape}; expected {tuple(batch) + (d.irreps_out.dim,)}")


def _unit_central_grads(fn, x1, x2, w, batch, *, skip: int | None = None) -> Grads:
    """Gradients of ``sum(fn(x1, x2, w))`` (``fn`` returns per-sample values and is at most
    quadratic in every single coordinate) by central differences with unit steps. The ``k``
    perturbations of one argument are stacked on a new leading axis (one call per sign).
    Shared weights (``(numel,)`` with a nonempty batch) get their gradient summed over samples.
    ``skip``: the argument ``fn`` does not depend on (0 or 1), given a zero gradient."""
    batch = tuple(batch)
    shared = w is not None and w.ndim == 1 and len(batch) > 0
    out: list[np.ndarray | None] = []
    for which, x in enumerate((x1, x2, w)):
        if x is None:
            out.append(None)
            continue
        k = x.shape[-1]
        if which == skip or k == 0 or 0 in batch:
            out.append(np.zeros_like(x))
            continue
        full = batch + (k,)  # the perturbed argument always gets the full per-sample shape
        base = np.broadcast_to(x, full)
        eye = np.eye(k).reshape((k,) + (1,) * len(batch) + (k,))
        diffs = []
        for sign in (1.0, -1.0):
            args = []
            for j, v in enumerate((x1, x2, w)):
                if j == which:
                    args.append(base[None] + sign * eye)
                elif v is None or (j == 2 and shared):
                    args.append(v)  # None, or shared weights that stay shared
                else:
                    args.append(np.broadcast_to(v, (k,) + v.shape))
            diffs.append(fn(*args))
        g = np.moveaxis(0.5 * (diffs[0] - diffs[1]), 0, -1)  # (*batch, k)
        if which == 2 and shared:
            g = g.reshape(-1, k).sum(axis=0)
        out.append(g.reshape(x.shape))
    return out[0], out[1], out[2]


backend = NumpyBackend()
