"""tp_torch.SymmetricContraction / GauntSymmetricContraction against the tp_spec reference."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
import tp_spec
from tp_spec import ShapeError
from tp_torch import GauntSymmetricContraction, SymmetricContraction

sc = importlib.import_module("tp_spec.symmetric_contraction")

CASES = [
    ("3x0e+3x1o+3x2e+3x3o", "3x0e+3x1o+3x2e", 3, 3),
    ("2x0e+2x1o+2x2e", "2x1e+2x0e+2x3o", 2, 2),
    ("2x0e+2x1o", "2x0e+2x1o", 4, 2),
    ("4x1o", "4x0e+4x1e", 1, 1),  # 1e: no path of one copy -> zeros
]


def _inputs(m, n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, m.irreps_in.dim, generator=g, dtype=dtype)
    s = torch.randint(0, m.num_species, (n,), generator=g)
    return x, s


@pytest.mark.parametrize("case", CASES + [(*CASES[0], "reduced")],
                         ids=lambda c: f"{c[0]}-{c[2]}{'-' + c[4] if len(c) > 4 else ''}")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_reference(case, dtype):
    irreps_in, irreps_out, corr, species, *basis = case
    m = SymmetricContraction(irreps_in, irreps_out, corr, species, basis=(basis or ["mace"])[0])
    assert m.descriptor.basis == (basis or ["mace"])[0]
    m = m.to(dtype)
    m.chunk_elements = 64  # several chunks per species
    x, s = _inputs(m, 9, dtype)
    ref = sc.apply(m.descriptor, x.double().numpy(), m.flat_weights().detach().double().numpy(),
                   s.numpy())
    out = m(x, s)
    assert out.dtype == dtype and out.shape == (9, m.irreps_out.dim)
    tol = 1e-11 if dtype == torch.float64 else 1e-4
    np.testing.assert_allclose(out.detach().double().numpy(), ref, rtol=tol, atol=tol)
    # MACE's one-hot node_attrs select the same species
    attrs = torch.nn.functional.one_hot(s, species).to(dtype)
    torch.testing.assert_close(m(x, attrs), out, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(m(x, s), out, rtol=0, atol=0)


def test_external_weights_contract():
    """``internal_weights=False``: no Parameters; ``contract`` takes the weights (checked)."""
    ref_m = SymmetricContraction("2x0e+2x1o+2x2e", "2x0e", 3, 3).double()
    m = SymmetricContraction("2x0e+2x1o+2x2e", "2x0e", 3, 3, internal_weights=False)
    assert not list(m.parameters())
    x, s = _inputs(ref_m, 6, torch.float64)
    weights = [list(row) for row in ref_m.weights]
    torch.testing.assert_close(m.contract(x, s, weights), ref_m(x, s), rtol=0, atol=0)
    with pytest.raises(ShapeError, match="no internal weights"):
        m(x, s)
    with pytest.raises(ShapeError, match="expected shapes"):
        m.contract(x, s, [weights[0][:-1]])


def test_empty_species_and_no_nodes():
    m = SymmetricContraction("2x0e+2x1o", "2x0e+2x1o", 2, 5).double()
    x, _ = _inputs(m, 4, torch.float64)
    s = torch.tensor([4, 4, 1, 4])
    ref = sc.apply(m.descriptor, x.numpy(), m.flat_weights().detach().numpy(), s.numpy())
    np.testing.assert_allclose(m(x, s).detach().numpy(), ref, atol=1e-12)
    assert m(x[:0], s[:0]).shape == (0, m.irreps_out.dim)


@pytest.mark.parametrize("remat", [False, True])
def test_gradcheck_and_gradgradcheck(remat):
    m = SymmetricContraction("1x0e+1x1o+1x2e", "1x0e+1x1o", 3, 2).double()
    m.chunk_elements = 64  # several chunks
    m.remat_elements = 0 if remat else 2**24  # recomputed in backward (checkpoint) or kept
    x, s = _inputs(m, 3, torch.float64)
    x.requires_grad_(True)
    names = [n for n, _ in m.named_parameters()]

    def f(x, *ws):
        return torch.func.functional_call(m, dict(zip(names, ws, strict=True)), (x, s))

    ws = tuple(p.detach().clone().requires_grad_(True) for p in m.parameters())
    assert torch.autograd.gradcheck(f, (x, *ws))
    assert torch.autograd.gradgradcheck(f, (x, *ws))


def test_forces_like_double_backward_reaches_weights():
    m = SymmetricContraction("2x0e+2x1o", "2x0e", 3, 2).double()
    x, s = _inputs(m, 4, torch.float64)
    x.requires_grad_(True)
    (gx,) = torch.autograd.grad(m(x, s).square().sum(), x, create_graph=True)
    grads = torch.autograd.grad(gx.square().sum(), list(m.parameters()))
    # finite differences of the force loss in one weight entry
    p = m.weights[0][2]
    eps = 1e-6

    def loss():
        xx = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(m(xx, s).square().sum(), xx)
        return float(g.square().sum())

    with torch.no_grad():
        p[1, 0, 1] += eps
    up = loss()
    with torch.no_grad():
        p[1, 0, 1] -= 2 * eps
    down = loss()
    with torch.no_grad():
        p[1, 0, 1] += eps
    assert abs((up - down) / (2 * eps) - float(grads[2][1, 0, 1])) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", GauntSymmetricContraction.METHODS)
def test_gaunt_matches_reference(dtype, method):
    m = GauntSymmetricContraction("3x0e+3x1o+3x2e", "3x0e+3x1o+3x2e", 3, 2,
                                  method=method).to(dtype)
    x, s = _inputs(m, 6, dtype)
    ref = sc.gaunt_apply_reference(m.descriptor, x.double().numpy(),
                                   m.flat_weights().detach().double().numpy(), s.numpy())
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    out = m(x, s).detach().double().numpy()
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * np.abs(ref).max())
    if dtype == torch.float64:
        x.requires_grad_(True)
        small = GauntSymmetricContraction("1x0e+1x1o", "1x0e+1x1o", 3, 2,
                                          method=method).double()
        xs, ss = _inputs(small, 3, torch.float64)
        xs.requires_grad_(True)
        assert torch.autograd.gradcheck(lambda x: small(x, ss), (xs,))
        assert torch.autograd.gradgradcheck(lambda x: small(x, ss), (xs,))


def test_bad_inputs():
    m = SymmetricContraction("2x0e+2x1o", "2x0e", 2, 3)
    x = torch.randn(4, 8)
    s = torch.tensor([0, 1, 2, 0])
    with pytest.raises(tp_spec.ShapeError, match="x must have shape"):
        m(x[:, :7], s)
    with pytest.raises(tp_spec.DTypeError, match="nothing is cast"):
        m(x.double(), s)
    with pytest.raises(tp_spec.ShapeError, match="species must have shape"):
        m(x, s[:3])
    with pytest.raises(tp_spec.DTypeError, match="integers"):
        m(x, s.float())
    with pytest.raises(tp_spec.IndexRangeError, match="species must lie"):
        m(x, s + 1)
    with pytest.raises(tp_spec.ShapeError, match="one-hot"):
        m(x, torch.full((4, 3), 1.0 / 3))
    with pytest.raises(tp_spec.ShapeError, match="node_attrs"):
        m(x, torch.zeros(4, 2))
    with pytest.raises(tp_spec.IrrepsError):
        SymmetricContraction("2x0e+3x1o", "2x0e", 2, 3)
    with pytest.raises(tp_spec.IrrepsError, match="natural parity"):
        GauntSymmetricContraction("2x0e+2x1e", "2x0e", 2, 3)
    with pytest.raises(tp_spec.ShapeError, match="method must be one of"):
        GauntSymmetricContraction("2x0e", "2x0e", 2, 3, method="fft")
