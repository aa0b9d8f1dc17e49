"""Irreducible representations of O(3) and direct sums of them, in e3nn's string syntax.

An :class:`Irrep` is a degree ``l >= 0`` and a parity ``p`` in ``{+1, -1}``; it acts on ``2l+1``
real components. An :class:`Irreps` is an ordered sequence of ``(mul, irrep)`` blocks; a feature
vector of ``Irreps`` is a flat array ``(..., irreps.dim)`` in ``mul_ir`` layout: block by block,
each block a row-major ``(mul, 2l+1)`` array whose component index is ``m + l``.

String syntax (e3nn): ``"8x0e + 4x1o + 2e"``; parity letters ``e`` (+1), ``o`` (-1) and ``y``
(``(-1)**l``, the parity of spherical harmonics); the multiplicity defaults to 1 and may be 0.

>>> irreps = Irreps("8x0e + 4x1o")
>>> irreps.dim, irreps.lmax, irreps.num_irreps
(20, 1, 12)
>>> irreps.slices()
(slice(0, 8, None), slice(8, 20, None))
>>> Irreps("1o + 1e + 0e + 1o").sort().irreps
1x0e+1x1o+1x1o+1x1e
>>> Irreps("1o + 1e + 0e + 1o").regroup()
1x0e+2x1o+1x1e
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from .errors import IrrepsError

__all__ = ["Irrep", "Irreps", "MulIrrep", "SortResult", "parity_class"]

# ASCII digits only: ``\d`` would also accept other scripts' digits ("١", "２").
_IRREP_RE = re.compile(r"^([0-9]+)([eoy])$")
_MUL_IRREP_RE = re.compile(r"^(?:([0-9]+)\s*x\s*)?([0-9]+[eoy])$")


def _non_ascii(text: str) -> str:
    """A note naming the first non-ASCII character of ``text`` (empty if there is none)."""
    for ch in text:
        if not ch.isascii():
            return (f" (it contains {ch!r}, U+{ord(ch):04X}: degrees and multiplicities are "
                    "ASCII digits 0-9)")
    return ""


class Irrep:
    """An irreducible representation ``(l, p)`` of O(3): degree ``l >= 0``, parity ``p = +-1``.

    >>> Irrep("1o"), Irrep(2, 1), Irrep("3y")
    (1o, 2e, 3o)
    >>> Irrep("1o").dim
    3
    """

    __slots__ = ("_l", "_p")

    def __init__(self, l: int | str | Irrep | tuple[int, int], p: int | None = None) -> None:
        if isinstance(l, Irrep):
            if p is not None:
                raise IrrepsError(f"Irrep({l!r}, {p!r}): give either an Irrep or (l, p), not both")
            l, p = l.l, l.p
        elif isinstance(l, str):
            if p is not None:
                raise IrrepsError(f"Irrep({l!r}, {p!r}): a string already carries the parity")
            match = _IRREP_RE.match(l.strip())
            if match is None:
                raise IrrepsError(
                    f"malformed irrep {l!r}{_non_ascii(l)}: expected a degree and a parity "
                    "letter, like '1o', '2e' or '3y'"
                )
            l = int(match.group(1))
            p = {"e": 1, "o": -1, "y": (-1) ** l}[match.group(2)]
        elif hasattr(l, "l") and hasattr(l, "p") and not isinstance(l, str):
            # another library's irrep (e3nn ``o3.Irrep``, e3nn-jax ``Irrep``): its l and p
            if p is not None:
                raise IrrepsError(f"Irrep({l!r}, {p!r}): give either an irrep or (l, p), not both")
            l, p = l.l, l.p
        elif isinstance(l, tuple):
            if p is not None or len(l) != 2:
                raise IrrepsError(f"Irrep({l!r}, {p!r}): expected a pair (l, p)")
            l, p = l
        int_l, int_p = _as_int(l), _as_int(p)
        if int_l is None or int_l < 0:
            raise IrrepsError(f"irrep degree must be a non-negative int, got {l!r}")
        if int_p not in (1, -1):
            raise IrrepsError(f"irrep parity must be +1 or -1, got {p!r}")
        self._l = int_l
        self._p = int_p

    @property
    def l(self) -> int:  # noqa: E743
        """Degree."""
        return self._l

    @property
    def p(self) -> int:
        """Parity, +1 (even) or -1 (odd)."""
        return self._p

    @property
    def dim(self) -> int:
        """Number of components, ``2l + 1``."""
        return 2 * self._l + 1

    @property
    def is_natural(self) -> bool:
        """True if ``p == (-1)**l`` (the parity of spherical harmonics of degree ``l``)."""
        return self._p == (-1) ** self._l

    def is_scalar(self) -> bool:
        """True for ``0e``."""
        return self._l == 0 and self._p == 1

    def __mul__(self, other: Irrep) -> Iterator[Irrep]:
        """All irreps in the tensor product ``self x other`` (triangle rule), increasing ``l``."""
        other = Irrep(other)
        p = self._p * other._p
        for l in range(abs(self._l - other._l), self._l + other._l + 1):
            yield Irrep(l, p)

    def __iter__(self) -> Iterator[int]:
        yield self._l
        yield self._p

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = Irrep(other)
            except IrrepsError:
                return False
        if isinstance(other, tuple) and len(other) == 2:
            return (self._l, self._p) == other
        if not isinstance(other, Irrep):
            return NotImplemented
        return (self._l, self._p) == (other._l, other._p)

    def __hash__(self) -> int:
        return hash((self._l, self._p))

    def __lt__(self, other: Irrep) -> bool:
        return _natural_key(self) < _natural_key(Irrep(other))

    def __repr__(self) -> str:
        return f"{self._l}{'e' if self._p == 1 else 'o'}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Irrep, (self._l, self._p))


def _as_int(value: Any) -> int | None:
    """``value`` as a Python int if it is an integer (numpy ints included, bools excluded)."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _natural_key(ir: Irrep) -> tuple[int, int]:
    """Sort key: by degree, then the natural parity ``(-1)**l`` first (e3nn-jax, cuEquivariance)."""
    return (ir.l, 0 if ir.is_natural else 1)


