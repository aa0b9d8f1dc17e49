"""The properties of the tensor-product convolution (:func:`tp_spec.reference.conv`), asserted for
every (backend, method, case) whose backend has the optional ``conv`` methods.

Like :mod:`tp_conformance.checks`: plain functions that drive a backend with NumPy arrays and
raise ``AssertionError`` saying what differs; same tolerances (relative to the expected
result's largest entry). The graph (:func:`graph`) has unsorted edges, a duplicate edge,
self-loops and an isolated node.

The expected gradients (:func:`reference_conv_vjp`) are computed here, independently of every
backend's chain rule: unit central differences of ``tp_spec.reference.conv`` itself, exact
because the energy ``sum(c * conv)`` is affine in each single input coordinate. All
perturbations of one argument run as one reference call on a disjoint union of graph copies.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import tp_spec as spec

from .checks import RTOL_FD, RTOL_FLOAT64, assert_close, raise_problem, rtol_for

__all__ = [
    "N_NODES",
    "check_conv_bad_inputs",
    "check_conv_deterministic",
    "check_conv_empty",
    "check_conv_equivariance",
    "check_conv_force_fd",
    "check_conv_forward",
    "check_conv_vjp_fd",
    "check_conv_vjp_reference",
    "conv_bad_input_cases",
    "conv_inputs",
    "graph",
    "reference_conv_vjp",
]

#: Nodes of the test graph; node 5 is in no edge.
N_NODES = 6
# (sender, receiver): unsorted receivers, (2, 1) and (0, 3) twice, self-loops (1, 1), (0, 0).
_EDGES = ((2, 1), (0, 3), (1, 1), (3, 0), (2, 1), (0, 0), (4, 2), (3, 2), (0, 3), (1, 4))


def graph(index_dtype: str = "int64") -> tuple[np.ndarray, np.ndarray]:
    """``(senders, receivers)`` of the test graph, ``(n_edges,)`` in ``index_dtype``."""
    e = np.array(_EDGES, dtype=index_dtype)
    return e[:, 0].copy(), e[:, 1].copy()


def conv_inputs(d, seed: int, *, shared: bool = False, n_edges: int = len(_EDGES),
                dtype: str = "float64") -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Standard-normal ``x_nodes (N_NODES, dim1)``, ``x_edges (n_edges, dim2)`` and weights
    (``None``, ``(numel,)`` if ``shared``, else ``(n_edges, numel)``), rounded to ``dtype``."""
    rng = np.random.default_rng(seed)
    xn = rng.standard_normal((N_NODES, d.irreps_in1.dim)).astype(dtype)
    xe = rng.standard_normal((n_edges, d.irreps_in2.dim)).astype(dtype)
    if not d.weight_numel:
        return xn, xe, None
    w = rng.standard_normal(d.weight_numel if shared else (n_edges, d.weight_numel))
    return xn, xe, w.astype(dtype)


def _f64(*arrays: Any) -> list[Any]:
    return [None if a is None else np.asarray(a, dtype=np.float64) for a in arrays]


def _label(backend, method: str) -> str:
    return f"{backend.name}/{method} conv"


# ----------------------------------------------------------------------------- forward
def check_conv_forward(backend, method: str, d, *, dtype: str = "float64",
                       index_dtype: str = "int64", shared: bool = False, seed: int = 0,
                       device: str = "cpu") -> None:
    """The convolution equals ``tp_spec.reference.conv`` on the same (dtype-rounded) inputs."""
    s, r = graph(index_dtype)
    xn, xe, w = conv_inputs(d, seed, shared=shared, dtype=dtype)
    out = np.asarray(backend.conv(d, method, xn, xe, w, s, r, dtype=dtype, device=device))
    assert out.dtype == np.dtype(dtype), f"conv returned dtype {out.dtype}, expected {dtype}"
    want = spec.reference.conv(d, *_f64(xn, xe, w), s, r)
    assert_close(out, want, rtol_for(dtype),
                 f"{_label(backend, method)} forward ({dtype}, {index_dtype} indices, "
                 f"{'shared' if shared else 'per-edge'} weights)")


