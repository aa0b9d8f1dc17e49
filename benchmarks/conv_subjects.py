"""Subjects of the ``conv`` suite: callables ``fn(x_nodes, x_edges, weights, senders,
receivers) -> (n_nodes, dim_out)`` on tp_spec layouts (``weights`` left out when the descriptor
has none).

* ``tp_torch/<method>``: ``tp_torch.TensorProductConv(d, method)``; ``tp_jax/<method>``:
  ``tp_jax.tensor_product_conv(d, method)``. Until a package has them, its subjects report
  ``unavailable: tp_torch has no TensorProductConv``.
* Anchors, written as MACE / NequIP code computes the convolution (gather the senders' rows,
  one product per edge, scatter-add into the receivers):

  - ``e3nn/conv``: ``x[senders]``, e3nn ``o3.TensorProduct`` with the descriptor's ``uvu``
    instructions (built as ``e3nn/cgtp`` builds it, with ``shared_weights=False``),
    ``index_add_`` into the receivers;
  - ``e3nn-jax/conv``: ``x[senders]``, ``e3nn.tensor_product`` (the CG products of every
    path, ``regroup_output=False``: sorted, not merged), each path scaled by its per-edge
    weights (and path weight), ``jax.ops.segment_sum`` into the receivers;
  - ``cueq-torch/conv``: cuEquivariance's ``ChannelWiseTensorProduct`` (``naive`` on the
    CPU, its kernels on a GPU; built by the function that builds ``cueq-torch/cgtp``'s
    module) with its own gather and scatter (``indices_1=senders``,
    ``indices_out=receivers``); its weights are ordered by sorted output irrep, converted
    once outside the timed call.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .subjects import (
    BACKENDS,
    BackendSubject,
    Built,
    CueqTorchCGTP,
    E3nnCGTP,
    E3nnJaxCGTP,
    NotApplicable,
    Subject,
    Unavailable,
    _import,
    backend_methods,
    cueq_torch_tensor_product,
    e3nn_tensor_product,
    select,
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


# ----------------------------------------------------------------------------- this project
class ConvBackendSubject(BackendSubject):
    """``tp_torch/<method>`` or ``tp_jax/<method>`` on ``conv-<family>`` workloads; built and
    reported as :class:`benchmarks.subjects.BackendSubject`, with the convolution API."""

    def __init__(self, package: str, family: str, method: str) -> None:
        super().__init__(package, f"conv-{family}", method)

    def _check_import(self) -> None:
        mod = _import(self.package)
        if not hasattr(mod, CONV_API[self.package]):
            raise Unavailable(f"{self.package} has no {CONV_API[self.package]}")

    def applicable(self, wl: Any, device: str) -> str | None:
        reason = Subject.applicable(self, wl, device)
        if reason:
            return reason
        try:
            methods = self._backend().methods(wl.descriptor, device)
        except Exception:
            return None  # the build will say
        if self.method not in methods:
            return f"{self.package} has no method {self.method!r} for {wl.family}"
        return None if methods[self.method] is None else str(methods[self.method])

    def _build(self, mod: Any, d: Any, t0: float) -> Built:
        if self.package == "tp_torch":
            fn = mod.TensorProductConv(d, self.method).to(device=self._device)
        else:
            fn = mod.tensor_product_conv(d, self.method)
        weighted = d.weight_numel > 0
        return Built(self.framework, _with_weights(fn, weighted), weighted,
                     time.perf_counter() - t0)


def _with_weights(fn: Any, weighted: bool) -> Any:
    """``fn(x_nodes, x_edges, weights, senders, receivers)``, called with ``weights=None``
    when the descriptor has none (the engines then pass 4 arguments)."""
    if weighted:
        return fn
    return lambda xn, xe, s, r: fn(xn, xe, None, s, r)


# ----------------------------------------------------------------------------- anchors
class _ConvAnchor(Subject):
    """The op and the applicability of the conv anchors; listed before the TP anchor whose
    library (imports, versions) a conv anchor shares."""

    ops = ("conv-cgtp",)

    def applicable(self, wl: Any, device: str) -> str | None:
        return Subject.applicable(self, wl, device) or _uvu_ok(wl)


class E3nnConv(_ConvAnchor, E3nnCGTP):
    """``e3nn/cgtp``'s module, per-edge weights, between a gather and a scatter."""

    name = "e3nn/conv"
    method = "TensorProduct+index_add_"

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        d = wl.descriptor
        t0 = time.perf_counter()
        tp = e3nn_tensor_product(d, dtype, device, shared_weights=False)
        dim_out = d.irreps_out.dim

        def fn(xn: Any, xe: Any, w: Any, senders: Any, receivers: Any) -> Any:
            msg = tp(xn[senders], xe, w)
            out = xn.new_zeros((xn.shape[0], dim_out))
            return out.index_add_(0, receivers, msg)

        return Built("torch", fn, True, time.perf_counter() - t0)


class E3nnJaxConv(_ConvAnchor, E3nnJaxCGTP):
    """``e3nn.tensor_product`` with per-edge path weights (module docstring), not
    ``e3nn-jax/cgtp``'s ``FunctionalTensorProduct``."""

    name = "e3nn-jax/conv"
    method = "tensor_product+segment_sum"

    def _check_import(self) -> None:
        _import("e3nn_jax")

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


class CueqTorchConv(_ConvAnchor, CueqTorchCGTP):
    """``cueq-torch/cgtp``'s builder, channelwise, per-edge weights, its own gather and
    scatter."""

    name = "cueq-torch/conv"
    method = "ChannelWiseTensorProduct"

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        d = wl.descriptor
        t0 = time.perf_counter()
        tp = cueq_torch_tensor_product(d, dtype, device, shared_weights=False, channelwise=True)
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
    return select(subjects, include) if include else subjects
