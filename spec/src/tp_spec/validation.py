"""Call validation shared by every backend: one policy for dtypes, shapes and error classes.

Every backend calls :func:`check_call` before any kernel runs, with its own arrays (anything
with ``shape`` and ``dtype``); a framework adds only what is its own (tensor types, devices).

Policy:

* ``x1``, ``x2`` and ``weights`` share one floating dtype; nothing is cast silently. A mix, an
  integer, complex or boolean input raises :class:`~tp_spec.errors.DTypeError` naming it.
* float32 and float64 compute in their own precision. bfloat16 and float16 compute in float32
  and the result is rounded once to the input dtype (never a lower precision than the inputs).
* Shapes follow :meth:`~tp_spec.TensorProductDescriptor.check_shapes` (same batch on both
  inputs, nothing broadcast; shared ``(numel,)`` or per-sample weights):
  :class:`~tp_spec.errors.ShapeError`.
* A bad descriptor or method raises :class:`~tp_spec.errors.InstructionError`
  (:func:`tp_spec.plan.get_method`); inputs on different devices
  :class:`~tp_spec.errors.DeviceError`.

>>> import numpy as np, tp_spec as spec
>>> d = spec.cgtp("0e + 1o", "1o", mode="uvu")
>>> check_call(d, np.zeros((5, 4)), np.zeros((5, 3)), np.zeros(d.weight_numel))
((5,), 'float64')
>>> check_call(d, np.zeros((5, 4), np.float16), np.zeros((5, 3), np.float16),
...            np.zeros(d.weight_numel, np.float16))
((5,), 'float32')
"""

from __future__ import annotations

from typing import Any

from .errors import DTypeError

__all__ = ["COMPUTE_DTYPES", "FLOAT_DTYPES", "HALF_DTYPES", "check_call", "dtype_name"]

#: Dtypes computed in their own precision.
FLOAT_DTYPES = ("float32", "float64")
#: Dtypes computed in float32 and rounded once to the input dtype.
HALF_DTYPES = ("bfloat16", "float16")
#: Input dtype -> compute dtype.
COMPUTE_DTYPES = {"float64": "float64", "float32": "float32", "bfloat16": "float32",
                  "float16": "float32"}


def dtype_name(dtype: Any) -> str:
    """A framework's dtype as a plain name: ``torch.float32``, ``np.dtype('float32')`` and
    ``jnp.float32`` all give ``"float32"``."""
    name = dtype.__name__ if isinstance(dtype, type) else getattr(dtype, "name", None)
    if not isinstance(name, str):
        name = getattr(getattr(dtype, "dtype", None), "name", None)
    return name if isinstance(name, str) else str(dtype).rsplit(".", 1)[-1]


def check_call(d: Any, x1: Any, x2: Any, weights: Any = None) -> tuple[tuple[int, ...], str]:
    """Validate one call of ``d``: ``x1 (*batch, dim1)``, ``x2 (*batch, dim2)``, ``weights``
    ``None``, ``(numel,)`` or ``(*batch, numel)``, each with ``shape`` and ``dtype``. Returns
    the batch shape and the compute dtype's name (:data:`COMPUTE_DTYPES`); raises the error
    classes of the module docstring."""
    named = [("x1", x1), ("x2", x2)] + ([("weights", weights)] if weights is not None else [])
    names = []
    for arg, value in named:
        if not (hasattr(value, "shape") and hasattr(value, "dtype")):
            raise DTypeError(f"{arg} must be an array, got {type(value).__name__}")
        name = dtype_name(value.dtype)
        if name not in COMPUTE_DTYPES:
            raise DTypeError(
                f"{arg} has dtype {name}; tensor products compute in float32 or float64 "
                "(bfloat16 and float16 in float32); cast explicitly")
        names.append(name)
    if len(set(names)) > 1:
        raise DTypeError(
            "inputs must share one dtype (nothing is cast silently); got "
            + ", ".join(f"{arg}={n}" for (arg, _), n in zip(named, names, strict=True)))
    batch = d.check_shapes(tuple(x1.shape), tuple(x2.shape),
                           None if weights is None else tuple(weights.shape))
    return batch, COMPUTE_DTYPES[names[0]]
