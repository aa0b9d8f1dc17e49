"""``TensorProduct``: the torch.nn.Module running any tp_spec descriptor, and method selection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tp_spec import DeviceError, DTypeError, InstructionError, TensorProductDescriptor
from tp_spec import plan as tp_plan
from tp_spec.validation import check_call, dtype_name

from . import _cgtp, _gtp, _mtp, _vstp
from ._common import Kernel, NotScriptable, flatten_batch, no_autocast
from ._cueq import CGTPCueq, cueq_reason
from ._oeq import CGTPOeq, oeq_unsupported_reason
from ._zero import ZeroKernel

__all__ = ["METHODS", "TensorProduct", "default_method", "methods"]

#: Every method name tp_torch runs, per descriptor family (from :data:`tp_spec.plan.METHODS`).
METHODS: dict[str, tuple[str, ...]] = {
    fam: tuple(name for name, m in ms.items() if "torch" in m.frameworks)
    for fam, ms in tp_plan.METHODS.items()
}


def methods(descriptor: TensorProductDescriptor, device: str = "cpu") -> dict[str, str | None]:
    """The methods of ``descriptor``'s family and whether each runs on ``device``.

    Args:
        descriptor: a tp_spec descriptor (CGTP, GTP, MTP or VSTP).
        device: ``"cpu"``, ``"cuda"`` or a ``torch.device`` string.

    Returns:
        ``{method name: None if it runs, else the reason it cannot}``.

    >>> import tp_spec, tp_torch
    >>> tp_torch.methods(tp_spec.gtp("0e + 1o", "0e + 1o"))["grid"] is None
    True
    """
    out = tp_plan.methods(descriptor, "torch")
    cuda_missing = torch.device(device).type == "cuda" and not torch.cuda.is_available()
    for name, reason in out.items():
        if reason is not None:
            continue
        if cuda_missing:
            out[name] = "CUDA is not available"
        elif name == "cueq":
            out[name] = cueq_reason(descriptor)
        elif name == "oeq":
            out[name] = oeq_unsupported_reason(descriptor, device)
    return out


def default_method(descriptor: TensorProductDescriptor, device: str = "cpu") -> str:
    """The method ``method=None`` picks for ``descriptor``.

    It comes from :data:`tp_spec.plan.DEFAULT_METHODS` and is the same on every ``device``
    (the GPU adapters ``cueq`` and ``oeq`` are opt-in).

    >>> import tp_spec, tp_torch
    >>> tp_torch.default_method(tp_spec.cgtp("0e + 1o", "0e + 1o", "0e + 1o", mode="uvw"))
    'fused'
    """
    return tp_plan.default_method(descriptor)


#: Methods without a tp_spec plan (adapters of outside libraries): ``(family, name) ->
#: build(d, device)``.
ADAPTERS: dict[tuple[str, str], Callable[..., Kernel]] = {
    ("cgtp", "cueq"): CGTPCueq,
    ("cgtp", "oeq"): CGTPOeq,
}

#: Plan type -> the executor (a :class:`Kernel` built from the plan alone).
EXECUTORS: dict[type, Callable[[Any], Kernel]] = {
    **_cgtp.EXECUTORS, **_gtp.EXECUTORS, **_mtp.EXECUTORS, **_vstp.EXECUTORS}


def build_kernel(d: TensorProductDescriptor, method: str, device: torch.device,
                 tuning: tp_plan.Tuning | None = None) -> Kernel:
    """The kernel running ``d`` with ``method``: the executor of its tp_spec plan (built with
    ``tuning``), or the adapter's own builder; for a descriptor with no paths, under every
    method, :class:`ZeroKernel` (zeros on the autograd graph)."""
    m = tp_plan.get_method(d, method, framework="torch")
    if not d.paths:
        return ZeroKernel(d)
    if m.build is None:
        return ADAPTERS[(m.family, method)](d, device)
    p = tp_plan.plan(d, method, tuning)
    return EXECUTORS[type(p)](p)


def _check_call(d: TensorProductDescriptor, x1: Any, x2: Any, weights: Any,
                module_device: torch.device) -> tuple[tuple[int, ...], str]:
    """:func:`tp_spec.validation.check_call` plus what is torch's own: tensors only, one
    device, the module's device. Returns the batch shape and the compute dtype's name."""
    named = (("x1", x1), ("x2", x2)) + ((("weights", weights),) if weights is not None else ())
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise DTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    batch, compute = check_call(d, x1, x2, weights)
    for name, t in named[1:]:
        if t.device != x1.device:
            raise DeviceError(f"device mix: x1 is on {x1.device} but {name} is on {t.device}")
    if x1.device != module_device:
        raise DeviceError(
            f"inputs are on {x1.device} but the module's constants are on {module_device}; "
            "move the module with .to(device)")
    return batch, compute


class TensorProduct(NotScriptable, torch.nn.Module):
    """Run a tp_spec descriptor (CGTP, GTP, MTP or VSTP) with a chosen method.

    The constants (CG blocks, Legendre/DFT matrices, gather indices) are built once here, in
    float32 and float64, as non-persistent buffers: ``.to(device)`` moves them. The module
    holds no weights: pass them to :meth:`forward`.

    Args:
        descriptor: the tp_spec descriptor ``d`` to compute.
        method: a name from :func:`methods` (``None``: :func:`default_method`).
        device: where the constants live (default CPU).
        tuning: a :class:`tp_spec.plan.Tuning` for the plan (``None``: default thresholds).

    Attributes:
        descriptor: the descriptor.
        method: the method's name.
        weight_numel: ``d.weight_numel``.

    >>> import tp_spec, tp_torch, torch
    >>> d = tp_spec.cgtp("2x0e + 2x1o", "0e + 1o", "0e + 1o", mode="uvu")
    >>> d.irreps_out  # one block per path, sorted
    2x0e+2x0e+2x1o+2x1o
    >>> tp = tp_torch.TensorProduct(d)
    >>> x1, x2 = torch.randn(10, 8), torch.randn(10, 4)
    >>> tp(x1, x2, torch.randn(10, d.weight_numel)).shape  # per-sample weights
    torch.Size([10, 16])
    """

    def __init__(
        self,
        descriptor: TensorProductDescriptor,
        method: str | None = None,
        device: str | torch.device | None = None,
        tuning: tp_plan.Tuning | None = None,
    ) -> None:
        super().__init__()
        dev = torch.device(device) if device is not None else torch.device("cpu")
        if method is None:
            method = default_method(descriptor, str(dev))
        tp_plan.get_method(descriptor, method, framework="torch")  # unknown method: raises
        reason = methods(descriptor, str(dev))[method]
        if reason is not None:
            usable = [m for m, r in methods(descriptor, str(dev)).items() if r is None]
            raise InstructionError(
                f"method {method!r} cannot run this {descriptor.kind} descriptor on {dev}: "
                f"{reason}. Usable methods: {usable}")
        self.descriptor = descriptor
        self.method = method
        self.weight_numel = int(descriptor.weight_numel)
        self._dim_out = descriptor.irreps_out.dim
        self.kernel = build_kernel(descriptor, method, dev, tuning)
        self.register_buffer("_probe", torch.zeros(0), persistent=False)
        if device is not None:
            self.to(dev)

    @no_autocast
    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The product of ``d`` on each sample.

        Args:
            x1: ``[*batch, irreps_in1.dim]``.
            x2: ``[*batch, irreps_in2.dim]`` (the same batch; nothing is broadcast).
            weights: ``None`` iff ``d.weight_numel == 0``, else ``[weight_numel]`` shared or
                ``[*batch, weight_numel]`` per sample.

        Returns:
            ``[*batch, irreps_out.dim]`` in the inputs' dtype. float32 and float64 compute in
            their own precision, bfloat16 and float16 in float32, rounded once
            (:mod:`tp_spec.validation`).
        """
        batch, compute = _check_call(self.descriptor, x1, x2, weights, self._probe.device)
        dtype = x1.dtype
        if compute != dtype_name(dtype):  # half precisions: computed in float32, rounded once
            x1, x2 = x1.float(), x2.float()
            weights = None if weights is None else weights.float()
        a, b, w = flatten_batch(x1, x2, weights, self.weight_numel)
        out = self.kernel(a, b, w)
        return out.reshape(batch + (self._dim_out,)).to(dtype)

    def extra_repr(self) -> str:
        d = self.descriptor
        return (f"{d.kind}: {d.irreps_in1} x {d.irreps_in2} -> {d.irreps_out}, "
                f"method={self.method!r}, weight_numel={self.weight_numel}")
