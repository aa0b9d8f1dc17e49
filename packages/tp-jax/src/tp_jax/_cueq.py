"""CGTP method ``cueq``: execution through cuEquivariance-JAX (optional extra ``cueq``).

The descriptor becomes one segmented polynomial per connection mode
(:func:`tp_spec.plan.cueq.cueq_groups`: our ``mul_ir`` layout, exact tp_spec coefficients, ones
for unweighted paths), so the result equals the reference up to summation order. Each runs with
``cuex.segmented_polynomial(..., method="naive")`` (pure JAX, any platform); on NVIDIA GPUs with
``cuequivariance-ops-jax`` installed other methods exist but are not used here.
"""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
from tp_spec.plan.cueq import CueqGroup, cueq_groups, cueq_unsupported_reason, group_weights

__all__ = ["ADAPTER"]


def _available(d) -> str | None:
    reason = cueq_unsupported_reason(d)
    if reason is None:
        for mod in ("cuequivariance", "cuequivariance_jax"):
            if importlib.util.find_spec(mod) is None:
                return f"{mod} is not installed (pip install 'tp-jax[cueq]')"
    return reason


def _build(d) -> tuple[object, tuple[CueqGroup, ...]]:
    import cuequivariance as cue

    return d, cueq_groups(d, cue)


def _run(state, x1: jax.Array, x2: jax.Array, w: jax.Array | None) -> jax.Array:
    import cuequivariance_jax as cuex

    d, groups = state
    n, dt = x1.shape[0], x1.dtype
    lead = (n,) if w is not None and w.ndim == 2 else ()
    out = jnp.zeros((n, d.irreps_out.dim), dt)
    for g in groups:
        wg = group_weights(g, w, lambda k: jnp.ones(lead + (k,), dt),
                           lambda parts: jnp.concatenate(parts, axis=-1))
        [res] = cuex.segmented_polynomial(
            g.polynomial, [wg, x1, x2], [jax.ShapeDtypeStruct((n, d.irreps_out.dim), dt)],
            method="naive", options={"math_dtype": jnp.dtype(dt).name},
        )
        out = out + res
    return out


#: The adapter: ``(available(d), build(d), run(state, x1, x2, w))``.
ADAPTER = (_available, _build, _run)
