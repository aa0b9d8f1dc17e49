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

**Joint transposes.** A backward pass asks for the cotangents of several inputs of the product
at once. Where ``joint`` is given (one call computing any subset of the product's transposes:
a compiled kernel reads each row once for all of them), the product's jvp with several nonzero
tangents is one ``multilinear_sum`` (the sum of the product at each tangent, linear in the
tangents together), whose transpose is one ``multilinear_joint`` call; their own derivatives
are those of the separate functions, so every order stays exact.
"""

from __future__ import annotations

import contextvars
import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir
from jax.interpreters import partial_eval as pe

__all__ = ["Multilinear", "Slot", "exporting", "joint_terms", "dual_terms", "multilinear"]

_EXPORTING = contextvars.ContextVar("tp_jax_multilinear_exporting", default=False)


def exporting() -> bool:
    """Whether the functions are being lowered for ``jax.export`` (which accepts no custom
    call without a compatibility guarantee: callers lower portable code then)."""
    return _EXPORTING.get()


def _lowering(impl: Callable, multiple_results: bool) -> Callable:
    """``mlir.lower_fun(impl)`` with :func:`exporting` set while ``impl`` is traced."""
    lowered = mlir.lower_fun(impl, multiple_results=multiple_results)

    def rule(ctx, *args, **params):
        params_ = ctx.module_context.lowering_parameters
        token = _EXPORTING.set(bool(getattr(params_, "for_export", False)))
        try:
            return lowered(ctx, *args, **params)
        finally:
            _EXPORTING.reset(token)
    return rule


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
    #: ``joint(*inputs, ct, need=...) -> tuple``: the product's transposes for the inputs flagged
    #: in ``need`` (one array each, in input order), computed together; None: one at a time
    joint: Callable[..., tuple[jax.Array, ...]] | None = None
    #: ``joint_dual(*inputs, ct, *v, need=...) -> tuple``: the derivative of ``joint``'s
    #: results along the inputs' directions ``v`` (``ct`` fixed), computed together; this is
    #: ``H v`` for the symmetric Hessian ``H`` of ``<ct, product>``, so it is its own transpose
    joint_dual: Callable[..., tuple[jax.Array, ...]] | None = None

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


def _tangent(operands, tangents, fns: Multilinear, slot: int):
    """The tangent of slot ``slot`` computed from ``operands`` along ``tangents`` (None: every
    tangent zero): one call per nonzero tangent, or one ``multilinear_sum`` of the product
    where a joint transpose exists."""
    at = tuple(j for j, t in enumerate(tangents) if type(t) is not ad.Zero)
    if not at:
        return None
    if len(at) > 1 and fns.joint is not None and slot == len(fns.slots) - 1:
        return multilinear_sum_p.bind(*operands, *(tangents[j] for j in at), fns=fns,
                                      tangent_at=at)
    return _total(multilinear_p.bind(*operands[:j], tangents[j], *operands[j + 1:], fns=fns,
                                     slot=slot) for j in at)


def _jvp(primals, tangents, *, fns: Multilinear, slot: int):
    out = multilinear_p.bind(*primals, fns=fns, slot=slot)
    tangent = _tangent(primals, tangents, fns, slot)
    return out, _zero(out) if tangent is None else tangent


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


def _zero(x) -> ad.Zero:
    """The symbolic zero tangent of ``x``."""
    return ad.Zero(jax.typeof(x).to_tangent_aval())


def _total(terms):
    """The sum of a non-empty sequence of arrays."""
    return functools.reduce(operator.add, terms)


def _without(operands, i: int) -> list:
    """``operands`` without entry ``i``."""
    return [x for k, x in enumerate(operands) if k != i]


def joint_terms(call: Callable, operands, need: tuple[bool, ...]) -> list:
    """A joint transpose as separate transposes: for each input ``i`` flagged in ``need``,
    ``call(i, the other inputs and the cotangent)`` (``operands``: the inputs, then the
    cotangent)."""
    return [call(i, _without(operands, i)) for i in range(len(need)) if need[i]]


def dual_terms(call: Callable, operands, need: tuple[bool, ...]) -> list:
    """A joint dual as separate transposes: for each input ``i`` flagged in ``need``, the sum
    over the other inputs ``j`` of ``call(i, ...)`` with input ``j`` replaced by its direction
    (``operands``: the inputs, the cotangent, then one direction per input)."""
    n = len(need)
    prim, v = operands[:n + 1], operands[n + 1:]

    def at(j):
        ops = list(prim)
        ops[j] = v[j]
        return ops
    return [_total(call(i, _without(at(j), i)) for j in range(n) if j != i)
            for i in range(n) if need[i]]


def _substituted(fns: Multilinear, prim, i: int, c, want: tuple[bool, ...]) -> list:
    """``H e_i c`` at the inputs flagged in ``want``: the transposes with input ``i`` replaced
    by ``c`` (one joint call), and zero at input ``i`` itself (its transpose does not read it);
    None marks the zero."""
    sub = list(prim)
    sub[i] = c
    inner = tuple(w and k != i for k, w in enumerate(want))
    got = iter(multilinear_joint_p.bind(*sub, fns=fns, need=inner) if any(inner) else ())
    return [next(got) if k != i else None for k in range(len(want)) if want[k]]


def _primitives(fns: Multilinear) -> Callable:
    """``call(i, operands)``: slot ``i`` of ``fns`` as the primitive (differentiable)."""
    return lambda i, ops: multilinear(fns, *ops, slot=i)


def _vmapped(expanded: Callable) -> Callable:
    """A batching rule: vmap of the primitive written as separate primitives."""
    def rule(args, dims, **params):
        outs = jax.vmap(expanded(**params), in_axes=tuple(dims))(*args)
        return outs, ([0] * len(outs) if isinstance(outs, list) else 0)
    return rule


# -- the jvp's sum over tangents, and the joint transpose -----------------------------------

multilinear_sum_p = Primitive("tp_jax_multilinear_sum")
multilinear_joint_p = Primitive("tp_jax_multilinear_joint")
multilinear_joint_p.multiple_results = True


def _sum_terms(operands, tangent_at):
    """``(inputs, tangents)`` of a ``multilinear_sum``: the product's operands at each
    tangent."""
    n = len(operands) - len(tangent_at)
    inputs, tans = list(operands[:n]), operands[n:]
    return inputs, [[t if i == j else x for i, x in enumerate(inputs)]
                    for j, t in zip(tangent_at, tans, strict=True)]


def _sum_expanded(fns: Multilinear, tangent_at: tuple[int, ...]):
    def f(*operands):
        return _total(multilinear(fns, *ops) for ops in _sum_terms(operands, tangent_at)[1])
    return f


def _sum_impl(*operands, fns: Multilinear, tangent_at: tuple[int, ...]):
    return _sum_expanded(fns, tangent_at)(*operands)


def _sum_abstract(*operands, fns: Multilinear, tangent_at: tuple[int, ...]):
    inputs, _ = _sum_terms(operands, tangent_at)
    for j, t in zip(tangent_at, operands[len(inputs):], strict=True):
        if t.shape != inputs[j].shape or t.dtype != inputs[j].dtype:
            raise ValueError(f"multilinear_sum: the tangent of input {j} is {t.dtype}"
                             f"{list(t.shape)}, its input {inputs[j].dtype}"
                             f"{list(inputs[j].shape)}")
    return _abstract(*inputs, fns=fns, slot=len(fns.slots) - 1)


def _sum_jvp(primals, tangents, *, fns: Multilinear, tangent_at: tuple[int, ...]):
    out = multilinear_sum_p.bind(*primals, fns=fns, tangent_at=tangent_at)
    _, terms = _sum_terms(primals, tangent_at)
    _, dterms = _sum_terms(tangents, tangent_at)
    parts = [t for t in (_tangent(ops, dops, fns, len(fns.slots) - 1)
                         for ops, dops in zip(terms, dterms, strict=True)) if t is not None]
    return out, _total(parts) if parts else _zero(out)


def _sum_transpose(ct, *operands, fns: Multilinear, tangent_at: tuple[int, ...]):
    """Linear in the tangents only: their cotangents in one ``multilinear_joint`` call."""
    n = len(operands) - len(tangent_at)
    inputs = operands[:n]
    if any(ad.is_undefined_primal(x) for x in inputs):
        raise NotImplementedError("multilinear_sum: transposed in its tangents only")
    undefined = [ad.is_undefined_primal(t) for t in operands[n:]]
    need = tuple(any(j == i and u for j, u in zip(tangent_at, undefined, strict=True))
                 for i in range(n))
    res: list = [None] * len(operands)
    if type(ct) is ad.Zero:
        for k, u in enumerate(undefined):
            if u:
                res[n + k] = ad.Zero(operands[n + k].aval)
        return res
    grads = iter(multilinear_joint_p.bind(*inputs, ct, fns=fns, need=need))
    for k, u in enumerate(undefined):
        if u:
            res[n + k] = next(grads)
    return res


def _joint_impl(*operands, fns: Multilinear, need: tuple[bool, ...]):
    return list(fns.joint(*operands, need=need))


def _joint_abstract(*operands, fns: Multilinear, need: tuple[bool, ...]):
    return [_abstract(*_without(operands, i), fns=fns, slot=i)
            for i in range(len(need)) if need[i]]


def _joint_jvp(primals, tangents, *, fns: Multilinear, need: tuple[bool, ...]):
    """Along the inputs: one ``multilinear_dual`` where ``joint_dual`` exists; along the
    cotangent (and otherwise): the separate functions."""
    outs = multilinear_joint_p.bind(*primals, fns=fns, need=need)
    n = len(need)
    dual = None
    along = [j for j in range(n) if type(tangents[j]) is not ad.Zero]
    if fns.joint_dual is not None and len(along) == 1:
        # one direction: the joint at the substituted input (a dual pass does more work)
        dual = _substituted(fns, primals, along[0], tangents[along[0]], need)
        tangents = [_zero(p) for p in primals[:n]] + [tangents[n]]
    elif fns.joint_dual is not None and along:
        v = [ad.instantiate_zeros(t) for t in tangents[:n]]
        dual = multilinear_dual_p.bind(*primals, *v, fns=fns, need=need)
        tangents = [_zero(p) for p in primals[:n]] + [tangents[n]]
    touts = []
    for k, (out, i) in enumerate(zip(outs, [i for i in range(n) if need[i]], strict=True)):
        t = _tangent(_without(primals, i), _without(tangents, i), fns, i)
        if dual is not None and dual[k] is not None:
            t = dual[k] if t is None else dual[k] + t
        touts.append(_zero(out) if t is None else t)
    return outs, touts


# -- the joint transposes' derivative along the inputs: H v ------------------------------------

multilinear_dual_p = Primitive("tp_jax_multilinear_dual")
multilinear_dual_p.multiple_results = True


def _dual_split(operands, need):
    n = len(need)
    return operands[:n + 1], operands[n + 1:]  # (inputs and ct, directions)


def _dual_expanded(fns: Multilinear, need: tuple[bool, ...]):
    """``H v`` as separate primitives (:func:`dual_terms`)."""
    return lambda *operands: dual_terms(_primitives(fns), operands, need)


def _dual_impl(*operands, fns: Multilinear, need: tuple[bool, ...]):
    prim, v = _dual_split(operands, need)
    return list(fns.joint_dual(*prim, *v, need=need))


def _dual_abstract(*operands, fns: Multilinear, need: tuple[bool, ...]):
    prim, v = _dual_split(operands, need)
    for j, (x, t) in enumerate(zip(prim, v, strict=False)):
        if t.shape != x.shape or t.dtype != x.dtype:
            raise ValueError(f"multilinear_dual: the direction of input {j} is {t.dtype}"
                             f"{list(t.shape)}, its input {x.dtype}{list(x.shape)}")
    return _joint_abstract(*prim, fns=fns, need=need)


def _dual_jvp(primals, tangents, *, fns: Multilinear, need: tuple[bool, ...]):
    tangents = [ad.instantiate_zeros(t) for t in tangents]
    return jax.jvp(_dual_expanded(fns, need), primals, tangents)


def _dual_transpose(cts, *operands, fns: Multilinear, need: tuple[bool, ...]):
    """Linear in the directions; ``H`` is symmetric: the cotangents of the directions are
    ``H c`` (``c``: the results' cotangents at the inputs they belong to, zero elsewhere)."""
    prim, v = _dual_split(operands, need)
    if any(ad.is_undefined_primal(x) for x in prim):
        raise NotImplementedError("multilinear_dual: transposed in its directions only")
    cts = list(cts)
    want = tuple(ad.is_undefined_primal(t) for t in v)
    res: list = [None] * len(operands)
    if not any(want):
        return res
    given = [i for i, k in zip([i for i in range(len(need)) if need[i]], cts, strict=True)
             if type(k) is not ad.Zero]
    if not given:
        for j, u in enumerate(want):
            if u:
                res[len(prim) + j] = ad.Zero(v[j].aval)
        return res
    if len(given) == 1:  # one cotangent: the joint at the substituted input
        i = given[0]
        got = iter(_substituted(fns, prim, i, cts[[k for k in range(len(need)) if need[k]]
                                                  .index(i)], want))
        for j, u in enumerate(want):
            if u:
                g = next(got)
                res[len(prim) + j] = ad.Zero(v[j].aval) if g is None else g
        return res
    cts = iter(cts)
    c = [ad.instantiate_zeros(next(cts)) if need[i] else jnp.zeros(jnp.shape(x), x.dtype)
         for i, x in enumerate(prim[:len(need)])]
    got = iter(multilinear_dual_p.bind(*prim, *c, fns=fns, need=want))
    for j, u in enumerate(want):
        if u:
            res[len(prim) + j] = next(got)
    return res


def _need_dce(used_outs: list[bool], eqn):
    """Dead-code elimination of a joint or dual call: only the results still used are
    computed (a force is the gradient in one input: the others' kernels never run)."""
    if not any(used_outs):
        return [False] * len(eqn.invars), None
    need = eqn.params["need"]
    used = iter(used_outs)
    kept = tuple(bool(n and next(used)) for n in need)
    if kept == need:
        return [True] * len(eqn.invars), eqn
    outvars = [v for v, u in zip(eqn.outvars, used_outs, strict=True) if u]
    return [True] * len(eqn.invars), eqn.replace(params={**eqn.params, "need": kept},
                                                 outvars=outvars)


pe.dce_rules[multilinear_joint_p] = _need_dce
pe.dce_rules[multilinear_dual_p] = _need_dce

multilinear_dual_p.def_impl(_dual_impl)
multilinear_dual_p.def_abstract_eval(_dual_abstract)
ad.primitive_jvps[multilinear_dual_p] = _dual_jvp
ad.primitive_transposes[multilinear_dual_p] = _dual_transpose
batching.primitive_batchers[multilinear_dual_p] = _vmapped(_dual_expanded)
mlir.register_lowering(multilinear_dual_p, _lowering(_dual_impl, multiple_results=True))


def _joint_expanded(fns: Multilinear, need: tuple[bool, ...]):
    """The joint transpose as separate primitives (:func:`joint_terms`)."""
    return lambda *operands: joint_terms(_primitives(fns), operands, need)


multilinear_sum_p.def_impl(_sum_impl)
multilinear_sum_p.def_abstract_eval(_sum_abstract)
ad.primitive_jvps[multilinear_sum_p] = _sum_jvp
ad.primitive_transposes[multilinear_sum_p] = _sum_transpose
batching.primitive_batchers[multilinear_sum_p] = _vmapped(_sum_expanded)
mlir.register_lowering(multilinear_sum_p, _lowering(_sum_impl, multiple_results=False))

multilinear_joint_p.def_impl(_joint_impl)
multilinear_joint_p.def_abstract_eval(_joint_abstract)
ad.primitive_jvps[multilinear_joint_p] = _joint_jvp
batching.primitive_batchers[multilinear_joint_p] = _vmapped(_joint_expanded)
mlir.register_lowering(multilinear_joint_p, _lowering(_joint_impl, multiple_results=True))

multilinear_p.def_impl(_impl)
multilinear_p.def_abstract_eval(_abstract)
ad.primitive_jvps[multilinear_p] = _jvp
ad.primitive_transposes[multilinear_p] = _transpose
batching.primitive_batchers[multilinear_p] = _batch
mlir.register_lowering(multilinear_p, _lowering(_impl, multiple_results=False))
