"""Shared fixtures: float64 enabled for the whole suite (float32 is requested explicitly)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import tp_spec as spec

jax.config.update("jax_enable_x64", True)


def cgtp_cases() -> dict[str, spec.CGTPDescriptor]:
    return {
        "uvw": spec.cgtp("2x0e+3x1o", "2x0e+1x1o", "3x0e+2x1o+1x1e", mode="uvw"),
        "mimo2": spec.cgtp("0e+1o+2e", "0e+1o+2e", "0e+1o+1e+2e+2o+3o+4e", mode="uvw"),
        "uvu": spec.cgtp("3x0e+3x1o", "0e+1o+2e", mode="uvu"),
        # channelwise with two paths into one output and unweighted paths
        "uvu_shared_out": spec.cgtp("4x0e+4x1o", "0e+1o", "4x0e+4x1o+4x2e", instructions=[
            (0, 0, 0, "uvu", True), (1, 1, 0, "uvu", False), (0, 1, 1, "uvu", False),
            (1, 0, 1, "uvu", True)]),
        "uvv": spec.cgtp("2x0e+3x1o", "4x0e+1x1o", mode="uvv"),
        "uuw": spec.cgtp("3x0e+3x1o", "3x0e+3x1o", "2x0e+2x1o+1x1e", mode="uuw"),
        "uuu": spec.cgtp("3x0e+2x1o", "3x0e+2x1o", mode="uuu"),
        "full": spec.cgtp("2x0e+1x1o", "2x0e+3x1o", mode="full"),
        "mixed": spec.cgtp("0e+1o", "0e+1o", "0e+1o+1e", instructions=[
            (0, 0, 0, "uvw", True), (1, 1, 0, "uvw", False), (1, 1, 2, "uvw", True, 2.0),
            (1, 0, 1, "uvw", True)]),
        "norm_path": spec.cgtp("2x1o+1x2e", "1x1o+1x0e", "2x1e+1x2o+1x1o", mode="uvw",
                               irrep_normalization="norm", path_normalization="path"),
    }


def gtp_cases() -> dict[str, spec.TensorProductDescriptor]:
    return {
        "s2": spec.gtp("0e+1o+2e", "0e+1o+2e"),
        "four_pairs": spec.gtp("3x0e+3x1o+3x1e+3x2e", "3x0e+3x1o+3x0o"),
        "broadcast_w": spec.gtp("3x0e+3x1o+3x1e+3x2e", "0e+1o+1e+2o", per_degree_weights=True),
        "odd_w": spec.gtp("2x0o+2x1e", "2x0o+2x1e", per_degree_weights=True),
        "out": spec.gtp("2x0e+2x2e", "1x1o", "2x1o+2x3o"),
    }


def mtp_cases() -> dict[str, spec.TensorProductDescriptor]:
    return {
        "s2": spec.mtp("0e+1o+2e", "0e+1o+2e"),
        "parities": spec.mtp("3x0e+3x1o+3x1e+3x2e", "3x0e+3x1o+3x0o"),
        "broadcast_w": spec.mtp("3x0e+3x1o+3x1e+3x2e", "0e+1o+1e+2o", per_degree_weights=True),
        "odd_w": spec.mtp("2x0o+2x1e", "2x0o+2x1e", per_degree_weights=True),
    }


def all_cases() -> list[tuple[str, spec.TensorProductDescriptor, str]]:
    """(id, descriptor, method) for every method of every case."""
    import tp_jax

    out = []
    for fam, cases in (("cgtp", cgtp_cases()), ("gtp", gtp_cases()), ("mtp", mtp_cases())):
        for name, d in cases.items():
            for method, reason in tp_jax.methods(d).items():
                if method == "s2fft" and name not in ("s2", "broadcast_w"):
                    continue  # slow to compile; two cases cover classes, broadcast, weights
                if reason is None:
                    out.append((f"{fam}-{name}-{method}", d, method))
    return out


def random_inputs(d, batch=(3,), *, shared=False, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=batch + (d.irreps_in1.dim,)).astype(dtype)
    x2 = rng.normal(size=batch + (d.irreps_in2.dim,)).astype(dtype)
    w = None
    if d.weight_numel:
        shape = (d.weight_numel,) if shared else batch + (d.weight_numel,)
        w = rng.normal(size=shape).astype(dtype)
    return x1, x2, w


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
