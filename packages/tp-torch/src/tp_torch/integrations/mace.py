"""MACE (mace-torch) models on tp_torch: :func:`convert` and back, :func:`to_e3nn`.

``convert(model)`` returns the model with every e3nn tensor product and linear layer, and
MACE's symmetric contractions, computed by tp_torch; everything else (radial MLPs, spherical
harmonics, readout activations, scale/shift) is MACE's own. The converted model keeps MACE's
parameters, names and shapes, so

* it trains exactly as the original (same parameters, same optimizer state);
* ``converted.load_state_dict(mace_model.state_dict())`` is strict (e3nn's constants are
  skipped by name), and ``to_e3nn(converted).state_dict()`` is a MACE checkpoint.

Each interaction block runs the fused convolution (:class:`tp_torch.TensorProductConv`): the
per-edge messages are never stored. MACE calls it through its ``conv_fusion`` hook, the one
its cuEquivariance and OpenEquivariance backends use.

>>> from tp_torch.integrations import mace          # doctest: +SKIP
>>> fast = mace.convert(model)                      # doctest: +SKIP
>>> out = fast(batch.to_dict(), compute_force=True)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from tp_spec import InstructionError, Irreps, ShapeError
from tp_spec.mace_basis import mace_basis_maps

from .._common import NotScriptable
from .._conv import TensorProductConv
from ..symmetric_contraction import GauntSymmetricContraction, SymmetricContraction
from .e3nn import Linear, TensorProduct, _E3nnKeys, e3nn_tensor_product, from_e3nn

__all__ = ["PRODUCT_BASES", "MaceConvolution", "MaceGauntProductBasis", "MaceSymmetricContraction",
           "convert", "to_e3nn"]

#: the value :func:`convert` gives an interaction block's ``conv_fusion`` (MACE's switch to
#: the fused convolution ``conv_tp(node_feats, edge_attrs, tp_weights, edge_index)``)
CONV_FUSION = "tp_torch"


class MaceConvolution(_E3nnKeys, NotScriptable, torch.nn.Module):
    """MACE's interaction convolution, fused: ``forward(node_feats (n, dim1), edge_attrs (E,
    dim2), tp_weights (E, weight_numel), edge_index (2, E)) -> (n, dim_out)``, the sum over
    edges ``e`` into node ``edge_index[1, e]`` of the channelwise product of
    ``node_feats[edge_index[0, e]]``, ``edge_attrs[e]`` and ``tp_weights[e]``."""

    def __init__(self, descriptor: Any, method: str | None = None) -> None:
        super().__init__()
        self.conv = TensorProductConv(descriptor, method)
        self.descriptor = descriptor
        self.method = self.conv.method
        self.irreps_in1, self.irreps_in2 = descriptor.irreps_in1, descriptor.irreps_in2
        self.irreps_out = descriptor.irreps_out
        self.weight_numel = descriptor.weight_numel
        self.register_parameter("weight", None)  # per-edge weights come from the radial MLP

    @classmethod
    def from_e3nn(cls, module: Any, method: str | None = None) -> MaceConvolution:
        """From MACE's ``conv_tp`` (an e3nn ``o3.TensorProduct`` with per-edge weights)."""
        if module.internal_weights or module.shared_weights:
            raise InstructionError("MACE's conv_tp takes per-edge weights (internal_weights="
                                   "False, shared_weights=False); this one does not")
        return cls(TensorProduct.from_e3nn(module).descriptor, method)

    def forward(self, node_feats: torch.Tensor, edge_attrs: torch.Tensor,
                tp_weights: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Args: ``node_feats [n, irreps_in1.dim]``, ``edge_attrs [E, irreps_in2.dim]``,
        ``tp_weights [E, weight_numel]``, ``edge_index [2, E]`` (senders, receivers).
        Returns ``[n, irreps_out.dim]``."""
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ShapeError(f"edge_index must be (2, n_edges), got {tuple(edge_index.shape)}")
        return self.conv(node_feats, edge_attrs, tp_weights, edge_index[0], edge_index[1])

    def to_e3nn(self) -> torch.nn.Module:
        """MACE's unfused ``conv_tp``: an e3nn ``o3.TensorProduct`` with per-edge weights."""
        return e3nn_tensor_product(self.descriptor, False, False)

    def extra_repr(self) -> str:
        return self.conv.extra_repr()


def _product_basis_shape(module: Any) -> tuple[int, Irreps, Irreps]:
    """``(correlation, irreps_in, irreps_out)`` of MACE's ``SymmetricContraction``; one
    correlation order for every output."""
    orders = {int(c.correlation) for c in module.contractions}
    if len(orders) != 1:
        raise InstructionError(f"one correlation order for every output is supported, got "
                               f"{sorted(orders)}")
    return orders.pop(), Irreps(str(module.irreps_in)), Irreps(str(module.irreps_out))


class MaceSymmetricContraction(NotScriptable, torch.nn.Module):
    """MACE's ``SymmetricContraction`` (its product basis) computed by
    :class:`tp_torch.SymmetricContraction`: ``forward(node_feats (n, k, D), node_attrs (n,
    num_species) one-hot) -> (n, irreps_out.dim)``, MACE's layouts.

    It holds MACE's own ``contractions`` (their weights ``weights_max``, ``weights.*`` and
    ``U_matrix_*`` buffers, same names) and maps the weights onto tp_torch's reduced basis on
    each call by exact matrices (:func:`tp_spec.mace_basis.mace_basis_maps`), so gradients and
    checkpoints are MACE's.
    """

    def __init__(self, module: Any) -> None:
        super().__init__()
        self.correlation, self.irreps_in, self.irreps_out = _product_basis_shape(module)
        first = module.contractions[0]
        self.num_species = int(first.weights_max.shape[0])
        self.contractions = module.contractions  # MACE's modules: parameters and buffers
        self._mace = (module,)  # the original, for to_e3nn (not a submodule)
        # the reduced basis computes the same functions with ~3x fewer paths (correlation 3)
        self.sc = SymmetricContraction(self.irreps_in, self.irreps_out, self.correlation,
                                       self.num_species, internal_weights=False,
                                       basis="reduced")
        u_mace = [[c.U_tensors(nu).detach().cpu().numpy()
                   for nu in range(1, self.correlation + 1)] for c in module.contractions]
        dtype = first.weights_max.dtype
        for i, row in enumerate(mace_basis_maps(self.sc.descriptor, u_mace)):
            for nu, t in enumerate(row, start=1):
                self.register_buffer(f"map_{i}_{nu}", torch.tensor(np.asarray(t), dtype=dtype,
                                                                   device=first.weights_max
                                                                   .device),
                                     persistent=False)

    def weights(self) -> list[list[torch.Tensor]]:
        """tp_torch's ``weights[i][nu - 1]`` ``(num_species, K, k)``, mapped from MACE's."""
        out = []
        for i, c in enumerate(self.contractions):
            row = []
            for nu in range(1, self.correlation + 1):
                w = c.weights_max if nu == self.correlation else c.weights[self.correlation - 1
                                                                             - nu]
                t = self.get_buffer(f"map_{i}_{nu}")
                row.append(torch.einsum("pq,sqk->spk", t.to(w.dtype), w))
            out.append(row)
        return out

    def forward(self, node_feats: torch.Tensor, node_attrs: torch.Tensor) -> torch.Tensor:
        """Args: ``node_feats [n, k, D]`` (MACE's layout), ``node_attrs [n, num_species]``
        one-hot. Returns ``[n, irreps_out.dim]``."""
        return self.sc.contract(_mul_ir(node_feats, self.irreps_in), node_attrs, self.weights())

    def to_e3nn(self) -> torch.nn.Module:
        """MACE's module, holding the same ``contractions`` (so the current weights)."""
        return self._mace[0]

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out} | correlation {self.correlation}"


