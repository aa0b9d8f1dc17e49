"""The ``tp_spec.backend.Backend`` implementation for PyTorch (entry point ``tp_torch``).

NumPy in, NumPy out; modules (:class:`TensorProduct`, :class:`TensorProductConv`) are cached
per ``(descriptor, method, device)``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from tp_spec import DeviceError, DTypeError, TensorProductDescriptor

from ._conv import TensorProductConv
from ._module import TensorProduct, methods

__all__ = ["TorchBackend", "backend"]

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


class TorchBackend:
    """``tp_spec.backend.Backend`` for tp_torch (see that protocol for the conventions)."""

    name = "tp_torch"
    is_oracle = False

    def __init__(self, cache_size: int = 64) -> None:
        self._cache: OrderedDict[Any, Any] = OrderedDict()
        self._cache_size = cache_size

    def devices(self) -> list[str]:
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    def methods(self, descriptor: TensorProductDescriptor, device: str = "cpu"
                ) -> dict[str, str | None]:
        return methods(descriptor, device)

    # ------------------------------------------------------------------ helpers
    def _module(self, d: TensorProductDescriptor, method: str, device: str,
                kind: type = TensorProduct) -> Any:
        try:
            key: Any = (d, method, device, kind)
            hash(key)
        except TypeError:  # pragma: no cover - descriptors are frozen dataclasses
            key = (id(d), method, device, kind)
        tp = self._cache.get(key)
        if tp is None:
            tp = kind(d, method, device=device)
            self._cache[key] = tp
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return tp

    @staticmethod
    def _tensor(name: str, a: Any, dtype: str, device: str, grad: bool,
                cast: bool = False) -> torch.Tensor:
        """NumPy -> torch without silent casts: the array must already have ``dtype``
        (``cast=True`` only for the cotangent, which is not an operand of the product)."""
        arr = np.asarray(a)
        if not np.issubdtype(arr.dtype, np.floating):
            raise DTypeError(f"{name} must be a real floating array, got dtype {arr.dtype}")
        if not cast and arr.dtype != np.dtype(dtype):
            raise DTypeError(
                f"{name} has dtype {arr.dtype} but dtype={dtype!r} was requested (no silent casts)"
            )
        t = torch.tensor(arr, dtype=_DTYPES[dtype], device=device)
        return t.requires_grad_(grad)

    def _prepare(self, d, method, x1, x2, weights, dtype, device, grad):
        if dtype not in _DTYPES:
            raise DTypeError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
        if device not in self.devices():
            raise DeviceError(f"device {device!r} is not available; have {self.devices()}")
        tp = self._module(d, method, device)
        t1 = self._tensor("x1", x1, dtype, device, grad)
        t2 = self._tensor("x2", x2, dtype, device, grad)
        tw = None if weights is None else self._tensor("weights", weights, dtype, device, grad)
        return tp, t1, t2, tw

    @staticmethod
    def _np(t: torch.Tensor | None, like: torch.Tensor) -> np.ndarray:
        if t is None:
            t = torch.zeros_like(like)
        return t.detach().cpu().numpy()

    # ------------------------------------------------------------------ protocol
    def apply(self, descriptor, method, x1, x2, weights=None, *, dtype="float64",
              device="cpu") -> np.ndarray:
        tp, t1, t2, tw = self._prepare(descriptor, method, x1, x2, weights, dtype, device, False)
        with torch.no_grad():
            return tp(t1, t2, tw).cpu().numpy()

    def vjp(self, descriptor, method, x1, x2, weights, cotangent, *, dtype="float64",
            device="cpu"):
        tp, t1, t2, tw = self._prepare(descriptor, method, x1, x2, weights, dtype, device, True)
        ct = self._tensor("cotangent", cotangent, dtype, device, False, cast=True)
        out = tp(t1, t2, tw)
        _check_cotangent(ct, out)
        inputs = [t1, t2] + ([tw] if tw is not None else [])
        grads = torch.autograd.grad((out * ct).sum(), inputs, allow_unused=True)
        g1, g2 = self._np(grads[0], t1), self._np(grads[1], t2)
        gw = self._np(grads[2], tw) if tw is not None else None
        return g1, g2, gw

    def force_loss_grad(self, descriptor, method, x1, x2, weights, cotangent, *,
                        dtype="float64", device="cpu"):
        tp, t1, t2, tw = self._prepare(descriptor, method, x1, x2, weights, dtype, device, True)
        ct = self._tensor("cotangent", cotangent, dtype, device, False, cast=True)
        out = tp(t1, t2, tw)
        _check_cotangent(ct, out)
        (force,) = torch.autograd.grad((out * ct).sum(), [t1], create_graph=True)
        loss = (force ** 2).sum()
        inputs = [t1, t2] + ([tw] if tw is not None else [])
        if not loss.requires_grad:  # force independent of everything (e.g. empty batch)
            grads: tuple[Any, ...] = (None,) * len(inputs)
        else:
            grads = torch.autograd.grad(loss, inputs, allow_unused=True)
        g1, g2 = self._np(grads[0], t1), self._np(grads[1], t2)
        gw = self._np(grads[2], tw) if tw is not None else None
        return g1, g2, gw


    def hvp(self, descriptor, method, x1, x2, weights, cotangent, tangents, *,
            dtype="float64", device="cpu"):
        """Hessian-vector product of ``E = sum(cotangent * f)`` along ``tangents = (v1, v2,
        vw)`` by double backward."""
        tp, t1, t2, tw = self._prepare(descriptor, method, x1, x2, weights, dtype, device, True)
        ct = self._tensor("cotangent", cotangent, dtype, device, False, cast=True)
        out = tp(t1, t2, tw)
        _check_cotangent(ct, out)
        inputs = [t1, t2] + ([tw] if tw is not None else [])
        v1, v2, vw = tangents
        vs = [self._tensor("v1", v1, dtype, device, False, cast=True),
              self._tensor("v2", v2, dtype, device, False, cast=True)]
        if tw is not None:
            vs.append(self._tensor("vw", vw, dtype, device, False, cast=True))
        for t, v in zip(inputs, vs, strict=True):
            if tuple(t.shape) != tuple(v.shape):
                from tp_spec import ShapeError

                raise ShapeError(f"tangent shape {tuple(v.shape)} != input {tuple(t.shape)}")
        grads = torch.autograd.grad((out * ct).sum(), inputs, create_graph=True,
                                    allow_unused=True)
        dot = sum(((g * v).sum() for g, v in zip(grads, vs, strict=True) if g is not None),
                  start=torch.zeros((), dtype=t1.dtype, device=t1.device))
        if dot.requires_grad:
            h = torch.autograd.grad(dot, inputs, allow_unused=True)
        else:
            h = (None,) * len(inputs)
        h1, h2 = self._np(h[0], t1), self._np(h[1], t2)
        hw = self._np(h[2], tw) if tw is not None else None
        return h1, h2, hw


    # ------------------------------------------------------------------ convolution
    def _conv_prepare(self, d, method, x_nodes, x_edges, weights, senders, receivers, dtype,
                      device, grad):
        """The conv module and the tensors: floats of exactly ``dtype``; the index arrays with
        their own dtype (the module checks it and their range)."""
        if dtype not in _DTYPES:
            raise DTypeError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
        if device not in self.devices():
            raise DeviceError(f"device {device!r} is not available; have {self.devices()}")
        conv = self._module(d, method, device, TensorProductConv)
        tn = self._tensor("x_nodes", x_nodes, dtype, device, grad)
        te = self._tensor("x_edges", x_edges, dtype, device, grad)
        tw = None if weights is None else self._tensor("weights", weights, dtype, device, grad)
        ts, tr = (torch.as_tensor(np.asarray(a), device=device) for a in (senders, receivers))
        return conv, tn, te, tw, ts, tr

    def conv(self, descriptor, method, x_nodes, x_edges, weights, senders, receivers, *,
             dtype="float64", device="cpu") -> np.ndarray:
        conv, tn, te, tw, ts, tr = self._conv_prepare(descriptor, method, x_nodes, x_edges,
                                                      weights, senders, receivers, dtype,
                                                      device, False)
        with torch.no_grad():
            return conv(tn, te, tw, ts, tr).cpu().numpy()

    def conv_vjp(self, descriptor, method, x_nodes, x_edges, weights, senders, receivers,
                 cotangent, *, dtype="float64", device="cpu"):
        conv, tn, te, tw, ts, tr = self._conv_prepare(descriptor, method, x_nodes, x_edges,
                                                      weights, senders, receivers, dtype,
                                                      device, True)
        ct = self._tensor("cotangent", cotangent, dtype, device, False, cast=True)
        out = conv(tn, te, tw, ts, tr)
        _check_cotangent(ct, out)
        inputs = [tn, te] + ([tw] if tw is not None else [])
        grads = torch.autograd.grad((out * ct).sum(), inputs, allow_unused=True)
        gw = self._np(grads[2], tw) if tw is not None else None
        return self._np(grads[0], tn), self._np(grads[1], te), gw

    def conv_force_loss_grad(self, descriptor, method, x_nodes, x_edges, weights, senders,
                             receivers, cotangent, *, dtype="float64", device="cpu"):
        """Gradients of ``L = sum(F**2)``, ``F = dE/dx_edges``, by double backward."""
        conv, tn, te, tw, ts, tr = self._conv_prepare(descriptor, method, x_nodes, x_edges,
                                                      weights, senders, receivers, dtype,
                                                      device, True)
        ct = self._tensor("cotangent", cotangent, dtype, device, False, cast=True)
        out = conv(tn, te, tw, ts, tr)
        _check_cotangent(ct, out)
        (force,) = torch.autograd.grad((out * ct).sum(), [te], create_graph=True)
        loss = (force ** 2).sum()
        inputs = [tn, te] + ([tw] if tw is not None else [])
        if not loss.requires_grad:  # no edges: the loss depends on nothing
            grads: tuple[Any, ...] = (None,) * len(inputs)
        else:
            grads = torch.autograd.grad(loss, inputs, allow_unused=True)
        gw = self._np(grads[2], tw) if tw is not None else None
        return self._np(grads[0], tn), self._np(grads[1], te), gw


def _check_cotangent(ct: torch.Tensor, out: torch.Tensor) -> None:
    if tuple(ct.shape) != tuple(out.shape):
        from tp_spec import ShapeError

        raise ShapeError(f"cotangent has shape {tuple(ct.shape)}, output {tuple(out.shape)}")


#: The object the ``tp_spec.backends`` entry point loads.
backend = TorchBackend()
