"""Constant tables that module casts cannot touch.

A module's constants (CG blocks, Legendre and DFT matrices, U tensors) come from tp_spec's exact
float64 tables. They are registered as non-persistent buffers in float64 and in float32
(correctly rounded from the float64 values) so that ``.to(device)`` moves them and no call
converts a table. ``module.float()``, ``.half()``, ``.double()`` or ``.to(dtype)`` would convert
buffers too, and a float64 call after a round trip through a lower precision would silently
lose digits; :class:`ConstantTables` re-derives both copies from the float64 master after
every ``_apply`` (the method behind all of these), keeping only its new device. The tables are
not in the ``state_dict``, so no checkpoint can carry altered ones either.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["ConstantTables"]


class ConstantTables(torch.nn.Module):
    """Mixin of the modules that hold float constants: :meth:`add_const` registers one,
    :meth:`const` returns it in a compute dtype."""

    def __init__(self) -> None:
        super().__init__()
        self._const_names: list[str] = []

    def add_const(self, name: str, value: Any) -> None:
        """Register a float constant as two buffers (``name__f64``, ``name__f32``)."""
        arr = np.asarray(value, dtype=np.float64)
        t64 = torch.from_numpy(np.array(arr, dtype=np.float64, copy=True))
        self.register_buffer(f"{name}__f64", t64, persistent=False)
        self.register_buffer(f"{name}__f32", t64.to(torch.float32), persistent=False)
        self._const_names.append(name)

    def const(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        """The constant ``name`` in ``dtype`` (float32 or float64; another float dtype gets the
        float32 table converted)."""
        if dtype == torch.float64:
            return getattr(self, f"{name}__f64")
        t = getattr(self, f"{name}__f32")
        return t if t.dtype == dtype else t.to(dtype)

    def _apply(self, fn: Any, recurse: bool = True) -> ConstantTables:
        masters = {n: getattr(self, f"{n}__f64") for n in self._const_names}
        super()._apply(fn, recurse)
        for n, t64 in masters.items():
            device = self._buffers[f"{n}__f64"].device  # where fn moved it; dtype restored
            exact = t64.to(device)
            self._buffers[f"{n}__f64"] = exact
            self._buffers[f"{n}__f32"] = exact.to(torch.float32)
        return self