class MaceGauntProductBasis(NotScriptable, torch.nn.Module):
    """MACE's product basis replaced by the Gaunt symmetric contraction
    (:class:`tp_torch.GauntSymmetricContraction`, ``method`` ``"grid"`` or ``"fourier"``),
    with MACE's layouts: ``forward(node_feats (n, k, D), node_attrs (n, num_species)) -> (n,
    irreps_out.dim)``. A different operation with its own, freshly initialised weights: the
    paper's product-basis experiment, not a conversion."""

    def __init__(self, module: Any, method: str) -> None:
        super().__init__()
        self.correlation, self.irreps_in, self.irreps_out = _product_basis_shape(module)
        weights = module.contractions[0].weights_max
        self.sc = GauntSymmetricContraction(self.irreps_in, self.irreps_out, self.correlation,
                                            int(weights.shape[0]), method=method).to(weights)
        with torch.no_grad():  # unit-size functions: f ** nu stays O(1) at initialisation
            self.sc.u.mul_(1.0 / len(self.irreps_in))

    def forward(self, node_feats: torch.Tensor, node_attrs: torch.Tensor) -> torch.Tensor:
        """Args: ``node_feats [n, k, D]`` (MACE's layout), ``node_attrs [n, num_species]``
        one-hot. Returns ``[n, irreps_out.dim]``."""
        return self.sc(_mul_ir(node_feats, self.irreps_in), node_attrs)

    def extra_repr(self) -> str:
        return f"{self.sc.method}, correlation {self.correlation}"


