"""Convenience modules holding their own weights: thin wrappers building a tp_spec descriptor
and a :class:`~tp_torch.TensorProduct`."""

from __future__ import annotations

from typing import Any

import torch
import tp_spec
from tp_spec import Irreps, ShapeError

from ._common import NotScriptable
from ._module import TensorProduct

__all__ = [
    "ChannelwiseTensorProduct",
    "FullyConnectedTensorProduct",
    "GauntTensorProduct",
    "MatrixTensorProduct",
]


class _WeightedTP(NotScriptable, torch.nn.Module):
    """A TensorProduct plus (optionally) an internal weight ``Parameter``."""

    def __init__(self, descriptor: Any, method: str | None, internal_weights: bool,
                 init: str) -> None:
        super().__init__()
        self.tp = TensorProduct(descriptor, method)
        self.descriptor = descriptor
        self.method = self.tp.method
        self.weight_numel = self.tp.weight_numel
        self.irreps_in1 = descriptor.irreps_in1
        self.irreps_in2 = descriptor.irreps_in2
        self.irreps_out = descriptor.irreps_out
        self.internal_weights = bool(internal_weights)
        if self.internal_weights and self.weight_numel:
            n = self.weight_numel
            w = torch.randn(n) if init == "normal" else torch.ones(n)
            self.weight = torch.nn.Parameter(w)
        else:
            self.register_parameter("weight", None)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor,
                weights: torch.Tensor | None = None) -> torch.Tensor:
        """``x1 (*batch, dim1)``, ``x2 (*batch, dim2)`` -> ``(*batch, dim_out)``; ``weights``
        only without internal weights."""
        if self.weight is not None:
            if weights is not None:
                raise ShapeError("this module holds internal weights; do not pass weights")
            weights = self.weight
        return self.tp(x1, x2, weights)


class FullyConnectedTensorProduct(_WeightedTP):
    """e3nn ``FullyConnectedTensorProduct``: every allowed ``uvw`` path, weights ~ N(0, 1)
    (with e3nn's normalization the output has unit variance for unit-variance inputs)."""

    def __init__(self, irreps_in1: Irreps | str, irreps_in2: Irreps | str,
                 irreps_out: Irreps | str, *, method: str | None = None,
                 internal_weights: bool = True, **options: Any) -> None:
        d = tp_spec.cgtp(irreps_in1, irreps_in2, irreps_out, mode="uvw", **options)
        super().__init__(d, method, internal_weights, "normal")


class ChannelwiseTensorProduct(_WeightedTP):
    """Channelwise ``uvu`` product (MACE/NequIP): ``irreps_node x irreps_sh``, outputs sorted
    (``irreps_out`` filters them); weights ~ N(0, 1). With ``internal_weights=False`` pass
    per-sample weights (e.g. from a radial MLP) to ``forward``."""

    def __init__(self, irreps_node: Irreps | str, irreps_sh: Irreps | str,
                 irreps_out: Irreps | str | None = None, *, method: str | None = None,
                 internal_weights: bool = True, **options: Any) -> None:
        d = tp_spec.cgtp(irreps_node, irreps_sh, irreps_out, mode="uvu", **options)
        super().__init__(d, method, internal_weights, "normal")


class GauntTensorProduct(_WeightedTP):
    """Gaunt tensor product (``tp_spec.gtp``) with internal per-degree weights initialised to
    1 (``per_degree_weights=False`` gives the fixed operation)."""

    def __init__(self, irreps_in1: Irreps | str, irreps_in2: Irreps | str,
                 irreps_out: Irreps | str | None = None, *, method: str | None = None,
                 per_degree_weights: bool = True, internal_weights: bool = True) -> None:
        d = tp_spec.gtp(irreps_in1, irreps_in2, irreps_out,
                        per_degree_weights=per_degree_weights)
        super().__init__(d, method, internal_weights, "ones")


class MatrixTensorProduct(_WeightedTP):
    """Matrix tensor product (``tp_spec.mtp``) with internal per-degree weights initialised to
    1 (``per_degree_weights=False`` gives the fixed operation)."""

    def __init__(self, irreps_in1: Irreps | str, irreps_in2: Irreps | str,
                 irreps_out: Irreps | str | None = None, *, method: str | None = None,
                 per_degree_weights: bool = True, internal_weights: bool = True) -> None:
        d = tp_spec.mtp(irreps_in1, irreps_in2, irreps_out,
                        per_degree_weights=per_degree_weights)
        super().__init__(d, method, internal_weights, "ones")
