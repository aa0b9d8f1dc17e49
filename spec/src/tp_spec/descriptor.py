"""What every tensor-product descriptor shares: paths, weight layout, input validation.

A descriptor says WHAT a tensor product computes; backends say HOW. Every descriptor, whatever
its family (CGTP, GTP, MTP), can list its computation as :class:`Path` objects: Clebsch-Gordan
contractions of one block of each input into one block of the output, times a fixed coefficient
and (optionally) a learned weight. For GTP and MTP these are the paths of the equivalent CGTP
(:meth:`TensorProductDescriptor.as_cgtp`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

from .errors import InstructionError, ShapeError
from .irreps import Irrep, Irreps

if TYPE_CHECKING:  # pragma: no cover
    from .cgtp import CGTPDescriptor

__all__ = ["MODES", "Path", "TensorProductDescriptor", "mode_subscripts", "mode_weight_shape",
           "segment_subscripts"]

#: The e3nn connection modes. ``u``/``v`` index the multiplicity of input 1/2, ``w`` the output.
MODES = ("uvw", "uvu", "uvv", "uuw", "uuu", "uvuv")
#: Modes whose two inputs share one channel index.
UU_MODES = ("uuw", "uuu")


#: Channel indices per e3nn connection mode: (x1, x2, output, weight).
_MODE_CHANNELS = {
    "uvw": ("u", "v", "w", "uvw"),
    "uvu": ("u", "v", "u", "uv"),
    "uvv": ("u", "v", "v", "uv"),
    "uuw": ("u", "u", "w", "uw"),
    "uuu": ("u", "u", "u", "u"),
    "uvuv": ("u", "v", "uv", "uv"),
}


def mode_subscripts(mode: str) -> tuple[str, str, str, str]:
    """Channel indices ``(x1, x2, output, weight)`` of an e3nn connection mode.

    >>> mode_subscripts("uvu")
    ('u', 'v', 'u', 'uv')
    """
    if mode not in _MODE_CHANNELS:
        raise InstructionError(f"unknown connection mode {mode!r}; expected one of {MODES}")
    return _MODE_CHANNELS[mode]


def segment_subscripts(mode: str, weighted: bool = True) -> str:
    """One path in segmented-einsum notation (operands ``[weight,] x1, x2, out``; ``ijk`` the
    Clebsch-Gordan indices), as cuEquivariance's ``SegmentedTensorProduct.from_subscripts``
    reads it.

    >>> segment_subscripts("uvw"), segment_subscripts("uvu", weighted=False)
    ('uvw,ui,vj,wk+ijk', 'ui,vj,uk+ijk')
    """
    a, b, o, w = mode_subscripts(mode)
    return f"{w + ',' if weighted else ''}{a}i,{b}j,{o}k+ijk"


def mode_weight_shape(mode: str, mul1: int, mul2: int, mul_out: int) -> tuple[int, ...]:
    """Shape of one path's weight block for an e3nn connection mode (``mul_*``: multiplicities).

    >>> mode_weight_shape("uvw", 2, 3, 4), mode_weight_shape("uvu", 2, 3, 2)
    ((2, 3, 4), (2, 3))
    """
    shapes = {
        "uvw": (mul1, mul2, mul_out),
        "uvu": (mul1, mul2),
        "uvv": (mul1, mul2),
        "uuw": (mul1, mul_out),
        "uuu": (mul1,),
        "uvuv": (mul1, mul2),
    }
    if mode not in shapes:
        raise InstructionError(f"unknown connection mode {mode!r}; expected one of {MODES}")
    return shapes[mode]


def check_mode_multiplicities(mode: str, mul1: int, mul2: int, mul_out: int) -> None:
    """Raise :class:`InstructionError` if the block multiplicities do not fit ``mode``."""
    rules = {
        "uvw": True,
        "uvu": mul_out == mul1,
        "uvv": mul_out == mul2,
        "uuw": mul1 == mul2,
        "uuu": mul1 == mul2 == mul_out,
        "uvuv": mul_out == mul1 * mul2,
    }
    if mode not in rules:
        raise InstructionError(f"unknown connection mode {mode!r}; expected one of {MODES}")
    if not rules[mode]:
        raise InstructionError(
            f"incompatible multiplicities for mode {mode!r}: input 1 has {mul1}, input 2 has "
            f"{mul2}, output has {mul_out}"
        )


@dataclass(frozen=True)
class Path:
    """One Clebsch-Gordan path ``(i_in1, i_in2) -> i_out``.

    It adds ``coefficient * W * C(l1, l2, l_out) . x1[i_in1] . x2[i_in2]`` to output block
    ``i_out``, contracted over channels according to ``mode`` (see docs/families.md), where ``C``
    is :func:`tp_spec.clebsch_gordan` (unit Frobenius norm) and ``W`` the weight block (shape
    ``weight_shape``, taken C-order from the flat weights at ``weight_offset``) or 1 if
    ``has_weight`` is false.
    """

    i_in1: int
    i_in2: int
    i_out: int
    ir_in1: Irrep
    ir_in2: Irrep
    ir_out: Irrep
    mul_in1: int
    mul_in2: int
    mul_out: int
    mode: str
    has_weight: bool
    coefficient: float
    path_weight: float = 1.0
    weight_offset: int = 0

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of this path's weight block, ``()`` if it has none."""
        if not self.has_weight:
            return ()
        return mode_weight_shape(self.mode, self.mul_in1, self.mul_in2, self.mul_out)

    @property
    def weight_numel(self) -> int:
        """Number of weights of this path."""
        n = 1
        for s in self.weight_shape:
            n *= s
        return n if self.has_weight else 0

    @property
    def weight_slice(self) -> slice:
        """Slice of the flat weight vector holding this path's weights."""
        return slice(self.weight_offset, self.weight_offset + self.weight_numel)

    @property
    def lll(self) -> tuple[int, int, int]:
        """``(l1, l2, l_out)``."""
        return (self.ir_in1.l, self.ir_in2.l, self.ir_out.l)

    @property
    def num_elements(self) -> int:
        """Number of products summed into one output component (e3nn's path normalization)."""
        return {
            "uvw": self.mul_in1 * self.mul_in2,
            "uvu": self.mul_in2,
            "uvv": self.mul_in1,
            "uuw": self.mul_in1,
            "uuu": 1,
            "uvuv": 1,
        }[self.mode]


