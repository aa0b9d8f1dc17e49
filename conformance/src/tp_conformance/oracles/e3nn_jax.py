"""Oracle: e3nn-jax's legacy ``FunctionalTensorProduct`` (equal to torch e3nn's semantics).

Same instruction translation as the e3nn (torch) oracle; e3nn-jax has no ``"none"`` path
normalization, so such descriptors go through rescaled ``path_weight`` values.
"""

from __future__ import annotations

import math

import e3nn_jax as e3nn
import jax.numpy as jnp
from e3nn_jax.legacy import FunctionalTensorProduct

from ._common import JaxOracle, Unsupported, e3nn_instructions, target_cgtp

__all__ = ["backend"]


def _build(cg, instructions, irrep, path):
    return FunctionalTensorProduct(str(cg.irreps_in1), str(cg.irreps_in2), str(cg.irreps_out),
                                   instructions, irrep_normalization=irrep,
                                   path_normalization=path)


def _final_weights(cg):
    def fn(instructions, irrep, path):
        return [float(i.path_weight) for i in _build(cg, instructions, irrep, path).instructions]
    return fn


def _instructions(cg):
    return e3nn_instructions(cg, _final_weights(cg), native_irrep=("component", "norm"),
                             native_path=("element", "path"))


class E3nnJaxOracle(JaxOracle):
    name = "e3nn_jax"
    method = "e3nn_jax"

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict = {}

    def _instructions(self, d):
        key = ("ins", id(d))
        if key not in self._cache:
            cg = target_cgtp(d)
            self._cache[key] = (d, (cg, *_instructions(cg)))
        return self._cache[key][1]

    def _supported(self, d) -> None:
        self._check_size(d)
        cg = target_cgtp(d)
        if any(mul == 0 for irreps in (cg.irreps_in1, cg.irreps_in2, cg.irreps_out)
               for mul, _ in irreps):
            raise Unsupported("e3nn-jax's legacy FunctionalTensorProduct fails on "
                              "multiplicity-0 blocks (reshape error)")
        self._instructions(d)

    def _jax_fn(self, d, dtype):
        key = id(d)
        if key not in self._cache:
            cg, *rest = self._instructions(d)
            tp = _build(cg, *rest)
            shapes = [ins.path_shape for ins in tp.instructions if ins.has_weight]
            sizes = [math.prod(s) for s in shapes]

            def single(x1, x2, w):
                ws, k = [], 0
                for shape, n in zip(shapes, sizes, strict=True):
                    ws.append(w[k:k + n].reshape(shape))
                    k += n
                a = e3nn.IrrepsArray(tp.irreps_in1, x1)
                b = e3nn.IrrepsArray(tp.irreps_in2, x2)
                return tp.left_right(ws, a, b).array

            import jax

            batched = jax.vmap(single)

            def fn(x1, x2, w):
                if x1.shape[0] == 0:
                    return jnp.zeros((0, cg.irreps_out.dim), dtype=x1.dtype)
                return batched(x1, x2, w)

            self._cache[key] = (d, fn)
        return self._cache[key][1]


backend = E3nnJaxOracle()