def _e3nn_key(ir: Irrep) -> tuple[int, int]:
    """Sort key of e3nn (torch): by degree, then odd before even."""
    return (ir.l, ir.p)


class MulIrrep(NamedTuple):
    """One block of an :class:`Irreps`: ``mul`` copies of ``ir``."""

    mul: int
    ir: Irrep

    @property
    def dim(self) -> int:
        """``mul * (2l + 1)``."""
        return self.mul * self.ir.dim

    def __repr__(self) -> str:
        return f"{self.mul}x{self.ir!r}"


class SortResult(NamedTuple):
    """Result of :meth:`Irreps.sort`: the sorted irreps and the block permutation (as e3nn).

    ``p[i]`` is the position in the sorted irreps of original block ``i`` (so instructions written
    for the unsorted output are remapped with ``p[i_out]``); ``inv[j]`` is the original index of
    sorted block ``j``.

    >>> Irreps("2e + 0e + 1e").sort()
    SortResult(irreps=1x0e+1x1e+1x2e, p=(2, 0, 1), inv=(1, 2, 0))
    """

    irreps: Irreps
    p: tuple[int, ...]
    inv: tuple[int, ...]


IrrepsLike = "Irreps | str | Irrep | Iterable[tuple[int, Irrep | str | tuple[int, int]]]"


