"""Index maps between flat ``mul_ir`` features and dense per-class coefficient arrays.

GTP and MTP read every channel of an input as one or two functions (a "class": the parity class
``p * (-1)**l`` for GTP, the parity ``p`` for MTP), each a dense vector over all degrees
``0..L`` (index ``l*l + l + m``). These helpers build the gather indices once; a position equal
to ``dim`` means "zero" (a sentinel row appended at run time).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tp_spec import Irrep, Irreps

__all__ = ["class_index", "feature_weight_index"]


def class_index(
    irreps: Irreps, classes: list[int], class_of: Callable[[Irrep], int], lmax: int, channels: int
) -> np.ndarray:
    """``idx[k, c, l*l + l + m]`` = flat feature position of degree ``l``, order ``m`` of
    channel ``c`` in the block of class ``classes[k]``, or ``irreps.dim`` if there is none.

    ``channels`` is the channel count of the dense array; an input with one channel (broadcast)
    is indexed with ``channels=1``.
    """
    idx = np.full((len(classes), channels, (lmax + 1) ** 2), irreps.dim, dtype=np.int64)
    for (mul, ir), sl in zip(irreps, irreps.slices(), strict=True):
        q = class_of(ir)
        if q not in classes or ir.l > lmax:
            continue
        k = classes.index(q)
        for c in range(min(mul, channels)):
            start = sl.start + c * ir.dim
            idx[k, c, ir.l * ir.l:(ir.l + 1) ** 2] = np.arange(start, start + ir.dim)
    return idx


def feature_weight_index(irreps: Irreps, offset: int, channels: int) -> np.ndarray:
    """For per-degree weights ``w[offset + i * channels + c]`` scaling block ``i``, channel
    ``c``: the weight index of every flat feature, ``(irreps.dim,)``."""
    out = np.zeros(irreps.dim, dtype=np.int64)
    for i, ((mul, ir), sl) in enumerate(zip(irreps, irreps.slices(), strict=True)):
        for c in range(mul):
            out[sl.start + c * ir.dim: sl.start + (c + 1) * ir.dim] = offset + i * channels + c
    return out