def _mul_ir(node_feats: torch.Tensor, irreps: Irreps) -> torch.Tensor:
    """MACE's ``(n, k, D)`` -> e3nn's mul_ir ``(n, k * D)``."""
    if node_feats.dim() != 3:
        raise ShapeError(f"node_feats must be MACE's (n, channels, D), got "
                         f"{tuple(node_feats.shape)}")
    n, k = node_feats.shape[:2]
    x, start = [], 0
    for _, ir in irreps:
        x.append(node_feats[:, :, start:start + ir.dim].reshape(n, k * ir.dim))
        start += ir.dim
    return torch.cat(x, dim=1)


def _mace_classes() -> tuple[type, type]:
    from mace.modules.blocks import InteractionBlock
    from mace.modules.symmetric_contraction import SymmetricContraction as MaceSC

    return InteractionBlock, MaceSC


#: the values of :func:`convert`'s ``product_basis``
PRODUCT_BASES = ("cg", "gaunt-grid", "gaunt-fourier")


def convert(model: torch.nn.Module, *, method: str | None = None, inplace: bool = False,
            product_basis: str = "cg") -> torch.nn.Module:
    """``model`` (a mace-torch model, built by MACE's constructors or loaded from a checkpoint)
    with its interaction convolutions (fused), e3nn tensor products, e3nn linears and symmetric
    contractions on tp_torch; a deep copy unless ``inplace``. ``method``: the tp_torch method
    of the products (default: the fastest for each).

    ``product_basis``: ``"cg"`` (MACE's symmetric contraction, the same numbers) or
    ``"gaunt-grid"`` / ``"gaunt-fourier"``: the Gaunt product basis instead
    (:class:`MaceGauntProductBasis`, new weights, a different model to train; no ``to_e3nn``).
    """
    from e3nn import o3

    if product_basis not in PRODUCT_BASES:
        raise InstructionError(f"product_basis must be one of {PRODUCT_BASES}, got "
                               f"{product_basis!r}")
    interaction, mace_sc = _mace_classes()
    model = model if inplace else copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (isinstance(parent, interaction) and name == "conv_tp"
                    and isinstance(child, o3.TensorProduct)):
                setattr(parent, name, MaceConvolution.from_e3nn(child, method)
                        .to(_device(child)))
                parent.conv_fusion = CONV_FUSION
            elif isinstance(child, o3.TensorProduct):
                setattr(parent, name, from_e3nn(child, method=method))
            elif isinstance(child, o3.Linear):
                setattr(parent, name, from_e3nn(child))
            elif isinstance(child, mace_sc) and product_basis == "cg":
                setattr(parent, name, MaceSymmetricContraction(child))
            elif isinstance(child, mace_sc):
                setattr(parent, name, MaceGauntProductBasis(child, product_basis[6:]))
    return model


def to_e3nn(model: torch.nn.Module, *, inplace: bool = False) -> torch.nn.Module:
    """A converted model back on e3nn and MACE's own modules, with the current weights: its
    ``state_dict()`` loads strictly into the unconverted model."""
    model = model if inplace else copy.deepcopy(model)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()),
                 torch.get_default_dtype())
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, MaceConvolution):
                setattr(parent, name, child.to_e3nn().to(_device(child), dtype))
                if getattr(parent, "conv_fusion", None) == CONV_FUSION:
                    del parent.conv_fusion
            elif isinstance(child, MaceGauntProductBasis):
                raise InstructionError("a Gaunt product basis has no MACE form (it is another "
                                       "operation with its own weights)")
            elif isinstance(child, (TensorProduct, Linear, MaceSymmetricContraction)):
                setattr(parent, name, child.to_e3nn().to(_device(child)))
    return model


def _device(module: torch.nn.Module) -> torch.device:
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")
