"""Equivariant linear layers on irreps features, e3nn ``o3.Linear``'s weight layout
(:mod:`tp_spec.linear`): :class:`Linear` (shared or per-sample weights) and
:class:`IndexedLinear` (one weight row per index, e.g. per chemical species).

Each instruction is one GEMM with the ``2l+1`` components folded into the rows: the input block
``(B, mul_in, 2l+1)`` is read as ``(B * (2l+1), mul_in)`` and multiplied by the
``alpha``-scaled ``(mul_in, mul_out)`` weight block; instructions into the same output block
accumulate with ``addmm``, and each output block is written once. Plain torch ops, so autograd,
double backward and ``torch.compile`` work through it.

>>> import torch
>>> lin = Linear("4x0e + 16x1o", "8x0e + 8x1o")
>>> lin.weight.shape, lin(torch.randn(10, 52)).shape
(torch.Size([160]), torch.Size([10, 32]))
>>> ilin = IndexedLinear("4x0e + 2x1o", "4x0e + 2x1o", num_indices=3)
>>> ilin(torch.randn(5, 10), torch.tensor([0, 2, 1, 2, 0])).shape
torch.Size([5, 10])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tp_spec import DeviceError, DTypeError, Irreps, ShapeError
from tp_spec.linear import LinearDescriptor, check_call, linear
from tp_spec.validation import check_index_range

from ._common import NotScriptable, call_weight, no_autocast

__all__ = ["IndexedLinear", "Linear", "linear_forward"]

_HALF = (torch.float16, torch.bfloat16)


def _check(d: LinearDescriptor, x: Any, weight: Any, indices: Any = None,
           bias: Any = None) -> None:
    """:func:`tp_spec.linear.check_call` plus torch's own checks: tensors, one device, and
    (outside ``torch.compile``) the index range."""
    named = [(n, t) for n, t in (("x", x), ("weight", weight), ("indices", indices),
                                 ("bias", bias)) if t is not None]
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise DTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    check_call(d, x, weight, indices, bias)
    for name, t in named[1:]:
        if t.device != x.device:
            raise DeviceError(f"device mix: x is on {x.device} but {name} is on {t.device}")
    if indices is not None and indices.numel() and not torch.compiler.is_compiling():
        check_index_range("indices", int(indices.min()), int(indices.max()), weight.shape[0],
                          of="weight rows")


def _split(d: LinearDescriptor, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``x (B, dim_in)`` -> its input blocks (views; their gradients are joined by one
    ``cat`` instead of one zero-filled full-width tensor per block)."""
    return torch.split(x, [mi.dim for mi in d.irreps_in], dim=1)


def _fold(x: torch.Tensor, mul: int, dim: int) -> torch.Tensor:
    """``(B, mul * dim)`` block in ``mul_ir`` layout -> ``(B * dim, mul)``."""
    if dim == 1:
        return x
    return x.reshape(x.shape[0], mul, dim).transpose(1, 2).reshape(-1, mul)


def _unfold(y: torch.Tensor, mul: int, dim: int) -> torch.Tensor:
    """``(B * dim, mul)`` -> ``(B, mul * dim)`` in ``mul_ir`` layout."""
    if dim == 1:
        return y
    return y.reshape(-1, dim, mul).transpose(1, 2).reshape(-1, mul * dim)


def _blocks(d: LinearDescriptor) -> list[tuple[int, list[Any]]]:
    """``(i_out, instructions into it with weights)`` for every output block, in order."""
    return [(i_out, [ins for ins in d.instructions if ins.i_out == i_out and ins.weight_numel])
            for i_out in range(len(d.irreps_out))]


def _shared(d: LinearDescriptor, x: torch.Tensor, w: torch.Tensor,
            bias: torch.Tensor | None) -> list[torch.Tensor]:
    """Output blocks ``(B, mul_out * dim)`` for ``x (B, dim_in)``, one weight ``w (numel,)``."""
    xs, folded = _split(d, x), {}
    out = []
    for i_out, instructions in _blocks(d):
        mi = d.irreps_out[i_out]
        y = None
        for ins in instructions:
            if ins.i_in not in folded:
                folded[ins.i_in] = _fold(xs[ins.i_in], ins.mul_in, ins.ir.dim)
            W = w[ins.weight_slice].view(ins.mul_in, ins.mul_out) * ins.alpha
            xf = folded[ins.i_in]
            y = xf @ W if y is None else torch.addmm(y, xf, W)
        out.append(x.new_zeros(x.shape[0], mi.dim) if y is None else _unfold(y, mi.mul, mi.ir.dim))
    if bias is not None:
        for i_out, s in d.bias_slices():
            out[i_out] = out[i_out] + bias[s]
    return out


