"""``TensorProduct``: the torch.nn.Module running any tp_spec descriptor, and method selection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tp_spec import InstructionError, TensorProductDescriptor
from tp_spec import plan as tp_plan

from ._common import Kernel, flatten_batch, validate_inputs

__all__ = ["METHODS", "TensorProduct", "default_method", "methods"]

#: Every method name per descriptor family (public API; keep the names).
METHODS: dict[str, tuple[str, ...]] = {
    "cgtp": ("fused", "dense", "sparse", "cueq", "oeq"),
    "gtp": ("grid", "fourier"),
    "mtp": ("dense", "sparse"),
}


def _family(d: Any) -> str:
    kind = getattr(d, "kind", None)
    if not isinstance(d, TensorProductDescriptor) or kind not in METHODS:
        raise InstructionError(
            f"expected a tp_spec descriptor (cgtp, gtp or mtp), got {type(d).__name__}"
        )
    return kind


def methods(descriptor: TensorProductDescriptor, device: str = "cpu") -> dict[str, str | None]:
    """Every method of ``descriptor``'s family -> ``None`` if it runs on ``device``, else the
    reason it cannot."""
    fam = _family(descriptor)
    dev = torch.device(device)
    out: dict[str, str | None] = {}
    for m in METHODS[fam]:
        reason = None
        if dev.type == "cuda" and not torch.cuda.is_available():
            reason = "CUDA is not available"
        elif fam == "cgtp" and m == "cueq":
            from ._cueq import cueq_unsupported_reason

            reason = cueq_unsupported_reason(descriptor)
        elif fam == "cgtp" and m == "oeq":
            from ._oeq import oeq_unsupported_reason

            reason = oeq_unsupported_reason(descriptor, device)
        out[m] = reason
    return out


def default_method(descriptor: TensorProductDescriptor, device: str = "cpu") -> str:
    """The method ``method=None`` picks (the fastest measured on CPU; the same on CUDA, where
    the adapters are opt-in).

    Choice table (CPU, float32, batch 10,000, 2 threads; scripts and numbers in the README):
    CGTP ``fused`` (faster than ``dense``/``sparse`` and than e3nn on every workload measured);
    GTP ``grid`` (2-3x faster than ``fourier`` at L=1..6, O(L^3)); MTP ``sparse`` (block-sparse
    change of basis, no gathers): faster than ``dense`` at L = 4, 6, 8 on the harness's MIMO
    descriptor, float32, 1 thread, batch 10,000 (``scripts/bench_cpu.py mtp 4 6 8 --cpu-time``:
    forward x1.16-1.45, forward+backward x1.19-1.52, on a loaded 2-core machine).
    """
    fam = _family(descriptor)
    if fam == "cgtp":
        return "fused"
    if fam == "gtp":
        return "grid"
    return "sparse"


def _adapters() -> dict[tuple[str, str], Callable[..., Kernel]]:
    """Builders of the methods without a tp_spec plan, ``(family, method) -> (d, device)``."""
    from ._cgtp import CGTPFused
    from ._gtp import GTPFourier, GTPGrid
    from ._mtp import MTPDense, MTPSparse

    def cueq(d, device):
        from ._cueq import CGTPCueq

        return CGTPCueq(d, device)

    def oeq(d, device):
        from ._oeq import CGTPOeq

        return CGTPOeq(d, device)

    return {
        ("cgtp", "fused"): lambda d, dev: CGTPFused(d),
        ("cgtp", "cueq"): cueq,
        ("cgtp", "oeq"): oeq,
        ("gtp", "grid"): lambda d, dev: GTPGrid(d),
        ("gtp", "fourier"): lambda d, dev: GTPFourier(d),
        ("mtp", "dense"): lambda d, dev: MTPDense(d),
        ("mtp", "sparse"): lambda d, dev: MTPSparse(d),
    }


def _executors() -> dict[type, Callable[[Any], Kernel]]:
    """Plan type -> the executor (a :class:`Kernel` built from the plan)."""
    from . import _cgtp

    return {**_cgtp.EXECUTORS}


def build_kernel(d: TensorProductDescriptor, method: str, device: torch.device) -> Kernel:
    """The kernel running ``d`` with ``method``: the executor of its tp_spec plan, or the
    adapter's own builder."""
    m = tp_plan.get_method(d, method, framework="torch")
    if m.build is not None:
        p = tp_plan.plan(d, method)
        run = _executors().get(type(p))
        if run is not None:
            return run(p)
    return _adapters()[(m.family, method)](d, device)


class TensorProduct(torch.nn.Module):
    """Run a tp_spec descriptor (CGTP, GTP or MTP) with a chosen method.

    ``TensorProduct(d, method=None, device=None)``; ``forward(x1, x2, weights=None)`` with
    ``x1: (*batch, d.irreps_in1.dim)``, ``x2: (*batch, d.irreps_in2.dim)`` (same batch, nothing
    broadcast), ``weights``: ``None`` iff ``d.weight_numel == 0``, else ``(weight_numel,)``
    shared or ``(*batch, weight_numel)`` per sample. Returns ``(*batch, d.irreps_out.dim)`` in
    the inputs' dtype (float32 or float64; half precisions raise :class:`tp_spec.DTypeError`).

    The constants (CG blocks, Legendre/DFT matrices, gather indices) are built once here, in
    float32 and float64, as non-persistent buffers: ``.to(device)`` moves them. Attributes:
    ``descriptor``, ``method``, ``weight_numel``.
    """

    def __init__(
        self,
        descriptor: TensorProductDescriptor,
        method: str | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        fam = _family(descriptor)
        dev = torch.device(device) if device is not None else torch.device("cpu")
        avail = methods(descriptor, str(dev))
        if method is None:
            method = default_method(descriptor, str(dev))
        if method not in avail:
            raise InstructionError(
                f"unknown method {method!r} for a {fam} descriptor; valid methods: "
                f"{list(avail)}"
            )
        if avail[method] is not None:
            usable = [m for m, r in avail.items() if r is None]
            raise InstructionError(
                f"method {method!r} cannot run this {fam} descriptor on {dev}: {avail[method]}. "
                f"Usable methods: {usable}"
            )
        self.descriptor = descriptor
        self.method = method
        self.weight_numel = int(descriptor.weight_numel)
        self._dims = (descriptor.irreps_in1.dim, descriptor.irreps_in2.dim, self.weight_numel)
        self._dim_out = descriptor.irreps_out.dim
        self.kernel = build_kernel(descriptor, method, dev)
        self.register_buffer("_probe", torch.zeros(0), persistent=False)
        if device is not None:
            self.to(dev)

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        batch = validate_inputs(self.descriptor, x1, x2, weights, self._dims, self._probe.device)
        a, b, w = flatten_batch(x1, x2, weights, self.weight_numel)
        out = self.kernel(a, b, w)
        return out.reshape(batch + (self._dim_out,))

    def extra_repr(self) -> str:
        d = self.descriptor
        return (f"{d.kind}: {d.irreps_in1} x {d.irreps_in2} -> {d.irreps_out}, "
                f"method={self.method!r}, weight_numel={self.weight_numel}")
