"""The equivariant linear map on irreps features, with e3nn ``o3.Linear``'s weight layout.

Each instruction ``(i_in, i_out)`` joins two blocks of the same irrep with a ``(mul_in,
mul_out)`` weight matrix acting on the channel index only, the same for every component ``m``:

``out[i_out][w, m] += alpha * sum_u W[u, w] * x[i_in][u, m]``

The flat weight vector concatenates the instructions' blocks in instruction order, each C-order
``(mul_in, mul_out)`` (e3nn's ``weight``, so copying it gives e3nn's output). ``alpha`` is
e3nn's normalization: ``alpha = fan_in ** -0.5`` where ``fan_in`` sums ``mul_in`` over the
instructions into the same output (``"element"``), or is the number of those instructions times
this instruction's ``mul_in`` (``"path"``); unit-variance inputs and N(0, 1) weights then give
unit-variance outputs. Optional biases (``biases=True``: every ``0e`` output block) follow
e3nn's separate ``bias`` vector: the biased output blocks' ``mul`` values, in output order.

The per-index ("indexed", per-species) form takes weights ``(num_indices, weight_numel)`` and
an integer index per sample: sample ``b`` uses row ``indices[b]``.

>>> d = linear("4x0e + 16x1o", "8x0e + 8x1o")
>>> d.weight_numel, [ins.weight_shape for ins in d.instructions]
(160, [(4, 8), (16, 8)])
>>> import numpy as np
>>> apply(d, np.ones((2, 52)), np.ones(160)).shape
(2, 32)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DTypeError, IndexRangeError, InstructionError, ShapeError
from .irreps import Irrep, Irreps
from .validation import COMPUTE_DTYPES, check_index_range, dtype_name

__all__ = ["LinearDescriptor", "LinearInstruction", "apply", "check_call", "linear"]

_PATH_NORMALIZATIONS = ("element", "path")


@dataclass(frozen=True)
class LinearInstruction:
    """One ``(i_in, i_out)`` block: weights ``W[weight_offset : weight_offset + mul_in *
    mul_out]`` viewed C-order as ``(mul_in, mul_out)``, scaled by ``alpha``."""

    i_in: int
    i_out: int
    ir: Irrep
    mul_in: int
    mul_out: int
    weight_offset: int
    alpha: float

    @property
    def weight_shape(self) -> tuple[int, int]:
        """``(mul_in, mul_out)``."""
        return (self.mul_in, self.mul_out)

    @property
    def weight_numel(self) -> int:
        return self.mul_in * self.mul_out

    @property
    def weight_slice(self) -> slice:
        return slice(self.weight_offset, self.weight_offset + self.weight_numel)


@dataclass(frozen=True)
class LinearDescriptor:
    """An equivariant linear map ``irreps_in -> irreps_out``; build it with :func:`linear`.

    ``biases[i_out]`` says whether output block ``i_out`` has a bias; the bias vector
    (``bias_numel``) concatenates the biased blocks in output order.
    """

    kind = "linear"
    irreps_in: Irreps
    irreps_out: Irreps
    instructions: tuple[LinearInstruction, ...]
    path_normalization: str
    biases: tuple[bool, ...]

    @property
    def weight_numel(self) -> int:
        return sum(ins.weight_numel for ins in self.instructions)

    @property
    def bias_numel(self) -> int:
        return sum(mi.dim for mi, b in zip(self.irreps_out, self.biases, strict=True) if b)

    def bias_slices(self) -> tuple[tuple[int, slice], ...]:
        """``(i_out, slice of the bias vector)`` for each biased output block."""
        out, start = [], 0
        for i_out, (mi, b) in enumerate(zip(self.irreps_out, self.biases, strict=True)):
            if b:
                out.append((i_out, slice(start, start + mi.dim)))
                start += mi.dim
        return tuple(out)

    def flops(self, batch: int) -> int:
        """Multiply-adds counted as 2 FLOPs, for ``batch`` samples (bias adds: 1 each)."""
        per = sum(2 * ins.mul_in * ins.mul_out * ins.ir.dim for ins in self.instructions)
        return int(batch) * (per + self.bias_numel)

    def __repr__(self) -> str:
        return (f"LinearDescriptor({self.irreps_in} -> {self.irreps_out} | "
                f"{self.weight_numel} weights, {self.bias_numel} biases)")


def linear(irreps_in: Irreps | str, irreps_out: Irreps | str, *,
           instructions: Sequence[tuple[int, int]] | None = None,
           path_normalization: str = "element",
           biases: bool | Sequence[bool] = False) -> LinearDescriptor:
    """The descriptor of e3nn's ``o3.Linear(irreps_in, irreps_out, instructions=...,
    biases=..., path_normalization=...)``.

    ``instructions``: ``(i_in, i_out)`` pairs of equal irreps, in weight order; default: every
    such pair, ``i_in``-major (e3nn's order). ``biases``: ``True`` for every ``0e`` output
    block, or one bool per output block (only ``0e`` blocks may have one).
    """
    irreps_in, irreps_out = Irreps(irreps_in), Irreps(irreps_out)
    if path_normalization not in _PATH_NORMALIZATIONS:
        raise InstructionError(f"path_normalization must be one of {_PATH_NORMALIZATIONS}, "
                               f"got {path_normalization!r}")
    if instructions is None:
        pairs = [(i, o) for i, a in enumerate(irreps_in) for o, b in enumerate(irreps_out)
                 if a.ir == b.ir]
    else:
        pairs = []
        for item in instructions:
            try:
                i_in, i_out = (int(v) for v in item)
            except (TypeError, ValueError):
                raise InstructionError(
                    f"instruction {item!r}: expected a pair (i_in, i_out) of ints") from None
            if not (0 <= i_in < len(irreps_in) and 0 <= i_out < len(irreps_out)):
                raise InstructionError(
                    f"instruction {item!r} out of range: irreps_in has {len(irreps_in)} blocks, "
                    f"irreps_out {len(irreps_out)}")
            if irreps_in[i_in].ir != irreps_out[i_out].ir:
                raise InstructionError(
                    f"instruction {item!r} joins different irreps {irreps_in[i_in].ir} -> "
                    f"{irreps_out[i_out].ir}; a linear map only joins equal irreps")
            pairs.append((i_in, i_out))

    def fan_in(i_in: int, i_out: int) -> int:
        into = [i for i, o in pairs if o == i_out]
        if path_normalization == "element":
            x = sum(irreps_in[i].mul for i in into)
        else:
            x = len(into) * irreps_in[i_in].mul
        return x if x > 0 else 1

    records, offset = [], 0
    for i_in, i_out in pairs:
        mul_in, mul_out = irreps_in[i_in].mul, irreps_out[i_out].mul
        records.append(LinearInstruction(i_in, i_out, irreps_in[i_in].ir, mul_in, mul_out,
                                         offset, fan_in(i_in, i_out) ** -0.5))
        offset += mul_in * mul_out

    if isinstance(biases, bool):
        flags = tuple(biases and mi.ir == Irrep("0e") for mi in irreps_out)
    else:
        flags = tuple(bool(b) for b in biases)
        if len(flags) != len(irreps_out):
            raise InstructionError(f"biases: expected {len(irreps_out)} flags (one per output "
                                   f"block), got {len(flags)}")
        bad = [str(mi.ir) for mi, b in zip(irreps_out, flags, strict=True)
               if b and mi.ir != Irrep("0e")]
        if bad:
            raise InstructionError(f"biases only on 0e output blocks (an equivariant constant); "
                                   f"got biases on {bad}")
    return LinearDescriptor(irreps_in, irreps_out, tuple(records), path_normalization, flags)


# ---------------------------------------------------------------- validation

def _float_dtype(arg: str, value: Any) -> str:
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        raise DTypeError(f"{arg} must be an array, got {type(value).__name__}")
    name = dtype_name(value.dtype)
    if name not in COMPUTE_DTYPES:
        raise DTypeError(f"{arg} has dtype {name}; linear layers compute in float32 or float64 "
                         "(bfloat16 and float16 in float32); cast explicitly")
    return name


def check_call(d: LinearDescriptor, x: Any, weights: Any, indices: Any = None,
               bias: Any = None) -> tuple[tuple[int, ...], str]:
    """Validate shapes and dtypes of one call (anything with ``shape`` and ``dtype``); index
    values are checked by :func:`tp_spec.validation.check_index_range`. Returns the batch shape
    and the compute dtype's name.

    * ``x (*batch, irreps_in.dim)``;
    * ``weights (weight_numel,)`` shared, ``(*batch, weight_numel)`` per sample, or with
      ``indices (*batch,)`` of an integer dtype, ``(num_indices, weight_numel)``; ``None``
      only when ``weight_numel == 0``;
    * ``bias`` iff ``bias_numel > 0``, with the leading shape of ``weights``.
    """
    if not isinstance(d, LinearDescriptor):
        raise InstructionError(f"expected a LinearDescriptor, got {type(d).__name__}")
    named = [("x", x)] + [(a, v) for a, v in (("weights", weights), ("bias", bias))
                          if v is not None]
    names = [_float_dtype(a, v) for a, v in named]
    if len(set(names)) > 1:
        raise DTypeError("inputs must share one dtype (nothing is cast silently); got "
                         + ", ".join(f"{a}={n}" for (a, _), n in zip(named, names, strict=True)))
    xs = tuple(x.shape)
    if len(xs) < 1 or xs[-1] != d.irreps_in.dim:
        raise ShapeError(f"x must be (*batch, {d.irreps_in.dim}) for {d.irreps_in}, got {xs}")
    batch = xs[:-1]
    if weights is None:
        if d.weight_numel:
            raise ShapeError(f"weights ({d.weight_numel},) are required")
        lead: tuple[int, ...] = ()
    else:
        ws = tuple(weights.shape)
        if len(ws) < 1 or ws[-1] != d.weight_numel:
            raise ShapeError(f"weights must end in weight_numel={d.weight_numel}, got {ws}")
        lead = ws[:-1]
        if indices is not None and len(lead) != 1:
            raise ShapeError(f"with indices, weights must be (num_indices, {d.weight_numel}), "
                             f"got {ws}")
        if indices is None and lead not in ((), batch):
            raise ShapeError(f"weights must be ({d.weight_numel},) shared or "
                             f"{batch + (d.weight_numel,)} per sample, got {ws} "
                             "(nothing is broadcast)")
    if indices is not None:
        if not (hasattr(indices, "shape") and hasattr(indices, "dtype")):
            raise IndexRangeError(f"indices must be an integer array, got "
                                  f"{type(indices).__name__}")
        kind = dtype_name(indices.dtype)
        if not (kind.startswith("int") or kind.startswith("uint")):
            raise IndexRangeError(f"indices must have an integer dtype, got {kind}")
        if tuple(indices.shape) != batch:
            raise ShapeError(f"indices must have the batch shape of x, {batch}, got "
                             f"{tuple(indices.shape)}")
        if weights is None:
            raise ShapeError("indices need weights (num_indices, weight_numel)")
    if (bias is None) != (d.bias_numel == 0):
        raise ShapeError(f"bias ({d.bias_numel} values) must be given iff the descriptor has "
                         "biases")
    if bias is not None and tuple(bias.shape) != lead + (d.bias_numel,):
        raise ShapeError(f"bias must be {lead + (d.bias_numel,)} (the leading shape of the "
                         f"weights), got {tuple(bias.shape)}")
    return batch, COMPUTE_DTYPES[names[0]]


# ----------------------------------------------------------------- reference

def apply(d: LinearDescriptor, x: Any, weights: Any = None, indices: Any = None,
          bias: Any = None) -> np.ndarray:
    """The executable definition, in float64: ``x (*batch, dim_in)`` -> ``(*batch, dim_out)``.

    ``weights`` (and ``bias``) as in :func:`check_call`: shared, per sample, or per index.
    """
    arrays = [None if a is None else np.asarray(a) for a in (x, weights, indices, bias)]
    x, weights, indices, bias = arrays
    batch, _ = check_call(d, x, weights, indices, bias)
    if indices is not None:
        if indices.size:
            check_index_range("indices", int(indices.min()), int(indices.max()), weights.shape[0],
                              of="weight rows")
        weights = weights[indices]
        bias = None if bias is None else bias[indices]
    x = x.astype(np.float64)
    w = np.zeros((0,)) if weights is None else weights.astype(np.float64)
    lead = w.shape[:-1]
    xin = [x[..., s].reshape(batch + (mi.mul, mi.ir.dim))
           for s, mi in zip(d.irreps_in.slices(), d.irreps_in, strict=True)]
    out = np.zeros(batch + (d.irreps_out.dim,))
    out_slices = d.irreps_out.slices()
    for ins in d.instructions:
        W = w[..., ins.weight_slice].reshape(lead + ins.weight_shape)
        y = ins.alpha * np.einsum("...ui,...uw->...wi", xin[ins.i_in], W)
        out[..., out_slices[ins.i_out]] += y.reshape(batch + (-1,))
    for i_out, s in d.bias_slices():
        out[..., out_slices[i_out]] += bias[..., s].astype(np.float64)
    return out