def _per_sample(d: LinearDescriptor, x: torch.Tensor, w: torch.Tensor,
                bias: torch.Tensor | None) -> list[torch.Tensor]:
    """Output blocks for ``x (B, dim_in)`` and per-sample weights ``w (B, numel)``."""
    xs, B = _split(d, x), x.shape[0]
    out = []
    for i_out, instructions in _blocks(d):
        mi = d.irreps_out[i_out]
        y = None
        for ins in instructions:
            xt = xs[ins.i_in].reshape(B, ins.mul_in, ins.ir.dim).transpose(1, 2)
            W = w[:, ins.weight_slice].reshape(B, ins.mul_in, ins.mul_out) * ins.alpha
            term = torch.bmm(xt, W)  # (B, 2l+1, mul_out)
            y = term if y is None else y + term
        if y is None:
            out.append(x.new_zeros(B, mi.dim))
        else:
            out.append(y.transpose(1, 2).reshape(B, mi.dim))
    if bias is not None:
        for i_out, s in d.bias_slices():
            out[i_out] = out[i_out] + bias[:, s]
    return out


def _indexed(d: LinearDescriptor, x: torch.Tensor, w: torch.Tensor,
             indices: torch.Tensor, bias: torch.Tensor | None) -> list[torch.Tensor]:
    """Output blocks for ``x (B, dim_in)``, weights ``w (num_indices, numel)`` and ``indices
    (B,)``: the samples sorted by index (stable), one GEMM per index and instruction on its
    contiguous run of rows, then put back in their order. Exact and deterministic: every
    output row is one sample's product with its own weight row."""
    if torch.compiler.is_compiling():
        raise NotImplementedError("IndexedLinear runs eagerly (data-dependent segment sizes)")
    perm = torch.argsort(indices, stable=True)
    counts = torch.bincount(indices, minlength=w.shape[0])
    runs = [(k, c) for k, c in enumerate(counts.tolist()) if c]
    xs, folded = _split(d, x[perm]), {}
    out = []
    for i_out, instructions in _blocks(d):
        mi = d.irreps_out[i_out]
        if not instructions:
            out.append(x.new_zeros(x.shape[0], mi.dim))
            continue
        pieces, start = [], 0
        for k, c in runs:
            rows = slice(start * mi.ir.dim, (start + c) * mi.ir.dim)
            y = None
            for ins in instructions:
                if ins.i_in not in folded:
                    folded[ins.i_in] = _fold(xs[ins.i_in], ins.mul_in, ins.ir.dim)
                W = w[k, ins.weight_slice].view(ins.mul_in, ins.mul_out) * ins.alpha
                xf = folded[ins.i_in][rows]
                y = xf @ W if y is None else torch.addmm(y, xf, W)
            pieces.append(y)
            start += c
        y = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        out.append(_unfold(y, mi.mul, mi.ir.dim))
    if bias is not None:
        bs = bias[indices[perm]]
        for i_out, s in d.bias_slices():
            out[i_out] = out[i_out] + bs[:, s]
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel(), device=perm.device)
    return [o[inverse] for o in out]


def linear_forward(d: LinearDescriptor, x: torch.Tensor, weight: torch.Tensor | None,
                   indices: torch.Tensor | None = None,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
    """The linear map of ``d`` as a function (validated by :mod:`tp_spec.linear`'s rules).

    Args:
        d: a :class:`tp_spec.LinearDescriptor`.
        x: ``[*batch, irreps_in.dim]``.
        weight: ``[weight_numel]`` shared, ``[*batch, weight_numel]`` per sample, or
            ``[num_indices, weight_numel]`` with ``indices``.
        indices: ``[*batch]`` integers in ``[0, num_indices)``, or ``None``.
        bias: iff ``d.bias_numel``: ``[bias_numel]``, or the leading shape of ``weight``.

    Returns:
        ``[*batch, irreps_out.dim]``; float16/bfloat16 compute in float32.
    """
    _check(d, x, weight, indices, bias)
    batch, dtype = x.shape[:-1], x.dtype
    if dtype in _HALF:
        x = x.float()
        weight = None if weight is None else weight.float()
        bias = None if bias is None else bias.float()
    x2 = x.reshape(-1, d.irreps_in.dim)
    if weight is None:
        weight = x2.new_zeros(0)
    if indices is not None:
        blocks = _indexed(d, x2, weight, indices.reshape(-1), bias)
    elif weight.dim() == 1:
        blocks = _shared(d, x2, weight, bias)
    else:
        blocks = _per_sample(d, x2, weight.reshape(-1, d.weight_numel),
                             None if bias is None else bias.reshape(-1, d.bias_numel))
    if not blocks:
        out = x2.new_zeros(x2.shape[0], 0)
    else:
        out = blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)
    return out.reshape(*batch, d.irreps_out.dim).to(dtype)


