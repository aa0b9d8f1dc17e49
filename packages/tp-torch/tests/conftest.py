"""Shared descriptors and helpers for the tp_torch tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tp_spec as spec
import tp_torch

torch.set_num_threads(2)


def _cgtp_cases():
    return {
        "uvw": spec.cgtp("2x0e+1x1o+2x2e", "1x0e+2x1o", "2x0e+3x1o+1x1e+2x2e", mode="uvw"),
        "mimo": spec.cgtp("0e+1o+2e", "0e+1o+2e", "0e+1o+2e+3o+4e", mode="uvw"),
        # all multiplicities 1 and large enough for the parity-split "scalar" plan
        "mimo_split": spec.cgtp("0e+1o+2e+3o+1e+2o", "0e+1o+2e+3o+1e+2o",
                                "0e+1o+2e+3o+4e+1e+0o+2o+3e+5o+4o+5e+6e", mode="uvw"),
        "uvu_sh": spec.cgtp("3x0e+3x1o+3x2e", "0e+1o+2e+3o", mode="uvu"),
        "uvu_mul": spec.cgtp("3x0e+3x1o", "2x0e+2x1o", mode="uvu"),
        # channelwise with 32 channels: the fused plan zero-pads some matmuls (see _pad_to)
        "uvu_pad": spec.cgtp("32x0e+32x1o+32x1e", "0e+1o", mode="uvu"),
        # channelwise with two paths into one output and unweighted paths
        "uvu_shared_out": spec.cgtp(
            "32x0e+32x1o", "0e+1o", "32x0e+32x1o+32x2e",
            instructions=[(0, 0, 0, "uvu", True), (1, 1, 0, "uvu", False),
                          (0, 1, 1, "uvu", False), (1, 0, 1, "uvu", True)]),
        "uvv": spec.cgtp("2x0e+2x1o", "3x0e+3x1o", mode="uvv"),
        "uuw": spec.cgtp("2x0e+2x1o", "2x0e+2x1o", "3x0e+1x1e", mode="uuw"),
        "uuu": spec.cgtp("2x0e+2x1o+1x2e", "2x0e+2x1o+1x2e", mode="uuu"),
        "full": spec.cgtp("2x0e+2x1o", "3x0e+1x1o", mode="full"),
        "norm_path": spec.cgtp("2x0e+1x1o", "1x1o+1x2e", "1x0e+2x1o+1x1e+1x2e", mode="uvw",
                               irrep_normalization="norm", path_normalization="path"),
        "mixed": spec.cgtp(
            "2x0e+2x1o", "2x0e+2x1o", "2x0e+2x1o+2x1e+3x2e",
            instructions=[(0, 0, 0, "uvu", True), (1, 1, 2, "uvu", False),
                          (1, 0, 1, "uvw", True, 0.5), (1, 1, 0, "uuw", False),
                          (0, 1, 1, "uvw", True)],
        ),
    }


def _gtp_cases():
    return {
        "gtp_all_pairs": spec.gtp("2x0e+2x1o+2x2e+2x1e+2x0o", "2x0e+2x1o+2x1e"),
        "gtp_broadcast_w": spec.gtp("3x0e+3x1o+3x2e", "0e+1o+2e+3o", per_degree_weights=True),
        "gtp_pairs_w": spec.gtp("2x0e+2x1o+2x2e+2x0o", "2x0e+2x1e+2x0o",
                                per_degree_weights=True),
        "gtp_given_out": spec.gtp("0e+1o+2e", "0e+1o", "0e+1o+1e+3o+5e"),
    }


def _mtp_cases():
    return {
        "mtp_all": spec.mtp("2x0e+2x1o+2x2e+2x1e", "2x0e+2x1o+2x0o"),
        "mtp_broadcast_w": spec.mtp("3x0e+3x1o+3x2e", "0e+1o+2e+3o", per_degree_weights=True),
        "mtp_given_out": spec.mtp("0e+1o+2e", "0e+1o", "0e+1e+2e+3o+4e"),
    }


CASES = {**_cgtp_cases(), **_gtp_cases(), **_mtp_cases()}

#: (case name, method) for every CPU-runnable method except the adapters.
NATIVE = [(name, m) for name, d in CASES.items() for m in tp_torch.METHODS[d.kind]
          if m not in ("cueq", "oeq")]


def random_inputs(d, batch, rng, per_sample=False):
    x1 = rng.normal(size=batch + (d.irreps_in1.dim,))
    x2 = rng.normal(size=batch + (d.irreps_in2.dim,))
    w = None
    if d.weight_numel:
        w = rng.normal(size=(batch if per_sample else ()) + (d.weight_numel,))
    return x1, x2, w


def tensors(*arrays, dtype=torch.float64, grad=False):
    out = []
    for a in arrays:
        if a is None:
            out.append(None)
        else:
            out.append(torch.tensor(a, dtype=dtype, requires_grad=grad))
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def fused_executor(d, tuning=None):
    """The ``fused`` executor of ``d``'s plan built with ``tuning`` (default tuning: None)."""
    from tp_spec import plan as tp_plan
    from tp_torch._cgtp import EXECUTORS

    return EXECUTORS[type(tp_plan.plan(d, "fused", tuning))](tp_plan.plan(d, "fused", tuning))


def use_fused_tuning(monkeypatch, tuning):
    """From here on ``tp_torch.TensorProduct(d, "fused")`` runs the executor of the plan built
    with ``tuning`` (thresholds small enough to reach a code path on small inputs)."""
    from tp_torch import _module

    build = _module.build_kernel
    monkeypatch.setattr(_module, "build_kernel", lambda d, m, dev, t=None: (
        build(d, m, dev, tuning if m == "fused" else t)))

