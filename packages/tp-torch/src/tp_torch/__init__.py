"""tp_torch: PyTorch backend of tp_spec (fast CGTP, Gaunt and matrix tensor products).

>>> import tp_spec, tp_torch, torch
>>> d = tp_spec.cgtp("0e + 1o", "0e + 1o", "0e + 1o + 1e", mode="uvw")
>>> tp = tp_torch.TensorProduct(d)              # method=None -> "fused"
>>> tp(torch.randn(5, 4), torch.randn(5, 4), torch.randn(d.weight_numel)).shape
torch.Size([5, 7])

``import tp_torch`` never imports cuequivariance or openequivariance and needs no GPU.
"""

from __future__ import annotations

from ._conv import TensorProductConv
from ._module import METHODS, TensorProduct, default_method, methods
from .layers import (
    ChannelwiseTensorProduct,
    FullyConnectedTensorProduct,
    GauntTensorProduct,
    MatrixTensorProduct,
)
from .linear import IndexedLinear, Linear
from .precompile import precompile as precompile
from .symmetric_contraction import GauntSymmetricContraction, SymmetricContraction

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "ChannelwiseTensorProduct",
    "FullyConnectedTensorProduct",
    "GauntSymmetricContraction",
    "GauntTensorProduct",
    "IndexedLinear",
    "Linear",
    "MatrixTensorProduct",
    "SymmetricContraction",
    "TensorProduct",
    "TensorProductConv",
    "default_method",
    "methods",
]
