"""The committed golden vectors are what the generator produces (regeneration reproduces them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tp_conformance.cases import GOLDEN
from tp_conformance.golden import generate, load

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"


def test_every_golden_case_is_committed():
    missing = [n for n in GOLDEN if not (GOLDEN_DIR / f"{n}.npz").is_file()]
    assert not missing, f"golden files missing (run conformance/golden/generate.py): {missing}"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    directory = tmp_path_factory.mktemp("golden")
    generate(directory)
    return directory


@pytest.mark.parametrize("name", GOLDEN)
def test_regeneration_reproduces(name, regenerated):
    old, new = load(name, GOLDEN_DIR), load(name, regenerated)
    assert sorted(old) == sorted(new)
    for key in ("x1", "x2", "weights", "irreps_in1", "irreps_in2", "irreps_out"):
        np.testing.assert_array_equal(new[key], old[key], err_msg=f"{name}: {key}")
    # Outputs: the reference's float64 result; allow for BLAS/einsum summation order only.
    np.testing.assert_allclose(new["out"], old["out"], rtol=1e-13, atol=1e-13,
                               err_msg=f"{name}: reference output changed")