class Linear(NotScriptable, torch.nn.Module):
    """e3nn ``o3.Linear``: ``[*batch, irreps_in.dim] -> [*batch, irreps_out.dim]``.

    Args:
        irreps_in: input irreps.
        irreps_out: output irreps.
        instructions: ``(i_in, i_out)`` pairs (``None``: every pair of equal irreps).
        internal_weights: a ``weight`` Parameter ``[weight_numel]`` ~ N(0, 1) (and a
            ``bias`` Parameter of zeros when ``biases``), as e3nn, so
            ``weight.copy_(e3nn_linear.weight)`` gives e3nn's output. Otherwise weights are
            passed to :meth:`forward`. Default: ``shared_weights``.
        shared_weights: one weight vector for every sample (default True); False takes
            ``[*batch, weight_numel]`` weights.
        path_normalization: ``"element"`` or ``"path"`` (e3nn's).
        biases: a bias on the ``0e`` outputs (one flag, or one per output irrep).
    """

    def __init__(self, irreps_in: Irreps | str, irreps_out: Irreps | str, *,
                 instructions: Sequence[tuple[int, int]] | None = None,
                 internal_weights: bool | None = None, shared_weights: bool | None = None,
                 path_normalization: str = "element",
                 biases: bool | Sequence[bool] = False) -> None:
        super().__init__()
        if shared_weights is None:
            shared_weights = True
        if internal_weights is None:
            internal_weights = shared_weights
        if internal_weights and not shared_weights:
            raise ShapeError("internal weights are shared; use internal_weights=False with "
                             "shared_weights=False")
        self.descriptor = d = linear(irreps_in, irreps_out, instructions=instructions,
                                     path_normalization=path_normalization, biases=biases)
        self.irreps_in, self.irreps_out = d.irreps_in, d.irreps_out
        self.weight_numel, self.bias_numel = d.weight_numel, d.bias_numel
        self.internal_weights, self.shared_weights = bool(internal_weights), bool(shared_weights)
        if self.internal_weights:
            self.weight = torch.nn.Parameter(torch.randn(d.weight_numel))
            self.bias = (torch.nn.Parameter(torch.zeros(d.bias_numel)) if d.bias_numel
                         else None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    @no_autocast
    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """The linear map.

        Args:
            x: ``[*batch, irreps_in.dim]``.
            weight: only without internal weights: ``[weight_numel]``, or
                ``[*batch, weight_numel]`` with ``shared_weights=False``.
            bias: only without internal weights, iff ``bias_numel``: the leading shape of
                ``weight`` plus ``[bias_numel]``.

        Returns:
            ``[*batch, irreps_out.dim]``.
        """
        weight = call_weight(self, weight, bias)
        if self.internal_weights:
            bias = self.bias
        return linear_forward(self.descriptor, x, weight, None, bias)

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out} | {self.weight_numel} weights"


class IndexedLinear(NotScriptable, torch.nn.Module):
    """A linear layer with one weight row per index (e.g. per chemical species): sample ``b``
    uses ``weight[indices[b]]``, laid out as :class:`Linear`'s weight (e3nn's).

    ``weight`` is a Parameter ``[num_indices, weight_numel]`` ~ N(0, 1). Runs eagerly (the
    per-index segment sizes are data-dependent).

    Args:
        irreps_in: input irreps.
        irreps_out: output irreps.
        num_indices: the number of weight rows.
        instructions: ``(i_in, i_out)`` pairs (``None``: every pair of equal irreps).
        path_normalization: ``"element"`` or ``"path"`` (e3nn's).
    """

    def __init__(self, irreps_in: Irreps | str, irreps_out: Irreps | str, num_indices: int, *,
                 instructions: Sequence[tuple[int, int]] | None = None,
                 path_normalization: str = "element") -> None:
        super().__init__()
        if int(num_indices) < 1:
            raise ShapeError(f"num_indices must be >= 1, got {num_indices}")
        self.descriptor = d = linear(irreps_in, irreps_out, instructions=instructions,
                                     path_normalization=path_normalization)
        self.irreps_in, self.irreps_out = d.irreps_in, d.irreps_out
        self.num_indices, self.weight_numel = int(num_indices), d.weight_numel
        self.weight = torch.nn.Parameter(torch.randn(self.num_indices, d.weight_numel))

    @no_autocast
    def forward(self, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """The linear map with each sample's weight row.

        Args:
            x: ``[*batch, irreps_in.dim]``.
            indices: ``[*batch]`` integers; outside ``[0, num_indices)`` raises
                :class:`tp_spec.IndexRangeError`.

        Returns:
            ``[*batch, irreps_out.dim]``.
        """
        return linear_forward(self.descriptor, x, self.weight, indices)

    def extra_repr(self) -> str:
        return (f"{self.irreps_in} -> {self.irreps_out} | {self.num_indices} x "
                f"{self.weight_numel} weights")
