"""The ``"scalar"`` regime's product with no weights or with shared weights on every path (the
full, elementwise and fully connected single-channel CGTP) as a :mod:`tp_jax._multilinear`
primitive whose functions are, on CPU, XLA FFI calls (:mod:`tp_jax._cpu_ffi`) of the compiled
coupling kernels (:class:`tp_kernels.coupling.CouplingKernels`: one pass over the rows, the
plan's nonzero coupling entries as data); elsewhere (GPUs, ``jax.export``, and everywhere with
``TP_JAX_CPU_KERNELS=0``) the XLA code of :mod:`tp_jax._scalar` and JAX's transposes of it.

Shared weights enter as the entries' coefficients ``value[e] w[widx[e]]`` (a gather of the
entries, in XLA); the kernels' entry gradient ``ge`` maps back to the weights as the sum of
``value[e] ge[e]`` per weight. A backward pass that asks for several gradients is one kernel
call (the primitive's joint transpose).

One thread, AMD EPYC, MIMO, batch 10,000, float32, forward / backward (the ``speed-1thread``
record), against the XLA code in earlier runs of the same harness: full CGTP L = 2 0.77 / 1.1 ms
(XLA 1.1-2.2 / 3.7-4.8), L = 6 49 / 45 ms (XLA 87-97 / 255-290); fully connected L = 6 23 /
54 ms (XLA 24-27 / 140-505).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import tp_kernels
from tp_kernels.coupling import CouplingKernels
from tp_spec.plan.fused import ScalarPlan

from . import _cpu_ffi
from ._multilinear import Multilinear, Slot, multilinear
from ._ops import const, ix

__all__ = ["applies", "primitive", "run"]


def applies(plan: ScalarPlan, dtype, w: jax.Array | None) -> bool:
    """Whether :func:`run` runs the product: float32 / float64, no weights or shared weights
    on every path."""
    d = plan.descriptor
    if w is not None and (w.ndim != 1 or not all(p.has_weight for p in d.paths)):
        return False
    return jnp.dtype(dtype) in (jnp.float32, jnp.float64) and bool(d.paths)


class _Calls:
    """The kernels' FFI targets for one plan and dtype (registered on first trace): ``fwd``
    ``(x1, x2, c) -> out`` and, per subset ``need`` of ``(x1, x2, entries)``, ``joint<mask>``
    ``(x1, x2, c, ct) -> the gradients in need`` (a gradient's own input is not read: the
    call passes the result there)."""

    def __init__(self, plan: ScalarPlan, dt) -> None:
        d = plan.descriptor
        self.dims = (d.irreps_in1.dim, d.irreps_in2.dim, d.irreps_out.dim)
        self.k = k = CouplingKernels(plan.coupling, self.dims,
                                     plan.tuning.kernel_thread_min_rows)
        k.prepare()
        self.dt, self.n = dt, k.n
        cp = plan.coupling
        key = f"{self.dims}|{cp.i.tobytes()}{cp.j.tobytes()}{cp.k.tobytes()}|{dt}"
        tag = hashlib.sha1(key.encode()).hexdigest()[:16]

        def fwd(x1, x2, c, out):
            k.forward(x1, x2, c, _cpu_ffi.num_threads(), out=out)

        def joint(need):
            def fn(*arrays):
                ops, res = arrays[:-sum(need)], iter(arrays[-sum(need):])
                outs = tuple(next(res) if n else None for n in need)
                ops = list(ops)
                # a gradient not asked for reads no input of its own: the results stand in
                x1 = ops.pop(0) if _reads(need)[0] else outs[0]
                x2 = ops.pop(0) if _reads(need)[1] else outs[1]
                k.backward(x1, x2, *ops, need, _cpu_ffi.num_threads(), out=outs)
            return fn

        self.names = {"fwd": _cpu_ffi.register(f"tp_jax_cp_{tag}_fwd", fwd)}
        for need in itertools.product((False, True), repeat=3):
            if any(need):
                mask = "".join("1" if n else "0" for n in need)
                self.names[need] = _cpu_ffi.register(f"tp_jax_cp_{tag}_joint{mask}",
                                                     joint(need))

    def forward(self, x1, x2, c):
        (out,) = _cpu_ffi.call(self.names["fwd"],
                               [jax.ShapeDtypeStruct((x1.shape[0], self.dims[2]), self.dt)],
                               x1, x2, c)
        return out

    def grads(self, x1, x2, c, ct, need):
        """The gradients in ``need`` (of ``x1, x2, entries``); ``x1`` / ``x2`` may be None
        where :func:`_reads` says they are not read."""
        shapes = [(ct.shape[0], self.dims[0]), (ct.shape[0], self.dims[1]), (self.n,)]
        res = [jax.ShapeDtypeStruct(s, self.dt) for s, n in zip(shapes, need, strict=True) if n]
        ops = [x for x, r in zip((x1, x2), _reads(need), strict=True) if r]
        return _cpu_ffi.call(self.names[tuple(need)], res, *ops, c, ct)


def _reads(need: tuple[bool, ...]) -> tuple[bool, bool]:
    """Whether the gradients in ``need`` (of ``x1, x2, entries``) read ``x1`` and ``x2``: x2's
    and the entries' read ``x1``, x1's and the entries' read ``x2``."""
    return bool(need[1] or need[2]), bool(need[0] or need[2])


