"""GTP executors of the ``grid`` and ``fourier`` plans (:mod:`tp_spec.plan.gtp`: classes,
degrees, grid, tables, gathers, weight layout), and the class helpers the ``s2fft`` adapter
shares.

Each input is gathered per parity class (one function on the sphere per class and channel);
the output class collects the products of its class pairs. Per-degree weights scale the input
and output blocks per channel.

``grid``: the Legendre step per order ``m`` is a batched GEMM over ``m`` (the degrees padded to
``L + 1``, O(L^3)), the phi step a real DFT GEMM; pointwise products; then the transposed steps
with quadrature weights; a large batch in ``lax.map`` chunks of ``GTPPlan.chunk_rows`` rows
(each chunk's grids stay in cache). Its derivatives are the product's own transposes, run as
forward transforms with the transposed tables (:func:`_grid_core`, a
:mod:`tp_jax._multilinear` primitive). ``fourier``: the plan's dense
SH -> Fourier table as one real GEMM onto ``[Re | Im]`` of the spectrum, a 2D FFT
convolution, the projection back as one real GEMM from ``[Re | Im]``.

NaN and inf: every grid point (Fourier coefficient) mixes every coefficient of its parity
class, so a non-finite input entry may reach every output of its sample (docs/numerics.md).
"""

from __future__ import annotations

from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
from tp_spec.plan.gtp import FourierPlan, GridPlan, GTPPlan

from ._channels import finish, with_zero_column
from ._mtp import chunked
from ._multilinear import Multilinear, Slot, multilinear
from ._ops import const, einsum, ix
from ._rows import col_take

__all__ = ["RUNNERS", "assemble", "gather_classes", "products", "run_fourier", "run_grid",
           "scale_inputs"]


