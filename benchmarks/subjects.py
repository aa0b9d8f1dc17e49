"""Benchmark subjects: adapters that turn a tp_spec descriptor into a callable of some framework.

Every subject takes and returns the tp_spec layout (flat ``mul_ir`` features, flat weights), so
one reference check covers them all. A subject whose library is missing reports
``unavailable: <reason>``; one that cannot run a given descriptor reports ``not applicable:
<reason>``; neither ever crashes the run.

Subjects (``name`` = ``<library>/<method>``):

* ``tp_torch/<method>``, ``tp_jax/<method>``: every method of this project's backends.
* ``numpy/reference``: :func:`tp_spec.reference.apply` (float64; small sizes only).
* anchors (outside libraries, measured in the same run so every speedup is side by side):
  ``e3nn/cgtp`` (e3nn ``o3.TensorProduct``), ``e3nn/grid`` (e3nn ``ToS2Grid``/``FromS2Grid``),
  ``e3nn-jax/cgtp`` (e3nn-jax ``legacy.FunctionalTensorProduct``, vmapped), ``e3nn-jax/grid``
  (e3nn-jax ``to_s2grid``/``from_s2grid``, as the paper ran grid GTP), ``cueq-torch/cgtp`` and
  ``cueq-jax/cgtp`` (cuEquivariance: ``naive`` on CPU, its kernels on GPU), ``oeq/cgtp``
  (OpenEquivariance, GPU only), ``e3x/mtp`` (e3x ``FusedTensor`` on its own layout, through
  the verified change of basis of :mod:`benchmarks.e3x_mtp`).
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ANCHORS", "Built", "NotApplicable", "Subject", "Unavailable", "all_subjects",
           "cueq_torch_tensor_product", "e3nn_tensor_product", "select"]

#: The backend packages measured, with the framework name the method registry uses.
BACKENDS = {"tp_torch": "torch", "tp_jax": "jax"}

#: Anchor subject for (op, framework): speedups in the tables are anchor_time / subject_time.
ANCHORS: dict[str, dict[str, str]] = {
    "cgtp": {"torch": "e3nn/cgtp", "jax": "e3nn-jax/cgtp"},
    "gtp": {"torch": "e3nn/grid", "jax": "e3nn-jax/grid"},
    "mtp": {"jax": "e3x/mtp"},
    # the convolutions of the conv suite (benchmarks.conv_subjects)
    "conv-cgtp": {"torch": "e3nn/conv", "jax": "e3nn-jax/conv"},
}


class Unavailable(Exception):
    """The subject's library is missing or unusable here."""


class NotApplicable(Exception):
    """The subject cannot run this descriptor (op family, shape, device)."""


@dataclass
class Built:
    """A framework callable ``fn(x1, x2, w)`` (``w`` omitted when ``takes_weights`` is false)
    on tp_spec layouts, plus how it was built.

    A subject whose library has its own layout may time ``fn`` on that layout instead: then
    ``to_native`` maps the tp_spec NumPy arguments to ``fn``'s (once, before timing) and
    ``from_native`` maps ``fn``'s output back to ``(B, irreps_out.dim)`` for the reference
    check. Both run outside the timed call."""

    framework: str
    fn: Callable[..., Any]
    takes_weights: bool
    setup_s: float
    passes: tuple[str, ...] = ("fwd", "bwd", "dbl")
    note: str = ""
    to_native: Callable[[list[np.ndarray]], list[np.ndarray]] | None = None
    from_native: Callable[[np.ndarray], np.ndarray] | None = None


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception as exc:  # ImportError, or a library that raises at import (oeq on CPU)
        raise Unavailable(f"cannot import {name}: {type(exc).__name__}: {str(exc)[:120]}") from exc


def _torch_dtype(dtype: str) -> Any:
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[dtype]


class Subject:
    """Base class. Subclasses set ``name``, ``framework``, ``ops``, ``anchor``, ``method``."""

    name: str = "?"
    library: str = "?"
    framework: str = "?"
    method: str = "?"
    ops: tuple[str, ...] = ()
    anchor: bool = False
    #: Run only when named exactly in ``--subjects`` (slow to build, e.g. compiled anchors).
    opt_in: bool = False

    def available(self) -> str | None:
        """``None`` if usable here, else the reason."""
        try:
            self._check_import()
        except Unavailable as exc:
            return str(exc)
        return None

    def _check_import(self) -> None:
        pass

    def applicable(self, wl: Any, device: str) -> str | None:
        """``None`` if this subject can run workload ``wl`` on ``device``, else why not."""
        if wl.op not in self.ops:
            return f"{self.name} does not implement {wl.op}"
        if len(wl.descriptor.paths) == 0:
            return "the descriptor has no path"
        return None

    def build(self, wl: Any, dtype: str, device: str) -> Built:  # pragma: no cover - abstract
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        return {}