def run(plan: ScalarPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None,
        xla: Callable) -> jax.Array:
    """The product; ``xla(plan, x1, x2, w)``: the XLA code of the same product, the lowering
    off the CPU (the kernels range-scale the pair products themselves)."""
    kernels = tp_kernels.available("TP_JAX_CPU_KERNELS")  # read when traced
    fns = primitive(plan, jnp.dtype(x1.dtype), w is not None, xla, kernels)
    return multilinear(fns, x1, x2) if w is None else multilinear(fns, x1, x2, w)


@lru_cache(maxsize=128)
def primitive(plan: ScalarPlan, dt, weighted: bool, xla: Callable, kernels: bool
              ) -> Multilinear:
    """The product as a :mod:`tp_jax._multilinear` primitive: slots ``x1, x2[, w], out``
    (``w`` shared, every path weighted); with ``kernels``, on CPU the compiled kernels; else,
    and on other platforms, ``xla`` and JAX's transposes of it."""
    d = plan.descriptor
    dims, numel = (d.irreps_in1.dim, d.irreps_in2.dim, d.irreps_out.dim), d.weight_numel
    values, widx = plan.coupling.value, plan.coupling.widx

    def coef(w=None):
        c = const(values, dt)
        return c if w is None else c * w[ix(widx)]

    def weight_grad(ge):
        return jnp.zeros((numel,), dt).at[ix(widx)].add(const(values, dt) * ge)

    # the XLA code: the product and JAX's transposes of it, one input at a time
    def product_xla(x1, x2, w=None):
        return xla(plan, x1, x2, w)

    def transpose_xla(i, *ops):
        *others, ct = ops
        shape = jax.ShapeDtypeStruct((ct.shape[0], dims[i]) if i < 2 else (numel,), dt)

        def f(x):
            args = list(others)
            args.insert(i, x)
            return product_xla(*args)
        return jax.linear_transpose(f, shape)(ct)[0]

    n_in = 3 if weighted else 2
    xla_fns = (*(partial(transpose_xla, i) for i in range(n_in)), product_xla)

    def xla_joint(*ops, need):
        """JAX's reverse mode of the XLA product along the inputs in ``need``, together (one
        transposed pass over the chunks, not one per input)."""
        *inputs, ct = ops
        idx = [i for i in range(n_in) if need[i]]

        def f(*xs):
            args = list(inputs)
            for i, x in zip(idx, xs, strict=True):
                args[i] = x
            return product_xla(*args)
        return tuple(jax.vjp(f, *(inputs[i] for i in idx))[1](ct))

    slots = [Slot(dims[0]), Slot(dims[1])] + ([Slot(numel, None)] if weighted else [])
    slots = (*slots, Slot(dims[2]))
    if not kernels:
        return Multilinear(fns=xla_fns, slots=slots, joint=xla_joint)
    calls = _Calls(plan, dt)

    # the kernels
    def grads_k(x1, x2, w, ct, need):
        need3 = (need[0], need[1], bool(weighted and need[2]))
        res = list(calls.grads(x1, x2, coef(w), ct, need3))
        if need3[2]:
            res[-1] = weight_grad(res[-1])
        return tuple(res)

    if weighted:
        k_fns = (lambda x2, w, ct: grads_k(None, x2, w, ct, (True, False, False))[0],
                 lambda x1, w, ct: grads_k(x1, None, w, ct, (False, True, False))[0],
                 lambda x1, x2, ct: grads_k(x1, x2, None, ct, (False, False, True))[0],
                 lambda x1, x2, w: calls.forward(x1, x2, coef(w)))
    else:
        k_fns = (lambda x2, ct: grads_k(None, x2, None, ct, (True, False, False))[0],
                 lambda x1, ct: grads_k(x1, None, None, ct, (False, True, False))[0],
                 lambda x1, x2: calls.forward(x1, x2, coef()))

    def joint(*operands, need):
        """The gradients in ``need``: one kernel call on CPU, the transposes elsewhere."""
        def kernel(*ops):
            x1, x2, *w, ct = ops
            return grads_k(x1, x2, w[0] if w else None, ct, (*need, False)[:3])

        return _cpu_ffi.on_cpu(kernel, partial(xla_joint, need=need))(*operands)

    fns = tuple(_cpu_ffi.on_cpu(k, x) for k, x in zip(k_fns, xla_fns, strict=True))
    return Multilinear(fns=fns, slots=slots, joint=joint)