def scale_inputs(p: GTPPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    """Per-degree weights on the inputs; returns ``(x1, x2, output multiplier or None)``."""
    if w is None or p.weight_index1 is None:
        return x1, x2, None
    return (x1 * w[..., ix(p.weight_index1)], x2 * w[..., ix(p.weight_index2)],
            w[..., ix(p.weight_index_out)])


def gather_classes(x: jax.Array, index) -> list[jax.Array]:
    """``x (N, dim)`` -> per class ``x[:, index[k]]`` (``index``'s entry ``dim``: zero)."""
    xe = with_zero_column(x)
    return [xe[:, ix(i)] for i in index]


def _gather_classes_t(x: jax.Array, index) -> list[jax.Array]:
    """:func:`gather_classes` through ``col_take``, for the transposed product: its
    transpose is a gather and a sum where JAX's transpose of an index gather is a
    scatter-add."""
    n, dim = x.shape
    return [col_take(i.reshape(-1), dim)(x).reshape((n,) + i.shape) for i in index]


def products(p: GTPPlan, f1: list[jax.Array], f2: list[jax.Array]) -> list[jax.Array]:
    """Per output class the sum of its class pairs' pointwise products (one ``x2`` channel
    broadcasts over ``C``)."""
    h: list[jax.Array | None] = [None] * len(p.classes_out)
    for k1, k2, ko in p.pairs:
        prod = f1[k1] * f2[k2]
        h[ko] = prod if h[ko] is None else h[ko] + prod
    return h  # type: ignore[return-value]


def assemble(p: GTPPlan, per_class: list[jax.Array], mult: jax.Array | None) -> jax.Array:
    """Per output class ``(N, ...)`` in the plan's product layout -> ``(N, dim_out)``."""
    n = per_class[0].shape[0]
    parts = [z.reshape(n, -1) for z in per_class]
    if p.needs_zero_out:
        parts.append(jnp.zeros((n, 1), parts[0].dtype))
    cat = jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    return finish(cat[:, ix(p.out_index)], mult)


def _assemble_t(p: GTPPlan, per_class: list[jax.Array]) -> jax.Array:
    """:func:`assemble` (no multiplier) through ``col_take`` (see :func:`_gather_classes_t`;
    index ``out_size``, an output no class reaches, is its zero column)."""
    n = per_class[0].shape[0]
    parts = [z.reshape(n, -1) for z in per_class]
    cat = jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    return col_take(p.out_index, p.out_size)(cat)


def _zero(p: GTPPlan, x1: jax.Array) -> jax.Array:
    return jnp.zeros((x1.shape[0], p.descriptor.irreps_out.dim), x1.dtype)


# ----------------------------------------------------------------------------- grid


def _to_grid(x: jax.Array, p: jax.Array, t: jax.Array) -> jax.Array:
    """``x (N, 2L+1, L+1, C)`` -> grid values ``(n_theta, n_phi, N, C)``."""
    a = einsum("mji,nmjc->minc", p, x)
    return einsum("minc,mp->ipnc", a, t)


def _from_grid(g: jax.Array, pf: jax.Array, tf: jax.Array) -> jax.Array:
    """Grid values ``(n_theta, n_phi, N, C)`` -> ``(N, 2Lo+1, Lo+1, C)``."""
    b = einsum("ipnc,pm->minc", g, tf)
    return einsum("minc,mij->nmjc", b, pf)


def run_grid(p: GridPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None) -> jax.Array:
    """``grid``: flat inputs of the compute dtype -> ``(N, dim_out)``. A large batch runs
    through ``lax.map`` in chunks of :meth:`GTPPlan.chunk_rows` rows (its grids stay in cache;
    reverse mode recomputes a chunk's grids instead of keeping them for the whole batch as
    scan residuals)."""
    if not p.active:
        return _zero(p, x1)
    x1, x2, mult = scale_inputs(p, x1, x2, w)
    rows = p.chunk_rows(x1.shape[0])

    core = _grid_core(p)
    out = core(x1, x2) if rows is None else chunked(core, x1, x2, rows)
    return finish(out, mult)


@lru_cache(maxsize=64)
def _grid_core(p: GridPlan):
    """The bilinear grid product ``(x1, x2) -> y`` of one chunk (weights applied outside) as a
    :func:`tp_jax._multilinear.multilinear` with explicit transposes (:func:`_grid_transpose`): the
    transposed transforms run as forward transforms with the transposed tables, in the layouts
    XLA runs the forward in, and the index gathers transpose to gathers, not scatter-adds.
    Its residuals are the inputs: reverse mode recomputes their grids."""
    d = p.descriptor
    fns = Multilinear(
        fns=(lambda x2, ct: _grid_transpose(p, None, x2, ct)[0],
             lambda x1, ct: _grid_transpose(p, x1, None, ct)[1],
             lambda a, b: assemble(p, _grid_product(p, a, b), None)),
        slots=(Slot(d.irreps_in1.dim), Slot(d.irreps_in2.dim), Slot(d.irreps_out.dim)))
    return partial(multilinear, fns)


def _grid_transpose(p: GridPlan, x1: jax.Array | None, x2: jax.Array | None, ct: jax.Array):
    """The transposes of the grid product at ``ct (N, dim_out)``: ``(d <ct, B(x1, x2)> / d x1
    (needs x2), ... / d x2 (needs x1))``, each None where the input it needs is None; the
    output cotangent's grid ``F^T ct`` is computed once for both."""
    dt, n = ct.dtype, ct.shape[0]
    shapes = [jax.ShapeDtypeStruct(s, dt) for s in _out_class_shapes(p, n)]
    ct_y = jax.linear_transpose(lambda *ys: _assemble_t(p, list(ys)), *shapes)(ct)
    pf_t = const(np.ascontiguousarray(p.legendre_out.transpose(0, 2, 1)), dt)
    tf_t = const(np.ascontiguousarray(p.phi_out.T), dt)
    ct_h = [_to_grid(c, pf_t, tf_t) for c in ct_y]  # F^T ct, per output class
    sides = ((p.index1, p.legendre1, p.phi1, p.descriptor.irreps_in1.dim, 0),
             (p.index2, p.legendre2, p.phi2, p.descriptor.irreps_in2.dim, 1))
    grids = [None if x is None else
             [_to_grid(c, const(leg, dt), const(phi, dt)) for c in gather_classes(x, index)]
             for x, (index, leg, phi, _, _) in zip((x1, x2), sides, strict=True)]
    out = []
    for side, (index, leg, phi, dim, pos) in enumerate(sides):
        other = grids[1 - side]
        if other is None:
            out.append(None)
            continue
        ct_g: list[jax.Array | None] = [None] * len(index)
        for pair in p.pairs:
            term = ct_h[pair[2]] * other[pair[1 - pos]]
            k = pair[pos]
            ct_g[k] = term if ct_g[k] is None else ct_g[k] + term
        pg_t = const(np.ascontiguousarray(leg.transpose(0, 2, 1)), dt)
        tg_t = const(np.ascontiguousarray(phi.T), dt)
        ct_c = []
        for k, g in enumerate(ct_g):
            c = index[k].shape[-1]
            if g is None:
                g = jnp.zeros(ct_h[0].shape[:-1] + (c,), dt)
            elif g.shape[-1] != c:  # one x2 channel broadcast over the channels of x1
                g = g.sum(axis=-1, keepdims=True)
            ct_c.append(_from_grid(g, pg_t, tg_t))  # G^T
        x_shape = jax.ShapeDtypeStruct((n, dim), dt)
        out.append(jax.linear_transpose(lambda x, i=index: _gather_classes_t(x, i),
                                        x_shape)(ct_c)[0])
    return tuple(out)


def _out_class_shapes(p: GridPlan, n: int) -> list[tuple[int, ...]]:
    """The per-output-class result shapes of :func:`_grid_product` for ``n`` rows."""
    lo = p.legendre_out.shape
    chans = [p.descriptor.channels] * len(p.classes_out)
    return [(n, lo[0], lo[2], c) for c in chans]


def _grid_product(p: GridPlan, x1: jax.Array, x2: jax.Array) -> list[jax.Array]:
    """Weighted inputs -> per output class ``(N, 2Lo+1, Lo+1, C)``."""
    dt = x1.dtype
    p1, t1 = const(p.legendre1, dt), const(p.phi1, dt)
    p2, t2 = const(p.legendre2, dt), const(p.phi2, dt)
    g1 = [_to_grid(c, p1, t1) for c in gather_classes(x1, p.index1)]
    g2 = [_to_grid(c, p2, t2) for c in gather_classes(x2, p.index2)]
    pf, tf = const(p.legendre_out, dt), const(p.phi_out, dt)
    return [_from_grid(h, pf, tf) for h in products(p, g1, g2)]


# ----------------------------------------------------------------------------- fourier


def run_fourier(p: FourierPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None) -> jax.Array:
    """``fourier``: flat inputs of the compute dtype -> ``(N, dim_out)``."""
    if not p.active:
        return _zero(p, x1)
    dt = x1.dtype
    x1, x2, mult = scale_inputs(p, x1, x2, w)
    size = p.size

    def spectrum(x: jax.Array, table, lmax: int) -> jax.Array:  # (N, C, S) -> (N, C, n, n)
        n = 2 * lmax + 1
        f = einsum("ncs,sk->nck", x, const(table, dt))  # [Re | Im]
        f = jax.lax.complex(f[..., :n * n], f[..., n * n:]).reshape(f.shape[:2] + (n, n))
        return jnp.fft.fft2(f, s=(size, size))

    f1 = [spectrum(c, p.table1, p.lmax1) for c in gather_classes(x1, p.index1)]
    f2 = [spectrum(c, p.table2, p.lmax2) for c in gather_classes(x2, p.index2)]
    pr = const(p.project, dt)
    out = []
    for h in products(p, f1, f2):
        g = jnp.fft.ifft2(h)
        g = g.reshape(g.shape[:2] + (size * size,))
        out.append(einsum("nck,ks->ncs", jnp.concatenate([g.real, g.imag], axis=-1), pr))
    return assemble(p, out, mult)


#: tp_spec plan type -> runner.
RUNNERS = {GridPlan: run_grid, FourierPlan: run_fourier}
