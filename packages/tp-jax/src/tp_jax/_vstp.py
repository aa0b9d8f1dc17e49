"""Vector-signal tensor product executor of the ``grid`` plan (:mod:`tp_spec.plan.vstp`: the
folded field, projection and scalar tables, gathers, weight layout).

Per channel: one GEMM takes the nonscalar features of each input to the Cartesian components
of its two vector fields (``P = +1, -1``) at the grid points, the four pointwise cross
products sum into the output fields ``H_{+1}, H_{-1}``, one GEMM projects them onto the
output features; the scalar blocks multiply as a CGTP. A large batch runs through
``lax.map`` in ``jax.checkpoint``ed chunks of :meth:`VSTPGridPlan.chunk_rows` rows, as GTP's
grid does.

NaN and inf: every grid point mixes every nonscalar coefficient of its input, so a non-finite
nonscalar input entry may reach every nonscalar-fed output of its sample (docs/numerics.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from tp_spec.plan.vstp import VSTPGridPlan, cross_last3

from ._channels import finish, with_zero_column
from ._gtp import scale_inputs
from ._mtp import chunked
from ._ops import const, einsum, ix

__all__ = ["RUNNERS", "run_grid"]


def _fields(p: VSTPGridPlan, x: jax.Array, index, table) -> tuple[jax.Array, jax.Array]:
    """``x (N, dim + 1)`` -> per ``P``: ``(N, ch, 3, npts)``."""
    ch = index.shape[0]
    f = einsum("ncf,fk->nck", x[:, ix(index)], const(table, x.dtype))
    f = f.reshape(x.shape[0], ch, 2, 3, p.npts)
    return f[:, :, 0], f[:, :, 1]


def _product(p: VSTPGridPlan, x1: jax.Array, x2: jax.Array) -> jax.Array:
    """Weighted inputs ``(N, dim1)``, ``(N, dim2)`` -> ``(N, dim_out)``."""
    n, dt = x1.shape[0], x1.dtype
    x1, x2 = with_zero_column(x1), with_zero_column(x2)
    z = jnp.zeros((n, p.channels, p.n_out), dt)
    if p.vector:
        a_plus, a_minus = _fields(p, x1, p.index1, p.to_grid1)
        b_plus, b_minus = _fields(p, x2, p.index2, p.to_grid2)
        # one x2 channel broadcasts over C
        h_plus = cross_last3(a_plus, b_plus, jnp) + cross_last3(a_minus, b_minus, jnp)
        h_minus = cross_last3(a_plus, b_minus, jnp) + cross_last3(a_minus, b_plus, jnp)
        h = jnp.stack([h_plus, h_minus], axis=2).reshape(n, p.channels, 6 * p.npts)
        z = z + einsum("nck,kf->ncf", h, const(p.project, dt))
    if p.scalar:
        s1, s2 = x1[:, ix(p.scalar_index1)], x2[:, ix(p.scalar_index2)]  # (N, C or C2, 2)
        se = s1[..., 0] * s2[..., 0] + s1[..., 1] * s2[..., 1]
        so = s1[..., 0] * s2[..., 1] + s1[..., 1] * s2[..., 0]
        z = z + einsum("ncs,sf->ncf", jnp.stack([se, so], axis=-1), const(p.scalar_out, dt))
    return z.reshape(n, p.channels * p.n_out)[:, ix(p.out_index)]


def run_grid(p: VSTPGridPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None) -> jax.Array:
    """``grid``: flat inputs of the compute dtype -> ``(N, dim_out)``."""
    if not p.active:
        return jnp.zeros((x1.shape[0], p.descriptor.irreps_out.dim), x1.dtype)
    x1, x2, mult = scale_inputs(p, x1, x2, w)
    rows = p.chunk_rows(x1.shape[0])

    def core(a: jax.Array, b: jax.Array) -> jax.Array:
        return _product(p, a, b)

    out = core(x1, x2) if rows is None else chunked(jax.checkpoint(core), x1, x2, rows)
    return finish(out, mult)


#: tp_spec plan type -> runner.
RUNNERS = {VSTPGridPlan: run_grid}