# ----------------------------------------------------------------------------- this project
class BackendSubject(Subject):
    """``tp_torch/<method>`` or ``tp_jax/<method>``."""

    anchor = False

    def __init__(self, package: str, op: str, method: str) -> None:
        self.library = package
        self.package = package
        self.framework = "torch" if package == "tp_torch" else "jax"
        self.method = method
        self.ops = (op,)
        self.name = f"{package}/{method}"

    def _check_import(self) -> None:
        _import(self.package)

    def _backend(self) -> Any:
        try:
            return importlib.import_module(f"{self.package}._backend").backend
        except Exception:
            return None

    def applicable(self, wl: Any, device: str) -> str | None:
        reason = super().applicable(wl, device)
        if reason:
            return reason
        backend = self._backend()
        if backend is not None:
            try:
                methods = backend.methods(wl.descriptor, device)
            except Exception as exc:
                return f"backend.methods failed: {type(exc).__name__}: {exc}"
            if self.method not in methods:
                return f"{self.package} has no method {self.method!r} for {wl.op}"
            if methods[self.method] is not None:
                return str(methods[self.method])
        if self.name == "tp_jax/s2fft" and not _jax_x64():
            return "tp_jax s2fft needs jax_enable_x64 (JAX_ENABLE_X64=1): its float32 " \
                   "transforms are inaccurate"
        return None

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        t0 = time.perf_counter()
        self._device = device
        mod = _import(self.package)
        d = wl.descriptor
        try:
            return self._build(mod, d, t0)
        except __import__("tp_spec").InstructionError as exc:
            raise NotApplicable(str(exc)) from exc

    def _build(self, mod: Any, d: Any, t0: float) -> Built:
        if self.package == "tp_torch":
            module = mod.TensorProduct(d, self.method)
            fn = module.to(device=self._device)
        else:
            fn = mod.tensor_product(d, self.method)
        return Built(self.framework, fn, d.weight_numel > 0, time.perf_counter() - t0)

    def versions(self) -> dict[str, str]:
        try:
            return {self.package: str(getattr(_import(self.package), "__version__", "?"))}
        except Unavailable:
            return {}


def _jax_x64() -> bool:
    try:
        import jax

        return bool(jax.config.jax_enable_x64)
    except Exception:
        return False


# ----------------------------------------------------------------------------- reference
class NumpyReference(Subject):
    """:func:`tp_spec.reference.apply` in float64, forward only; small problems only."""

    name = "numpy/reference"
    library = "tp_spec"
    framework = "numpy"
    method = "reference"
    ops = ("cgtp", "gtp", "mtp")
    max_flops = 2e8  # skip bigger problems: the reference is a readable loop, not a kernel

    def _check_import(self) -> None:
        _import("tp_spec.reference")

    def applicable(self, wl: Any, device: str) -> str | None:
        reason = super().applicable(wl, device)
        if reason:
            return reason
        if device != "cpu":
            return "the NumPy reference runs on the CPU only"
        est = _min_flops(wl.descriptor, wl.batch)
        if est is not None and est > self.max_flops:
            return f"too large for the reference ({est:.2g} > {self.max_flops:.0g} minimal FLOPs)"
        return None

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        ref = _import("tp_spec.reference")
        d = wl.descriptor
        return Built("numpy", lambda x1, x2, w=None: ref.apply(d, x1, x2, w), d.weight_numel > 0,
                     0.0, passes=("fwd",), note="float64 regardless of the run's dtype")


def _min_flops(d: Any, batch: int) -> float | None:
    try:
        return float(d.flops(batch))
    except Exception:
        return None


# ----------------------------------------------------------------------------- e3nn (torch)
def _e3nn_instructions(d: Any) -> list[tuple[Any, ...]]:
    return [(p.i_in1, p.i_in2, p.i_out, p.mode, p.has_weight, p.path_weight) for p in d.paths]


def e3nn_tensor_product(d: Any, dtype: str, device: str, *, shared_weights: bool) -> Any:
    """e3nn's ``o3.TensorProduct`` with ``d``'s instructions and normalizations, external
    weights (``(w,)`` shared or ``(B, w)`` per sample), on tp_spec's ``mul_ir`` layout."""
    import torch

    o3 = _import("e3nn.o3")
    old = torch.get_default_dtype()
    torch.set_default_dtype(_torch_dtype(dtype))  # e3nn builds its CG buffers in this dtype
    try:
        return o3.TensorProduct(
            str(d.irreps_in1), str(d.irreps_in2), str(d.irreps_out), _e3nn_instructions(d),
            irrep_normalization=d.irrep_normalization, path_normalization=d.path_normalization,
            internal_weights=False, shared_weights=shared_weights,
        ).to(device)
    finally:
        torch.set_default_dtype(old)


#: Workload modes timed against the libraries' own unweighted products (e3nn
#: ``FullTensorProduct`` / ``ElementwiseTensorProduct``, e3nn-jax ``tensor_product`` /
#: ``elementwise_tensor_product``): what users call for them.
UNWEIGHTED_MODES = ("full", "uuu")


def _filter(d: Any) -> list[str]:
    return sorted({repr(ir) for _, ir in d.irreps_out})


