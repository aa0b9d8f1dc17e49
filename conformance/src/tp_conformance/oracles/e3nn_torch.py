"""Oracle: e3nn (torch) ``o3.TensorProduct``, built in float64 from the descriptor's paths.

CGTP descriptors are passed with their own instructions and normalizations (so e3nn's
normalization formulas are compared with ``tp_spec``'s); GTP/MTP through ``as_cgtp()`` where
e3nn can express it (see :func:`~tp_conformance.oracles._common.e3nn_instructions`).
"""

from __future__ import annotations

import copy

import e3nn  # noqa: F401 - fail at load time if e3nn is missing
import torch
from e3nn import o3

from ._common import TorchOracle, e3nn_instructions, target_cgtp

__all__ = ["backend"]


def _build(cg, instructions, irrep, path):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn keeps CG buffers in the build dtype
    try:
        return o3.TensorProduct(str(cg.irreps_in1), str(cg.irreps_in2), str(cg.irreps_out),
                                instructions, irrep_normalization=irrep,
                                path_normalization=path, internal_weights=False,
                                shared_weights=False, _optimize_einsums=False)
    finally:
        torch.set_default_dtype(old)


def _final_weights(cg):
    def fn(instructions, irrep, path):
        return [ins.path_weight for ins in _build(cg, instructions, irrep, path).instructions]
    return fn


class E3nnTorchOracle(TorchOracle):
    name = "e3nn"
    method = "e3nn"

    def __init__(self) -> None:
        self._cache: dict = {}

    def _instructions(self, d):
        key = ("ins", id(d))
        if key not in self._cache:
            cg = target_cgtp(d)
            self._cache[key] = (d, (cg, *e3nn_instructions(cg, _final_weights(cg))))
        return self._cache[key][1]

    def _supported(self, d) -> None:
        self._instructions(d)

    def _torch_fn(self, d, dtype):
        key = (id(d), dtype)
        if key not in self._cache:
            cg, ins, irrep, path = self._instructions(d)
            if (id(d), "module") not in self._cache:
                self._cache[(id(d), "module")] = (d, _build(cg, ins, irrep, path))
            module = self._cache[(id(d), "module")][1]
            if dtype != "float64":  # built in float64 (exact CG), then rounded
                module = copy.deepcopy(module).to(getattr(torch, dtype))
            numel = module.weight_numel

            def fn(x1, x2, w, module=module, numel=numel):
                if w is None:
                    w = x1.new_zeros(x1.shape[:-1] + (numel,))
                return module(x1, x2, w)

            self._cache[key] = (d, fn)  # keep d alive so id() stays unique
        return self._cache[key][1]


backend = E3nnTorchOracle()
