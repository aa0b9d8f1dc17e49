"""``multilinear``: a product linear in each of its inputs, with hand-written transposes, as a
JAX primitive.

A tensor product with weights is trilinear, ``y = F(x1, x2, w)``; without weights bilinear.
Number the inputs and the output as *slots* ``0 .. n`` (slot ``n`` the output). The product's
transpose with respect to input ``k``, ``d <ct, F(...)> / d slot_k``, is again linear in every
other slot (the output slot holding the cotangent), and these ``n + 1`` functions close under
transposition: the transpose of "slot ``k`` from the others" with respect to its operand slot
``j`` is "slot ``j`` from the others", the cotangent taking slot ``k``'s place. So one
primitive whose parameter ``slot`` says which function runs, with a jvp that sums one call
per nonzero input tangent and a transpose that switches ``slot``, gives every order of jvp and
vjp (grad, forward over reverse, reverse over reverse) through the functions the caller
writes, never through JAX's transpose of their implementation (where XLA on CPU runs layout
transposes, scatter-adds and slow concatenations). Built with JAX's public extension points
(``jax.extend.core.Primitive``, ``jax.interpreters.ad/batching/mlir``), as :mod:`tp_jax._bmm`.

A slot is *row-wise* (``(N, dim)``, or ``(dim, N)`` with ``rows_axis`` 1: one row per sample)
or *shared* (``(dim,)``: weights shared by all rows, whose transpose sums over the rows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

__all__ = ["Multilinear", "Slot", "multilinear"]


@dataclass(frozen=True)
class Slot:
    """One input or the output: ``dim`` features; ``rows_axis`` 0 (``(N, dim)``), 1
    (``(dim, N)``) or None (shared, ``(dim,)``)."""

    dim: int
    rows_axis: int | None = 0

    def shape(self, n: int) -> tuple[int, ...]:
        if self.rows_axis is None:
            return (self.dim,)
        return (n, self.dim) if self.rows_axis == 0 else (self.dim, n)

    def describe(self) -> str:
        return {None: f"({self.dim},)", 0: f"(N, {self.dim})", 1: f"({self.dim}, N)"}[
            self.rows_axis]


@dataclass(frozen=True, eq=False)
class Multilinear:
    """The ``n + 1`` functions of one multilinear product (hashed by identity: a primitive
    parameter). ``fns[k]`` computes slot ``k`` from the other slots in slot order (the last
    function is the product itself; for ``k < n`` its last argument is the cotangent of the
    output); ``slots[k]`` says slot ``k``'s shape."""

    fns: tuple[Callable[..., jax.Array], ...]
    slots: tuple[Slot, ...]

    def __post_init__(self) -> None:
        if len(self.fns) != len(self.slots) or len(self.slots) < 3:
            raise ValueError("Multilinear: one function per slot, at least two inputs")
        if self.slots[-1].rows_axis is None:
            raise ValueError("Multilinear: the output slot must be row-wise")


multilinear_p = Primitive("tp_jax_multilinear")


def multilinear(fns: Multilinear, *operands: jax.Array, slot: int | None = None) -> jax.Array:
    """Slot ``slot`` of ``fns`` (default: the output, the product) from the other slots'
    ``operands``, in slot order (module docstring)."""
    slot = len(fns.slots) - 1 if slot is None else slot
    _abstract(*operands, fns=fns, slot=slot)  # shape check, also when called eagerly
    return multilinear_p.bind(*operands, fns=fns, slot=slot)


def _others(fns: Multilinear, slot: int) -> list[int]:
    return [k for k in range(len(fns.slots)) if k != slot]


def _impl(*operands, fns: Multilinear, slot: int):
    return fns.fns[slot](*operands)


