"""NequIP (``nequip`` 0.19) convolutions on :class:`tp_torch.TensorProductConv`.

NequIP runs each interaction block's tensor product and scatter through one module,
``nequip.nn._tp_scatter_base.TensorProductScatter(feature_irreps_in, irreps_edge_attr,
irreps_mid, instructions)`` with ``forward(x, edge_attr, edge_weight, edge_dst, edge_src)``:

* ``x (n_nodes, feature_irreps_in.dim)``, ``edge_attr (n_edges, irreps_edge_attr.dim)``,
  ``edge_weight (n_edges, weight_numel)`` (the radial MLP), ``edge_dst``/``edge_src``
  ``(n_edges,)`` -> ``(n_nodes, irreps_mid.dim)``, the sum over the edges into each
  ``edge_dst`` of e3nn's ``TensorProduct(x[edge_src], edge_attr, edge_weight)``.

Its cuEquivariance and OpenEquivariance accelerations subclass it and swap it in with a model
modifier; :class:`TPTorchTensorProductScatter` does the same with tp_torch, and
:func:`convert` / :func:`to_e3nn` swap it in and out of a built model (a copy, or in
place). nequip finds model modifiers only as classmethods of the classes already in a model,
so an outside package cannot register one without patching nequip; these two functions
replace it::

    model = nequip.model.NequIPGNNModel(...)          # or a loaded checkpoint
    fast = tp_torch.integrations.nequip.convert(model)   # every TensorProductScatter -> tp_torch
    back = tp_torch.integrations.nequip.to_e3nn(fast)    # and back (inplace=True: in place)

The converted module keeps the original e3nn ``tp`` (unused, as nequip's own accelerations
do): its buffers stay in the state dict, so state dicts load either way and converting back
restores the very same module. ``nequip`` is imported only when these are called.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import tp_spec

from .._conv import TensorProductConv

# TPTorchTensorProductScatter subclasses nequip's module: built by __getattr__ on first access
__all__ = ["TPTorchTensorProductScatter", "convert", "descriptor", "to_e3nn"]  # noqa: F822


def descriptor(feature_irreps_in: Any, irreps_edge_attr: Any, irreps_mid: Any,
               instructions: Any) -> tp_spec.CGTPDescriptor:
    """The tp_spec descriptor of e3nn's ``TensorProduct(feature_irreps_in, irreps_edge_attr,
    irreps_mid, instructions, shared_weights=False, internal_weights=False)`` as NequIP builds
    it: the same instructions in the same order (hence the same per-edge weight layout), e3nn's
    default ``component`` irrep and ``element`` path normalization."""
    return tp_spec.cgtp(str(feature_irreps_in), str(irreps_edge_attr), str(irreps_mid),
                        instructions=[tuple(ins) for ins in instructions])


def _scatter_base() -> type:
    from nequip.nn._tp_scatter_base import TensorProductScatter

    return TensorProductScatter


def _device_of(module: torch.nn.Module) -> torch.device:
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")


def _make_class() -> type:
    base = _scatter_base()

    class TPTorchTensorProductScatter(base):  # type: ignore[misc, valid-type]
        """NequIP's ``TensorProductScatter`` computed by :class:`tp_torch.TensorProductConv`
        (same constructor, call, weight layout and state-dict keys); ``method`` and ``tuning``
        as for :class:`tp_torch.TensorProductConv`."""

        def __init__(self, feature_irreps_in: Any, irreps_edge_attr: Any, irreps_mid: Any,
                     instructions: Any, method: str | None = None,
                     device: str | torch.device | None = None, tuning: Any = None) -> None:
            super().__init__(feature_irreps_in=feature_irreps_in,
                             irreps_edge_attr=irreps_edge_attr, irreps_mid=irreps_mid,
                             instructions=instructions)
            d = descriptor(feature_irreps_in, irreps_edge_attr, irreps_mid, instructions)
            if d.weight_numel != self.tp.weight_numel:
                raise tp_spec.InstructionError(
                    f"weight layout mismatch: e3nn's TensorProduct takes {self.tp.weight_numel} "
                    f"weights per edge, the tp_spec descriptor {d.weight_numel}")
            self.tp_conv = TensorProductConv(d, method=method, device=device, tuning=tuning)

        def forward(self, x: torch.Tensor, edge_attr: torch.Tensor, edge_weight: torch.Tensor,
                    edge_dst: torch.Tensor, edge_src: torch.Tensor) -> torch.Tensor:
            return self.tp_conv(x, edge_attr, edge_weight, edge_src, edge_dst)

    TPTorchTensorProductScatter.__module__ = __name__
    TPTorchTensorProductScatter.__qualname__ = "TPTorchTensorProductScatter"
    return TPTorchTensorProductScatter


_CLASS: list[type] = []


def __getattr__(name: str) -> Any:
    """``TPTorchTensorProductScatter`` is built on first access (it subclasses nequip's)."""
    if name == "TPTorchTensorProductScatter":
        if not _CLASS:
            _CLASS.append(_make_class())
        return _CLASS[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _swap(model: torch.nn.Module, target: type, make: Any) -> int:
    """Replace every submodule of exact type ``target`` by ``make(old)``; count them."""
    count = 0
    for name, child in list(model.named_children()):
        if type(child) is target:
            model._modules[name] = make(child)
            count += 1
        else:
            count += _swap(child, target, make)
    return count


def _require_model(model: Any, target: type, what: str) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{what} takes a torch.nn.Module, got {type(model).__name__}")
    if type(model) is target:
        raise TypeError(f"{what} replaces the submodules of a model: pass the model "
                        f"that holds the {target.__name__}, not the module itself")


def convert(model: torch.nn.Module, method: str | None = None, tuning: Any = None, *,
            inplace: bool = False) -> torch.nn.Module:
    """``model`` with every nequip ``TensorProductScatter`` replaced by a
    :class:`TPTorchTensorProductScatter` (same irreps and instructions, the original e3nn
    ``tp`` kept): a deep copy unless ``inplace``. Raises ``ValueError`` if there is none to
    replace."""
    base = _scatter_base()
    _require_model(model, base, "convert")
    model = model if inplace else copy.deepcopy(model)
    cls = __getattr__("TPTorchTensorProductScatter")

    def make(old: torch.nn.Module) -> torch.nn.Module:
        from nequip.utils.dtype import torch_default_dtype

        with torch_default_dtype(old.model_dtype):
            new = cls(old.feature_irreps_in, old.irreps_edge_attr, old.irreps_mid,
                      old.instructions, method=method, device=_device_of(old), tuning=tuning)
        new.tp = old.tp  # the original e3nn module: its buffers keep the state dict unchanged
        new.train(old.training)
        return new

    if _swap(model, base, make) == 0:
        raise ValueError("convert: the model holds no nequip TensorProductScatter (already "
                         "converted, or not a NequIP model)")
    return model


def to_e3nn(model: torch.nn.Module, *, inplace: bool = False) -> torch.nn.Module:
    """Undo :func:`convert`: every :class:`TPTorchTensorProductScatter` becomes a nequip
    ``TensorProductScatter`` holding the original e3nn ``tp``; a deep copy unless ``inplace``.
    Raises ``ValueError`` if there is none to replace."""
    base = _scatter_base()
    cls = __getattr__("TPTorchTensorProductScatter")
    _require_model(model, cls, "to_e3nn")
    model = model if inplace else copy.deepcopy(model)

    def make(old: torch.nn.Module) -> torch.nn.Module:
        from nequip.utils.dtype import torch_default_dtype

        with torch_default_dtype(old.model_dtype):
            new = base(old.feature_irreps_in, old.irreps_edge_attr, old.irreps_mid,
                       old.instructions)
        new.tp = old.tp  # the original e3nn module, with its buffers
        new.train(old.training)
        return new

    if _swap(model, cls, make) == 0:
        raise ValueError("to_e3nn: the model holds no TPTorchTensorProductScatter")
    return model
