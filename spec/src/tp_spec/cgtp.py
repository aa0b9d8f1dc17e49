"""The Clebsch-Gordan tensor product descriptor, with e3nn ``TensorProduct`` semantics.

Each instruction ``(i_in1, i_in2, i_out, mode, has_weight[, path_weight])`` couples one block of
each input into one block of the output with the Clebsch-Gordan table
:func:`tp_spec.clebsch_gordan`; the fixed coefficient of every path follows e3nn's
``irrep_normalization`` and ``path_normalization`` (docs/conventions.md):

``coefficient = sqrt(alpha / x * out_var * path_weight)``, ``alpha = 2 l_out + 1`` (component),
``(2 l1 + 1)(2 l2 + 1)`` (norm) or 1 (none); ``x`` sums ``in1_var * in2_var * num_elements`` over
the paths into the same output (element), counts them (path) or is 1 (none). As in e3nn, the
user ``path_weight`` sits under the square root.

>>> d = cgtp("2x0e + 1x1o", "1x0e + 1x1o", "2x0e + 2x1o + 1x1e", mode="uvw")
>>> len(d.paths), d.weight_numel
(5, 13)
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .descriptor import (
    MODES,
    Path,
    TensorProductDescriptor,
    check_mode_multiplicities,
    validate_path_irreps,
)
from .errors import InstructionError
from .irreps import Irrep, Irreps

__all__ = ["CGTPDescriptor", "cgtp"]

_IRREP_NORMALIZATIONS = ("component", "norm", "none")
_PATH_NORMALIZATIONS = ("element", "path", "none")


@dataclass(frozen=True)
class CGTPDescriptor(TensorProductDescriptor):
    """A Clebsch-Gordan tensor product: irreps, paths (with final coefficients), weight layout.

    Build it with :func:`cgtp`, or with :meth:`from_paths` to give every coefficient explicitly
    (this is how GTP and MTP express themselves as a CGTP). ``paths`` are in instruction order;
    the flat weight vector concatenates the weighted paths' blocks, each C-order.
    """

    kind = "cgtp"
    irreps_in1: Irreps
    irreps_in2: Irreps
    irreps_out: Irreps
    paths: tuple[Path, ...]
    irrep_normalization: str = "component"
    path_normalization: str = "element"
    metadata: tuple[tuple[str, Any], ...] = field(default=(), compare=False)

    def as_cgtp(self) -> CGTPDescriptor:
        """A CGTP is its own emulation."""
        return self

    @property
    def instructions(self) -> tuple[Path, ...]:
        """Alias of :attr:`paths` (e3nn's name)."""
        return self.paths

    @classmethod
    def from_paths(
        cls,
        irreps_in1: Irreps | str,
        irreps_in2: Irreps | str,
        irreps_out: Irreps | str,
        paths: Sequence[tuple[int, int, int, str, bool, float]],
        **metadata: Any,
    ) -> CGTPDescriptor:
        """A CGTP with explicit signed coefficients: ``paths`` is a list of
        ``(i_in1, i_in2, i_out, mode, has_weight, coefficient)``. No normalization is applied.
        """
        irreps_in1, irreps_in2 = Irreps(irreps_in1), Irreps(irreps_in2)
        irreps_out = Irreps(irreps_out)
        built: list[Path] = []
        offset = 0
        for spec in paths:
            i1, i2, io, mode, has_weight, coefficient = spec
            path = _make_path(irreps_in1, irreps_in2, irreps_out, i1, i2, io, mode, has_weight,
                              _real("path coefficient", coefficient), 1.0, offset)
            offset += path.weight_numel
            built.append(path)
        return cls(irreps_in1, irreps_in2, irreps_out, tuple(built), "none", "none",
                   tuple(sorted(metadata.items())))


def _real(name: str, value: Any) -> float:
    """``value`` as a float if it is a real number (Python or NumPy); a bool, a string or any
    other type raises :class:`InstructionError` naming ``name`` and the value."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InstructionError(
            f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    return float(value)


def _make_path(
    irreps_in1: Irreps,
    irreps_in2: Irreps,
    irreps_out: Irreps,
    i1: int,
    i2: int,
    io: int,
    mode: str,
    has_weight: bool,
    coefficient: float,
    path_weight: float,
    offset: int,
) -> Path:
    indices = []
    for name, index, irreps in (("i_in1", i1, irreps_in1), ("i_in2", i2, irreps_in2),
                                ("i_out", io, irreps_out)):
        try:
            value = operator.index(index) if not isinstance(index, bool) else None
        except TypeError:
            value = None
        if value is None or not 0 <= value < len(irreps):
            raise InstructionError(
                f"instruction index {name}={index!r} is not a valid block index of irreps "
                f"{irreps} ({len(irreps)} blocks)"
            )
        indices.append(value)
    i1, i2, io = indices
    if mode not in MODES:
        raise InstructionError(f"unknown connection mode {mode!r}; expected one of {MODES}")
    if not isinstance(has_weight, (bool, np.bool_)):
        raise InstructionError(f"has_weight must be a bool, got {has_weight!r}")
    (mul1, ir1), (mul2, ir2), (mulo, iro) = irreps_in1[i1], irreps_in2[i2], irreps_out[io]
    validate_path_irreps(ir1, ir2, iro)
    check_mode_multiplicities(mode, mul1, mul2, mulo)
    if not math.isfinite(coefficient):
        raise InstructionError(f"path coefficient must be finite, got {coefficient!r}")
    return Path(i1, i2, io, ir1, ir2, iro, mul1, mul2, mulo, mode, bool(has_weight),
                coefficient, path_weight, offset)


def _variances(name: str, value: Sequence[float] | None, irreps: Irreps) -> tuple[float, ...]:
    if value is None:
        return (1.0,) * len(irreps)
    value = tuple(_real(f"{name} entry", v) for v in value)
    if len(value) != len(irreps):
        raise InstructionError(
            f"{name} has {len(value)} entries but its irreps {irreps} have {len(irreps)} blocks"
        )
    if any(v < 0 or not math.isfinite(v) for v in value):
        raise InstructionError(f"{name} must be finite and non-negative, got {value}")
    return value


def _no_path_error(mode: str, irreps_in1: Irreps, irreps_in2: Irreps, irreps_out: Any,
                   pairs: Sequence[tuple[Irrep, Irrep]]) -> InstructionError:
    """The error of an output filter that no generated path reaches; ``pairs``: the irreps of
    the input block pairs the mode couples."""
    reachable = sorted({ir for ir1, ir2 in pairs for ir in ir1 * ir2})
    listed = " + ".join(map(repr, reachable)) if reachable else "none (no block pair couples)"
    return InstructionError(
        f"irreps_out = {irreps_out} matches no path of {irreps_in1} x {irreps_in2} in mode "
        f"{mode!r}: the reachable outputs are {listed}. For a product that is identically zero "
        "on purpose, pass instructions=[] with this irreps_out"
    )


def _generated_instructions(
    irreps_in1: Irreps, irreps_in2: Irreps, irreps_out: Irreps | None, mode: str,
    has_weight: bool, output_order: str,
) -> tuple[Irreps, list[tuple[int, int, int, str, bool, float]]]:
    """Instructions of the convenience modes (e3nn's FullyConnected, channelwise, ...)."""
    if mode in ("uvw", "uuw"):
        if irreps_out is None:
            raise InstructionError(f"mode {mode!r} needs irreps_out")
        instr = []
        for i1, (mul1, ir1) in enumerate(irreps_in1):
            for i2, (mul2, ir2) in enumerate(irreps_in2):
                if mode == "uuw" and mul1 != mul2:
                    continue
                for io, (_, iro) in enumerate(irreps_out):
                    if iro in ir1 * ir2:
                        instr.append((i1, i2, io, mode, has_weight, 1.0))
        if not instr and len(irreps_out):
            pairs = [(a.ir, b.ir) for a in irreps_in1 for b in irreps_in2
                     if mode == "uvw" or a.mul == b.mul]
            raise _no_path_error(mode, irreps_in1, irreps_in2, irreps_out, pairs)
        return irreps_out, instr
    # Modes whose output blocks are created per path: uvu, uvv, uuu, uvuv.
    allowed = None if irreps_out is None else {ir for _, ir in irreps_out}
    blocks: list[tuple[int, Irrep]] = []
    raw: list[tuple[int, int, int]] = []
    if mode == "uuu":
        if irreps_in1.num_irreps != irreps_in2.num_irreps:
            raise InstructionError(
                f"elementwise product needs the same number of irreps on both inputs: "
                f"{irreps_in1} has {irreps_in1.num_irreps}, {irreps_in2} has "
                f"{irreps_in2.num_irreps}"
            )
        if len(irreps_in1) != len(irreps_in2) or any(
            a.mul != b.mul for a, b in zip(irreps_in1, irreps_in2, strict=True)
        ):
            raise InstructionError(
                "elementwise product pairs blocks in order and needs equal block multiplicities; "
                f"split the blocks of {irreps_in1} and {irreps_in2} so they align"
            )
        pairs = [(i, i) for i in range(len(irreps_in1))]
    else:
        pairs = [(i1, i2) for i1 in range(len(irreps_in1)) for i2 in range(len(irreps_in2))]
    for i1, i2 in pairs:
        (mul1, ir1), (mul2, ir2) = irreps_in1[i1], irreps_in2[i2]
        for iro in ir1 * ir2:
            if allowed is not None and iro not in allowed:
                continue
            mul_out = {"uvu": mul1, "uvv": mul2, "uuu": mul1, "uvuv": mul1 * mul2}[mode]
            blocks.append((mul_out, iro))
            raw.append((i1, i2, len(blocks) - 1))
    if not raw and allowed:
        raise _no_path_error(mode, irreps_in1, irreps_in2, irreps_out,
                             [(irreps_in1[i1].ir, irreps_in2[i2].ir) for i1, i2 in pairs])
    out = Irreps(blocks)
    if mode == "uuu":
        return out, [(i1, i2, io, mode, has_weight, 1.0) for i1, i2, io in raw]
    # Sort the output blocks and remap the instructions, as MACE/e3nn do.
    sorted_out = out.sort(output_order)
    return sorted_out.irreps, [
        (i1, i2, sorted_out.p[io], mode, has_weight, 1.0) for i1, i2, io in raw
    ]


def cgtp(
    irreps_in1: Irreps | str,
    irreps_in2: Irreps | str,
    irreps_out: Irreps | str | None = None,
    *,
    mode: str | None = None,
    instructions: Sequence[tuple[Any, ...]] | None = None,
    output_order: str = "e3nn",
    has_weight: bool | None = None,
    irrep_normalization: str = "component",
    path_normalization: str = "element",
    in1_var: Sequence[float] | None = None,
    in2_var: Sequence[float] | None = None,
    out_var: Sequence[float] | None = None,
) -> CGTPDescriptor:
    """Describe a Clebsch-Gordan tensor product (e3nn ``TensorProduct`` semantics).

    With ``instructions`` (e3nn tuples ``(i_in1, i_in2, i_out, mode, has_weight[, path_weight])``)
    ``irreps_out`` is required and used as given. Otherwise ``mode`` (default ``"uvw"``)
    generates them:

    * ``"uvw"`` fully connected (e3nn ``FullyConnectedTensorProduct``): every allowed
      ``(i_in1, i_in2, i_out)``; ``irreps_out`` required.
    * ``"uuw"``: like ``uvw`` for blocks of equal multiplicity.
    * ``"uvu"`` channelwise (MACE/NequIP): one output block of multiplicity ``mul1`` per allowed
      path, ``irreps_out`` (optional) filters the output irreps; outputs sorted.
    * ``"uvv"``: the mirror of ``uvu``.
    * ``"uuu"`` elementwise (e3nn ``ElementwiseTensorProduct``): blocks paired in order.
    * ``"full"`` / ``"uvuv"`` (e3nn ``FullTensorProduct``): every pair of channels; outputs sorted.

    ``has_weight`` defaults to True for uvw/uvu/uvv/uuw and False for uuu/full, as in e3nn
    (unlike e3nn, an unweighted ``uvw`` is allowed). The generated outputs of uvu/uvv/full are
    sorted with ``output_order``: ``"e3nn"`` (default; odd before even within a degree, exactly
    e3nn's ``FullTensorProduct`` and MACE's layout) or ``"natural"`` (``(-1)**l`` first, as
    e3nn-jax and cuEquivariance).
    """
    irreps_in1, irreps_in2 = Irreps(irreps_in1), Irreps(irreps_in2)
    if irreps_out is not None:
        irreps_out = Irreps(irreps_out)
    if irrep_normalization not in _IRREP_NORMALIZATIONS:
        raise InstructionError(
            f"irrep_normalization must be one of {_IRREP_NORMALIZATIONS}, got "
            f"{irrep_normalization!r}"
        )
    if path_normalization not in _PATH_NORMALIZATIONS:
        raise InstructionError(
            f"path_normalization must be one of {_PATH_NORMALIZATIONS}, got {path_normalization!r}"
        )
    if output_order not in ("e3nn", "natural"):
        raise InstructionError(f"output_order must be 'e3nn' or 'natural', got {output_order!r}")
    if instructions is not None:
        if mode is not None or has_weight is not None:
            raise InstructionError(
                "give either instructions or mode/has_weight: explicit instructions carry their "
                "own mode and has_weight"
            )
        if irreps_out is None:
            raise InstructionError("explicit instructions need irreps_out")
        norm_instr = []
        for ins in instructions:
            if len(ins) not in (5, 6):
                raise InstructionError(
                    f"instruction {ins!r} must be (i_in1, i_in2, i_out, mode, has_weight"
                    "[, path_weight])"
                )
            norm_instr.append(tuple(ins) + ((1.0,) if len(ins) == 5 else ()))
        out = irreps_out
    else:
        mode = "uvw" if mode is None else mode
        m = "uvuv" if mode == "full" else mode
        if m not in MODES:
            raise InstructionError(f"unknown mode {mode!r}; expected one of {MODES + ('full',)}")
        weighted = has_weight if has_weight is not None else m in ("uvw", "uvu", "uvv", "uuw")
        if not isinstance(weighted, bool):
            raise InstructionError(f"has_weight must be a bool, got {weighted!r}")
        out, norm_instr = _generated_instructions(
            irreps_in1, irreps_in2, irreps_out, m, weighted, output_order
        )
    v1 = _variances("in1_var", in1_var, irreps_in1)
    v2 = _variances("in2_var", in2_var, irreps_in2)
    vo = _variances("out_var", out_var, out)

    # Validate and build the paths with a placeholder coefficient, then normalize.
    prelim: list[Path] = []
    for i1, i2, io, m, hw, pw in norm_instr:
        pw = _real("path_weight", pw)
        if not (pw >= 0 and math.isfinite(pw)):
            raise InstructionError(f"path_weight must be finite and >= 0, got {pw!r}")
        prelim.append(_make_path(irreps_in1, irreps_in2, out, i1, i2, io, m, hw, 1.0, pw, 0))

    paths: list[Path] = []
    offset = 0
    for p in prelim:
        if irrep_normalization == "component":
            alpha = float(p.ir_out.dim)
        elif irrep_normalization == "norm":
            alpha = float(p.ir_in1.dim * p.ir_in2.dim)
        else:
            alpha = 1.0
        same_out = [q for q in prelim if q.i_out == p.i_out]
        if path_normalization == "element":
            x = sum(v1[q.i_in1] * v2[q.i_in2] * q.num_elements for q in same_out)
        elif path_normalization == "path":
            x = v1[p.i_in1] * v2[p.i_in2] * p.num_elements * len(same_out)
        else:
            x = 1.0
        if x > 0:
            alpha /= x
        alpha *= vo[p.i_out] * p.path_weight
        path = Path(p.i_in1, p.i_in2, p.i_out, p.ir_in1, p.ir_in2, p.ir_out, p.mul_in1,
                    p.mul_in2, p.mul_out, p.mode, p.has_weight, math.sqrt(alpha), p.path_weight,
                    offset)
        offset += path.weight_numel
        paths.append(path)
    return CGTPDescriptor(irreps_in1, irreps_in2, out, tuple(paths), irrep_normalization,
                          path_normalization)
