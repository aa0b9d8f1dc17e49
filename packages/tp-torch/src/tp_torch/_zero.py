"""The kernel of a descriptor with no paths (every method of it): zeros on the autograd graph.

A descriptor with no paths computes an output that is identically zero: a CGTP built from
``instructions=[]``, a GTP or MTP whose output irreps no pair of input irreps reaches, an empty
``irreps_out``. Its output still joins the graph of ``x1``, ``x2`` and the weights, so
``backward`` gives zero gradients (not an error) to every order, as for any other product.
"""

from __future__ import annotations

import torch
from tp_spec import TensorProductDescriptor

from ._common import Kernel

__all__ = ["ZeroKernel"]


class ZeroKernel(Kernel):
    """``forward(x1 (B, dim1), x2 (B, dim2), w)`` -> zeros ``(B, dim_out)``.

    The zeros are an empty product of empty slices of the inputs, padded to ``dim_out``: no
    input value is read (a NaN or inf in the inputs gives zeros, as the reference does), and
    the gradient of each input depends on the others, so double backward reaches them too."""

    def __init__(self, descriptor: TensorProductDescriptor) -> None:
        super().__init__()
        self.dim_out = descriptor.irreps_out.dim

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        empty = x1[:, :0] * x2[:, :0]  # (B, 0)
        if w is not None:
            empty = empty * (w[:0] if w.dim() == 1 else w[:, :0])
        return torch.nn.functional.pad(empty, (0, self.dim_out))
