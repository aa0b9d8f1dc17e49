"""The Gaunt tensor product (GTP) descriptor: multiply two spherical functions, project back.

Reading (docs/families.md): a channel of ``x`` is the function ``f(s) = sum x_lm Y_lm(s)`` with
``component``-normalized spherical harmonics (e3nn basis). Irreps of parity ``p * (-1)**l`` form
the *parity class* ``p`` (class +1: ``0e, 1o, 2e, ...``; class -1: ``0o, 1e, 2o, ...``); an input
may mix both classes, each class being one function. The output is::

    GTP(x1, x2)_{l3 m3} = (1 / 4 pi) * integral f1 f2 Y_{l3 m3} dOmega

summed over the (up to four) class pairs. As a CGTP (see :meth:`GTPDescriptor.as_cgtp`) every
path ``(l1, p1) x (l2, p2) -> (l3, p1 p2)`` with ``l1 + l2 + l3`` even has the coefficient::

    sqrt((2 l1 + 1)(2 l2 + 1)(2 l3 + 1)) * |(l1 l2 l3; 0 0 0)|

times :func:`tp_spec.clebsch_gordan`; odd-sum paths (e.g. the cross product) are unreachable.
The constant function is the unit: ``GTP(x, e0) = x`` with ``e0 = [1, 0, ...]`` in ``0e``.

Channels: all blocks of ``irreps_in1`` have the same multiplicity ``C``; those of ``irreps_in2``
all ``C`` (channelwise) or all 1 (one channel of ``x2`` broadcast to every channel, like edge
spherical harmonics). Each irrep appears at most once per input and output.

Per-degree weights (Luo et al., optional): flat ``weights = concat(w1, w2, w3)`` with ``w1``
``(len(irreps_in1), C)``, ``w2`` ``(len(irreps_in2), C2)``, ``w3`` ``(len(irreps_out), C)``
(C-order); block ``i`` of ``x1`` is scaled by ``w1[i, channel]``, and so on.

>>> d = gtp("0e + 1o", "0e + 1o")
>>> d.irreps_out
1x0e+1x1o+1x2e
>>> len(d.paths), d.weight_numel, d.grid_shape()
(5, 0, (3, 5))
>>> gtp("4x0e + 4x1o", "0e + 1o + 2e", per_degree_weights=True).weight_numel
27
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .cgtp import CGTPDescriptor
from .descriptor import Path, TensorProductDescriptor
from .errors import InstructionError, IrrepsError, ShapeError
from .irreps import Irrep, Irreps, parity_class

__all__ = ["GTPDescriptor", "gtp", "parity_class"]


def _check_channels(family: str, irreps_in1: Irreps, irreps_in2: Irreps) -> tuple[int, int]:
    """Validate the channel rules shared by GTP and MTP; return ``(C, C2)``."""
    for name, irreps in (("irreps_in1", irreps_in1), ("irreps_in2", irreps_in2)):
        if len(irreps) == 0:
            raise IrrepsError(f"{family}: {name} is empty")
        seen: set[Irrep] = set()
        for _, ir in irreps:
            if ir in seen:
                raise InstructionError(
                    f"{family}: irrep {ir!r} appears more than once in {name} = {irreps}; "
                    "each irrep may appear at most once (merge the blocks into channels)"
                )
            seen.add(ir)
    muls1 = {mul for mul, _ in irreps_in1}
    if len(muls1) != 1:
        raise InstructionError(
            f"{family}: every block of irreps_in1 = {irreps_in1} must have the same multiplicity "
            f"(the channel count C); got multiplicities {sorted(muls1)}"
        )
    channels = muls1.pop()
    if channels < 1:
        raise InstructionError(f"{family}: needs at least one channel; irreps_in1 = {irreps_in1}")
    muls2 = {mul for mul, _ in irreps_in2}
    if len(muls2) != 1 or muls2.pop() not in (channels, 1):
        raise InstructionError(
            f"{family}: channel mismatch: every block of irreps_in2 = {irreps_in2} must have "
            f"multiplicity C = {channels} (channelwise) or 1 (broadcast), like irreps_in1 = "
            f"{irreps_in1}"
        )
    return channels, irreps_in2[0].mul


def _check_flag(family: str, name: str, value: Any) -> None:
    """Raise :class:`InstructionError` unless option ``name`` is a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise InstructionError(
            f"{family}: {name} must be True or False, got {value!r} of type {type(value).__name__}")


