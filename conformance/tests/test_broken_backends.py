"""Meta-test: the conformance checks catch deliberately broken backends.

The checks pass on the NumPy reference (control) and raise ``AssertionError`` on a backend with
one flipped CG sign, one dropped path, or a wrong second derivative.
"""

from __future__ import annotations

import pytest
from tp_conformance import checks
from tp_conformance.broken import (
    DroppedPathBackend,
    FlippedCGSignBackend,
    WrongSecondDerivativeBackend,
)
from tp_conformance.cases import get_case
from tp_conformance.numpy_backend import backend as reference

M = "reference"
CASES = ["cgtp-uvw-mixed", "oeq-mace-mul2", "gtp-mixed-classes", "mtp-per-degree"]


@pytest.mark.parametrize("case", CASES)
def test_checks_pass_on_the_reference(case):
    d = get_case(case).descriptor
    checks.check_forward(reference, M, d)
    checks.check_equivariance(reference, M, d, improper=True)
    checks.check_vjp_fd(reference, M, d)
    checks.check_force_fd(reference, M, d)
    checks.check_hvp_fd(reference, M, d)
    if d.kind != "cgtp":
        checks.check_emulation(reference, M, d)


@pytest.mark.parametrize("case", CASES)
def test_flipped_cg_sign_is_caught(case):
    d = get_case(case).descriptor
    broken = FlippedCGSignBackend()
    with pytest.raises(AssertionError, match="forward"):
        checks.check_forward(broken, M, d)
    # Even without the reference: a flipped CG entry breaks equivariance.
    with pytest.raises(AssertionError, match="equivariance"):
        checks.check_equivariance(broken, M, d, improper=False)
    with pytest.raises(AssertionError, match="vjp"):
        checks.check_vjp_reference(broken, M, d)
    if d.kind != "cgtp":
        with pytest.raises(AssertionError, match="as_cgtp"):
            checks.check_emulation(broken, M, d)


@pytest.mark.parametrize("case", CASES)
def test_dropped_path_is_caught(case):
    d = get_case(case).descriptor
    broken = DroppedPathBackend()
    with pytest.raises(AssertionError, match="forward"):
        checks.check_forward(broken, M, d)
    with pytest.raises(AssertionError, match="force-loss"):
        checks.check_force_reference(broken, M, d)
    # A dropped path is still equivariant: that check alone would not see it.
    checks.check_equivariance(broken, M, d, improper=True)


@pytest.mark.parametrize("case", CASES)
def test_wrong_second_derivative_is_caught(case):
    d = get_case(case).descriptor
    broken = WrongSecondDerivativeBackend()
    checks.check_forward(broken, M, d)  # first order is right
    checks.check_vjp_fd(broken, M, d)
    with pytest.raises(AssertionError, match="force-loss"):
        checks.check_force_fd(broken, M, d)
    with pytest.raises(AssertionError, match="hvp"):
        checks.check_hvp_fd(broken, M, d)