def check_conv_empty(backend, method: str, d, *, seed: int = 0, device: str = "cpu") -> None:
    """No edges: zeros ``(n_nodes, dim_out)``; the vjp gives zero gradients of the inputs'
    shapes."""
    s = np.zeros(0, dtype=np.int64)
    xn, xe, w = conv_inputs(d, seed, n_edges=0)
    out = np.asarray(backend.conv(d, method, xn, xe, w, s, s, dtype="float64", device=device))
    assert_close(out, np.zeros((N_NODES, d.irreps_out.dim)), RTOL_FLOAT64,
                 f"{_label(backend, method)} forward without edges")
    c = np.random.default_rng(seed).standard_normal(out.shape)
    g = backend.conv_vjp(d, method, xn, xe, w, s, s, c, dtype="float64", device=device)
    for name, gi, a in zip(("x_nodes", "x_edges", "weights"), g, (xn, xe, w), strict=True):
        assert_close(gi, None if a is None else np.zeros_like(a), RTOL_FLOAT64,
                     f"{_label(backend, method)} vjp wrt {name} without edges")


def check_conv_equivariance(backend, method: str, d, *, improper: bool, seed: int = 0,
                            device: str = "cpu") -> None:
    """``conv(x_nodes D1^T, x_edges D2^T) = conv(x_nodes, x_edges) Dout^T`` for a random
    rotation (det -1 if ``improper``)."""
    R = spec.random_rotation(np.random.default_rng(seed), improper=improper)
    D1, D2, Do = (spec.wigner_D(ir, R) for ir in (d.irreps_in1, d.irreps_in2, d.irreps_out))
    s, r = graph()
    xn, xe, w = conv_inputs(d, seed + 1)
    lhs = backend.conv(d, method, xn @ D1.T, xe @ D2.T, w, s, r, dtype="float64", device=device)
    rhs = np.asarray(backend.conv(d, method, xn, xe, w, s, r, dtype="float64",
                                  device=device)) @ Do.T
    assert_close(lhs, rhs, RTOL_FLOAT64, f"{_label(backend, method)} equivariance "
                                         f"({'improper' if improper else 'proper'})")


def check_conv_deterministic(backend, method: str, d, *, dtype: str = "float64", seed: int = 0,
                             device: str = "cpu") -> None:
    """Two calls on the same inputs give bit-identical results."""
    s, r = graph()
    xn, xe, w = conv_inputs(d, seed, dtype=dtype)
    a = np.asarray(backend.conv(d, method, xn, xe, w, s, r, dtype=dtype, device=device))
    b = np.asarray(backend.conv(d, method, xn, xe, w, s, r, dtype=dtype, device=device))
    assert np.array_equal(a, b), (
        f"{_label(backend, method)} ({dtype}): two calls differ by up to "
        f"{float(np.max(np.abs(a - b))):.3g}")


# ----------------------------------------------------------------------------- derivatives
def _five_point(fn, h: float) -> float:
    return (fn(-2 * h) - 8 * fn(-h) + 8 * fn(h) - fn(2 * h)) / (12 * h)


def _grad_shapes(what: str, g, args) -> None:
    for name, gi, a in zip(("x_nodes", "x_edges", "weights"), g, args, strict=True):
        if a is None:
            assert gi is None, f"{what} returned a {name} gradient for a descriptor without one"
        else:
            assert gi is not None and np.shape(gi) == a.shape, (
                f"{what} {name} gradient has shape {None if gi is None else np.shape(gi)}, "
                f"expected {a.shape}")


def check_conv_vjp_fd(backend, method: str, d, *, seed: int = 0, device: str = "cpu") -> None:
    """``<conv_vjp, v>`` equals the directional derivative of ``E = sum(c * conv)`` from the
    backend's own forward (five-point stencil, exact for E's degree <= 3 along a line)."""
    rng = np.random.default_rng(seed)
    s, r = graph()
    args = conv_inputs(d, seed + 1)
    c = rng.standard_normal((N_NODES, d.irreps_out.dim))
    g = backend.conv_vjp(d, method, *args, s, r, c, dtype="float64", device=device)
    _grad_shapes(f"{_label(backend, method)} vjp", g, args)
    for i, name in enumerate(("x_nodes", "x_edges", "weights")):
        if args[i] is None:
            continue
        v = rng.standard_normal(args[i].shape)

        def along(t, i=i, v=v):
            a = list(args)
            a[i] = a[i] + t * v
            out = backend.conv(d, method, *a, s, r, dtype="float64", device=device)
            return float(np.sum(c * np.asarray(out)))

        fd = _five_point(along, 0.5)
        got = float(np.sum(np.asarray(g[i]) * v))
        assert abs(got - fd) <= RTOL_FD * max(abs(fd), 1.0), (
            f"{_label(backend, method)} vjp wrt {name}: <grad, v> = {got!r} but finite "
            f"differences give {fd!r}")


