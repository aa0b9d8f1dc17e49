"""The properties of every (backend, op, method, case); see ``tp_conformance.checks``.

Run against one backend with ``pytest conformance/tests --backend tp_torch``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tp_conformance import checks, conv_checks
from tp_conformance.golden import load as load_golden

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"

conformance = pytest.mark.conformance


def _hvp_or_skip(target):
    if not hasattr(target.backend, "hvp"):
        pytest.skip(f"backend {target.backend_name!r} does not implement the optional hvp method")


# ----------------------------------------------------------------------------- forward
@conformance(oracle=True)
def test_forward(target):
    checks.check_forward(target.backend, target.method, target.d, dtype="float64",
                         batch=target.case.batch, device=target.device)


@conformance()
def test_forward_float32(target):
    checks.check_forward(target.backend, target.method, target.d, dtype="float32",
                         batch=target.case.batch, device=target.device)


@conformance(oracle=True, weighted=True)
def test_forward_shared_weights(target):
    checks.check_forward(target.backend, target.method, target.d, shared=True,
                         device=target.device)


@conformance(oracle=True, tag="golden")
def test_golden_vectors(target):
    """The committed float64 golden outputs (conformance/golden/*.npz)."""
    g = load_golden(target.case.name, GOLDEN_DIR)
    w = g["weights"] if target.d.weight_numel else None
    assert str(target.d.irreps_out) == str(g["irreps_out"]), "golden file is for other irreps"
    out = target.backend.apply(target.d, target.method, g["x1"], g["x2"], w, dtype="float64",
                               device=target.device)
    checks.assert_close(out, g["out"], checks.RTOL_FLOAT64, f"{target} vs golden output")


@conformance()
@pytest.mark.parametrize("improper", [False, True], ids=["proper", "improper"])
def test_equivariance(target, improper):
    checks.check_equivariance(target.backend, target.method, target.d, improper=improper,
                              device=target.device)


@conformance(families=("gtp", "mtp", "vstp"))
def test_emulation(target):
    checks.check_emulation(target.backend, target.method, target.d, device=target.device)


# ----------------------------------------------------------------------------- derivatives
@conformance(small=True)
def test_vjp_finite_differences(target):
    checks.check_vjp_fd(target.backend, target.method, target.d, device=target.device)


@conformance(oracle="small")
def test_vjp_matches_reference(target):
    checks.check_vjp_reference(target.backend, target.method, target.d, dtype="float64",
                               device=target.device)


@conformance()
def test_vjp_float32_shared_weights(target):
    checks.check_vjp_reference(target.backend, target.method, target.d, dtype="float32",
                               shared=target.d.weight_numel > 0, device=target.device)


@conformance(small=True)
def test_force_loss_finite_differences(target):
    checks.check_force_fd(target.backend, target.method, target.d, device=target.device)


@conformance(small=True)
def test_force_loss_matches_reference(target):
    checks.check_force_reference(target.backend, target.method, target.d,
                                 shared=target.d.weight_numel > 0, device=target.device)


@conformance(small=True)
def test_hvp_finite_differences(target):
    _hvp_or_skip(target)
    checks.check_hvp_fd(target.backend, target.method, target.d, device=target.device)


@conformance(small=True)
def test_hvp_matches_reference(target):
    _hvp_or_skip(target)
    checks.check_hvp_reference(target.backend, target.method, target.d, device=target.device)


# ----------------------------------------------------------------------------- shapes, errors
@conformance(small=True)
def test_batch_shapes(target):
    checks.check_batch_shapes(target.backend, target.method, target.d, device=target.device)


@conformance(small=True)
def test_bad_inputs(target):
    checks.check_bad_inputs(target.backend, target.method, target.d, device=target.device)


# ----------------------------------------------------------------------------- convolution
# The tensor-product convolution (optional backend methods conv, conv_vjp,
# conv_force_loss_grad) on the cases tagged "conv"; reported under the op "conv-<family>".
def _conv_or_skip(target):
    if not hasattr(target.backend, "conv"):
        pytest.skip(f"backend {target.backend_name!r} does not implement the optional conv "
                    "methods")


@conformance(conv=True, oracle=True)
def test_conv_forward(target):
    """float64: int64 indices with per-edge weights, int32 with shared weights; no edges."""
    _conv_or_skip(target)
    conv_checks.check_conv_forward(target.backend, target.method, target.d,
                                   device=target.device)
    conv_checks.check_conv_forward(target.backend, target.method, target.d,
                                   index_dtype="int32", shared=target.d.weight_numel > 0,
                                   device=target.device)
    conv_checks.check_conv_empty(target.backend, target.method, target.d, device=target.device)


@conformance(conv=True)
def test_conv_forward_float32(target):
    _conv_or_skip(target)
    conv_checks.check_conv_forward(target.backend, target.method, target.d, dtype="float32",
                                   index_dtype="int32", device=target.device)


@conformance(conv=True)
@pytest.mark.parametrize("improper", [False, True], ids=["proper", "improper"])
def test_conv_equivariance(target, improper):
    _conv_or_skip(target)
    conv_checks.check_conv_equivariance(target.backend, target.method, target.d,
                                        improper=improper, device=target.device)


@conformance(conv=True)
def test_conv_deterministic(target):
    _conv_or_skip(target)
    conv_checks.check_conv_deterministic(target.backend, target.method, target.d,
                                         device=target.device)


@conformance(conv=True)
def test_conv_vjp_finite_differences(target):
    _conv_or_skip(target)
    conv_checks.check_conv_vjp_fd(target.backend, target.method, target.d,
                                  device=target.device)


@conformance(conv=True)
def test_conv_vjp_matches_reference(target):
    _conv_or_skip(target)
    conv_checks.check_conv_vjp_reference(target.backend, target.method, target.d,
                                         device=target.device)


@conformance(conv=True)
def test_conv_vjp_float32_shared_weights(target):
    _conv_or_skip(target)
    conv_checks.check_conv_vjp_reference(target.backend, target.method, target.d,
                                         dtype="float32", shared=target.d.weight_numel > 0,
                                         device=target.device)


@conformance(conv=True)
def test_conv_force_loss_finite_differences(target):
    _conv_or_skip(target)
    conv_checks.check_conv_force_fd(target.backend, target.method, target.d,
                                    device=target.device)


@conformance(conv=True)
def test_conv_bad_inputs(target):
    _conv_or_skip(target)
    conv_checks.check_conv_bad_inputs(target.backend, target.method, target.d,
                                      device=target.device)


# ----------------------------------------------------------------------------- --device option
class _CpuOnly:
    name = "cpu-only"

    def devices(self):
        return ["cpu"]

    def methods(self, descriptor, device="cpu"):
        return {"fast": None, "slow": "slow is not built here"}


def test_device_option_skips_a_device_the_backend_does_not_list():
    from conftest import method_reasons

    got = method_reasons(_CpuOnly(), None, "cuda")
    assert got["fast"] == "backend 'cpu-only' does not run on 'cuda' (devices: ['cpu'])"
    assert got["slow"] == "slow is not built here"
    assert method_reasons(_CpuOnly(), None, "cpu") == {"fast": None,
                                                      "slow": "slow is not built here"}


def test_device_option_all_means_every_listed_device():
    from conftest import target_devices

    class Two(_CpuOnly):
        def devices(self):
            return ["cpu", "cuda"]

    assert target_devices(Two(), "all") == ["cpu", "cuda"]
    assert target_devices(Two(), "cuda") == ["cuda"]
    assert target_devices(_CpuOnly(), "cuda") == ["cuda"]


def test_device_option_rejects_an_unknown_device():
    from conftest import selected_device

    class Config:
        def getoption(self, name):
            assert name == "--device"
            return "gpu"

    with pytest.raises(pytest.UsageError, match=r"TP_CONFORMANCE_DEVICE must be one of .*'gpu'"):
        selected_device(Config())
