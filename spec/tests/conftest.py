"""Shared fixtures of the spec tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _restore_torch_default_dtype() -> Iterator[None]:
    """The e3nn comparisons set torch's default dtype to float64 (e3nn builds its tables in
    it); restore it after every test, so no later test in the process inherits it."""
    torch = sys.modules.get("torch")
    before = torch.get_default_dtype() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_default_dtype(before if before is not None else torch.float32)