def _union_energies(d, xn, xe, w, s, r, c) -> np.ndarray:
    """``sum(c * reference.conv(...))`` of ``K`` graph copies at once: ``xn (K, n, dim1)``,
    ``xe (K, m, dim2)``, ``w`` ``None``, ``(numel,)`` or ``(K, m, numel)`` -> ``(K,)``."""
    k, n = xn.shape[:2]
    m = xe.shape[1]
    offset = (np.arange(k) * n)[:, None]
    ww = None if w is None else (w if w.ndim == 1 else w.reshape(k * m, -1))
    out = spec.reference.conv(d, xn.reshape(k * n, -1), xe.reshape(k * m, -1), ww,
                              (s[None] + offset).ravel(), (r[None] + offset).ravel())
    return np.einsum("kno,no->k", out.reshape(k, n, -1), c)


def reference_conv_vjp(d, xn, xe, w, s, r, c) -> tuple[np.ndarray, np.ndarray, Any]:
    """Exact gradients of ``E = sum(c * reference.conv(d, xn, xe, w, s, r))`` (float64) by unit
    central differences of the reference convolution (E is affine in every single coordinate),
    each argument's perturbations as one call on a union of graph copies."""
    args = [xn, xe, w]
    out: list[Any] = []
    for i, a in enumerate(args):
        if a is None or a.size == 0 or s.size == 0:
            out.append(None if a is None else np.zeros_like(a))
            continue
        k = a.size
        eye = np.eye(k).reshape((k,) + a.shape)
        diff = []
        for sign in (1.0, -1.0):
            copies = [np.broadcast_to(x, (k,) + x.shape) if x is not None else None
                      for x in args]
            copies[i] = a[None] + sign * eye
            wk = copies[2]
            if w is not None and w.ndim == 1:  # shared: per copy and edge where perturbed
                wk = (np.broadcast_to(wk[:, None, :], (k, len(s), w.size)) if i == 2
                      else w)
            diff.append(_union_energies(d, copies[0], copies[1], wk, s, r, c))
        out.append((0.5 * (diff[0] - diff[1])).reshape(a.shape))
    return out[0], out[1], out[2]


def _vjp_inputs(d, dtype: str, shared: bool, seed: int) -> tuple:
    xn, xe, w = conv_inputs(d, seed + 1, shared=shared, dtype=dtype)
    c = np.random.default_rng(seed).standard_normal((N_NODES, d.irreps_out.dim)).astype(dtype)
    return xn, xe, w, c


@functools.lru_cache(maxsize=32)
def _expected_vjp(d, dtype: str, shared: bool, seed: int) -> tuple:
    """:func:`reference_conv_vjp` on :func:`_vjp_inputs` (computed once per case: every method
    of a backend compares against it)."""
    xn, xe, w, c = _vjp_inputs(d, dtype, shared, seed)
    return reference_conv_vjp(d, *_f64(xn, xe, w), *graph(), *_f64(c))


def check_conv_vjp_reference(backend, method: str, d, *, dtype: str = "float64",
                             shared: bool = False, seed: int = 0, device: str = "cpu") -> None:
    """``conv_vjp`` equals :func:`reference_conv_vjp` on the same (dtype-rounded) inputs."""
    s, r = graph()
    xn, xe, w, c = _vjp_inputs(d, dtype, shared, seed)
    got = backend.conv_vjp(d, method, xn, xe, w, s, r, c, dtype=dtype, device=device)
    _grad_shapes(f"{_label(backend, method)} vjp", got, (xn, xe, w))
    want = _expected_vjp(d, dtype, shared, seed)
    for name, a, b in zip(("x_nodes", "x_edges", "weights"), got, want, strict=True):
        assert_close(a, b, rtol_for(dtype), f"{_label(backend, method)} vjp wrt {name} "
                                            f"({dtype}, {'shared' if shared else 'per-edge'} "
                                            "weights)")