def e3nn_named_product(d: Any, mode: str, dtype: str, device: str) -> Any:
    """e3nn's ``FullTensorProduct`` (``mode="full"``) or ``ElementwiseTensorProduct``
    (``"uuu"``) of ``d``'s inputs, outputs filtered to ``d``'s irreps; its output irreps must
    be ``d``'s (same order), else :class:`NotApplicable`."""
    import torch

    o3 = _import("e3nn.o3")
    cls = o3.FullTensorProduct if mode == "full" else o3.ElementwiseTensorProduct
    old = torch.get_default_dtype()
    torch.set_default_dtype(_torch_dtype(dtype))
    try:
        tp = cls(str(d.irreps_in1), str(d.irreps_in2), filter_ir_out=_filter(d),
                 irrep_normalization=d.irrep_normalization).to(device)
    finally:
        torch.set_default_dtype(old)
    if str(tp.irreps_out) != str(d.irreps_out):
        raise NotApplicable(f"e3nn {cls.__name__} gives {tp.irreps_out}, not {d.irreps_out}")
    return tp


def block_permutation(native: Any, spec: Any) -> np.ndarray:
    """Index array ``p`` with ``y_spec = y_native[..., p]`` for two orders of the same blocks
    (``mul_ir`` layouts; blocks of equal irrep keep their relative order, as a stable sort
    leaves them)."""
    from tp_spec import Irreps

    native, spec = Irreps(str(native)), Irreps(str(spec))
    starts: dict[Any, list[tuple[int, int]]] = {}
    offset = 0
    for mul, ir in native:
        starts.setdefault((mul, repr(ir)), []).append((offset, mul * ir.dim))
        offset += mul * ir.dim
    parts = []
    for mul, ir in spec:
        left = starts.get((mul, repr(ir)))
        if not left:
            raise NotApplicable(f"{native} and {spec} hold different blocks")
        start, size = left.pop(0)
        parts.append(np.arange(start, start + size))
    if any(starts.values()):
        raise NotApplicable(f"{native} and {spec} hold different blocks")
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _e3nn_cgtp_ok(wl: Any) -> str | None:
    if getattr(wl.descriptor, "irrep_normalization", None) not in ("component", "norm"):
        return "e3nn needs irrep_normalization component/norm"
    return None


def _grid_ok(wl: Any) -> str | None:
    if wl.descriptor.weight_numel:
        return "per-degree weights are not wired into the grid anchors"
    lay = _grid_layout(wl.descriptor)
    return lay if isinstance(lay, str) else None


class E3nnCGTP(Subject):
    name = "e3nn/cgtp"
    library = "e3nn"
    framework = "torch"
    method = "TensorProduct"
    ops = ("cgtp",)
    anchor = True

    def _check_import(self) -> None:
        _import("e3nn.o3")

    def applicable(self, wl: Any, device: str) -> str | None:
        return super().applicable(wl, device) or _e3nn_cgtp_ok(wl)

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        t0 = time.perf_counter()
        if wl.mode in UNWEIGHTED_MODES:
            tp = e3nn_named_product(wl.descriptor, wl.mode, dtype, device)
            return Built("torch", tp, False, time.perf_counter() - t0,
                         note=f"o3.{type(tp).__name__}")
        tp = e3nn_tensor_product(wl.descriptor, dtype, device,
                                 shared_weights=not wl.per_sample_weights)
        return Built("torch", lambda x1, x2, w: tp(x1, x2, w), True, time.perf_counter() - t0)

    def versions(self) -> dict[str, str]:
        return {"e3nn": _import("e3nn").__version__}


class E3nnCGTPCompiled(E3nnCGTP):
    """The ``e3nn/cgtp`` anchor under ``torch.compile`` (inductor): e3nn's fastest CPU setting
    for the forward and backward. Opt-in (``--subjects e3nn/cgtp-compiled``, not matched by a
    prefix): compiling takes seconds to minutes per shape and recompiles for the backward. No
    double backward: ``torch.compile`` (AOTAutograd) cannot differentiate its own backward."""

    name = "e3nn/cgtp-compiled"
    method = "TensorProduct+compile"
    anchor = False
    opt_in = True

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        import torch

        built = super().build(wl, dtype, device)
        fn = torch.compile(built.fn)
        return Built("torch", fn, built.takes_weights, built.setup_s, passes=("fwd", "bwd"),
                     note=(built.note + "; " if built.note else "") + "torch.compile",
                     to_native=built.to_native, from_native=built.from_native)