class Irreps(tuple):
    """An ordered direct sum of irreps: a tuple of :class:`MulIrrep` blocks.

    Accepts a string (``"8x0e + 4x1o"``), an :class:`Irrep`, another :class:`Irreps`, or an
    iterable of ``(mul, irrep)`` pairs or irreps, including e3nn's and e3nn-jax's ``Irreps``
    (any irrep with ``l`` and ``p`` attributes). Iteration yields ``MulIrrep(mul, ir)``.

    >>> Irreps("2x0e + 0x1o + 1e").dim
    5
    >>> list(Irreps("2x0e + 1o"))
    [2x0e, 1x1o]
    """

    def __new__(cls, irreps: Any = ()) -> Irreps:
        if isinstance(irreps, Irreps):
            return super().__new__(cls, tuple(irreps))
        blocks: list[MulIrrep] = []
        if isinstance(irreps, Irrep):
            blocks.append(MulIrrep(1, irreps))
        elif isinstance(irreps, str):
            text = irreps.strip()
            if text:
                for term in text.split("+"):
                    match = _MUL_IRREP_RE.match(term.strip())
                    if match is None:
                        raise IrrepsError(
                            f"malformed irreps {irreps!r}: cannot parse term {term.strip()!r}"
                            f"{_non_ascii(term)}; expected terms like '8x0e', '1o' or '0x2y' "
                            "joined by '+'"
                        )
                    mul = int(match.group(1)) if match.group(1) is not None else 1
                    blocks.append(MulIrrep(mul, Irrep(match.group(2))))
        else:
            try:
                items = list(irreps)
            except TypeError:
                raise IrrepsError(f"cannot interpret {irreps!r} as irreps") from None
            for item in items:
                if isinstance(item, (Irrep, str)) or (hasattr(item, "l") and hasattr(item, "p")):
                    blocks.append(MulIrrep(1, Irrep(item)))
                    continue
                try:
                    mul, ir = item
                except (TypeError, ValueError):
                    raise IrrepsError(
                        f"cannot interpret {item!r} as a (mul, irrep) pair in irreps {irreps!r}"
                    ) from None
                int_mul = _as_int(mul)
                if int_mul is None or int_mul < 0:
                    raise IrrepsError(f"multiplicity must be a non-negative int, got {mul!r}")
                blocks.append(MulIrrep(int_mul, Irrep(ir)))
        return super().__new__(cls, tuple(blocks))

    # ------------------------------------------------------------------ sizes
    @property
    def dim(self) -> int:
        """Total number of components, ``sum(mul * (2l + 1))``."""
        return sum(block.dim for block in self)

    @property
    def num_irreps(self) -> int:
        """Total multiplicity, ``sum(mul)``."""
        return sum(block.mul for block in self)

    @property
    def lmax(self) -> int:
        """Largest degree; raises for empty irreps."""
        if len(self) == 0:
            raise IrrepsError("lmax of empty irreps is undefined")
        return max(block.ir.l for block in self)

    @property
    def ls(self) -> list[int]:
        """The degree of every irrep copy, with multiplicity."""
        return [block.ir.l for block in self for _ in range(block.mul)]

    def slices(self) -> tuple[slice, ...]:
        """The slice of the flat feature axis occupied by each block."""
        out, start = [], 0
        for block in self:
            out.append(slice(start, start + block.dim))
            start += block.dim
        return tuple(out)

    def count(self, ir: Irrep | str) -> int:  # type: ignore[override]
        """Total multiplicity of ``ir``."""
        ir = Irrep(ir)
        return sum(block.mul for block in self if block.ir == ir)

    def __contains__(self, ir: object) -> bool:
        try:
            ir = Irrep(ir)  # type: ignore[arg-type]
        except IrrepsError:
            return False
        return any(block.ir == ir for block in self)

    # --------------------------------------------------------- transformations
    def simplify(self) -> Irreps:
        """Merge ADJACENT blocks of the same irrep and drop zero multiplicities.

        >>> Irreps("1x0e + 2x0e + 1o + 0x2e + 1o").simplify()
        3x0e+2x1o
        """
        out: list[tuple[int, Irrep]] = []
        for mul, ir in self:
            if mul == 0:
                continue
            if out and out[-1][1] == ir:
                out[-1] = (out[-1][0] + mul, ir)
            else:
                out.append((mul, ir))
        return Irreps(out)

    def remove_zero_multiplicities(self) -> Irreps:
        """Drop blocks with ``mul == 0``."""
        return Irreps([block for block in self if block.mul > 0])

    def sort(self, order: str = "natural") -> SortResult:
        """Stable sort of the blocks by degree, then parity.

        ``order="natural"`` (default, as e3nn-jax and cuEquivariance): within a degree the natural
        parity ``(-1)**l`` comes first (0e, 0o, 1o, 1e, 2e, 2o, ...). ``order="e3nn"`` (as e3nn
        torch): odd before even (0o, 0e, 1o, 1e, 2o, 2e, ...).
        """
        keys: dict[str, Callable[[Irrep], tuple[int, int]]] = {
            "natural": _natural_key,
            "e3nn": _e3nn_key,
        }
        if order not in keys:
            raise IrrepsError(f"unknown sort order {order!r}; expected 'natural' or 'e3nn'")
        key = keys[order]
        inv = tuple(sorted(range(len(self)), key=lambda i: key(self[i].ir)))
        p = [0] * len(inv)
        for j, i in enumerate(inv):
            p[i] = j
        return SortResult(Irreps([self[i] for i in inv]), tuple(p), inv)

    def filter(
        self,
        keep: Irreps | str | Iterable[Irrep | str] | Callable[[MulIrrep], bool] | None = None,
        *,
        drop: Irreps | str | Iterable[Irrep | str] | Callable[[MulIrrep], bool] | None = None,
        lmax: int | None = None,
    ) -> Irreps:
        """Blocks whose irrep is in ``keep`` (or satisfies it), not in ``drop``, with ``l <= lmax``.

        >>> Irreps("0e + 1o + 2e").filter(lmax=1)
        1x0e+1x1o
        >>> Irreps("0e + 1o + 2e").filter(drop="1o")
        1x0e+1x2e
        """

        def predicate(arg: Any) -> Callable[[MulIrrep], bool]:
            if isinstance(arg, (Irrep, MulIrrep)):
                arg = [arg]
            elif callable(arg) and not isinstance(arg, (str, Irreps)):
                return arg
            elif isinstance(arg, str):
                arg = Irreps(arg)
            irs = {block.ir if isinstance(block, MulIrrep) else Irrep(block) for block in arg}
            return lambda block: block.ir in irs

        if lmax is not None and (isinstance(lmax, bool) or not isinstance(lmax, int) or lmax < 0):
            raise IrrepsError(f"lmax must be a non-negative int, got {lmax!r}")

        blocks = list(self)
        if keep is not None:
            blocks = [b for b in blocks if predicate(keep)(b)]
        if drop is not None:
            blocks = [b for b in blocks if not predicate(drop)(b)]
        if lmax is not None:
            blocks = [b for b in blocks if b.ir.l <= lmax]
        return Irreps(blocks)

    def regroup(self) -> Irreps:
        """``sort().irreps.simplify()``: one block per distinct irrep, natural order."""
        return self.sort().irreps.simplify()

    @staticmethod
    def spherical_harmonics(lmax: int, p: int = -1) -> Irreps:
        """``0e + 1o + 2e + ...`` up to ``lmax`` (``p=-1``), or ``0e + 1e + 2e ...`` (``p=1``).

        >>> Irreps.spherical_harmonics(2)
        1x0e+1x1o+1x2e
        """
        if p not in (1, -1):
            raise IrrepsError(f"parity must be +1 or -1, got {p!r}")
        if isinstance(lmax, bool) or not isinstance(lmax, int) or lmax < 0:
            raise IrrepsError(f"lmax must be a non-negative int, got {lmax!r}")
        return Irreps([(1, Irrep(l, p**l)) for l in range(lmax + 1)])

    # ------------------------------------------------------------- operators
    def __add__(self, other: Any) -> Irreps:  # type: ignore[override]
        return Irreps(tuple(self) + tuple(Irreps(other)))

    def __radd__(self, other: Any) -> Irreps:
        return Irreps(tuple(Irreps(other)) + tuple(self))

    def __mul__(self, n: Any) -> Irreps:  # type: ignore[override]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise IrrepsError(f"Irreps can only be repeated a non-negative int times, got {n!r}")
        return Irreps(tuple(self) * n)

    __rmul__ = __mul__

    def __getitem__(self, index: Any) -> Any:
        item = super().__getitem__(index)
        return Irreps(item) if isinstance(index, slice) else item

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = Irreps(other)
            except IrrepsError:
                return False
        if not isinstance(other, tuple):
            return NotImplemented
        return tuple(self) == tuple(other)

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return "+".join(repr(block) for block in self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Irreps, (str(self),))


def parity_class(ir: Irrep) -> int:
    """The parity class ``p * (-1)**l`` of an irrep: +1 for ``0e, 1o, 2e``, -1 for ``0o, 1e``.

    >>> parity_class(Irrep("1o")), parity_class(Irrep("1e"))
    (1, -1)
    """
    ir = ir if isinstance(ir, Irrep) else Irrep(ir)
    return ir.p * (-1) ** ir.l
