"""tp_torch.integrations.mace.convert against the unmodified mace-torch model: energies,
forces, stress and weight gradients in float64 and float32; checkpoints both ways.

Runs only where mace-torch is installed (its own venv: it pins e3nn 0.4.4)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # e3nn 0.4.4 torch.load-s constants
pytest.importorskip("mace.modules")

import torch  # noqa: E402
from e3nn import o3  # noqa: E402
from mace_models import build_mace, cu_al_batch  # noqa: E402
from tp_torch.integrations import mace as tm  # noqa: E402


def _outputs(model, batch, training=False):
    out = model(dict(batch), compute_force=True, compute_stress=True, training=training)
    return {k: out[k] for k in ("energy", "interaction_energy", "forces", "stress")
            if out.get(k) is not None}


def _close(got, want, rtol):
    scale = want.abs().max().clamp_min(1e-30)
    assert float((got - want).abs().max() / scale) <= rtol


CASES = [
    dict(),
    dict(hidden="8x0e+8x1o+8x2e", max_ell=3, correlation=3),
    dict(first="RealAgnosticInteractionBlock", correlation=2, scale_shift=False),
    dict(hidden="4x0e", max_ell=1, correlation=1, interactions=1),
]


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_same_energy_forces_stress_and_gradients(dtype, rtol, case):
    model = build_mace(dtype, **CASES[case])
    batch = cu_al_batch(dtype)
    fast = tm.convert(model)
    want, got = _outputs(model, batch, True), _outputs(fast, batch, True)
    for key in want:
        _close(got[key].detach(), want[key].detach(), rtol)
    # the same parameters (names and shapes) get the same gradients
    loss_m = want["energy"].sum() + want["forces"].square().sum()
    loss_f = got["energy"].sum() + got["forces"].square().sum()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names == [n for n, p in fast.named_parameters() if p.requires_grad]
    gm = torch.autograd.grad(loss_m, [p for p in model.parameters() if p.requires_grad],
                             allow_unused=True)
    gf = torch.autograd.grad(loss_f, [p for p in fast.parameters() if p.requires_grad],
                             allow_unused=True)
    for name, a, b in zip(names, gm, gf, strict=True):
        if a is None:
            assert b is None or not b.any(), name
            continue
        _close(b, a, 10 * rtol)


def test_no_e3nn_tensor_product_or_linear_left():
    fast = tm.convert(build_mace(torch.float64, hidden="8x0e+8x1o+8x2e", max_ell=3))
    kinds = {type(m) for m in fast.modules()}
    assert not [k for k in kinds if issubclass(k, (o3.TensorProduct, o3.Linear))]
    from mace.modules.symmetric_contraction import SymmetricContraction
    assert not [k for k in kinds if issubclass(k, SymmetricContraction)]
    for block in fast.interactions:
        assert isinstance(block.conv_tp, tm.MaceConvolution)
        assert block.conv_fusion == tm.CONV_FUSION


def test_original_model_untouched_and_inplace():
    model = build_mace(torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = tm.convert(model)
    assert fast is not model
    assert isinstance(model.interactions[0].conv_tp, o3.TensorProduct)
    assert not hasattr(model.interactions[0], "conv_fusion")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert tm.convert(model, inplace=True) is model
    assert isinstance(model.interactions[0].conv_tp, tm.MaceConvolution)


def test_checkpoints_round_trip():
    dtype = torch.float64
    batch = cu_al_batch(dtype)
    model = build_mace(dtype, seed=1)
    fast = tm.convert(build_mace(dtype, seed=2))
    # a MACE checkpoint loads strictly into the converted model (e3nn constants skipped)
    fast.load_state_dict(model.state_dict(), strict=True)
    for key, value in _outputs(model, batch).items():
        _close(_outputs(fast, batch)[key], value, 1e-10)
    # train the converted model a step, go back to e3nn: a checkpoint of the unmodified model
    opt = torch.optim.SGD(fast.parameters(), lr=1e-2)
    out = fast(dict(batch), compute_force=True, training=True)
    (out["energy"].square().sum() + out["forces"].square().sum()).backward()
    opt.step()
    trained = _outputs(fast, batch)
    back = tm.to_e3nn(fast)
    assert isinstance(back.interactions[0].conv_tp, o3.TensorProduct)
    assert not hasattr(back.interactions[0], "conv_fusion")
    fresh = build_mace(dtype, seed=3)
    fresh.load_state_dict(back.state_dict(), strict=True)
    for key, value in trained.items():
        _close(_outputs(fresh, batch)[key], value, 1e-10)
        _close(_outputs(back, batch)[key], value, 1e-10)


def test_converted_float32_after_cast():
    """A float64 model converted, then cast: the same as MACE's model cast the same way."""
    model = build_mace(torch.float64)
    fast = tm.convert(model).float()
    batch = cu_al_batch(torch.float32)
    want = _outputs(model.float(), batch)
    for key, value in _outputs(fast, batch).items():
        _close(value, want[key], 1e-5)


def test_bad_inputs_raise_before_compute():
    fast = tm.convert(build_mace(torch.float64))
    conv = fast.interactions[0].conv_tp
    x = torch.randn(4, conv.irreps_in1.dim, dtype=torch.float64)
    e = torch.randn(3, conv.irreps_in2.dim, dtype=torch.float64)
    w = torch.randn(3, conv.weight_numel, dtype=torch.float64)
    with pytest.raises(Exception, match=r"edge_index must be \(2, n_edges\)"):
        conv(x, e, w, torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(Exception, match="receivers"):
        conv(x, e, w, torch.tensor([[0, 1, 2], [0, 1, 9]]))
    sc = fast.products[0].symmetric_contractions
    with pytest.raises(Exception, match=r"node_feats must be MACE's \(n, channels, D\)"):
        sc(torch.randn(4, 7, dtype=torch.float64), torch.eye(2, dtype=torch.float64)[[0, 1, 0, 1]])


def test_gaunt_product_basis_grid_equals_fourier_and_has_no_mace_form():
    model = build_mace(torch.float64, hidden="8x0e+8x1o+8x2e", max_ell=3)
    batch = cu_al_batch(torch.float64)
    grid = tm.convert(model, product_basis="gaunt-grid")
    fourier = tm.convert(model, product_basis="gaunt-fourier")
    assert isinstance(grid.products[0].symmetric_contractions, tm.MaceGauntProductBasis)
    fourier.load_state_dict(grid.state_dict(), strict=True)
    for key, value in _outputs(grid, batch).items():
        _close(_outputs(fourier, batch)[key], value, 1e-10)
    # a different operation from MACE's (its own weights), not a conversion
    assert not torch.allclose(_outputs(grid, batch)["forces"], _outputs(model, batch)["forces"])
    with pytest.raises(Exception, match="no MACE form"):
        tm.to_e3nn(grid)
    with pytest.raises(Exception, match="product_basis must be one of"):
        tm.convert(model, product_basis="gaunt")