def _check_output(family: str, irreps_out: Irreps, channels: int) -> None:
    seen: set[Irrep] = set()
    for mul, ir in irreps_out:
        if mul != channels:
            raise InstructionError(
                f"{family}: every block of irreps_out = {irreps_out} must have multiplicity "
                f"C = {channels} (the channel count of the inputs); {mul}x{ir!r} does not"
            )
        if ir in seen:
            raise InstructionError(
                f"{family}: irrep {ir!r} appears more than once in irreps_out = {irreps_out}"
            )
        seen.add(ir)


@dataclass(frozen=True)
class ChannelwiseFixedDescriptor(TensorProductDescriptor):
    """Shared machinery of GTP and MTP: channel layout, per-degree weights, emulating CGTP.

    ``paths`` are the paths of :meth:`as_cgtp` (mode ``uuu``, or ``uvu`` when ``x2`` has one
    broadcast channel), with their final signed coefficients.
    """

    irreps_in1: Irreps
    irreps_in2: Irreps
    irreps_out: Irreps
    paths: tuple[Path, ...]
    per_degree_weights: bool
    channels: int
    channels_in2: int

    # ------------------------------------------------------------ weights
    @property
    def broadcast(self) -> bool:
        """True if ``x2`` has one channel applied to all ``C > 1`` channels of ``x1``."""
        return self.channels_in2 != self.channels

    @cached_property
    def weight_numel(self) -> int:
        """``C * (len(in1) + len(out)) + C2 * len(in2)`` with per-degree weights, else 0."""
        if not self.per_degree_weights:
            return 0
        return (self.channels * (len(self.irreps_in1) + len(self.irreps_out))
                + self.channels_in2 * len(self.irreps_in2))

    def split_weights(self, weights: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(..., weight_numel)`` -> ``w1 (..., len(in1), C)``, ``w2 (..., len(in2), C2)``,
        ``w3 (..., len(out), C)``."""
        if not self.per_degree_weights:
            raise InstructionError(f"this {self.kind} has no per-degree weights")
        w = np.asarray(weights)
        if w.ndim == 0 or w.shape[-1] != self.weight_numel:
            raise ShapeError(
                f"weights have shape {w.shape}; expected (..., {self.weight_numel})"
            )
        c, c2 = self.channels, self.channels_in2
        n1, n2, no = len(self.irreps_in1), len(self.irreps_in2), len(self.irreps_out)
        b = w.shape[:-1]
        a, bb = n1 * c, n1 * c + n2 * c2
        return (w[..., :a].reshape(b + (n1, c)), w[..., a:bb].reshape(b + (n2, c2)),
                w[..., bb:].reshape(b + (no, c)))

    def cgtp_weights(self, weights: Any) -> np.ndarray | None:
        """Map per-degree weights ``(..., weight_numel)`` to the weights of :meth:`as_cgtp`,
        ``(..., as_cgtp().weight_numel)``: per path and channel ``w1[i1,u] * w2[i2,v] * w3[io,u]``
        (``v = u``, or ``0`` when ``x2`` is broadcast). ``None`` for the fixed operation."""
        if not self.per_degree_weights:
            if weights is not None:
                raise ShapeError(
                    f"this {self.kind} has no weights (weight_numel == 0) but weights were given"
                )
            return None
        w1, w2, w3 = self.split_weights(weights)
        parts = []
        for p in self.paths:
            # uuu: (..., C); uvu with C2 == 1: (..., C, 1) flattened C-order -> (..., C)
            parts.append(w1[..., p.i_in1, :] * w2[..., p.i_in2, :] * w3[..., p.i_out, :])
        if not parts:
            return np.zeros(np.shape(weights)[:-1] + (0,))
        return np.concatenate(parts, axis=-1)

    def as_cgtp(self) -> CGTPDescriptor:
        """The CGTP computing the same numbers: these paths, mode ``uuu`` (``uvu`` if ``x2`` is
        broadcast), weighted iff per-degree weights are on (then feed it
        :meth:`cgtp_weights`)."""
        return CGTPDescriptor.from_paths(
            self.irreps_in1, self.irreps_in2, self.irreps_out,
            [(p.i_in1, p.i_in2, p.i_out, p.mode, p.has_weight, p.coefficient)
             for p in self.paths],
            family=self.kind,
        )

    # ------------------------------------------------------------ parity helpers
    def _irreps(self, which: str) -> Irreps:
        table = {"in1": self.irreps_in1, "in2": self.irreps_in2, "out": self.irreps_out}
        if which not in table:
            raise ValueError(f"which must be 'in1', 'in2' or 'out', got {which!r}")
        return table[which]

    def blocks_by_class(self, which: str) -> dict[int, tuple[int, ...]]:
        """Block indices of ``which`` (``"in1"``, ``"in2"``, ``"out"``) per parity class
        ``p * (-1)**l`` (the function-on-the-sphere classes of GTP): ``{+1: (...), -1: (...)}``."""
        irreps = self._irreps(which)
        return {q: tuple(i for i, (_, ir) in enumerate(irreps) if parity_class(ir) == q)
                for q in (1, -1)}


def _gtp_coefficient(l1: int, l2: int, l3: int) -> float:
    """``sqrt((2l1+1)(2l2+1)(2l3+1)) |(l1 l2 l3; 000)|`` (0 for odd sums), correctly rounded."""
    from .gaunt import wigner_3j_000

    w = abs(wigner_3j_000(l1, l2, l3))
    if not w:
        return 0.0
    from .sqrt_rational import SqrtRational

    return float(w * SqrtRational(1, (2 * l1 + 1) * (2 * l2 + 1) * (2 * l3 + 1), 1))


def _default_outputs(pairs: Iterable[tuple[Irrep, Irrep]], keep: Any, channels: int) -> Irreps:
    found: set[Irrep] = set()
    for ir1, ir2 in pairs:
        for ir3 in ir1 * ir2:
            if keep(ir1, ir2, ir3):
                found.add(ir3)
    return Irreps([(channels, ir) for ir in sorted(found)])


@dataclass(frozen=True)
class GTPDescriptor(ChannelwiseFixedDescriptor):
    """A Gaunt tensor product (see the module docstring). Build it with :func:`gtp`."""

    kind = "gtp"

    @property
    def lmax(self) -> tuple[int, int, int]:
        """``(L1, L2, Lout)``."""
        return (self.irreps_in1.lmax, self.irreps_in2.lmax,
                self.irreps_out.lmax if len(self.irreps_out) else 0)

    def grid_shape(self) -> tuple[int, int]:
        """Minimal exact Gauss-Legendre x uniform grid ``(n_theta, n_phi)`` (docs/families.md):
        ``(ceil((L1 + L2 + Lout + 1) / 2), L1 + L2 + Lout + 1)``."""
        total = sum(self.lmax)
        return ((total + 2) // 2, total + 1)

    def class_pairs(self) -> tuple[tuple[int, int, int], ...]:
        """``(q1, q2, q1 * q2)`` for every parity-class pair present in both inputs whose
        product class is present in the output (the pointwise products a grid GTP computes)."""
        c1, c2, co = (self.blocks_by_class(w) for w in ("in1", "in2", "out"))
        return tuple((q1, q2, q1 * q2) for q1 in (1, -1) for q2 in (1, -1)
                     if c1[q1] and c2[q2] and co[q1 * q2])


def gtp(
    irreps_in1: Irreps | str,
    irreps_in2: Irreps | str,
    irreps_out: Irreps | str | None = None,
    *,
    per_degree_weights: bool = False,
) -> GTPDescriptor:
    """Describe a Gaunt tensor product (module docstring: reading, channels, weights).

    ``irreps_out=None``: every irrep reachable by a path with ``l1 + l2 + l3`` even, multiplicity
    ``C``, once each, sorted (natural order). Given: blocks of multiplicity ``C``, each irrep
    once; outputs reached by no path are zero. Raises :class:`InstructionError` naming the
    violated channel rule.
    """
    irreps_in1, irreps_in2 = Irreps(irreps_in1), Irreps(irreps_in2)
    _check_flag("gtp", "per_degree_weights", per_degree_weights)
    channels, channels_in2 = _check_channels("gtp", irreps_in1, irreps_in2)

    def keep(ir1: Irrep, ir2: Irrep, ir3: Irrep) -> bool:
        return (ir1.l + ir2.l + ir3.l) % 2 == 0

    if irreps_out is None:
        irreps_out = _default_outputs(
            ((a.ir, b.ir) for a in irreps_in1 for b in irreps_in2), keep, channels)
    else:
        irreps_out = Irreps(irreps_out)
        _check_output("gtp", irreps_out, channels)
    mode = "uuu" if channels_in2 == channels else "uvu"
    specs = []
    for i1, (_, ir1) in enumerate(irreps_in1):
        for i2, (_, ir2) in enumerate(irreps_in2):
            for io, (_, ir3) in enumerate(irreps_out):
                if ir3 in ir1 * ir2 and keep(ir1, ir2, ir3):
                    coef = _gtp_coefficient(ir1.l, ir2.l, ir3.l)
                    if coef != 0.0:
                        specs.append((i1, i2, io, mode, bool(per_degree_weights), coef))
    cg = CGTPDescriptor.from_paths(irreps_in1, irreps_in2, irreps_out, specs)
    return GTPDescriptor(irreps_in1, irreps_in2, irreps_out, cg.paths, bool(per_degree_weights),
                         channels, channels_in2)

