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

from .errors import DTypeError, IndexRangeError, ShapeError

__all__ = ["COMPUTE_DTYPES", "FLOAT_DTYPES", "HALF_DTYPES", "INDEX_DTYPES", "check_call",
           "check_conv_call", "check_index_range", "dtype_name"]

#: Dtypes computed in their own precision.
FLOAT_DTYPES = ("float32", "float64")
#: Dtypes computed in float32 and rounded once to the input dtype.
HALF_DTYPES = ("bfloat16", "float16")
#: Dtypes of index arrays (graph senders and receivers, species).
INDEX_DTYPES = ("int32", "int64")
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


def _common_dtype(named: list[tuple[str, Any]]) -> str:
    """The one dtype name of the ``(argument name, array)`` pairs; raises
    :class:`~tp_spec.errors.DTypeError` for a non-array, an unsupported dtype or a mix."""
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
    return names[0]


def check_call(d: Any, x1: Any, x2: Any, weights: Any = None) -> tuple[tuple[int, ...], str]:
    """Validate one call of ``d``: ``x1 (*batch, dim1)``, ``x2 (*batch, dim2)``, ``weights``
    ``None``, ``(numel,)`` or ``(*batch, numel)``, each with ``shape`` and ``dtype``. Returns
    the batch shape and the compute dtype's name (:data:`COMPUTE_DTYPES`); raises the error
    classes of the module docstring."""
    named = [("x1", x1), ("x2", x2)] + ([("weights", weights)] if weights is not None else [])
    name = _common_dtype(named)
    batch = d.check_shapes(tuple(x1.shape), tuple(x2.shape),
                           None if weights is None else tuple(weights.shape))
    return batch, COMPUTE_DTYPES[name]


def check_conv_call(d: Any, x_nodes: Any, x_edges: Any, weights: Any, senders: Any,
                    receivers: Any) -> tuple[int, int, str]:
    """Validate one call of the convolution of ``d`` (:func:`tp_spec.reference.conv`):
    ``x_nodes (n_nodes, dim1)``, ``x_edges (n_edges, dim2)``, ``weights`` ``None``,
    ``(numel,)`` or ``(n_edges, numel)``, ``senders`` and ``receivers`` ``(n_edges,)`` int32 or
    int64. Returns ``(n_nodes, n_edges, compute dtype)``. The index values are checked by
    :func:`check_index_range` (a backend passes their minimum and maximum).

    >>> import numpy as np, tp_spec as spec
    >>> d = spec.cgtp("2x0e + 2x1o", "0e + 1o", mode="uvu")
    >>> e = np.array([0, 1, 1])
    >>> check_conv_call(d, np.zeros((2, 8)), np.zeros((3, 4)), np.zeros((3, d.weight_numel)),
    ...                 e, e)
    (2, 3, 'float64')
    """
    if not (hasattr(x_nodes, "shape") and hasattr(x_edges, "shape")):
        raise DTypeError("x_nodes and x_edges must be arrays")
    nodes, edges = tuple(x_nodes.shape), tuple(x_edges.shape)
    if len(nodes) != 2 or nodes[1] != d.irreps_in1.dim:
        raise ShapeError(f"x_nodes must have shape (n_nodes, {d.irreps_in1.dim}) "
                         f"(irreps_in1 = {d.irreps_in1}), got {nodes}")
    if len(edges) != 2 or edges[1] != d.irreps_in2.dim:
        raise ShapeError(f"x_edges must have shape (n_edges, {d.irreps_in2.dim}) "
                         f"(irreps_in2 = {d.irreps_in2}), got {edges}")
    n_nodes, n_edges = nodes[0], edges[0]
    for name, idx in (("senders", senders), ("receivers", receivers)):
        if not (hasattr(idx, "shape") and hasattr(idx, "dtype")):
            raise IndexRangeError(f"{name} must be an integer array, got {type(idx).__name__}")
        kind = dtype_name(idx.dtype)
        if kind not in INDEX_DTYPES:
            raise IndexRangeError(f"{name} must be int32 or int64, got {kind}")
        if tuple(idx.shape) != (n_edges,):
            raise ShapeError(f"{name} must have shape (n_edges,) = ({n_edges},) (one entry per "
                             f"row of x_edges), got {tuple(idx.shape)}")
    dtype = _conv_dtype(d, x_nodes, x_edges, weights, n_edges)
    return n_nodes, n_edges, dtype


def _conv_dtype(d: Any, x_nodes: Any, x_edges: Any, weights: Any, n_edges: int) -> str:
    """The dtype rules of :func:`check_call` on the convolution's arrays; the weight shape
    against the descriptor."""
    named = [("x_nodes", x_nodes), ("x_edges", x_edges)]
    if weights is not None:
        named.append(("weights", weights))
    name = _common_dtype(named)
    numel = d.weight_numel
    if weights is None:
        if numel:
            raise ShapeError(f"this product has {numel} weights: pass weights of shape "
                             f"({numel},) or (n_edges, {numel})")
    elif not ((len(weights.shape) == 1 and weights.shape[0] == numel)
              or (len(weights.shape) == 2 and tuple(weights.shape) == (n_edges, numel))):
        # lengths first: a symbolic size (torch.export) is never compared with numel
        raise ShapeError(f"weights must have shape ({numel},) (shared) or (n_edges, {numel}) "
                         f"= ({n_edges}, {numel}) (per edge), got {tuple(weights.shape)}")
    return COMPUTE_DTYPES[name]


def check_index_range(name: str, lo: int, hi: int, size: int, of: str = "nodes") -> None:
    """Raise :class:`~tp_spec.errors.IndexRangeError` unless ``0 <= lo <= hi < size`` (``lo``,
    ``hi``: the index array's minimum and maximum; not called for an empty array; ``of``: what
    is indexed, for the message)."""
    if lo < 0 or hi >= size:
        bad = lo if lo < 0 else hi
        raise IndexRangeError(f"{name} holds the index {bad}, outside [0, {size}) "
                              f"({size} {of})")
