"""Shared fixtures: tiny workloads and fake subjects (NumPy), so the tests need no framework."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from benchmarks.subjects import Built, Subject
from benchmarks.workloads import Workload


class FakeSubject(Subject):
    """A NumPy subject computing ``factor * reference`` (``factor != 1``: deliberately wrong)."""

    framework = "numpy"
    library = "fake"
    ops = ("cgtp", "gtp", "mtp")

    def __init__(self, name: str = "fake/right", factor: float = 1.0) -> None:
        self.name, self.method, self.factor = name, "fake", factor

    def build(self, wl: Any, dtype: str, device: str) -> Built:
        from tp_spec import reference

        d = wl.descriptor

        def fn(x1: np.ndarray, x2: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
            return self.factor * reference.apply(d, x1, x2, w)

        return Built("numpy", fn, d.weight_numel > 0, 0.0, passes=("fwd",))


@pytest.fixture
def tiny_workload() -> Workload:
    return Workload("paper", "MIMO", "cgtp", "0e+1o", "0e+1o", "0e+1o+1e+2e", batch=16, L=1)


@pytest.fixture
def fake_subject() -> type[FakeSubject]:
    return FakeSubject


FAST = {"target_s": 0.01, "min_repeats": 3, "max_repeats": 3, "warmup": 1}


@pytest.fixture
def tiny_record(tiny_workload: Workload) -> dict[str, Any]:
    from benchmarks.runner import run

    return run([tiny_workload], [FakeSubject()], passes=("fwd",), progress=False, timing=FAST,
               machine="test-machine")
