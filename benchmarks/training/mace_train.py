"""MACE training on e3nn (mace-torch as built), on tp_torch (the same model converted by
:func:`tp_torch.integrations.mace.convert`) and, where cuequivariance-torch is installed, on
cuEquivariance (MACE's own converter; its naive path on CPU), all from the same initial
weights, side by side.

Data, generated on the fly and deterministic: fcc Cu cells (``repeat`` cubic cells), a seeded
random quarter to half of the atoms made Al, strained by up to 3% per axis, rattled by up to
0.15 A, labelled by ASE's EMT calculator (energy, forces, stress). A step: a batch of
``batch`` structures, forward in training mode (forces and stress by autograd), loss = per-atom
energy MSE + force MSE + stress MSE, backward, Adam update. Both backends see the same batches.

Runs in the ``mace`` environment (mace-torch pins e3nn 0.4.4): ``nox -s train``.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # e3nn 0.4.4 torch.load-s constants

__all__ = ["SIZES", "build_backend", "emt_structures", "run"]

#: model sizes; ``medium`` is the configuration of the speed target
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden="4x0e+4x1o", max_ell=1, correlation=2, interactions=2, radial=[8],
                 repeat=(1, 1, 1), batch=2),
    "small": dict(hidden="32x0e+32x1o", max_ell=2, correlation=3, interactions=2,
                  radial=[32, 32], repeat=(2, 2, 2), batch=2),
    "medium": dict(hidden="64x0e+64x1o+64x2e", max_ell=3, correlation=3, interactions=2,
                   radial=[64, 64, 64], repeat=(2, 2, 2), batch=2),
    # the paper's product-basis experiment (256 channels there) at CPU scale
    "product-basis": dict(hidden="32x0e+32x1o+32x2e", max_ell=3, correlation=3,
                          interactions=2, radial=[32, 32], repeat=(2, 2, 2), batch=2),
}
Z = (13, 29)
R_MAX = 4.5


def emt_structures(n: int, repeat: tuple[int, int, int], seed: int = 0) -> list[Any]:
    """``n`` labelled periodic Cu/Al cells (ASE ``Atoms`` with ``info["energy"]``,
    ``arrays["forces"]``, ``info["stress"]`` (3, 3) in eV/A^3)."""
    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.stress import voigt_6_to_full_3x3_stress

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)
        al = rng.choice(len(atoms), size=int(len(atoms) * rng.uniform(0.25, 0.5)),
                        replace=False)
        atoms.numbers[al] = 13
        atoms.set_cell(atoms.cell * (1 + rng.uniform(-0.03, 0.03, 3)), scale_atoms=True)
        atoms.positions += rng.uniform(0.02, 0.15) * rng.standard_normal(atoms.positions.shape)
        atoms.calc = EMT()
        atoms.info["energy"] = atoms.get_potential_energy()
        atoms.arrays["forces"] = atoms.get_forces()
        atoms.info["stress"] = voigt_6_to_full_3x3_stress(atoms.get_stress())
        atoms.calc = None
        out.append(atoms)
    return out


def _batches(structures: list[Any], batch: int, dtype: Any) -> list[tuple[dict, dict]]:
    """MACE batch dicts with their targets, ``batch`` structures each, in order."""
    import numpy as np
    import torch
    from mace import data as mace_data
    from mace.tools import torch_geometric
    from mace.tools import utils as mace_utils

    table = mace_utils.AtomicNumberTable(list(Z))
    out = []
    for s in range(0, len(structures), batch):
        group = structures[s:s + batch]
        data = [mace_data.AtomicData.from_config(mace_data.config_from_atoms(a), z_table=table,
                                                 cutoff=R_MAX) for a in group]
        b = next(iter(torch_geometric.dataloader.DataLoader(data, batch_size=len(group))))
        b = {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v
             for k, v in b.to_dict().items()}
        target = {
            "energy": torch.tensor([a.info["energy"] for a in group], dtype=dtype),
            "natoms": torch.tensor([len(a) for a in group], dtype=dtype),
            "forces": torch.tensor(np.concatenate([a.arrays["forces"] for a in group]),
                                   dtype=dtype),
            "stress": torch.tensor(np.stack([a.info["stress"] for a in group]), dtype=dtype),
        }
        out.append((b, target))
    return out


def build_mace(size: str, dtype: Any, seed: int = 0) -> Any:
    """The MACE model of ``size`` (``ScaleShiftMACE``, residual interactions), built by
    mace-torch's constructors in ``dtype``."""
    import numpy as np
    import torch
    from e3nn import o3
    from mace import modules

    cfg = SIZES[size]
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(seed)
        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        return modules.ScaleShiftMACE(
            r_max=R_MAX, num_bessel=8, num_polynomial_cutoff=5, max_ell=cfg["max_ell"],
            interaction_cls=block, interaction_cls_first=block,
            num_interactions=cfg["interactions"], num_elements=len(Z),
            hidden_irreps=o3.Irreps(cfg["hidden"]), MLP_irreps=o3.Irreps("16x0e"),
            atomic_energies=np.zeros(len(Z)), avg_num_neighbors=40.0,
            atomic_numbers=list(Z), correlation=cfg["correlation"],
            gate=torch.nn.functional.silu, radial_MLP=cfg["radial"], atomic_inter_scale=1.0,
            atomic_inter_shift=0.0)
    finally:
        torch.set_default_dtype(default)


