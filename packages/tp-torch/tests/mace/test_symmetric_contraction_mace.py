"""tp_torch.SymmetricContraction against MACE's own (mace-torch, float64), same weights.

Runs only where mace-torch is installed (it pins e3nn 0.4.4: its own venv). MACE's e3nn 0.4.4
``wigner_3j`` differs in sign from tp_spec's for some triples, so MACE's weights go through
``load_mace_weights`` (an exact basis map, :func:`tp_spec.mace_basis.weights_from_mace`).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # e3nn 0.4.4 torch.load-s constants
mace_sc = pytest.importorskip("mace.modules.symmetric_contraction")

import torch  # noqa: E402
from e3nn import o3  # noqa: E402
from tp_torch import SymmetricContraction  # noqa: E402


def _build_mace(irreps_in, irreps_out, corr, species):
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # MACE builds U and its weights in the default dtype
    try:
        return mace_sc.SymmetricContraction(o3.Irreps(irreps_in), o3.Irreps(irreps_out), corr,
                                            num_elements=species)
    finally:
        torch.set_default_dtype(default)


def _mace_input(x, irreps_in):
    """mul_ir ``(n, dim)`` -> MACE's ``(n, k, D)``."""
    n, blocks, start = x.shape[0], [], 0
    for mul, ir in o3.Irreps(irreps_in):
        blocks.append(x[:, start : start + mul * ir.dim].reshape(n, mul, ir.dim))
        start += mul * ir.dim
    return torch.cat(blocks, dim=-1)


@pytest.mark.parametrize(
    "irreps_in, irreps_out, corr",
    [
        ("8x0e+8x1o+8x2e", "8x0e+8x1o", 1),
        ("8x0e+8x1o+8x2e", "8x0e+8x1o+8x2e", 2),
        ("8x0e+8x1o+8x2e", "8x0e+8x1o", 3),
        ("4x0e+4x1o+4x2e", "4x0e+4x1e+4x2e+4x3o", 3),  # 1e: MACE's all-zero U at nu = 1
        ("2x0e+2x1o", "2x0e+2x1o", 4),  # MACE's natural-parity filter of nu = 4
    ],
)
def test_same_output_and_gradients_as_mace(irreps_in, irreps_out, corr):
    species = 3
    torch.manual_seed(0)
    mace = _build_mace(irreps_in, irreps_out, corr, species)
    ours = SymmetricContraction(irreps_in, irreps_out, corr, species).double()
    ours.load_mace_weights(mace)
    n = 11
    x = torch.randn(n, o3.Irreps(irreps_in).dim, dtype=torch.float64, requires_grad=True)
    z = torch.randint(0, species, (n,))
    attrs = torch.nn.functional.one_hot(z, species).double()
    ref = mace(_mace_input(x, irreps_in), attrs)
    out = ours(x, attrs)
    assert out.shape == ref.shape
    scale = max(1.0, float(ref.detach().abs().max()))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10 * scale)
    # first and second derivatives in x (forces and their training gradient)
    v = torch.randn_like(ref)
    (g_ref,) = torch.autograd.grad((ref * v).sum(), x, create_graph=True)
    (g_out,) = torch.autograd.grad((out * v).sum(), x, create_graph=True)
    torch.testing.assert_close(g_out, g_ref, rtol=0, atol=1e-9)
    u = torch.randn_like(g_ref)
    # a degree-1 polynomial (correlation 1) has no second derivative: zeros, not "unused"
    (h_ref,) = torch.autograd.grad((g_ref * u).sum(), x, allow_unused=True, materialize_grads=True)
    (h_out,) = torch.autograd.grad((g_out * u).sum(), x, allow_unused=True, materialize_grads=True)
    torch.testing.assert_close(h_out, h_ref, rtol=0, atol=1e-9)


def test_weights_map_is_a_signed_permutation_free_copy():
    """On MACE's default (e3nn) basis the map is +-1 per path: same paths, same order."""
    mace = _build_mace("4x0e+4x1o+4x2e", "4x0e+4x1o", 3, 2)
    ours = SymmetricContraction("4x0e+4x1o+4x2e", "4x0e+4x1o", 3, 2).double()
    ours.load_mace_weights(mace)
    for c, row in zip(mace.contractions, ours.weights, strict=True):
        for nu, w in enumerate(row, start=1):
            wm = c.weights_max if nu == c.correlation else c.weights[c.correlation - 1 - nu]
            if w.shape[1] == 0:  # no path: MACE keeps one all-zero weight row
                assert not wm.detach().any()
                continue
            torch.testing.assert_close(w.abs(), wm.detach().abs(), rtol=0, atol=1e-12)
