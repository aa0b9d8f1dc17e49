"""e3nn's modules on tp_torch: the same constructor, call, weights and state-dict keys.

* :class:`TensorProduct`: e3nn ``o3.TensorProduct(irreps_in1, irreps_in2, irreps_out,
  instructions, in1_var, in2_var, out_var, irrep_normalization, path_normalization,
  internal_weights, shared_weights)`` and its call ``tp(x, y, weight=None)``.
* :class:`Linear`: e3nn ``o3.Linear`` (:class:`tp_torch.Linear` with e3nn's keys).
* :func:`from_e3nn` / :func:`to_e3nn`: one module converted with its weights.

Both load an e3nn state dict strictly: e3nn's constants (``output_mask``, the buffers of its
generated code under ``_compiled_main*``, empty ``weight``/``bias`` placeholders) are recognised
by name and skipped, never by ``strict=False``. e3nn itself is imported only by
:func:`from_e3nn` / :func:`to_e3nn`.

>>> import torch
>>> tp = TensorProduct("2x0e + 1x1o", "1x1o", "2x1o", [(0, 0, 0, "uvu", True)])
>>> tp(torch.randn(3, 5), torch.randn(3, 3)).shape
torch.Size([3, 6])
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import tp_spec
from tp_spec import InstructionError, Irreps, ShapeError

from .._common import NotScriptable, call_weight
from .._module import TensorProduct as _TensorProduct
from ..linear import Linear as _Linear

__all__ = ["Linear", "TensorProduct", "cg_sign", "e3nn_tensor_product", "from_e3nn", "to_e3nn"]


class _E3nnKeys:
    """Loads e3nn state dicts strictly: e3nn's non-weight entries are skipped by name."""

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix):]
            if rest == "output_mask" or rest.startswith("_compiled_main"):
                del state_dict[key]  # a derived constant of e3nn's, not a weight
            elif (rest in ("weight", "bias") and getattr(self, rest, None) is None
                  and state_dict[key].numel() == 0):
                del state_dict[key]  # e3nn's empty placeholder where there are no weights
        super()._load_from_state_dict(state_dict, prefix, *args)  # type: ignore[misc]


def _weight_flags(internal_weights: bool | None, shared_weights: bool | None,
                  has_weights: bool) -> tuple[bool, bool]:
    """e3nn's defaults: ``shared_weights`` True; ``internal_weights`` = shared and weighted."""
    if shared_weights is False and internal_weights is None:
        internal_weights = False
    if shared_weights is None:
        shared_weights = True
    if internal_weights is None:
        internal_weights = shared_weights and has_weights
    if internal_weights and not shared_weights:
        raise ShapeError("internal weights are shared: internal_weights=True needs "
                         "shared_weights=True")
    return bool(internal_weights), bool(shared_weights)


