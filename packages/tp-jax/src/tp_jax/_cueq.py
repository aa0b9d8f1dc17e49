"""CGTP method ``cueq``: execution through cuEquivariance-JAX (optional extra ``cueq``).

The descriptor is rewritten as ``cuequivariance`` segmented tensor products, one per connection
mode, with operands in our ``mul_ir`` layout (segments ``(mul, 2l+1)``, subscripts such as
``uvw,ui,vj,wk+ijk``) and path coefficients ``coefficient * C(l1, l2, l3)`` taken from
:func:`tp_spec.clebsch_gordan`, so irreps ordering and layout need no conversion and the result
equals the reference exactly (up to summation order). Unweighted paths get a constant weight
segment of ones. It runs with ``cuex.segmented_polynomial(..., method="naive")`` (pure JAX, any
platform); on NVIDIA GPUs with ``cuequivariance-ops-jax`` installed other methods exist but are
not used here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import tp_spec
from tp_spec import CGTPDescriptor
from tp_spec.descriptor import MODES, segment_subscripts


def _available(d) -> str | None:
    if not isinstance(d, CGTPDescriptor):
        return f"not a CGTP descriptor ({type(d).__name__})"
    for mod in ("cuequivariance", "cuequivariance_jax"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed (pip install 'tp-jax[cueq]')"
    if any(p.mul_in1 * p.mul_in2 * p.mul_out == 0 for p in d.paths):
        return "cuEquivariance cannot express paths with a zero multiplicity"
    return None


@dataclass
class _ModeGroup:
    poly: object  # cue.SegmentedPolynomial
    # weight operand pieces: (source start, stop) in the user weights, or (-1, size) for ones
    pieces: list[tuple[int, int]]
    numel: int


@dataclass
class _CueqPlan:
    d: CGTPDescriptor
    groups: list[_ModeGroup]


def _build(d: CGTPDescriptor) -> _CueqPlan:
    import cuequivariance as cue

    groups = []
    for mode in MODES:
        paths = [p for p in d.paths if p.mode == mode]
        if not paths:
            continue
        stp = cue.SegmentedTensorProduct.from_subscripts(segment_subscripts(mode))
        for mul, ir in d.irreps_in1:
            stp.add_segment(1, (mul, ir.dim))
        for mul, ir in d.irreps_in2:
            stp.add_segment(2, (mul, ir.dim))
        for io, (mul, ir) in enumerate(d.irreps_out):
            if mode != "uvuv":
                stp.add_segment(3, (mul, ir.dim))
                continue
            # uvuv output segment (u, v, k): u, v are the input multiplicities of its paths
            m12 = {(p.mul_in1, p.mul_in2) for p in paths if p.i_out == io}
            if len(m12) > 1:
                raise ValueError("uvuv output block fed by inputs of different multiplicities")
            u, v = m12.pop() if m12 else (mul, 1)
            stp.add_segment(3, (u, v, ir.dim))
        pieces, numel = [], 0
        for p in paths:
            shape = tp_spec.descriptor.mode_weight_shape(p.mode, p.mul_in1, p.mul_in2, p.mul_out)
            size = int(np.prod(shape))
            c = np.asarray(tp_spec.clebsch_gordan(*p.lll)) * p.coefficient
            stp.add_path(shape, p.i_in1, p.i_in2, p.i_out, c=c)
            pieces.append((p.weight_offset, p.weight_offset + size) if p.has_weight
                          else (-1, size))
            numel += size
        groups.append(_ModeGroup(cue.SegmentedPolynomial.eval_last_operand(stp), pieces, numel))
    return _CueqPlan(d, groups)


def _run(plan: _CueqPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None) -> jax.Array:
    import cuequivariance_jax as cuex

    n, dt = x1.shape[0], x1.dtype
    out = jnp.zeros((n, plan.d.irreps_out.dim), dt)
    batched = w is not None and w.ndim == 2
    lead = (n,) if batched else ()
    for g in plan.groups:
        parts = []
        for a, b in g.pieces:
            parts.append(jnp.ones(lead + (b,), dt) if a < 0 else w[..., a:b])
        wg = jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
        [res] = cuex.segmented_polynomial(
            g.poly, [wg, x1, x2], [jax.ShapeDtypeStruct((n, plan.d.irreps_out.dim), dt)],
            method="naive", options={"math_dtype": jnp.dtype(dt).name},
        )
        out = out + res
    return out


#: The adapter: ``(available(d), build(d), run(state, x1, x2, w))``.
ADAPTER = (_available, _build, _run)
