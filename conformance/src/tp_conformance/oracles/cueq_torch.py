"""Oracle: cuEquivariance-torch ``SegmentedPolynomial`` with ``method="naive"`` (CPU).

See :mod:`tp_conformance.oracles._cueq` for how a descriptor becomes cuEquivariance
polynomials; GTP/MTP run through ``as_cgtp()`` (fixed weights only).
"""

from __future__ import annotations

import cuequivariance_torch as cuet
import torch

from ._common import TorchOracle, target_cgtp
from ._cueq import ones_if_unweighted, path_polynomials

__all__ = ["backend"]


class CueqTorchOracle(TorchOracle):
    name = "cueq_torch"
    method = "naive"

    def __init__(self) -> None:
        self._cache: dict = {}

    def _supported(self, d) -> None:
        target_cgtp(d)

    def _torch_fn(self, d, dtype):
        key = (id(d), dtype)
        if key not in self._cache:
            cg = target_cgtp(d)
            tdtype = getattr(torch, dtype)
            mods = [(p, cuet.SegmentedPolynomial(poly, method="naive", math_dtype=tdtype))
                    for p, poly in path_polynomials(cg)]
            s1, s2, so = (cg.irreps_in1.slices(), cg.irreps_in2.slices(),
                          cg.irreps_out.slices())

            def fn(x1, x2, w):
                batch = x1.shape[0]
                blocks = [x1.new_zeros((batch, sl.stop - sl.start)) for sl in so]
                for p, mod in mods:
                    wp = ones_if_unweighted(p, w, batch, torch, x1.dtype)
                    [y] = mod([wp, x1[:, s1[p.i_in1]], x2[:, s2[p.i_in2]]])
                    blocks[p.i_out] = blocks[p.i_out] + y
                return torch.cat(blocks, dim=-1) if blocks else x1.new_zeros((batch, 0))

            self._cache[key] = (d, fn)
        return self._cache[key][1]


backend = CueqTorchOracle()