class TensorProduct(_E3nnKeys, NotScriptable, torch.nn.Module):
    """e3nn's ``o3.TensorProduct`` computed by :class:`tp_torch.TensorProduct`.

    ``forward(x (*batch, irreps_in1.dim), y (*batch, irreps_in2.dim), weight=None) ->
    (*batch, irreps_out.dim)``; ``weight`` is ``(weight_numel,)`` (shared) or ``(*batch,
    weight_numel)`` (``shared_weights=False``), and only without internal weights. The flat
    weight layout is e3nn's, so ``tp.weight.copy_(e3nn_tp.weight)`` gives e3nn's output.
    ``method`` picks the tp_torch method (default: the fastest for the descriptor).
    """

    def __init__(self, irreps_in1: Any, irreps_in2: Any, irreps_out: Any,
                 instructions: Sequence[tuple[Any, ...]],
                 in1_var: Sequence[float] | None = None, in2_var: Sequence[float] | None = None,
                 out_var: Sequence[float] | None = None, irrep_normalization: str | None = None,
                 path_normalization: str | None = None, internal_weights: bool | None = None,
                 shared_weights: bool | None = None, *, method: str | None = None) -> None:
        super().__init__()
        d = tp_spec.cgtp(Irreps(irreps_in1), Irreps(irreps_in2), Irreps(irreps_out),
                         instructions=[tuple(ins) for ins in instructions],
                         irrep_normalization=irrep_normalization or "component",
                         path_normalization=path_normalization or "element",
                         in1_var=in1_var, in2_var=in2_var, out_var=out_var)
        self._setup(d, internal_weights, shared_weights, method)

    def _setup(self, d: Any, internal_weights: bool | None, shared_weights: bool | None,
               method: str | None) -> None:
        self.internal_weights, self.shared_weights = _weight_flags(
            internal_weights, shared_weights, any(p.has_weight for p in d.paths))
        self.descriptor = d
        self.tp = _TensorProduct(d, method)
        self.method = self.tp.method
        self.irreps_in1, self.irreps_in2, self.irreps_out = (d.irreps_in1, d.irreps_in2,
                                                             d.irreps_out)
        self.weight_numel = d.weight_numel
        if self.internal_weights and self.weight_numel:
            self.weight = torch.nn.Parameter(torch.randn(self.weight_numel))
        else:
            self.register_parameter("weight", None)

    def forward(self, x: torch.Tensor, y: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
        """e3nn's call.

        Args:
            x: ``[*batch, irreps_in1.dim]``.
            y: ``[*batch, irreps_in2.dim]``.
            weight: only without internal weights: ``[weight_numel]``, or
                ``[*batch, weight_numel]`` with ``shared_weights=False``.

        Returns:
            ``[*batch, irreps_out.dim]``.
        """
        weight = call_weight(self, weight)
        return self.tp(x, y, weight)

    @classmethod
    def from_descriptor(cls, d: Any, internal_weights: bool | None = None,
                        shared_weights: bool | None = None, *,
                        method: str | None = None) -> TensorProduct:
        """The module of a ``tp_spec.cgtp`` descriptor, with e3nn's weight arguments."""
        new = cls.__new__(cls)
        torch.nn.Module.__init__(new)
        new._setup(d, internal_weights, shared_weights, method)
        return new

    @classmethod
    def from_e3nn(cls, module: Any, *, method: str | None = None) -> TensorProduct:
        """The module computing what the e3nn ``o3.TensorProduct`` ``module`` computes, with a
        copy of its weights: each path's final coefficient as e3nn holds it, times the sign
        between that e3nn's Wigner 3j and :func:`tp_spec.clebsch_gordan` (:func:`cg_sign`)."""
        paths = [(i.i_in1, i.i_in2, i.i_out, i.connection_mode, i.has_weight,
                  float(i.path_weight) * cg_sign(*_degrees(module, i)))
                 for i in module.instructions]
        d = tp_spec.CGTPDescriptor.from_paths(str(module.irreps_in1), str(module.irreps_in2),
                                              str(module.irreps_out), paths)
        new = cls.from_descriptor(d, module.internal_weights, module.shared_weights,
                                  method=method)
        if new.weight is not None:
            new.weight = torch.nn.Parameter(module.weight.detach().clone())
        return new

    def to_e3nn(self) -> torch.nn.Module:
        """An e3nn ``o3.TensorProduct`` computing the same, with a copy of the weights
        (:func:`e3nn_tensor_product`)."""
        return _like(self, e3nn_tensor_product(self.descriptor, self.internal_weights,
                                               self.shared_weights, self.weight))

    def extra_repr(self) -> str:
        return self.tp.extra_repr()


class Linear(_E3nnKeys, _Linear):
    """e3nn's ``o3.Linear`` (:class:`tp_torch.Linear`, which shares e3nn's constructor and
    weight layout) that also loads e3nn state dicts strictly."""

    @classmethod
    def from_e3nn(cls, module: Any) -> Linear:
        """The module computing what the e3nn ``o3.Linear`` ``module`` computes, with a copy
        of its weights and biases. InstructionError if its path weights are not e3nn's
        default normalization (``f_in``/``f_out`` given)."""
        pairs = [(i.i_in, i.i_out) for i in module.instructions if i.i_in != -1]
        biased = {i.i_out for i in module.instructions if i.i_in == -1}
        new = cls(str(module.irreps_in), str(module.irreps_out), instructions=pairs,
                  internal_weights=module.internal_weights,
                  shared_weights=module.shared_weights,
                  biases=[i in biased for i in range(len(module.irreps_out))])
        e3nn_alphas = [float(i.path_weight) for i in module.instructions if i.i_in != -1]
        ours = [ins.alpha for ins in new.descriptor.instructions]
        if not all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(ours, e3nn_alphas,
                                                                       strict=True)):
            raise InstructionError(
                f"e3nn Linear {module.irreps_in} -> {module.irreps_out}: its path weights "
                f"{e3nn_alphas} are not the default normalization {ours} (f_in/f_out given?)")
        if new.internal_weights:
            with torch.no_grad():
                new.weight = torch.nn.Parameter(module.weight.detach().clone())
                if new.bias is not None:
                    new.bias = torch.nn.Parameter(module.bias.detach().clone())
        return new

    def to_e3nn(self) -> torch.nn.Module:
        """An e3nn ``o3.Linear`` computing the same, with a copy of the weights."""
        from e3nn import o3

        d = self.descriptor
        kwargs: dict[str, Any] = {}
        if d.path_normalization != "element":
            if "path_normalization" not in inspect.signature(o3.Linear).parameters:
                raise InstructionError(f"this e3nn's Linear has no path_normalization="
                                       f"{d.path_normalization!r}")
            kwargs["path_normalization"] = d.path_normalization
        lin = o3.Linear(str(d.irreps_in), str(d.irreps_out),
                        instructions=[(i.i_in, i.i_out) for i in d.instructions],
                        biases=list(d.biases), internal_weights=self.internal_weights,
                        shared_weights=self.shared_weights, **kwargs)
        if self.internal_weights:
            with torch.no_grad():
                lin.weight = torch.nn.Parameter(self.weight.detach().clone())
                if self.bias is not None:
                    lin.bias = torch.nn.Parameter(self.bias.detach().clone())
        return _like(self, lin)


