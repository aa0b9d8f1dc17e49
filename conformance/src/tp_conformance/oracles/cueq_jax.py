"""Oracle: cuEquivariance-jax ``segmented_polynomial`` with ``method="naive"`` (CPU).

See :mod:`tp_conformance.oracles._cueq`; GTP/MTP run through ``as_cgtp()`` (fixed weights only).
"""

from __future__ import annotations

import cuequivariance_jax as cuex
import jax
import jax.numpy as jnp

from ._common import JaxOracle, target_cgtp
from ._cueq import ones_if_unweighted, path_polynomials

__all__ = ["backend"]


class CueqJaxOracle(JaxOracle):
    name = "cueq_jax"
    method = "naive"

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict = {}

    def _supported(self, d) -> None:
        self._check_size(d)
        target_cgtp(d)

    def _jax_fn(self, d, dtype):
        key = (id(d), dtype)
        if key not in self._cache:
            cg = target_cgtp(d)
            polys = path_polynomials(cg)
            s1, s2, so = (cg.irreps_in1.slices(), cg.irreps_in2.slices(),
                          cg.irreps_out.slices())

            def fn(x1, x2, w):
                batch = x1.shape[0]
                blocks = [jnp.zeros((batch, sl.stop - sl.start), dtype=x1.dtype) for sl in so]
                for p, poly in polys:
                    wp = ones_if_unweighted(p, w, batch, jnp, x1.dtype)
                    if batch == 0:
                        continue
                    [y] = cuex.segmented_polynomial(
                        poly, [wp, x1[:, s1[p.i_in1]], x2[:, s2[p.i_in2]]],
                        [jax.ShapeDtypeStruct((batch, poly.outputs[0].size), x1.dtype)],
                        method="naive", math_dtype=x1.dtype)
                    blocks[p.i_out] = blocks[p.i_out] + y
                if not blocks:
                    return jnp.zeros((batch, 0), dtype=x1.dtype)
                return jnp.concatenate(blocks, axis=-1)

            self._cache[key] = (d, fn)
        return self._cache[key][1]


backend = CueqJaxOracle()