# ------------------------------------------------------------------ grid layout helpers
def _grid_layout(d: Any) -> tuple[int, int, int, np.ndarray, np.ndarray, np.ndarray] | str:
    """Index maps between tp_spec flat layouts and per-channel s2 coefficient arrays.

    Returns ``(C, C2, (L1, L2, Lo), idx1, idx2, idx_out)`` where ``idx1`` has shape
    ``(C, (L1+1)^2)`` indexing ``x1`` padded with one trailing zero (index ``dim`` -> 0), and
    ``idx_out`` (``irreps_out.dim``,) indexes the flattened ``(C, (Lo+1)^2)`` output; or a
    string saying why the descriptor does not fit (grid anchors handle class +1 only).
    """
    from tp_spec import Irreps

    out = []
    for name in ("irreps_in1", "irreps_in2", "irreps_out"):
        irreps = Irreps(getattr(d, name))
        for _, ir in irreps:
            if ir.p != (-1) ** ir.l:
                return f"{name} has {ir!r} (parity class -1): the s2grid anchors take class +1 only"
        out.append(irreps)
    ir1, ir2, iro = out
    C = ir1[0].mul
    C2 = ir2[0].mul
    if any(m != C for m, _ in ir1) or any(m != C2 for m, _ in ir2) or C2 not in (1, C):
        return "grid anchors need channelwise inputs"

    def gather(irreps: Irreps, channels: int) -> np.ndarray:
        lmax = irreps.lmax
        idx = np.full((channels, (lmax + 1) ** 2), irreps.dim, dtype=np.int64)
        offset = 0
        for mul, ir in irreps:
            for c in range(channels):
                for m in range(ir.dim):
                    idx[c, ir.l**2 + m] = offset + c * ir.dim + m
            offset += mul * ir.dim
        return idx

    idx1, idx2 = gather(ir1, C), gather(ir2, C2)
    lo = iro.lmax
    idx_out = []
    for mul, ir in iro:
        for c in range(mul):
            for m in range(ir.dim):
                idx_out.append(c * (lo + 1) ** 2 + ir.l**2 + m)
    return C, C2, (ir1.lmax, ir2.lmax, lo), idx1, idx2, np.asarray(idx_out, dtype=np.int64)