def _abstract(*operands, fns: Multilinear, slot: int):
    others = _others(fns, slot)
    rows = {a.shape[s.rows_axis] for a, s in zip(operands, (fns.slots[k] for k in others),
                                                 strict=False)
            if s.rows_axis is not None and a.ndim == 2}
    n = rows.pop() if len(rows) == 1 else None
    ok = (len(operands) == len(others) and n is not None
          and len({a.dtype for a in operands}) == 1
          and all(a.shape == fns.slots[k].shape(n) for a, k in zip(operands, others,
                                                                    strict=True)))
    if not ok:
        want = " and ".join(fns.slots[k].describe() for k in others)
        got = " and ".join(f"{a.dtype}{list(a.shape)}" for a in operands)
        raise ValueError(f"multilinear slot {slot}: expected {want} of one dtype, got {got}")
    return jax.core.ShapedArray(fns.slots[slot].shape(n), operands[0].dtype)


def _jvp(primals, tangents, *, fns: Multilinear, slot: int):
    out = multilinear_p.bind(*primals, fns=fns, slot=slot)
    terms = [multilinear_p.bind(*primals[:j], t, *primals[j + 1:], fns=fns, slot=slot)
             for j, t in enumerate(tangents) if type(t) is not ad.Zero]
    tangent = terms[0] if terms else ad.Zero.from_primal_value(out)
    for t in terms[1:]:
        tangent = tangent + t
    return out, tangent


def _transpose(ct, *operands, fns: Multilinear, slot: int):
    """The one undefined operand (at position ``j``, slot ``target``) from the cotangent in
    ``slot``'s place and the other operands."""
    undefined = [j for j, a in enumerate(operands) if ad.is_undefined_primal(a)]
    if len(undefined) != 1:
        raise NotImplementedError("multilinear: transpose in one operand at a time")
    j = undefined[0]
    target = _others(fns, slot)[j]
    if type(ct) is ad.Zero:
        return [None] * j + [ad.Zero(operands[j].aval)] + [None] * (len(operands) - j - 1)
    values = dict(zip(_others(fns, slot), operands, strict=True))
    values[slot] = ct
    args = [values[k] for k in _others(fns, target)]
    res = multilinear(fns, *args, slot=target)
    return [None] * j + [res] + [None] * (len(operands) - j - 1)


def _batch(args, dims, *, fns: Multilinear, slot: int):
    """A mapped axis joins the rows where only row-wise operands are mapped and the result is
    row-wise (unmapped row-wise operands repeated); otherwise one call per mapped index."""
    size = next(x.shape[d] for x, d in zip(args, dims, strict=True) if d is not None)
    slots = [fns.slots[k] for k in _others(fns, slot)]
    if fns.slots[slot].rows_axis is None or any(
            d is not None and s.rows_axis is None for d, s in zip(dims, slots, strict=True)):
        moved = [x if d is None else jnp.moveaxis(x, d, 0) for x, d in zip(args, dims,
                                                                            strict=True)]
        mapped = [d is not None for d in dims]

        def one(xs):
            it = iter(xs)
            return multilinear(fns, *[next(it) if m else x for m, x in zip(mapped, moved,
                                                                             strict=True)],
                               slot=slot)
        return jax.lax.map(one, [x for m, x in zip(mapped, moved, strict=True) if m]), 0
    flat = []
    for x, d, s in zip(args, dims, slots, strict=True):
        if s.rows_axis is None:
            flat.append(x)
            continue
        x = jnp.broadcast_to(x, (size,) + x.shape) if d is None else jnp.moveaxis(x, d, 0)
        x = x if s.rows_axis == 0 else jnp.moveaxis(x, 0, 1)  # the mapped axis before the rows
        flat.append(x.reshape((-1,) + x.shape[2:]) if s.rows_axis == 0
                    else x.reshape(x.shape[0], -1))
    out = multilinear(fns, *flat, slot=slot)
    if fns.slots[slot].rows_axis == 0:
        return out.reshape((size, -1) + out.shape[1:]), 0
    return out.reshape(out.shape[0], size, -1), 1


multilinear_p.def_impl(_impl)
multilinear_p.def_abstract_eval(_abstract)
ad.primitive_jvps[multilinear_p] = _jvp
ad.primitive_transposes[multilinear_p] = _transpose
batching.primitive_batchers[multilinear_p] = _batch
mlir.register_lowering(multilinear_p, mlir.lower_fun(_impl, multiple_results=False))