def validate_path_irreps(ir1: Irrep, ir2: Irrep, ir_out: Irrep) -> None:
    """Raise :class:`InstructionError` unless ``ir_out`` is in ``ir1 x ir2`` (triangle, parity)."""
    if not abs(ir1.l - ir2.l) <= ir_out.l <= ir1.l + ir2.l:
        raise InstructionError(
            f"path {ir1!r} x {ir2!r} -> {ir_out!r} violates the triangle rule "
            f"|l1 - l2| <= l_out <= l1 + l2"
        )
    if ir1.p * ir2.p != ir_out.p:
        raise InstructionError(
            f"path {ir1!r} x {ir2!r} -> {ir_out!r} violates parity: expected parity "
            f"{'e' if ir1.p * ir2.p == 1 else 'o'} for the output"
        )


class TensorProductDescriptor:
    """Base class of the frozen descriptors returned by ``cgtp``, ``gtp`` and ``mtp``.

    Subclasses are frozen dataclasses with at least ``irreps_in1``, ``irreps_in2``, ``irreps_out``
    and ``paths``; they implement :meth:`as_cgtp`.
    """

    kind: ClassVar[str] = "abstract"
    irreps_in1: Irreps
    irreps_in2: Irreps
    irreps_out: Irreps
    paths: tuple[Path, ...]

    @cached_property
    def weight_numel(self) -> int:  # overridden by families with their own weight layout
        """Number of learnable weights per sample (0: the fixed operation; computed once: every
        call validates against it)."""
        return sum(path.weight_numel for path in self.paths)

    def as_cgtp(self) -> CGTPDescriptor:  # pragma: no cover - abstract
        """The CGTP descriptor that computes the same numbers."""
        raise NotImplementedError

    def flops(self, batch: int = 1, method: str | None = None) -> int:
        """Floating-point operations (a multiply-add = 2) for ``batch`` samples.

        ``method=None`` gives the minimal count (nonzero coupling coefficients only); a model of
        :data:`tp_spec.cost.MODELS` gives that count. The count of a method as the backends run
        it is :func:`tp_spec.plan.flops`. See :mod:`tp_spec.cost`.
        """
        from .cost import flops

        return flops(self, batch, method)

    def bytes(self, batch: int = 1, itemsize: int = 4) -> int:
        """Minimal bytes moved: both inputs, the output and the weights once."""
        from .cost import bytes_moved

        return bytes_moved(self, batch, itemsize)

    def check_shapes(
        self,
        x1_shape: tuple[int, ...],
        x2_shape: tuple[int, ...],
        weights_shape: tuple[int, ...] | None = None,
    ) -> tuple[int, ...]:
        """Validate input shapes; return the leading batch shape.

        ``x1``: ``(*batch, irreps_in1.dim)``, ``x2``: ``(*batch, irreps_in2.dim)`` with the SAME
        ``batch`` (nothing is broadcast). ``weights``: ``None`` iff ``weight_numel == 0``,
        otherwise ``(weight_numel,)`` (shared) or ``(*batch, weight_numel)`` (per sample).
        Raises :class:`ShapeError` naming the problem.
        """
        x1_shape, x2_shape = tuple(x1_shape), tuple(x2_shape)
        for name, shape, irreps in (
            ("x1", x1_shape, self.irreps_in1),
            ("x2", x2_shape, self.irreps_in2),
        ):
            if len(shape) == 0:
                raise ShapeError(
                    f"{name} must have at least one axis (the irreps axis); got a scalar"
                )
            if shape[-1] != irreps.dim:
                raise ShapeError(
                    f"{name} has last axis of size {shape[-1]}, but its irreps {irreps} have "
                    f"dim {irreps.dim}"
                )
        batch = x1_shape[:-1]
        if x2_shape[:-1] != batch:
            raise ShapeError(
                f"x1 and x2 batch shapes differ: {x1_shape[:-1]} vs {x2_shape[:-1]} "
                "(inputs are never broadcast; expand them explicitly)"
            )
        numel = self.weight_numel
        if numel == 0:
            if weights_shape is not None:
                raise ShapeError(
                    f"this {self.kind} has no weights (weight_numel == 0) but weights of shape "
                    f"{tuple(weights_shape)} were given"
                )
            return batch
        if weights_shape is None:
            raise ShapeError(
                f"this {self.kind} needs weights of shape ({numel},) or (*batch, {numel})"
            )
        weights_shape = tuple(weights_shape)
        # lengths first: a symbolic batch size (torch.export) is never compared with numel
        shared = len(weights_shape) == 1 and weights_shape[0] == numel
        if not shared and not (len(weights_shape) == len(batch) + 1
                               and weights_shape == batch + (numel,)):
            raise ShapeError(
                f"weights have shape {weights_shape}; expected ({numel},) (shared) or "
                f"{batch + (numel,)} (per sample)"
            )
        return batch

    def summary(self) -> str:
        """A multi-line human-readable description (paths and sizes)."""
        lines = [
            f"{type(self).__name__}: {self.irreps_in1} x {self.irreps_in2} -> {self.irreps_out}",
            f"  {len(self.paths)} paths, {self.weight_numel} weights",
        ]
        for p in self.paths:
            w = f"w{p.weight_shape}" if p.has_weight else "fixed"
            lines.append(
                f"  [{p.i_in1}]{p.mul_in1}x{p.ir_in1!r} x [{p.i_in2}]{p.mul_in2}x{p.ir_in2!r} -> "
                f"[{p.i_out}]{p.mul_out}x{p.ir_out!r}  {p.mode} {w} coef={p.coefficient:.6g}"
            )
        return "\n".join(lines)