def _grid_native(layout: tuple[Any, ...]) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``to_native``/``from_native`` of the grid anchors: tp_spec flat features to per-channel
    s2 coefficients ``(B, C, (L+1)^2)`` (zeros for degrees a descriptor lacks) and the
    anchor's ``(B, C, (Lo+1)^2)`` output back to ``(B, irreps_out.dim)``; both run outside the
    timed call, which holds the two transforms, the product and the projection only."""
    _, _, _, idx1, idx2, idx_out = layout

    def gather(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        padded = np.concatenate([x, np.zeros((*x.shape[:-1], 1), x.dtype)], axis=-1)
        return np.ascontiguousarray(padded[..., idx])

    def to_native(args: list[np.ndarray]) -> list[np.ndarray]:
        return [gather(args[0], idx1), gather(args[1], idx2)]

    def from_native(out: np.ndarray) -> np.ndarray:
        return out.reshape(*out.shape[:-2], -1)[..., idx_out]

    return to_native, from_native


class E3nnGrid(Subject):
    """Grid GTP with e3nn (torch) ``ToS2Grid``/``FromS2Grid`` (its own 'soft' beta grid).

    The transforms' tables are built in float64 and cast to the run's dtype: built in float32
    (``dtype=torch.float32``) they lose accuracy with the degree (MIMO GTP, relative error of
    the product: 5.8e-5 at L=6, 1.3e-3 at L=8, 5.9e-2 at L=10, so the anchor failed the
    reference check from L=8); built in float64 and cast, 2-4e-7. The cast changes no timed
    work: the calls run in the run's dtype either way."""

    name = "e3nn/grid"
    library = "e3nn"
    framework = "torch"
    method = "s2grid"
    ops = ("gtp",)
    anchor = True

    def _check_import(self) -> None:
        _import("e3nn.o3")

    def applicable(self, wl: Any, device: str) -> str | None:
        return super().applicable(wl, device) or _grid_ok(wl)

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        import torch

        o3 = _import("e3nn.o3")
        d = wl.descriptor
        t0 = time.perf_counter()
        layout = _grid_layout(d)
        _, _, (l1, l2, lo), _, _, _ = layout
        total = l1 + l2 + lo
        res_beta = 2 * (total // 2 + 1)
        res_alpha = max(total + 1, 2 * max(l1, l2, lo) + 1)
        res_alpha += 1 - res_alpha % 2  # odd, so e3nn uses its rfft path
        tdt = _torch_dtype(dtype)
        f64 = torch.float64
        to1 = o3.ToS2Grid(l1, (res_beta, res_alpha), normalization="integral", dtype=f64,
                          device=device).to(tdt)
        to2 = o3.ToS2Grid(l2, (res_beta, res_alpha), normalization="integral", dtype=f64,
                          device=device).to(tdt)
        frm = o3.FromS2Grid((res_beta, res_alpha), lo, normalization="integral", dtype=f64,
                            device=device).to(tdt)
        scale = math.sqrt(4 * math.pi)  # (1/4pi) int f1 f2 Y^comp with component features

        def fn(z1: Any, z2: Any) -> Any:  # (B, C, (l1+1)^2), (B, C2, (l2+1)^2)
            return frm(to1(z1) * to2(z2)) * scale

        to_native, from_native = _grid_native(layout)
        return Built("torch", fn, False, time.perf_counter() - t0,
                     note=f"soft grid {res_beta}x{res_alpha}, tables built in float64; s2 "
                          "layout outside the timed call",
                     to_native=to_native, from_native=from_native)

    def versions(self) -> dict[str, str]:
        return {"e3nn": _import("e3nn").__version__}


# ----------------------------------------------------------------------------- e3nn-jax
class E3nnJaxCGTP(Subject):
    name = "e3nn-jax/cgtp"
    library = "e3nn_jax"
    framework = "jax"
    method = "FunctionalTensorProduct"
    ops = ("cgtp",)
    anchor = True

    def _check_import(self) -> None:
        _import("e3nn_jax")
        _import("e3nn_jax.legacy")

    def applicable(self, wl: Any, device: str) -> str | None:
        return Subject.applicable(self, wl, device) or _e3nn_cgtp_ok(wl)

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        import jax

        e3nn = _import("e3nn_jax")
        legacy = _import("e3nn_jax.legacy")
        d = wl.descriptor
        t0 = time.perf_counter()
        if wl.mode in UNWEIGHTED_MODES:
            return self._named(e3nn, wl.mode, d, t0)
        tp = legacy.FunctionalTensorProduct(
            e3nn.Irreps(str(d.irreps_in1)), e3nn.Irreps(str(d.irreps_in2)),
            e3nn.Irreps(str(d.irreps_out)), _e3nn_instructions(d),
            irrep_normalization=d.irrep_normalization, path_normalization=d.path_normalization,
        )
        ir1, ir2 = e3nn.Irreps(str(d.irreps_in1)), e3nn.Irreps(str(d.irreps_in2))

        def one(w: Any, a: Any, b: Any) -> Any:
            return tp.left_right(w, e3nn.IrrepsArray(ir1, a), e3nn.IrrepsArray(ir2, b)).array

        w_axis = 0 if wl.per_sample_weights else None

        def fn(x1: Any, x2: Any, w: Any) -> Any:
            return jax.vmap(one, in_axes=(w_axis, 0, 0))(w, x1, x2)

        return Built("jax", fn, True, time.perf_counter() - t0)

    @staticmethod
    def _named(e3nn: Any, mode: str, d: Any, t0: float) -> Built:
        """``e3nn.tensor_product`` (``full``) / ``e3nn.elementwise_tensor_product`` (``uuu``)
        on batched ``IrrepsArray`` s; e3nn-jax sorts outputs with even parity first within a
        degree, mapped back to the descriptor's order outside the timed call."""
        ir1, ir2 = e3nn.Irreps(str(d.irreps_in1)), e3nn.Irreps(str(d.irreps_in2))
        filt = _filter(d)
        if d.irrep_normalization != "component":
            raise NotApplicable("the e3nn-jax anchor is wired for component normalization")

        def product(a: Any, b: Any) -> Any:
            if mode == "full":
                return e3nn.tensor_product(a, b, filter_ir_out=filt, regroup_output=False)
            return e3nn.elementwise_tensor_product(a, b, filter_ir_out=filt)

        def fn(x1: Any, x2: Any) -> Any:
            return product(e3nn.IrrepsArray(ir1, x1), e3nn.IrrepsArray(ir2, x2)).array

        z = product(e3nn.IrrepsArray(ir1, np.zeros((1, ir1.dim))),
                    e3nn.IrrepsArray(ir2, np.zeros((1, ir2.dim))))
        perm = block_permutation(z.irreps, d.irreps_out)
        name = "tensor_product" if mode == "full" else "elementwise_tensor_product"
        return Built("jax", fn, False, time.perf_counter() - t0, note=f"e3nn.{name}",
                     from_native=lambda y: y[..., perm])

    def versions(self) -> dict[str, str]:
        return {"e3nn-jax": _import("e3nn_jax").__version__}


class E3nnJaxGrid(Subject):
    """Grid GTP as the paper ran it: e3nn-jax ``to_s2grid`` (Gauss-Legendre, ``fft=False``),
    product, ``from_s2grid`` (``fft=False``). Its Legendre step is one dense einsum over all
    ``(l, m)``: O(L^4). ``fft=False`` is the paper's setting and e3nn-jax's fastest here: MIMO,
    batch 10,000, float32, 1 thread, it took 3.5 / 5.0 / 13.4 / 32.3 / 96.1 / 145.7 ms at
    L = 1 / 2 / 4 / 6 / 8 / 10 against 3.9 / 8.5 / 34.9 / 98.4 / 184.9 / 420.8 ms with the
    default ``fft=True``."""

    name = "e3nn-jax/grid"
    library = "e3nn_jax"
    framework = "jax"
    method = "to_s2grid"
    ops = ("gtp",)
    anchor = True

    def _check_import(self) -> None:
        _import("e3nn_jax")

    def applicable(self, wl: Any, device: str) -> str | None:
        return Subject.applicable(self, wl, device) or _grid_ok(wl)

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        e3nn = _import("e3nn_jax")
        d = wl.descriptor
        t0 = time.perf_counter()
        layout = _grid_layout(d)
        _, _, (l1, l2, lo), _, _, _ = layout
        total = l1 + l2 + lo
        res_beta = total // 2 + 1  # Gauss-Legendre: exact for degree <= 2 res_beta - 1
        res_alpha = max(total + 1, 2 * max(l1, l2, lo) + 1)
        res_alpha += 1 - res_alpha % 2  # odd: exact for the band limit
        s2_1, s2_2, s2_o = (e3nn.s2_irreps(l) for l in (l1, l2, lo))
        kw = dict(quadrature="gausslegendre", normalization="integral", fft=False)

        def fn(z1: Any, z2: Any) -> Any:  # (B, C, (l1+1)^2), (B, C2, (l2+1)^2)
            g1 = e3nn.to_s2grid(e3nn.IrrepsArray(s2_1, z1), res_beta, res_alpha, **kw)
            g2 = e3nn.to_s2grid(e3nn.IrrepsArray(s2_2, z2), res_beta, res_alpha, **kw)
            g = g1.replace_values(g1.grid_values * g2.grid_values)
            # e3nn-jax's 'integral' pair already gives (1/4pi) int f1 f2 Y (checked)
            return e3nn.from_s2grid(g, s2_o, normalization="integral", fft=False).array

        to_native, from_native = _grid_native(layout)
        return Built("jax", fn, False, time.perf_counter() - t0,
                     note=f"Gauss-Legendre grid {res_beta}x{res_alpha}, fft=False; s2 layout "
                          "outside the timed call",
                     to_native=to_native, from_native=from_native)

    def versions(self) -> dict[str, str]:
        return {"e3nn-jax": _import("e3nn_jax").__version__}


# ----------------------------------------------------------------------------- cuEquivariance
def _cue_fc_ok(wl: Any) -> str | None:
    d = wl.descriptor
    if any(p.mode != "uvw" for p in d.paths):
        return "only fully connected (uvw) CGTPs are wired to the cuEquivariance anchor"
    if (d.irrep_normalization, d.path_normalization) != ("component", "element"):
        return "cuEquivariance anchor needs component/element normalization"
    # The fully connected product must be exactly the descriptor's paths.
    from tp_spec import cgtp

    full = cgtp(d.irreps_in1, d.irreps_in2, d.irreps_out, mode="uvw")
    if len(full.paths) != len(d.paths):
        return "descriptor is not a complete fully connected product"
    return None


def _mul_ir_to_ir_mul(irreps: Any) -> np.ndarray:
    """Index array ``p`` with ``x_ir_mul = x_mul_ir[..., p]`` (each block ``(mul, d)`` to
    ``(d, mul)``)."""
    parts, offset = [], 0
    for mul, ir in irreps:
        block = np.arange(mul * ir.dim).reshape(mul, ir.dim)
        parts.append(offset + block.T.reshape(-1))
        offset += mul * ir.dim
    return np.concatenate(parts) if parts else np.zeros(0, dtype=int)


def cueq_torch_tensor_product(d: Any, dtype: str, device: str, *, shared_weights: bool,
                              channelwise: bool = False) -> Any:
    """cuEquivariance-torch's ``FullyConnectedTensorProduct`` of ``d``'s irreps, or with
    ``channelwise`` its ``ChannelWiseTensorProduct`` (outputs filtered to ``d``'s irreps, which
    must then be exactly its outputs), external weights, ``mul_ir`` layout; ``naive`` on the
    CPU, its kernels on a GPU."""
    cue = _import("cuequivariance")
    cuet = _import("cuequivariance_torch")
    in1, in2, out = (cue.Irreps("O3", str(i)) for i in (d.irreps_in1, d.irreps_in2, d.irreps_out))
    kwargs = dict(layout=cue.mul_ir, shared_weights=shared_weights, internal_weights=False,
                  dtype=_torch_dtype(dtype), device=device,
                  method="naive" if device == "cpu" else None)
    if not channelwise:
        return cuet.FullyConnectedTensorProduct(in1, in2, out, **kwargs)
    tp = cuet.ChannelWiseTensorProduct(in1, in2, sorted({seg.ir for seg in out}, key=str),
                                       **kwargs)
    if str(tp.irreps_out) != str(out):
        raise NotApplicable(f"cuEquivariance's outputs {tp.irreps_out} differ from "
                            f"{d.irreps_out}")
    return tp


class CueqTorchCGTP(Subject):
    name = "cueq-torch/cgtp"
    library = "cuequivariance_torch"
    framework = "torch"
    method = "FullyConnectedTensorProduct"
    ops = ("cgtp",)
    anchor = True

    def _check_import(self) -> None:
        _import("cuequivariance")
        _import("cuequivariance_torch")

    def applicable(self, wl: Any, device: str) -> str | None:
        return super().applicable(wl, device) or _cue_fc_ok(wl)

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        t0 = time.perf_counter()
        tp = cueq_torch_tensor_product(wl.descriptor, dtype, device,
                                       shared_weights=not wl.per_sample_weights)

        def fn(x1: Any, x2: Any, w: Any) -> Any:
            return tp(x1, x2, w if w.ndim == 2 else w[None, :])

        return Built("torch", fn, True, time.perf_counter() - t0,
                     note="naive" if device == "cpu" else "kernels")

    def versions(self) -> dict[str, str]:
        return {"cuequivariance": _import("cuequivariance").__version__}


class CueqJaxCGTP(Subject):
    name = "cueq-jax/cgtp"
    library = "cuequivariance_jax"
    framework = "jax"
    method = "equivariant_polynomial"
    ops = ("cgtp",)
    anchor = True

    def _check_import(self) -> None:
        _import("cuequivariance")
        _import("cuequivariance_jax")

    def applicable(self, wl: Any, device: str) -> str | None:
        return super().applicable(wl, device) or _cue_fc_ok(wl)

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        cue = _import("cuequivariance")
        cuex = _import("cuequivariance_jax")
        d = wl.descriptor
        t0 = time.perf_counter()
        e = cue.descriptors.fully_connected_tensor_product(
            cue.Irreps("O3", str(d.irreps_in1)), cue.Irreps("O3", str(d.irreps_in2)),
            cue.Irreps("O3", str(d.irreps_out)))
        e = e.flatten_coefficient_modes() if hasattr(e, "flatten_coefficient_modes") else e
        method = "naive" if device == "cpu" else "uniform_1d"
        import jax

        # The descriptor's operands are in cuEquivariance's ``ir_mul`` layout; the arrays are
        # transposed to it (and the output back) outside the timed call.
        p1, p2, po = (_mul_ir_to_ir_mul(irr) for irr in
                      (d.irreps_in1, d.irreps_in2, d.irreps_out))

        def to_native(args: list[np.ndarray]) -> list[np.ndarray]:
            return [args[0][..., p1], args[1][..., p2], *args[2:]]

        def from_native(out: np.ndarray) -> np.ndarray:
            return np.asarray(out)[..., np.argsort(po)]

        def fn(x1: Any, x2: Any, w: Any) -> Any:
            wb = w if w.ndim == 2 else w[None, :]
            inputs = [cuex.RepArray(e.inputs[0], wb, cue.mul_ir),
                      cuex.RepArray(e.inputs[1], x1, cue.mul_ir),
                      cuex.RepArray(e.inputs[2], x2, cue.mul_ir)]
            out = cuex.equivariant_polynomial(
                e, inputs, jax.ShapeDtypeStruct(x1.shape[:-1] + (d.irreps_out.dim,), x1.dtype),
                method=method)
            return out.array

        return Built("jax", fn, True, time.perf_counter() - t0, note=f"{method}, ir_mul layout",
                     to_native=to_native, from_native=from_native)

    def versions(self) -> dict[str, str]:
        return {"cuequivariance": _import("cuequivariance").__version__}


# ----------------------------------------------------------------------------- OpenEquivariance
class OeqCGTP(Subject):
    name = "oeq/cgtp"
    library = "openequivariance"
    framework = "torch"
    method = "TensorProduct"
    ops = ("cgtp",)
    anchor = True

    def _check_import(self) -> None:
        try:
            import torch
        except ImportError as exc:
            raise Unavailable("OpenEquivariance needs torch") from exc
        if not torch.cuda.is_available():
            raise Unavailable("OpenEquivariance runs on NVIDIA/AMD GPUs only (no CUDA here)")
        _import("openequivariance")

    def applicable(self, wl: Any, device: str) -> str | None:
        reason = super().applicable(wl, device)
        if reason:
            return reason
        if device == "cpu":
            return "OpenEquivariance is GPU only"
        d = wl.descriptor
        modes = {p.mode for p in d.paths}
        if len(modes) != 1 or modes - {"uvu", "uvw"} or not all(p.has_weight for p in d.paths):
            return "OpenEquivariance supports all-weighted single-mode uvu or uvw problems only"
        if (d.irrep_normalization, d.path_normalization) != ("component", "element"):
            return "OpenEquivariance anchor needs component/element normalization"
        return None

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        import torch

        oeq = _import("openequivariance")
        d = wl.descriptor
        t0 = time.perf_counter()
        npdt = np.float32 if dtype == "float32" else np.float64
        problem = oeq.TPProblem(
            str(d.irreps_in1), str(d.irreps_in2), str(d.irreps_out), _e3nn_instructions(d),
            shared_weights=not wl.per_sample_weights, internal_weights=False,
            irrep_dtype=npdt, weight_dtype=npdt)
        tp = oeq.TensorProduct(problem, torch_op=True)
        has_batch = wl.per_sample_weights

        def fn(x1: Any, x2: Any, w: Any) -> Any:
            return tp(x1, x2, w)

        # Weights arrive in e3nn order; the timed call takes oeq's order (reordered once).
        def convert(w: np.ndarray) -> np.ndarray:
            return np.asarray(tp.reorder_weights_from_e3nn(w, has_batch))

        built = Built("torch", fn, True, time.perf_counter() - t0, note="CUDA kernels")
        built.convert_weights = convert  # type: ignore[attr-defined]
        del torch
        return built

    def versions(self) -> dict[str, str]:
        mod = _import("openequivariance")
        return {"openequivariance": str(getattr(mod, "__version__", "?"))}


# ----------------------------------------------------------------------------- e3x
class E3xMTP(Subject):
    """e3x ``FusedTensor``: the MTP, timed on e3x's own layout ``(B, P, (L+1)^2, C)``.

    Verified change of basis (:mod:`benchmarks.e3x_mtp`): with input kernels 1 and output
    kernels ``sqrt(2 lt + 1)``, ``FusedTensor(M x1, M x2) = M mtp(x1, x2)`` per irrep, ``M_l``
    an orthogonal (rotation + reordering) matrix; the conversions run outside the timed call.
    """

    name = "e3x/mtp"
    library = "e3x"
    framework = "jax"
    method = "FusedTensor"
    ops = ("mtp",)
    anchor = True

    def _check_import(self) -> None:
        _import("e3x")

    def applicable(self, wl: Any, device: str) -> str | None:
        reason = super().applicable(wl, device)
        if reason:
            return reason
        from .e3x_mtp import plan

        try:
            plan(wl.descriptor)
        except ValueError as exc:
            return str(exc)
        return None

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        import jax.numpy as jnp

        from .e3x_mtp import from_e3x, fused_tensor_params, plan, to_e3x

        e3x = _import("e3x")
        t0 = time.perf_counter()
        try:
            p = plan(wl.descriptor)
        except ValueError as exc:
            raise NotApplicable(str(exc)) from exc
        jdt = {"float32": jnp.float32, "float64": jnp.float64}[dtype]
        module = e3x.nn.FusedTensor(max_degree=p.L3, include_pseudotensors=True,
                                    cartesian_order=True, param_dtype=jdt)
        params = fused_tensor_params(p, jdt)

        def fn(x1: Any, x2: Any) -> Any:
            return module.apply(params, x1, x2)

        def to_native(args: list[np.ndarray]) -> list[np.ndarray]:
            return [to_e3x(p, 1, args[0]), to_e3x(p, 2, args[1])]

        note = (f"e3x layout (P={p.P1},{p.P2}; max_degree {p.L3}; lt {p.lt}); basis change "
                "outside the timed call")
        if p.channels_in2 != p.channels:
            note += "; x2 repeated to C channels (e3x needs equal feature counts)"
        return Built("jax", fn, False, time.perf_counter() - t0, note=note,
                     to_native=to_native, from_native=lambda z: from_e3x(p, z))

    def versions(self) -> dict[str, str]:
        return {"e3x": str(getattr(_import("e3x"), "__version__", "?"))}


# ----------------------------------------------------------------------------- registry
def backend_methods(package: str) -> dict[str, tuple[str, ...]]:
    """Every method of ``package`` per op, from the method registry (:data:`tp_spec.plan.METHODS`).
    The OpenEquivariance adapter is measured directly, as the ``oeq/cgtp`` subject."""
    from tp_spec.plan import METHODS

    fw = BACKENDS[package]
    return {op: tuple(name for name, m in ms.items()
                      if fw in m.frameworks and m.adapter != "openequivariance")
            for op, ms in METHODS.items()}


def all_subjects(include: tuple[str, ...] | None = None) -> list[Subject]:
    """Every known subject (optionally only those whose name starts with one of ``include``;
    ``name@op`` keeps only that op's subject, e.g. ``tp_torch/sparse@mtp``)."""
    subjects: list[Subject] = []
    for package in BACKENDS:
        for op, methods in backend_methods(package).items():
            for method in methods:
                subjects.append(BackendSubject(package, op, method))
    subjects += [NumpyReference(), E3nnCGTP(), E3nnCGTPCompiled(), E3nnJaxCGTP(), E3nnGrid(),
                 E3nnJaxGrid(), CueqTorchCGTP(), CueqJaxCGTP(), OeqCGTP(), E3xMTP()]
    if include:
        return select(subjects, include)
    return [s for s in subjects if not s.opt_in]


def select(subjects: list[Subject], include: tuple[str, ...]) -> list[Subject]:
    """The subjects whose name starts with one of ``include`` (``*`` at the end ignored);
    ``name@op`` keeps only that op's subject. An opt-in subject is kept only when named
    exactly."""
    def wanted(s: Subject, i: str) -> bool:
        name, _, op = i.partition("@")
        if s.opt_in:
            return s.name == name and (not op or op in s.ops)
        return ((s.name == name or s.name.startswith(name.rstrip("*")))
                and (not op or op in s.ops))

    return [s for s in subjects if any(wanted(s, i) for i in include)]