def check_conv_force_fd(backend, method: str, d, *, shared: bool = False, seed: int = 0,
                        device: str = "cpu") -> None:
    """``conv_force_loss_grad`` (double backward) against finite differences of
    ``L = sum(F**2)``, ``F = dE/dx_edges`` from the backend's own ``conv_vjp``, along a random
    direction of ``(x_nodes, x_edges, weights)``."""
    rng = np.random.default_rng(seed)
    s, r = graph()
    args = conv_inputs(d, seed + 1, shared=shared)
    c = rng.standard_normal((N_NODES, d.irreps_out.dim))
    g = backend.conv_force_loss_grad(d, method, *args, s, r, c, dtype="float64", device=device)
    _grad_shapes(f"{_label(backend, method)} force-loss gradient", g, args)
    v = [None if a is None else rng.standard_normal(a.shape) for a in args]

    def loss(t):
        a = [None if x is None else x + t * dv for x, dv in zip(args, v, strict=True)]
        f = backend.conv_vjp(d, method, *a, s, r, c, dtype="float64", device=device)[1]
        return float(np.sum(np.asarray(f) ** 2))

    fd = _five_point(loss, 1e-3)
    got = sum(float(np.sum(np.asarray(gi) * vi)) for gi, vi in zip(g, v, strict=True)
              if vi is not None)
    assert abs(got - fd) <= RTOL_FD * max(abs(fd), 1.0), (
        f"{_label(backend, method)} force-loss gradient: <grad, v> = {got!r} but finite "
        f"differences of |dE/dx_edges|^2 give {fd!r}")


# ----------------------------------------------------------------------------- bad inputs
def conv_bad_input_cases(d, seed: int = 0) -> list[tuple[str, dict[str, Any], type]]:
    """``(label, conv kwargs, expected exception class)`` for invalid calls."""
    s, r = graph()
    xn, xe, w = conv_inputs(d, seed)
    ok = dict(x_nodes=xn, x_edges=xe, weights=w, senders=s, receivers=r)
    high, low = s.copy(), r.copy()
    high[3] = N_NODES
    low[5] = -1
    out: list[tuple[str, dict[str, Any], type]] = [
        ("sender out of range", dict(ok, senders=high), spec.IndexRangeError),
        ("negative receiver", dict(ok, receivers=low), spec.IndexRangeError),
        ("float senders", dict(ok, senders=s.astype(np.float64)), spec.IndexRangeError),
        ("senders too short", dict(ok, senders=s[:-1]), spec.ShapeError),
        ("receivers too long", dict(ok, receivers=np.concatenate([r, r[:1]])),
         spec.ShapeError),
        ("x_edges rows != edges", dict(ok, x_edges=xe[:-1]), spec.ShapeError),
        ("x_nodes last axis wrong", dict(ok, x_nodes=np.zeros((N_NODES, xn.shape[1] + 1))),
         spec.ShapeError),
        ("mixed float dtypes", dict(ok, x_edges=xe.astype(np.float32)), spec.DTypeError),
    ]
    if d.weight_numel:
        out.append(("weights rows != edges", dict(ok, weights=w[:-1]), spec.ShapeError))
    return out


def check_conv_bad_inputs(backend, method: str, d, *, seed: int = 0,
                          device: str = "cpu") -> None:
    """Every invalid call raises the expected :mod:`tp_spec.errors` class with a message."""
    problems = []
    for label, kw, exc_type in conv_bad_input_cases(d, seed):
        problem = raise_problem(label, exc_type, lambda kw=kw: backend.conv(
            d, method, kw["x_nodes"], kw["x_edges"], kw["weights"], kw["senders"],
            kw["receivers"], dtype="float64", device=device))
        if problem:
            problems.append(problem)
    assert not problems, f"{_label(backend, method)} bad inputs:\n  " + "\n  ".join(problems)
