"""tp_torch inside NequIP (nequip 0.19): converted models against the unmodified ones.

Runs only where nequip is installed (it pins e3nn 0.6: its own venv, ``nox -s nequip``). The
reference is nequip's own model with its e3nn ``TensorProductScatter``: energies, forces,
stresses and every weight gradient of a training loss must agree.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("nequip.model")  # (a bare "nequip" would find this folder)

import torch  # noqa: E402
from ase.build import bulk  # noqa: E402
from nequip.data import AtomicDataDict, compute_neighborlist_, from_ase  # noqa: E402
from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper  # noqa: E402
from nequip.model import NequIPGNNModel  # noqa: E402
from nequip.nn._tp_scatter_base import TensorProductScatter  # noqa: E402
from nequip.utils.dtype import torch_default_dtype  # noqa: E402
from nequip.utils.global_state import set_global_state  # noqa: E402
from tp_torch import TensorProductConv  # noqa: E402
from tp_torch.integrations import nequip as tpn  # noqa: E402

TYPES = ["Na", "Cl", "K"]
R_MAX = 4.0
TOL = {"float64": 1e-10, "float32": 1e-5}
OUTPUTS = (AtomicDataDict.TOTAL_ENERGY_KEY, AtomicDataDict.FORCE_KEY, AtomicDataDict.STRESS_KEY)

set_global_state()


def _model(dtype: str, seed: int = 1, **kw):
    """A small NequIP model: 2 layers, l_max 2, 8 channels, 3 species."""
    args = dict(seed=seed, model_dtype=dtype, type_names=TYPES, r_max=R_MAX, num_layers=2,
                l_max=2, num_features=8, radial_mlp_width=16, avg_num_neighbors=12.0,
                per_type_energy_shifts={"Na": 0.1, "Cl": -0.2, "K": 0.3},
                per_type_energy_scales={"Na": 1.0, "Cl": 2.0, "K": 0.5})
    args.update(kw)
    return NequIPGNNModel(**args)


def _data(seed: int = 0, repeat=(2, 1, 1)):
    """A rattled periodic rock-salt cell with all three species."""
    atoms = bulk("NaCl", "rocksalt", a=5.4).repeat(repeat)
    atoms.rattle(0.15, seed=seed)
    atoms.numbers[1] = 19  # one K
    data = ChemicalSpeciesToAtomTypeMapper(TYPES)(from_ase(atoms))
    return compute_neighborlist_(data, r_max=R_MAX)


def _run(model, data):
    return model(dict(data))


def _close(a: torch.Tensor, b: torch.Tensor, tol: float, what: str) -> None:
    """max |a - b| <= tol * max |b| (relative to the reference's scale)."""
    assert a.shape == b.shape and a.dtype == b.dtype, what
    scale = b.abs().max().item()
    err = (a - b).abs().max().item()
    assert scale > 0, f"{what}: the reference is all zeros"
    assert err <= tol * scale, f"{what}: max abs error {err:.3e} > {tol:g} * {scale:.3e}"


def _scatters(model, cls):
    return [m for m in model.modules() if type(m) is cls]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_outputs_and_weight_gradients_match_the_e3nn_model(dtype):
    ref = _model(dtype)
    ours = tpn.convert(ref)
    assert len(_scatters(ours, tpn.TPTorchTensorProductScatter)) == 2
    assert not _scatters(ours, TensorProductScatter)
    data = _data()
    results = []
    for model in (ref, ours):
        model.train()  # forces with create_graph: the loss below differentiates through them
        out = _run(model, data)
        loss = (out[AtomicDataDict.TOTAL_ENERGY_KEY].square().sum()
                + out[AtomicDataDict.FORCE_KEY].square().sum()
                + out[AtomicDataDict.STRESS_KEY].square().sum())
        grads = torch.autograd.grad(loss, list(model.parameters()))
        results.append(({k: out[k].detach() for k in OUTPUTS}, grads))
    (out_ref, g_ref), (out_ours, g_ours) = results
    for k in OUTPUTS:
        _close(out_ours[k], out_ref[k], TOL[dtype], k)
    names = [n for n, _ in ref.named_parameters()]
    assert names == [n for n, _ in ours.named_parameters()]
    nonzero = 0
    for name, a, b in zip(names, g_ours, g_ref, strict=True):
        if b.abs().max() == 0:
            assert a.abs().max() == 0, name
            continue
        nonzero += 1
        _close(a, b, TOL[dtype], f"grad {name}")
    assert nonzero >= len(names) - 2  # the test covers (nearly) every weight


def test_the_conv_no_longer_runs_e3nn():
    """The converted convolutions run tp_torch; the e3nn ``tp`` they keep (for the state dict)
    is never called, while the unmodified model calls it."""
    ref = _model("float64")
    ours = tpn.convert(ref)
    data = _data()
    for model, expect_calls in ((ref, True), (ours, False)):
        calls: list[int] = []
        handles = [m.tp.register_forward_hook(lambda *a, c=calls: c.append(1))
                   for m in model.modules() if isinstance(m, TensorProductScatter)]
        _run(model, data)
        for h in handles:
            h.remove()
        assert bool(calls) == expect_calls
    for m in _scatters(ours, tpn.TPTorchTensorProductScatter):
        assert isinstance(m.tp_conv, TensorProductConv)


def test_descriptor_matches_e3nn_on_random_inputs():
    """The module alone, multiplicities and edge irreps NequIP does not use by default."""
    from e3nn.o3 import Irreps

    irreps_in = Irreps("3x0e + 2x1o + 2x1e + 1x2e")
    irreps_edge = Irreps("0e + 1o + 2e")
    mid, instr = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_e) in enumerate(irreps_edge):
            for ir_out in ir_in * ir_e:
                if ir_out.l <= 2:
                    instr.append((i, j, len(mid), "uvu", True))
                    mid.append((mul, ir_out))
    mid, p, _ = Irreps(mid).sort()
    instr = [(a, b, p[k], m, t) for a, b, k, m, t in instr]
    with torch_default_dtype(torch.float64):
        ref = TensorProductScatter(irreps_in, irreps_edge, mid, instr)
        ours = tpn.TPTorchTensorProductScatter(irreps_in, irreps_edge, mid, instr)
    g = torch.Generator().manual_seed(3)
    n, e = 7, 40
    x = torch.randn(n, irreps_in.dim, dtype=torch.float64, generator=g, requires_grad=True)
    ea = torch.randn(e, irreps_edge.dim, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(e, ref.tp.weight_numel, dtype=torch.float64, generator=g, requires_grad=True)
    dst = torch.randint(0, n - 1, (e,), generator=g)  # the last node receives nothing
    src = torch.randint(0, n, (e,), generator=g)
    ct = torch.randn(n, mid.dim, dtype=torch.float64, generator=g)
    res = []
    for m in (ref, ours):
        y = m(x, ea, w, dst, src)
        res.append((y.detach(), *torch.autograd.grad((y * ct).sum(), (x, ea, w))))
    for what, a, b in zip(("out", "d x", "d edge_attr", "d weight"), res[1], res[0], strict=True):
        _close(a, b, 1e-12, what)


def test_to_e3nn_restores_the_modules_and_the_state_dict():
    ref = _model("float64")
    originals = [m.tp for m in _scatters(ref, TensorProductScatter)]
    keys = list(ref.state_dict().keys())
    model = tpn.convert(ref)
    assert list(model.state_dict().keys()) == keys  # conversion adds or drops no entry
    model = tpn.to_e3nn(model)
    back = _scatters(model, TensorProductScatter)
    assert len(back) == 2 and not _scatters(model, tpn.TPTorchTensorProductScatter)
    assert [type(m.tp) for m in back] == [type(t) for t in originals]
    fresh = _model("float64", seed=7)  # different weights
    data = _data()
    e_before = _run(fresh, data)[AtomicDataDict.TOTAL_ENERGY_KEY].detach()
    fresh.load_state_dict(model.state_dict(), strict=True)
    e_ref = _run(ref, data)[AtomicDataDict.TOTAL_ENERGY_KEY].detach()
    assert not torch.equal(e_before, e_ref)  # the load below changes something
    assert torch.equal(_run(fresh, data)[AtomicDataDict.TOTAL_ENERGY_KEY].detach(), e_ref)
    # and a converted model loads an unmodified model's state dict strictly
    ours = tpn.convert(fresh)
    ours.load_state_dict(ref.state_dict(), strict=True)
    _close(_run(ours, data)[AtomicDataDict.TOTAL_ENERGY_KEY].detach(), e_ref, 1e-10, "energy")


def test_bad_calls_raise():
    model = _model("float64")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        tpn.convert("model")
    scatter = _scatters(model, TensorProductScatter)[0]
    with pytest.raises(TypeError, match="replaces the submodules of a model"):
        tpn.convert(scatter)
    with pytest.raises(ValueError, match="no TPTorchTensorProductScatter"):
        tpn.to_e3nn(model)
    assert tpn.convert(model, inplace=True) is model
    assert _scatters(model, tpn.TPTorchTensorProductScatter)
    with pytest.raises(ValueError, match="no nequip TensorProductScatter"):
        tpn.convert(model)
    m = _scatters(model, tpn.TPTorchTensorProductScatter)[0]
    x = torch.randn(4, m.feature_irreps_in.dim, dtype=torch.float64)
    ea = torch.randn(5, m.irreps_edge_attr.dim, dtype=torch.float64)
    w = torch.randn(5, m.tp.weight_numel, dtype=torch.float32)  # mixed dtypes: no silent cast
    idx = torch.zeros(5, dtype=torch.long)
    with pytest.raises(Exception, match="dtype"):
        m(x, ea, w, idx, idx)


def test_import_is_lazy():
    code = ("import sys, tp_torch, tp_torch.integrations.nequip; "
            "assert 'nequip' not in sys.modules, 'nequip imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