def _loss(model: Any, batch: dict, target: dict) -> Any:
    out = model(dict(batch), training=True, compute_force=True, compute_stress=True)
    e = ((out["energy"] - target["energy"]) / target["natoms"]).square().mean()
    f = (out["forces"] - target["forces"]).square().mean()
    s = (out["stress"] - target["stress"]).square().mean()
    return e + f + 10.0 * s


def build_backend(backend: str, size: str, n_structures: int, seed: int = 0):
    """One backend's training step (a callable doing one Adam step, returning the loss) on its
    own model copy."""
    import torch

    from .loop import adam_step

    dtype = torch.float32
    model = build_mace(size, dtype, seed)
    if backend == "tp_torch":
        from tp_torch.integrations.mace import convert

        model = convert(model)
    elif backend == "cueq":  # MACE's own converter to cuEquivariance (naive path on CPU)
        from mace.cli.convert_e3nn_cueq import run as to_cueq

        default = torch.get_default_dtype()
        try:
            model = to_cueq(model, device="cpu")
        finally:
            torch.set_default_dtype(default)  # the converter sets the model's dtype as default
    elif backend != "e3nn":
        raise ValueError(f"unknown backend {backend!r}")
    batches = _batches(emt_structures(n_structures, SIZES[size]["repeat"], seed),
                       SIZES[size]["batch"], dtype)
    return adam_step(model, batches, _loss)


def cueq_installed() -> bool:
    """Whether cuequivariance-torch is importable (MACE's cuEquivariance backend)."""
    import importlib.util

    return importlib.util.find_spec("cuequivariance_torch") is not None


def run(size: str = "small", steps: int = 10, threads: str | int = 1, n_structures: int = 8,
        seed: int = 0, memory: bool = True, cueq: bool = True) -> dict[str, Any]:
    """Train ``steps`` steps per backend, interleaved (plus one warm-up) -> the record's
    entry: config, per-backend losses, step times (median/quartiles), peak memory, and the
    e3nn/tp_torch median step-time ratio. ``cueq=False`` leaves cuEquivariance out."""
    import platform

    import torch
    from mace import __version__ as mace_version

    from .loop import peak_memory, set_threads, train_interleaved

    n_threads = set_threads(threads)
    # the e3nn model and its converted copies start from the same weights
    names = ["e3nn", "tp_torch"] + (["cueq"] if cueq and cueq_installed() else [])
    res = train_interleaved({n: build_backend(n, size, n_structures, seed) for n in names},
                            steps)
    if memory:
        for name in res:
            res[name]["memory"] = peak_memory(build_backend, (name, size, n_structures, seed),
                                              threads=threads)
    losses = [(a, b) for a, b in zip(res["e3nn"]["loss"], res["tp_torch"]["loss"],
                                     strict=True)]
    return {
        "model": "mace", "size": size, "config": dict(SIZES[size], r_max=R_MAX, Z=list(Z)),
        "steps": steps, "n_structures": n_structures, "dtype": "float32",
        "threads": str(threads), "torch_threads": n_threads,
        "versions": {"torch": torch.__version__, "mace": mace_version,
                     "python": platform.python_version()},
        "backends": res,
        "speedup": res["e3nn"]["time"]["median"] / res["tp_torch"]["time"]["median"],
        "max_loss_rel_diff": max(abs(a - b) / max(abs(a), 1e-30) for a, b in losses),
        **({"cueq_speedup": res["e3nn"]["time"]["median"] / res["cueq"]["time"]["median"]}
           if "cueq" in res else {"cueq": "not run" if not cueq else "not installed"}),
    }

