"""GTP methods: ``grid`` (separable S2 grid), ``fourier`` (exact 2D Fourier tables), ``s2fft``.

Each input splits into its parity classes ``p * (-1)**l`` (one function on the sphere per class
and channel); the output class ``q`` collects the products of the class pairs ``q1 * q2 = q``.
Per-degree weights scale the input and output blocks per channel.

``grid``: one Gauss-Legendre x uniform grid exact for the whole descriptor
(:meth:`tp_spec.GTPDescriptor.grid_shape`). The Legendre step is per order ``m`` (a batched
GEMM over ``m`` with the degrees ``l >= |m|`` padded to ``L + 1``, O(L^3)), the phi step a real
DFT GEMM; pointwise products; then the transposed steps with quadrature weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import tp_spec
from tp_spec.gtp import GTPDescriptor, parity_class
from tp_spec.s2grid import S2Grid, legendre_matrices, phi_matrix

from ._ops import const, einsum, ix
from ._channels import (
    ChannelLayout,
    block_index,
    channel_layout,
    finish,
    scale_inputs,
    with_zero_column,
)


def _gtp_available(d) -> str | None:
    if not isinstance(d, GTPDescriptor):
        return f"not a GTP descriptor ({type(d).__name__})"
    return None


def _classes(irreps: tp_spec.Irreps) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {1: [], -1: []}
    for i, (_, ir) in enumerate(irreps):
        out[parity_class(ir)].append(i)
    return {q: v for q, v in out.items() if v}


def _padded_rows(lmax: int) -> list[tuple[int, int]]:
    """Rows ``(l, m)`` of the per-order layout ``(2L+1, L+1)``: ``l = |m| + j``."""
    return [(abs(m) + j, m) for m in range(-lmax, lmax + 1) for j in range(lmax + 1)]


def _standard_rows(lmax: int) -> list[tuple[int, int]]:
    return [(l, m) for l in range(lmax + 1) for m in range(-l, l + 1)]


def _out_index(d: GTPDescriptor, class_rows: dict[int, list[tuple[int, int]]],
               order: list[int]) -> np.ndarray:
    """Gather index: output feature -> position in concat over classes of ``(N, rows, C)``."""
    c = d.channels
    base, pos = 0, {}
    for q in order:
        pos[q] = (base, {r: k for k, r in enumerate(class_rows[q])})
        base += len(class_rows[q]) * c
    idx = []
    for mul, ir in d.irreps_out:
        q = parity_class(ir)
        b, rows = pos[q]
        for ch in range(mul):
            for m in range(-ir.l, ir.l + 1):
                idx.append(b + rows[(ir.l, m)] * c + ch)
    return np.array(idx, dtype=np.int64)


@dataclass
class _GTPPlan:
    d: GTPDescriptor
    layout: ChannelLayout
    idx1: dict[int, np.ndarray] = field(default_factory=dict)  # class -> gather index
    idx2: dict[int, np.ndarray] = field(default_factory=dict)
    pairs: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # out class -> pairs
    out_order: list[int] = field(default_factory=list)
    out_index: np.ndarray | None = None
    consts: dict[str, np.ndarray] = field(default_factory=dict)


def _common(d: GTPDescriptor, rows_in, rows_out) -> _GTPPlan:
    plan = _GTPPlan(d, channel_layout(d))
    l1, l2 = d.irreps_in1.lmax, d.irreps_in2.lmax
    c1, c2, co = _classes(d.irreps_in1), _classes(d.irreps_in2), _classes(d.irreps_out)
    for q, blocks in c1.items():
        plan.idx1[q] = block_index(d.irreps_in1, blocks, rows_in(l1), d.channels,
                                   d.irreps_in1.dim)
    for q, blocks in c2.items():
        plan.idx2[q] = block_index(d.irreps_in2, blocks, rows_in(l2), d.channels_in2,
                                   d.irreps_in2.dim)
    for q in co:
        pr = [(q1, q2) for q1 in c1 for q2 in c2 if q1 * q2 == q]
        if pr:
            plan.pairs[q] = pr
    plan.out_order = [q for q in (1, -1) if q in co]
    lo = d.irreps_out.lmax if len(d.irreps_out) else 0
    plan.out_index = _out_index(d, {q: rows_out(lo) for q in plan.out_order}, plan.out_order)
    return plan


def _gather(xe: jax.Array, idx: np.ndarray) -> jax.Array:
    return xe[:, ix(idx)]  # (N, rows, C)


def _output(plan: _GTPPlan, per_class: dict[int, jax.Array], n: int, dt, mult) -> jax.Array:
    """``per_class[q]``: ``(N, rows, C)`` (absent: zero) -> ``(N, dim_out)``."""
    d = plan.d
    if not plan.out_order:
        return jnp.zeros((n, 0), dt)
    parts = []
    lo = d.irreps_out.lmax
    for q in plan.out_order:
        z = per_class.get(q)
        rows = plan.consts["n_out_rows"] if "n_out_rows" in plan.consts else (lo + 1) ** 2
        parts.append(jnp.zeros((n, int(rows) * d.channels), dt) if z is None
                     else z.reshape(n, -1))
    cat = jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    return finish(cat[:, ix(plan.out_index)], mult)


# ----------------------------------------------------------------------------- grid


def _build_grid(d: GTPDescriptor) -> _GTPPlan:
    plan = _common(d, _padded_rows, _padded_rows)
    l1, l2 = d.irreps_in1.lmax, d.irreps_in2.lmax
    lo = d.irreps_out.lmax if len(d.irreps_out) else 0
    grid = S2Grid.gauss_legendre(*d.grid_shape())

    def padded_to(lmax: int) -> np.ndarray:
        pl = legendre_matrices(lmax, grid, "component", "to_grid")
        p = np.zeros((2 * lmax + 1, lmax + 1, grid.n_theta))
        for m in range(-lmax, lmax + 1):
            p[m + lmax, : lmax + 1 - abs(m)] = pl[abs(m)]
        return p

    pf = legendre_matrices(lo, grid, "component", "from_grid")
    pfp = np.zeros((2 * lo + 1, grid.n_theta, lo + 1))
    for m in range(-lo, lo + 1):
        pfp[m + lo, :, : lo + 1 - abs(m)] = pf[abs(m)]
    plan.consts = {
        "P1": padded_to(l1), "T1": phi_matrix(l1, grid, "to_grid"),
        "P2": padded_to(l2), "T2": phi_matrix(l2, grid, "to_grid"),
        "PF": pfp, "TF": phi_matrix(lo, grid, "from_grid"),
        "n_out_rows": np.array((2 * lo + 1) * (lo + 1)),
    }
    return plan


def _to_grid(x: jax.Array, lmax: int, p: jax.Array, t: jax.Array) -> jax.Array:
    """``x (N, (2L+1)(L+1), C)`` -> grid values ``(n_theta, n_phi, N, C)``."""
    n, _, c = x.shape
    x = x.reshape(n, 2 * lmax + 1, lmax + 1, c)
    a = einsum("mji,nmjc->minc", p, x)
    return einsum("minc,mp->ipnc", a, t)


def _from_grid(g: jax.Array, pf: jax.Array, tf: jax.Array) -> jax.Array:
    """Grid values ``(n_theta, n_phi, N, C)`` -> ``(N, (2Lo+1)(Lo+1), C)``."""
    b = einsum("ipnc,pm->minc", g, tf)
    z = einsum("minc,mij->nmjc", b, pf)
    return z.reshape(z.shape[0], -1, z.shape[-1])


def _run_grid(plan: _GTPPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    d, n, dt = plan.d, x1.shape[0], x1.dtype
    x1, x2, mult = scale_inputs(plan.layout, x1, x2, w)
    x1e, x2e = with_zero_column(x1), with_zero_column(x2)
    k = {name: const(v, dt) for name, v in plan.consts.items() if name != "n_out_rows"}
    l1, l2 = d.irreps_in1.lmax, d.irreps_in2.lmax
    g1 = {q: _to_grid(_gather(x1e, i), l1, k["P1"], k["T1"]) for q, i in plan.idx1.items()}
    g2 = {q: _to_grid(_gather(x2e, i), l2, k["P2"], k["T2"]) for q, i in plan.idx2.items()}
    per_class = {}
    for q, pairs in plan.pairs.items():
        h = None
        for q1, q2 in pairs:
            prod = g1[q1] * g2[q2]  # x2 with one channel broadcasts over C
            h = prod if h is None else h + prod
        per_class[q] = _from_grid(h, k["PF"], k["TF"])
    return _output(plan, per_class, n, dt, mult)


# ----------------------------------------------------------------------------- fourier


def _build_fourier(d: GTPDescriptor) -> _GTPPlan:
    from tp_spec.fourier import fourier_to_sh, sh_to_fourier

    plan = _common(d, _standard_rows, _standard_rows)
    l1, l2 = d.irreps_in1.lmax, d.irreps_in2.lmax
    lo = d.irreps_out.lmax if len(d.irreps_out) else 0
    plan.consts = {
        "S1": sh_to_fourier(l1).to_dense(),
        "S2": sh_to_fourier(l2).to_dense(),
        "PR": fourier_to_sh(lo, l1 + l2).to_dense(),
        "n_out_rows": np.array((lo + 1) ** 2),
    }
    return plan


def _run_fourier(plan: _GTPPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None):
    d, n, dt = plan.d, x1.shape[0], x1.dtype
    cdt = jnp.complex128 if dt == jnp.float64 else jnp.complex64
    x1, x2, mult = scale_inputs(plan.layout, x1, x2, w)
    x1e, x2e = with_zero_column(x1), with_zero_column(x2)
    s1 = jnp.asarray(plan.consts["S1"].astype(cdt))
    s2 = jnp.asarray(plan.consts["S2"].astype(cdt))
    pr = jnp.asarray(plan.consts["PR"].astype(cdt))
    size = 2 * (d.irreps_in1.lmax + d.irreps_in2.lmax) + 1

    def spectrum(x: jax.Array, table: jax.Array) -> jax.Array:
        f = einsum("nsc,suv->ncuv", x.astype(cdt), table)
        return jnp.fft.fft2(f, s=(size, size))

    f1 = {q: spectrum(_gather(x1e, i), s1) for q, i in plan.idx1.items()}
    f2 = {q: spectrum(_gather(x2e, i), s2) for q, i in plan.idx2.items()}
    per_class = {}
    for q, pairs in plan.pairs.items():
        h = None
        for q1, q2 in pairs:
            prod = f1[q1] * f2[q2]
            h = prod if h is None else h + prod
        g = jnp.fft.ifft2(h)
        per_class[q] = einsum("ncuv,suv->nsc", g, pr).real.astype(dt)
    return _output(plan, per_class, n, dt, mult)


#: Methods not yet executed from a tp_spec plan: name -> ``(build(d), run(state, x1, x2, w))``.
BUILDERS = {
    "grid": (_build_grid, _run_grid),
    "fourier": (_build_fourier, _run_fourier),
}
