"""Subjects of the ``conv`` suite: callables ``fn(x_nodes, x_edges, weights, senders,
receivers) -> (n_nodes, dim_out)`` on tp_spec layouts (``weights`` left out when the descriptor
has none).

* ``tp_torch/<method>``: ``tp_torch.TensorProductConv(d, method)``; ``tp_jax/<method>``:
  ``tp_jax.tensor_product_conv(d, method)``. Until a package has them, its subjects report
  ``unavailable: tp_torch has no TensorProductConv``.
* Anchors, written as MACE / NequIP code computes the convolution (gather the senders' rows,
  one product per edge, scatter-add into the receivers):

  - ``e3nn/conv``: ``x[senders]``, e3nn ``o3.TensorProduct`` with the descriptor's ``uvu``
    instructions (``shared_weights=False``), ``index_add_`` into the receivers;
  - ``e3nn-jax/conv``: ``x[senders]``, ``e3nn.tensor_product`` (the CG products of every
    path, ``regroup_output=False``: sorted, not merged), each path scaled by its per-edge
    weights (and path weight), ``jax.ops.segment_sum`` into the receivers;
  - ``cueq-torch/conv``: cuEquivariance's ``ChannelWiseTensorProduct`` (``naive`` on the
    CPU, its kernels on a GPU) with its own gather and scatter (``indices_1=senders``,
    ``indices_out=receivers``); its weights are ordered by sorted output irrep, converted
    once outside the timed call.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

import numpy as np

from .subjects import (
    BACKENDS,
    Built,
    NotApplicable,
    Subject,
    Unavailable,
    _e3nn_instructions,
    _import,
    _torch_dtype,
    backend_methods,
)

__all__ = ["CONV_API", "ConvBackendSubject", "conv_subjects"]

#: The convolution entry point of each backend package.
CONV_API = {"tp_torch": "TensorProductConv", "tp_jax": "tensor_product_conv"}


def _uvu_ok(wl: Any) -> str | None:
    """Why an anchor cannot run ``wl`` (it needs an all-weighted ``uvu`` CGTP with one path
    per output segment and e3nn's normalizations), or ``None``."""
    d = wl.descriptor
    if not d.paths or any(p.mode != "uvu" or not p.has_weight for p in d.paths):
        return "the conv anchors take all-weighted channelwise (uvu) CGTPs"
    if sorted(p.i_out for p in d.paths) != list(range(len(d.irreps_out))):
        return "the conv anchors need one path per output segment"
    if (d.irrep_normalization, d.path_normalization) != ("component", "element"):
        return "the conv anchors need component/element normalization"
    return None


class _ConvSubject(Subject):
    def applicable(self, wl: Any, device: str) -> str | None:
        if wl.op not in self.ops:
            return f"{self.name} does not implement {wl.op}"
        if len(wl.descriptor.paths) == 0:
            return "the descriptor has no path"
        return None


# ----------------------------------------------------------------------------- this project
class ConvBackendSubject(_ConvSubject):
    """``tp_torch/<method>`` or ``tp_jax/<method>`` on ``conv-<family>`` workloads."""

    anchor = False

    def __init__(self, package: str, family: str, method: str) -> None:
        self.package = self.library = package
        self.framework = BACKENDS[package]
        self.method = method
        self.ops = (f"conv-{family}",)
        self.name = f"{package}/{method}"

    def _check_import(self) -> None:
        mod = _import(self.package)
        if not hasattr(mod, CONV_API[self.package]):
            raise Unavailable(f"{self.package} has no {CONV_API[self.package]}")

    def applicable(self, wl: Any, device: str) -> str | None:
        reason = super().applicable(wl, device)
        if reason:
            return reason
        try:
            backend = importlib.import_module(f"{self.package}._backend").backend
            methods = backend.methods(wl.descriptor, device)
        except Exception:
            return None  # the build will say
        if self.method not in methods:
            return f"{self.package} has no method {self.method!r} for {wl.family}"
        return None if methods[self.method] is None else str(methods[self.method])

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        from tp_spec import InstructionError

        mod = _import(self.package)
        d = wl.descriptor
        t0 = time.perf_counter()
        try:
            if self.package == "tp_torch":
                fn = mod.TensorProductConv(d, self.method).to(device=device)
            else:
                fn = mod.tensor_product_conv(d, self.method)
        except InstructionError as exc:
            raise NotApplicable(str(exc)) from exc
        return Built(self.framework, _with_weights(fn, d.weight_numel > 0), d.weight_numel > 0,
                     time.perf_counter() - t0)

    def versions(self) -> dict[str, str]:
        try:
            return {self.package: str(getattr(_import(self.package), "__version__", "?"))}
        except Unavailable:
            return {}


def _with_weights(fn: Any, weighted: bool) -> Any:
    """``fn(x_nodes, x_edges, weights, senders, receivers)``, called with ``weights=None``
    when the descriptor has none (the engines then pass 4 arguments)."""
    if weighted:
        return fn
    return lambda xn, xe, s, r: fn(xn, xe, None, s, r)


# ----------------------------------------------------------------------------- anchors
class E3nnConv(_ConvSubject):
    name = "e3nn/conv"
    library = "e3nn"
    framework = "torch"
    method = "TensorProduct+index_add_"
    ops = ("conv-cgtp",)
    anchor = True

    def _check_import(self) -> None:
        _import("e3nn.o3")

    def applicable(self, wl: Any, device: str) -> str | None:
        return super().applicable(wl, device) or _uvu_ok(wl)

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        import torch

        o3 = _import("e3nn.o3")
        d = wl.descriptor
        t0 = time.perf_counter()
        old = torch.get_default_dtype()
        torch.set_default_dtype(_torch_dtype(dtype))  # e3nn builds its CG buffers in this dtype
        try:
            tp = o3.TensorProduct(
                str(d.irreps_in1), str(d.irreps_in2), str(d.irreps_out), _e3nn_instructions(d),
                irrep_normalization=d.irrep_normalization,
                path_normalization=d.path_normalization,
                internal_weights=False, shared_weights=False).to(device)
        finally:
            torch.set_default_dtype(old)
        dim_out = d.irreps_out.dim

        def fn(xn: Any, xe: Any, w: Any, senders: Any, receivers: Any) -> Any:
            msg = tp(xn[senders], xe, w)
            out = xn.new_zeros((xn.shape[0], dim_out))
            return out.index_add_(0, receivers, msg)

        return Built("torch", fn, True, time.perf_counter() - t0)

    def versions(self) -> dict[str, str]:
        return {"e3nn": _import("e3nn").__version__}


class E3nnJaxConv(_ConvSubject):
    name = "e3nn-jax/conv"
    library = "e3nn_jax"
    framework = "jax"
    method = "tensor_product+segment_sum"
    ops = ("conv-cgtp",)
    anchor = True

    def _check_import(self) -> None:
        _import("e3nn_jax")

    def applicable(self, wl: Any, device: str) -> str | None:
        return super().applicable(wl, device) or _uvu_ok(wl)

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        import jax
        import jax.numpy as jnp

        e3nn = _import("e3nn_jax")
        d = wl.descriptor
        t0 = time.perf_counter()
        ir1, ir2 = e3nn.Irreps(str(d.irreps_in1)), e3nn.Irreps(str(d.irreps_in2))
        filt = sorted({str(seg.ir) for seg in d.irreps_out})
        # e3nn-jax sorts its output segments by irrep (stably, without merging): the order of
        # tp_spec's channelwise outputs, one segment per path.
        got = e3nn.tensor_product(ir1, ir2, filter_ir_out=filt, regroup_output=False)
        if str(got) != str(e3nn.Irreps(str(d.irreps_out))):
            raise NotApplicable(f"e3nn-jax's outputs {got} differ from {d.irreps_out}")
        plan = [(p.i_out, p.weight_offset, p.mul_in1, float(p.path_weight))
                for p in sorted(d.paths, key=lambda p: p.i_out)]

        def fn(xn: Any, xe: Any, w: Any, senders: Any, receivers: Any) -> Any:
            x1 = e3nn.IrrepsArray(ir1, xn[senders])
            x2 = e3nn.IrrepsArray(ir2, xe)
            chunks = e3nn.tensor_product(x1, x2, filter_ir_out=filt,
                                         regroup_output=False).chunks
            parts = []
            for k, off, mul, pw in plan:
                c = chunks[k]  # (E, mul, 2l+1)
                parts.append((c * (pw * w[:, off:off + mul])[:, :, None])
                             .reshape(c.shape[0], -1))
            msg = jnp.concatenate(parts, axis=-1)
            return jax.ops.segment_sum(msg, receivers, num_segments=xn.shape[0])

        return Built("jax", fn, True, time.perf_counter() - t0)

    def versions(self) -> dict[str, str]:
        return {"e3nn-jax": _import("e3nn_jax").__version__}


class CueqTorchConv(_ConvSubject):
    name = "cueq-torch/conv"
    library = "cuequivariance_torch"
    framework = "torch"
    method = "ChannelWiseTensorProduct"
    ops = ("conv-cgtp",)
    anchor = True

    def _check_import(self) -> None:
        _import("cuequivariance")
        _import("cuequivariance_torch")

    def applicable(self, wl: Any, device: str) -> str | None:
        return super().applicable(wl, device) or _uvu_ok(wl)

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        cue = _import("cuequivariance")
        cuet = _import("cuequivariance_torch")
        d = wl.descriptor
        t0 = time.perf_counter()
        filt = sorted({seg.ir for seg in cue.Irreps("O3", str(d.irreps_out))}, key=str)
        tp = cuet.ChannelWiseTensorProduct(
            cue.Irreps("O3", str(d.irreps_in1)), cue.Irreps("O3", str(d.irreps_in2)), filt,
            layout=cue.mul_ir, shared_weights=False, internal_weights=False,
            dtype=_torch_dtype(dtype), device=device,
            method="naive" if device == "cpu" else None)
        if str(tp.irreps_out) != str(cue.Irreps("O3", str(d.irreps_out))):
            raise NotApplicable(f"cuEquivariance's outputs {tp.irreps_out} differ from "
                                f"{d.irreps_out}")
        # cuEquivariance orders the weights by (sorted) output segment, tp_spec by path.
        perm = np.concatenate([np.arange(p.weight_offset, p.weight_offset + p.mul_in1)
                               for p in sorted(d.paths, key=lambda p: p.i_out)])

        def to_native(args: list[np.ndarray]) -> list[np.ndarray]:
            return [args[0], args[1], args[2][:, perm]]

        def fn(xn: Any, xe: Any, w: Any, senders: Any, receivers: Any) -> Any:
            return tp(xn, xe, w, indices_1=senders, indices_out=receivers,
                      size_out=xn.shape[0])

        return Built("torch", fn, True, time.perf_counter() - t0,
                     note="naive" if device == "cpu" else "kernels", to_native=to_native)

    def versions(self) -> dict[str, str]:
        return {"cuequivariance": _import("cuequivariance").__version__}


# ----------------------------------------------------------------------------- registry
def conv_subjects(include: tuple[str, ...] | None = None) -> list[Subject]:
    """Conv subjects. ``include`` as :func:`benchmarks.subjects.all_subjects` (name prefixes,
    ``name@op`` for one op's subject, e.g. ``tp_torch/dense@conv-mtp``); ``None``: the anchors
    and each family's default method (:data:`tp_spec.plan.DEFAULT_METHODS`), which keeps a
    run of the suite to minutes on 2 cores; ``("*",)`` (every name starts with ``""``): all."""
    from tp_spec.plan import DEFAULT_METHODS

    subjects: list[Subject] = []
    for package in BACKENDS:
        for family, methods in backend_methods(package).items():
            for method in methods:
                subjects.append(ConvBackendSubject(package, family, method))
    subjects += [E3nnConv(), E3nnJaxConv(), CueqTorchConv()]
    if include is None:
        return [s for s in subjects if s.anchor
                or s.method == DEFAULT_METHODS[s.ops[0].removeprefix("conv-")]]
    if include:
        def wanted(s: Subject, i: str) -> bool:
            name, _, op = i.partition("@")
            return ((s.name == name or s.name.startswith(name.rstrip("*")))
                    and (not op or op in s.ops))

        subjects = [s for s in subjects if any(wanted(s, i) for i in include)]
    return subjects
