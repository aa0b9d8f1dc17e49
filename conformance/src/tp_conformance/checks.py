"""The properties asserted for every (backend, op, method, case), as plain functions.

Each ``check_*`` drives a :class:`tp_spec.backend.Backend` with NumPy arrays and raises
``AssertionError`` (with a message saying what differs and by how much) when the property fails.
The pytest suite (``conformance/tests``) parametrizes them; the broken-backend meta-test calls
them directly and expects ``AssertionError``.

Tolerances (error measure: ``max |actual - expected| / max |expected|``):

* float64: :data:`RTOL_FLOAT64` = 1e-10 (forward, first and second derivatives vs the reference).
* float32: :data:`RTOL_FLOAT32` = 2e-5: inputs are rounded to float32 first, so this only bounds
  the backend's own float32 rounding (accumulation over up to a few hundred paths at L = 6).
* finite differences (float64): :data:`RTOL_FD` = 1e-6; the stencils are exact for the
  polynomial degrees involved, so the error is rounding (step ``h`` chosen accordingly).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tp_spec as spec

from .numpy_backend import backend as reference_backend

__all__ = [
    "RTOL_FD",
    "RTOL_FLOAT32",
    "RTOL_FLOAT64",
    "assert_close",
    "bad_input_cases",
    "check_bad_inputs",
    "check_batch_shapes",
    "check_emulation",
    "check_equivariance",
    "check_force_fd",
    "check_force_reference",
    "check_forward",
    "check_hvp_fd",
    "check_hvp_reference",
    "check_vjp_fd",
    "check_vjp_reference",
    "inputs_for",
]

RTOL_FLOAT64 = 1e-10
RTOL_FLOAT32 = 2e-5
RTOL_FD = 1e-6
REF = "reference"


def rtol_for(dtype: str) -> float:
    return RTOL_FLOAT64 if dtype == "float64" else RTOL_FLOAT32


def assert_close(actual: Any, expected: Any, rtol: float, what: str) -> None:
    """``max|actual - expected| <= rtol * max|expected|`` (shapes equal, all finite)."""
    if actual is None or expected is None:
        assert actual is None and expected is None, (
            f"{what}: one result is None and the other is not "
            f"({type(actual).__name__} vs {type(expected).__name__})")
        return
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (
        f"{what}: shape {actual.shape} != expected {expected.shape}")
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values"
    if expected.size == 0:
        return
    err = float(np.max(np.abs(actual.astype(np.float64) - expected)))
    scale = float(np.max(np.abs(expected)))
    if scale == 0.0:
        assert err <= rtol, f"{what}: expected zeros, got max |value| {err:.3g}"
        return
    assert err <= rtol * scale, (
        f"{what}: max abs error {err:.3g} > rtol {rtol:g} * max|expected| {scale:.3g} "
        f"(relative {err / scale:.3g})")


def inputs_for(d: spec.TensorProductDescriptor, batch: tuple[int, ...], seed: int,
               shared: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    from .cases import random_inputs

    return random_inputs(d, batch, np.random.default_rng(seed), shared_weights=shared)


def _cast(dtype: str, *arrays: Any) -> list[Any]:
    return [None if a is None else np.asarray(a).astype(dtype) for a in arrays]


def _ref(d, x1, x2, w) -> np.ndarray:
    return spec.reference.apply(d, x1, x2, w)


# ----------------------------------------------------------------------------- forward
def check_forward(backend, method: str, d, *, dtype: str = "float64", batch=(3,), seed: int = 0,
                  shared: bool = False, device: str = "cpu") -> None:
    """Forward equals ``tp_spec.reference.apply`` on the same (dtype-rounded) inputs."""
    x1, x2, w = _cast(dtype, *inputs_for(d, batch, seed, shared))
    out = backend.apply(d, method, x1, x2, w, dtype=dtype, device=device)
    out = np.asarray(out)
    assert out.dtype == np.dtype(dtype), f"forward returned dtype {out.dtype}, expected {dtype}"
    assert_close(out, _ref(d, *_cast("float64", x1, x2, w)), rtol_for(dtype),
                 f"{backend.name}/{method} forward ({dtype}, batch {batch}, "
                 f"{'shared' if shared else 'per-sample'} weights)")


def check_equivariance(backend, method: str, d, *, improper: bool, seed: int = 0,
                       device: str = "cpu") -> None:
    """``f(D1 x1, D2 x2, w) = Dout f(x1, x2, w)`` for a random rotation (det -1 if improper)."""
    rng = np.random.default_rng(seed)
    R = spec.random_rotation(rng, improper=improper)
    x1, x2, w = inputs_for(d, (2,), seed + 1)
    D1, D2, Do = (spec.wigner_D(ir, R) for ir in (d.irreps_in1, d.irreps_in2, d.irreps_out))
    lhs = backend.apply(d, method, x1 @ D1.T, x2 @ D2.T, w, dtype="float64", device=device)
    rhs = backend.apply(d, method, x1, x2, w, dtype="float64", device=device) @ Do.T
    assert_close(lhs, rhs, RTOL_FLOAT64,
                 f"{backend.name}/{method} equivariance ({'improper' if improper else 'proper'})")


def check_emulation(backend, method: str, d, *, seed: int = 0, device: str = "cpu") -> None:
    """GTP/MTP: the backend equals the reference on ``d.as_cgtp()`` (with mapped weights)."""
    x1, x2, w = inputs_for(d, (3,), seed)
    cg = d.as_cgtp()
    cw = d.cgtp_weights(w) if d.weight_numel else None
    out = backend.apply(d, method, x1, x2, w, dtype="float64", device=device)
    assert_close(out, _ref(cg, x1, x2, cw), RTOL_FLOAT64,
                 f"{backend.name}/{method} vs reference(as_cgtp())")


# ----------------------------------------------------------------------------- first order
def _energy(backend, method, d, x1, x2, w, c, device) -> float:
    return float(np.sum(c * backend.apply(d, method, x1, x2, w, dtype="float64", device=device)))


def _five_point(fn, h: float) -> float:
    return (fn(-2 * h) - 8 * fn(-h) + 8 * fn(h) - fn(2 * h)) / (12 * h)


def check_vjp_fd(backend, method: str, d, *, seed: int = 0, device: str = "cpu") -> None:
    """``<vjp, v>`` equals the directional derivative of ``E = sum(c * f)`` from the backend's
    own forward (five-point stencil, exact for E's degree <= 3 along one argument)."""
    rng = np.random.default_rng(seed)
    x1, x2, w = inputs_for(d, (2,), seed + 1)
    c = rng.standard_normal((2, d.irreps_out.dim))
    g = backend.vjp(d, method, x1, x2, w, c, dtype="float64", device=device)
    args = [x1, x2, w]
    for i, name in enumerate(("x1", "x2", "weights")):
        if args[i] is None:
            assert g[i] is None, f"vjp returned a {name} gradient for a descriptor without {name}"
            continue
        assert g[i] is not None and np.shape(g[i]) == args[i].shape, (
            f"vjp {name} gradient has shape {np.shape(g[i])}, expected {args[i].shape}")
        v = rng.standard_normal(args[i].shape)

        def along(t, i=i, v=v):
            a = list(args)
            a[i] = a[i] + t * v
            return _energy(backend, method, d, a[0], a[1], a[2], c, device)

        fd = _five_point(along, 0.5)
        got = float(np.sum(np.asarray(g[i]) * v))
        assert abs(got - fd) <= RTOL_FD * max(abs(fd), 1.0), (
            f"{backend.name}/{method} vjp wrt {name}: <grad, v> = {got!r} but finite "
            f"differences give {fd!r}")


def check_vjp_reference(backend, method: str, d, *, dtype: str = "float64", seed: int = 0,
                        shared: bool = False, device: str = "cpu") -> None:
    """The vjp equals the NumPy reference's exact gradients (equal across backends)."""
    rng = np.random.default_rng(seed)
    x1, x2, w = _cast(dtype, *inputs_for(d, (2,), seed + 1, shared))
    (c,) = _cast(dtype, rng.standard_normal((2, d.irreps_out.dim)))
    got = backend.vjp(d, method, x1, x2, w, c, dtype=dtype, device=device)
    want = reference_backend.vjp(d, REF, *_cast("float64", x1, x2, w, c))
    for name, a, b in zip(("x1", "x2", "weights"), got, want, strict=False):
        assert_close(a, b, rtol_for(dtype), f"{backend.name}/{method} vjp wrt {name} ({dtype})")


# ----------------------------------------------------------------------------- second order
def check_force_fd(backend, method: str, d, *, seed: int = 0, device: str = "cpu") -> None:
    """``force_loss_grad`` (double backward) against finite differences of
    ``L = sum((dE/dx1)**2)`` computed from the backend's own vjp, along a random direction."""
    rng = np.random.default_rng(seed)
    x1, x2, w = inputs_for(d, (2,), seed + 1)
    c = rng.standard_normal((2, d.irreps_out.dim))
    g = backend.force_loss_grad(d, method, x1, x2, w, c, dtype="float64", device=device)
    v = [rng.standard_normal(a.shape) if a is not None else None for a in (x1, x2, w)]

    def loss(t):
        a = [None if x is None else x + t * dv for x, dv in zip((x1, x2, w), v, strict=False)]
        f = backend.vjp(d, method, a[0], a[1], a[2], c, dtype="float64", device=device)[0]
        return float(np.sum(np.asarray(f) ** 2))

    fd = _five_point(loss, 1e-3)
    for i, a in enumerate((x1, x2, w)):
        if a is None:
            assert g[i] is None, "force_loss_grad returned a weight gradient without weights"
        else:
            assert np.shape(g[i]) == a.shape, (
                f"force_loss_grad part {i} has shape {np.shape(g[i])}, expected {a.shape}")
    got = sum(float(np.sum(np.asarray(gi) * vi))
              for gi, vi in zip(g, v, strict=False) if vi is not None)
    assert abs(got - fd) <= RTOL_FD * max(abs(fd), 1.0), (
        f"{backend.name}/{method} force-loss gradient: <grad, v> = {got!r} but finite "
        f"differences of |dE/dx1|^2 give {fd!r}")


def check_force_reference(backend, method: str, d, *, seed: int = 0, shared: bool = False,
                          device: str = "cpu") -> None:
    """``force_loss_grad`` equals the NumPy reference's exact one (equal across backends)."""
    rng = np.random.default_rng(seed)
    x1, x2, w = inputs_for(d, (2,), seed + 1, shared)
    c = rng.standard_normal((2, d.irreps_out.dim))
    got = backend.force_loss_grad(d, method, x1, x2, w, c, dtype="float64", device=device)
    want = reference_backend.force_loss_grad(d, REF, x1, x2, w, c)
    for name, a, b in zip(("x1", "x2", "weights"), got, want, strict=False):
        assert_close(a, b, RTOL_FLOAT64 * 10, f"{backend.name}/{method} force-loss grad wrt {name}")


def _tangents(rng, x1, x2, w):
    return (rng.standard_normal(x1.shape), rng.standard_normal(x2.shape),
            None if w is None else rng.standard_normal(w.shape))


def check_hvp_fd(backend, method: str, d, *, seed: int = 0, device: str = "cpu") -> None:
    """``hvp`` against the five-point derivative of the backend's own vjp along the tangent
    (exact: ``grad E`` has degree <= 4 along a line)."""
    rng = np.random.default_rng(seed)
    x1, x2, w = inputs_for(d, (2,), seed + 1)
    c = rng.standard_normal((2, d.irreps_out.dim))
    t = _tangents(rng, x1, x2, w)
    got = backend.hvp(d, method, x1, x2, w, c, t, dtype="float64", device=device)
    h = 0.5
    stencil = [(-2.0, 1 / 12), (-1.0, -8 / 12), (1.0, 8 / 12), (2.0, -1 / 12)]
    acc: list[Any] = [0.0, 0.0, None if w is None else 0.0]
    for s, coef in stencil:
        a = [None if x is None else x + s * h * v for x, v in zip((x1, x2, w), t, strict=False)]
        g = backend.vjp(d, method, a[0], a[1], a[2], c, dtype="float64", device=device)
        for i in range(3):
            if acc[i] is not None:
                acc[i] = acc[i] + coef / h * np.asarray(g[i])
    for name, a, b in zip(("x1", "x2", "weights"), got, acc, strict=False):
        assert_close(a, b, RTOL_FD, f"{backend.name}/{method} hvp wrt {name} vs finite differences")


def check_hvp_reference(backend, method: str, d, *, seed: int = 0, device: str = "cpu") -> None:
    """``hvp`` equals the NumPy reference's exact Hessian-vector product."""
    rng = np.random.default_rng(seed)
    x1, x2, w = inputs_for(d, (2,), seed + 1)
    c = rng.standard_normal((2, d.irreps_out.dim))
    t = _tangents(rng, x1, x2, w)
    got = backend.hvp(d, method, x1, x2, w, c, t, dtype="float64", device=device)
    want = reference_backend.hvp(d, REF, x1, x2, w, c, t)
    for name, a, b in zip(("x1", "x2", "weights"), got, want, strict=False):
        assert_close(a, b, RTOL_FLOAT64 * 100, f"{backend.name}/{method} hvp wrt {name}")


# ----------------------------------------------------------------------------- shapes
BATCH_SHAPES = ((2, 3), (1,), (0,), (), (2, 1, 2))


def check_batch_shapes(backend, method: str, d, *, seed: int = 0, device: str = "cpu") -> None:
    """Several leading batch dims, batch 0 and 1, no batch; shared and per-sample weights;
    forward values and vjp shapes."""
    for batch in BATCH_SHAPES:
        for shared in ((False, True) if d.weight_numel else (False,)):
            x1, x2, w = inputs_for(d, batch, seed, shared)
            out = np.asarray(backend.apply(d, method, x1, x2, w, dtype="float64", device=device))
            assert out.shape == tuple(batch) + (d.irreps_out.dim,), (
                f"{backend.name}/{method}: batch {batch}: output shape {out.shape}")
            assert_close(out, _ref(d, x1, x2, w), RTOL_FLOAT64,
                         f"{backend.name}/{method} forward, batch {batch}, shared={shared}")
            c = np.random.default_rng(seed).standard_normal(tuple(batch) + (d.irreps_out.dim,))
            g = backend.vjp(d, method, x1, x2, w, c, dtype="float64", device=device)
            for name, gi, a in zip(("x1", "x2", "weights"), g, (x1, x2, w), strict=False):
                assert (gi is None) == (a is None) and (a is None or np.shape(gi) == a.shape), (
                    f"{backend.name}/{method}: batch {batch}, shared={shared}: vjp {name} "
                    f"shape {None if gi is None else np.shape(gi)}, expected "
                    f"{None if a is None else a.shape}")


# ----------------------------------------------------------------------------- bad inputs
def bad_input_cases(d, seed: int = 0) -> list[tuple[str, dict[str, Any], type]]:
    """``(label, apply kwargs, expected exception class)`` for invalid calls."""
    x1, x2, w = inputs_for(d, (3,), seed)
    n1, n2 = d.irreps_in1.dim, d.irreps_in2.dim
    rng = np.random.default_rng(seed)
    out: list[tuple[str, dict[str, Any], type]] = [
        ("x1 last axis wrong", dict(x1=rng.standard_normal((3, n1 + 1)), x2=x2, weights=w),
         spec.ShapeError),
        ("x2 last axis wrong", dict(x1=x1, x2=rng.standard_normal((3, n2 + 2)), weights=w),
         spec.ShapeError),
        ("batch shapes differ", dict(x1=x1, x2=rng.standard_normal((4, n2)),
                                     weights=None if w is None else w[0]), spec.ShapeError),
        ("scalar x1", dict(x1=np.float64(1.0), x2=x2, weights=w), spec.ShapeError),
        ("integer x1", dict(x1=np.ones((3, n1), dtype=np.int64), x2=x2, weights=w),
         spec.DTypeError),
        ("mixed dtypes", dict(x1=x1.astype(np.float32), x2=x2, weights=w), spec.DTypeError),
        ("unknown method", dict(x1=x1, x2=x2, weights=w, method="no-such-method"),
         spec.InstructionError),
    ]
    if d.weight_numel:
        out += [
            ("missing weights", dict(x1=x1, x2=x2, weights=None), spec.ShapeError),
            ("weights wrong size", dict(x1=x1, x2=x2, weights=rng.standard_normal(
                d.weight_numel + 1)), spec.ShapeError),
            ("weights wrong batch", dict(x1=x1, x2=x2, weights=rng.standard_normal(
                (4, d.weight_numel))), spec.ShapeError),
        ]
    else:
        out.append(("weights given to a weightless op",
                    dict(x1=x1, x2=x2, weights=rng.standard_normal(3)), spec.ShapeError))
    return out


def raise_problem(label: str, exc_type: type, call: Any) -> str | None:
    """What is wrong with ``call()`` as a bad input that must raise ``exc_type`` with a clear
    message (None: nothing)."""
    try:
        call()
    except exc_type as exc:
        if len(str(exc)) < 10:
            return f"{label}: {type(exc).__name__} with an unclear message {exc!r}"
        return None
    except Exception as exc:  # noqa: BLE001 - the wrong class is what we report
        return f"{label}: raised {type(exc).__name__}({exc}) instead of {exc_type.__name__}"
    return f"{label}: no exception (expected {exc_type.__name__})"


def check_bad_inputs(backend, method: str, d, *, seed: int = 0, device: str = "cpu") -> None:
    """Every invalid call raises the expected :mod:`tp_spec.errors` class with a message."""
    problems = []
    for label, kw, exc_type in bad_input_cases(d, seed):
        kw = dict(kw)
        m = kw.pop("method", method)
        problem = raise_problem(label, exc_type, lambda kw=kw, m=m: backend.apply(
            d, m, kw["x1"], kw["x2"], kw["weights"], dtype="float64", device=device))
        if problem:
            problems.append(problem)
    assert not problems, f"{backend.name}/{method} bad inputs:\n  " + "\n  ".join(problems)
