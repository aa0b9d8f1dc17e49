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
        """The product with the module's weights (or the given ones).

        Args:
            x1: ``[*batch, irreps_in1.dim]``.
            x2: ``[*batch, irreps_in2.dim]``.
            weights: only without internal weights: ``[weight_numel]`` shared or
                ``[*batch, weight_numel]`` per sample.

        Returns:
            ``[*batch, irreps_out.dim]``.
        """
        if self.weight is not None:
            if weights is not None:
                raise ShapeError("this module holds internal weights; do not pass weights")
            weights = self.weight
        return self.tp(x1, x2, weights)


class FullyConnectedTensorProduct(_WeightedTP):
    """e3nn ``FullyConnectedTensorProduct``: every allowed ``uvw`` path, weights ~ N(0, 1)
    (with e3nn's normalization the output has unit variance for unit-variance inputs).

    Args:
        irreps_in1: irreps of ``x1``.
        irreps_in2: irreps of ``x2``.
        irreps_out: irreps of the output.
        method: a method of :class:`~tp_torch.TensorProduct` (``None``: the default).
        internal_weights: hold a ``weight`` Parameter ``[weight_numel]``; if False, pass
            weights to :meth:`forward`.
        **options: further options of :func:`tp_spec.cgtp`.

    >>> import tp_torch, torch
    >>> tp = tp_torch.FullyConnectedTensorProduct("2x0e + 1x1o", "0e + 1o", "3x0e + 2x1o")
    >>> tp(torch.randn(5, 5), torch.randn(5, 4)).shape
    torch.Size([5, 9])
    """

    def __init__(self, irreps_in1: Irreps | str, irreps_in2: Irreps | str,
                 irreps_out: Irreps | str, *, method: str | None = None,
                 internal_weights: bool = True, **options: Any) -> None:
        d = tp_spec.cgtp(irreps_in1, irreps_in2, irreps_out, mode="uvw", **options)
        super().__init__(d, method, internal_weights, "normal")


class ChannelwiseTensorProduct(_WeightedTP):
    """Channelwise ``uvu`` product (MACE/NequIP): ``irreps_node x irreps_sh``, outputs sorted
    (``irreps_out`` filters them); weights ~ N(0, 1).

    Args:
        irreps_node: irreps of ``x1`` (node features).
        irreps_sh: irreps of ``x2`` (e.g. spherical harmonics of the edges).
        irreps_out: the output irreps to keep (``None``: every allowed one).
        method: a method of :class:`~tp_torch.TensorProduct` (``None``: the default).
        internal_weights: hold a ``weight`` Parameter ``[weight_numel]``; if False, pass
            per-sample weights (e.g. from a radial MLP) to :meth:`forward`.
        **options: further options of :func:`tp_spec.cgtp`.
    """

    def __init__(self, irreps_node: Irreps | str, irreps_sh: Irreps | str,
                 irreps_out: Irreps | str | None = None, *, method: str | None = None,
                 internal_weights: bool = True, **options: Any) -> None:
        d = tp_spec.cgtp(irreps_node, irreps_sh, irreps_out, mode="uvu", **options)
        super().__init__(d, method, internal_weights, "normal")


class GauntTensorProduct(_WeightedTP):
    """Gaunt tensor product (:func:`tp_spec.gtp`) with internal per-degree weights initialised to
    1 (``per_degree_weights=False`` gives the fixed operation).

    Args:
        irreps_in1: irreps of ``x1``.
        irreps_in2: irreps of ``x2``.
        irreps_out: the output irreps to keep (``None``: every one the product reaches).
        method: a method of :class:`~tp_torch.TensorProduct` (``None``: the default).
        per_degree_weights: one weight per output degree (else no weights).
        internal_weights: hold them as a ``weight`` Parameter ``[weight_numel]``.
    """

    def __init__(self, irreps_in1: Irreps | str, irreps_in2: Irreps | str,
                 irreps_out: Irreps | str | None = None, *, method: str | None = None,
                 per_degree_weights: bool = True, internal_weights: bool = True) -> None:
        d = tp_spec.gtp(irreps_in1, irreps_in2, irreps_out,
                        per_degree_weights=per_degree_weights)
        super().__init__(d, method, internal_weights, "ones")


class MatrixTensorProduct(_WeightedTP):
    """Matrix tensor product (:func:`tp_spec.mtp`) with internal per-degree weights initialised to
    1 (``per_degree_weights=False`` gives the fixed operation). Arguments and :meth:`forward`
    as :class:`GauntTensorProduct`.
    """

    def __init__(self, irreps_in1: Irreps | str, irreps_in2: Irreps | str,
                 irreps_out: Irreps | str | None = None, *, method: str | None = None,
                 per_degree_weights: bool = True, internal_weights: bool = True) -> None:
        d = tp_spec.mtp(irreps_in1, irreps_in2, irreps_out,
                        per_degree_weights=per_degree_weights)
        super().__init__(d, method, internal_weights, "ones")
