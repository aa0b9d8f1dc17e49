"""The explicit dispatch tables of tp_jax: plan type -> executor, and the adapters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _cgtp, _cueq, _fused, _gtp, _mtp, _s2fft, _vstp

__all__ = ["ADAPTERS", "RUNNERS"]

#: tp_spec plan type -> ``run(plan, x1, x2, w)`` on flat inputs of the compute dtype.
RUNNERS: dict[type, Callable[..., Any]] = {**_cgtp.RUNNERS, **_fused.RUNNERS, **_gtp.RUNNERS,
                                           **_mtp.RUNNERS, **_vstp.RUNNERS}

#: Adapters of outside libraries, ``(family, name) -> (available(d), build(d), run(...))``.
ADAPTERS: dict[tuple[str, str], tuple[Callable[..., Any], ...]] = {
    ("cgtp", "cueq"): _cueq.ADAPTER,
    ("gtp", "s2fft"): _s2fft.ADAPTER,
}