def e3nn_tensor_product(d: Any, internal_weights: bool, shared_weights: bool,
                        weight: torch.Tensor | None = None) -> torch.nn.Module:
    """The installed e3nn's ``o3.TensorProduct`` computing ``tp_spec`` CGTP ``d``, with a copy
    of ``weight`` if given (its layout is e3nn's).

    InstructionError if an unweighted path's coefficient has the opposite sign of that e3nn's
    Wigner 3j (a weighted path takes the sign into its weights), or a weighted one whose
    weights are passed at call time.
    """
    from e3nn import o3

    instructions, flips = [], []
    for p in d.paths:
        c = p.coefficient * cg_sign(p.ir_in1.l, p.ir_in2.l, p.ir_out.l)
        if c < 0 and (not p.has_weight or weight is None):
            raise InstructionError(f"path {p.i_in1},{p.i_in2}->{p.i_out}: its negative "
                                   "coefficient has no e3nn form without weights to carry it")
        if c < 0:
            flips.append(slice(p.weight_offset, p.weight_offset + p.weight_numel))
        instructions.append((p.i_in1, p.i_in2, p.i_out, p.mode, p.has_weight, c * c))
    tp = o3.TensorProduct(str(d.irreps_in1), str(d.irreps_in2), str(d.irreps_out),
                          instructions, irrep_normalization="none", path_normalization="none",
                          internal_weights=internal_weights, shared_weights=shared_weights)
    if weight is not None:
        w = weight.detach().clone()
        for sl in flips:
            w[sl] = -w[sl]
        tp.weight = torch.nn.Parameter(w)
    return tp


def _degrees(module: Any, ins: Any) -> tuple[int, int, int]:
    return (module.irreps_in1[ins.i_in1].ir.l, module.irreps_in2[ins.i_in2].ir.l,
            module.irreps_out[ins.i_out].ir.l)


@functools.cache
def cg_sign(l1: int, l2: int, l3: int) -> float:
    """``+1`` or ``-1``: the installed e3nn's ``wigner_3j(l1, l2, l3)`` is this times
    :func:`tp_spec.clebsch_gordan` (both have unit norm; e3nn 0.4.4 differs in sign for some
    triples). InstructionError if they differ by more than a sign."""
    from e3nn import o3

    ours = np.asarray(tp_spec.clebsch_gordan(l1, l2, l3), dtype=np.float64)
    theirs = o3.wigner_3j(l1, l2, l3, dtype=torch.float64).numpy()
    sign = 1.0 if float(np.sum(ours * theirs)) >= 0 else -1.0
    if theirs.shape != ours.shape or not np.allclose(theirs, sign * ours, rtol=0, atol=1e-6):
        raise InstructionError(f"e3nn's wigner_3j({l1}, {l2}, {l3}) is not tp_spec's "
                               "Clebsch-Gordan tensor up to a sign")
    return sign


def _like(ours: torch.nn.Module, theirs: torch.nn.Module) -> torch.nn.Module:
    """``theirs`` in the floating dtype of ``ours``' parameters (unchanged without any)."""
    for t in ours.parameters():
        if t.is_floating_point():
            return theirs.to(t.dtype)
    return theirs


def from_e3nn(module: torch.nn.Module, **options: Any) -> torch.nn.Module:
    """An e3nn ``o3.TensorProduct`` (any subclass: ``FullyConnectedTensorProduct``, ...) or
    ``o3.Linear`` as the tp_torch module computing the same, weights copied."""
    from e3nn import o3

    if isinstance(module, o3.TensorProduct):
        return TensorProduct.from_e3nn(module, **options).to(_device_of(module))
    if isinstance(module, o3.Linear):
        return Linear.from_e3nn(module, **options).to(_device_of(module))
    raise TypeError(f"from_e3nn converts e3nn o3.TensorProduct and o3.Linear modules, got "
                    f"{type(module).__module__}.{type(module).__name__}")


def to_e3nn(module: torch.nn.Module) -> torch.nn.Module:
    """The e3nn module computing what a :class:`TensorProduct` or :class:`Linear` computes."""
    if isinstance(module, (TensorProduct, Linear)):
        return module.to_e3nn().to(_device_of(module))
    raise TypeError(f"to_e3nn converts tp_torch.integrations.e3nn modules, got "
                    f"{type(module).__module__}.{type(module).__name__}")


def _device_of(module: torch.nn.Module) -> torch.device:
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")
