"""Small MACE models and data for the tests of this folder, built by mace-torch's and ASE's own
constructors (importable only where mace-torch is installed)."""

from __future__ import annotations

import os

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # e3nn 0.4.4 torch.load-s constants

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase.build import bulk  # noqa: E402
from e3nn import o3  # noqa: E402
from mace import data as mace_data  # noqa: E402
from mace import modules  # noqa: E402
from mace.tools import torch_geometric  # noqa: E402
from mace.tools import utils as mace_utils  # noqa: E402

Z = [13, 29]


def build_mace(dtype, *, hidden="8x0e+8x1o", max_ell=2, correlation=3, interactions=2,
               first="RealAgnosticResidualInteractionBlock", scale_shift=True, seed=0):
    """A small MACE built by mace-torch's own constructors (in ``dtype``)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # MACE builds its constants in the default dtype
    try:
        torch.manual_seed(seed)
        kwargs = dict(
            r_max=4.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=max_ell,
            interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=modules.interaction_classes[first],
            num_interactions=interactions, num_elements=len(Z),
            hidden_irreps=o3.Irreps(hidden), MLP_irreps=o3.Irreps("16x0e"),
            atomic_energies=np.array([-1.0, -2.0]), avg_num_neighbors=8.0, atomic_numbers=Z,
            correlation=correlation, gate=torch.nn.functional.silu)
        if scale_shift:
            return modules.ScaleShiftMACE(atomic_inter_scale=1.3, atomic_inter_shift=0.1,
                                          **kwargs)
        return modules.MACE(**kwargs)
    finally:
        torch.set_default_dtype(default)


def cu_al_batch(dtype, repeat=(2, 2, 2), seed=0):
    """A rattled, strained periodic fcc Cu cell with every third atom Al, MACE's batch dict."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)
    atoms.numbers[::3] = 13
    rng = np.random.default_rng(seed)
    atoms.positions += 0.1 * rng.standard_normal(atoms.positions.shape)
    atoms.set_cell(atoms.cell * [1.01, 0.99, 1.02], scale_atoms=True)
    table = mace_utils.AtomicNumberTable(Z)
    config = mace_data.config_from_atoms(atoms)
    data = [mace_data.AtomicData.from_config(config, z_table=table, cutoff=4.0)]
    batch = next(iter(torch_geometric.dataloader.DataLoader(data, batch_size=1))).to_dict()
    return {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in batch.items()}
