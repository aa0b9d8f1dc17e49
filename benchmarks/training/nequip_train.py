"""NequIP training on e3nn (``nequip.model.NequIPGNNModel`` as built, nequip 0.19) and on
tp_torch (the same model with every ``TensorProductScatter`` converted by
:func:`tp_torch.integrations.nequip.convert`, same initial weights), side by side.

Data: the Cu/Al EMT cells of :func:`.mace_train.emt_structures` (energy, forces, stress), each
made an ``AtomicDataDict`` by nequip's ``from_ase``, its type mapper (``["Al", "Cu"]``) and its
neighbour list, ``batch`` of them joined into one graph batch by nequip's
``AtomicDataDict.batched_from_list``. A step: forward in training mode (forces and stress by
nequip's autograd ``ForceStressOutput`` with ``create_graph``), loss = per-atom energy MSE +
force MSE + 10 x stress MSE, backward, Adam update. Both backends see the same batches.

The weights are float32 (``model_dtype``); positions, cell and the summed energy stay in
nequip's float64 default (``nequip.utils.global_state.set_global_state``), as nequip trains.

Runs in the ``nequip`` environment (nequip pins its own e3nn): ``nox -s nequip``;
``python -m benchmarks train --model nequip``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SIZES", "TYPES", "build_backend", "build_nequip", "run"]

#: model sizes; ``medium`` is the configuration of the speed target (nequip's default parity:
#: even and odd features of every l)
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(num_layers=2, l_max=1, num_features=4, radial_mlp_width=8,
                 radial_mlp_depth=1, repeat=(1, 1, 1), batch=2),
    "small": dict(num_layers=3, l_max=2, num_features=32, radial_mlp_width=64,
                  radial_mlp_depth=2, repeat=(2, 2, 2), batch=2),
    "medium": dict(num_layers=4, l_max=2, num_features=64, radial_mlp_width=64,
                   radial_mlp_depth=2, repeat=(2, 2, 2), batch=2),
}
TYPES = ["Al", "Cu"]
R_MAX = 4.5
#: fcc Cu within 4.5 A: 12 + 6 + 24 neighbours
AVG_NUM_NEIGHBORS = 42.0
STRESS_WEIGHT = 10.0


def _check_size(size: str) -> dict[str, Any]:
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; known: {sorted(SIZES)}")
    return SIZES[size]


def build_nequip(size: str, seed: int = 0) -> Any:
    """The NequIP model of ``size`` (energy, forces and stress by autograd), float32 weights,
    built by nequip's ``NequIPGNNModel`` from ``seed`` (the same seed: the same weights)."""
    from nequip.model import NequIPGNNModel
    from nequip.utils.global_state import set_global_state

    cfg = _check_size(size)
    set_global_state()
    return NequIPGNNModel(
        seed=seed, model_dtype="float32", type_names=TYPES, r_max=R_MAX,
        num_layers=cfg["num_layers"], l_max=cfg["l_max"], num_features=cfg["num_features"],
        radial_mlp_width=cfg["radial_mlp_width"], radial_mlp_depth=cfg["radial_mlp_depth"],
        avg_num_neighbors=AVG_NUM_NEIGHBORS, per_type_energy_shifts={t: 0.0 for t in TYPES},
        per_type_energy_scales={t: 1.0 for t in TYPES})


def _batches(structures: list[Any], batch: int) -> list[tuple[dict, dict]]:
    """nequip graph batches (``batch`` structures each, in order) with their targets:
    ``energy (B,)``, ``natoms (B,)``, ``forces (n_atoms, 3)``, ``stress (B, 3, 3)`` (ASE's sign,
    which is nequip's), in nequip's default dtype (float64)."""
    import numpy as np
    import torch
    from nequip.data import AtomicDataDict, compute_neighborlist_, from_ase
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper

    mapper = ChemicalSpeciesToAtomTypeMapper(TYPES)
    dtype = torch.get_default_dtype()
    out = []
    for s in range(0, len(structures), batch):
        group = structures[s:s + batch]
        # labels only in the targets: the model's input holds the geometry and types
        graphs = [compute_neighborlist_(
            mapper(from_ase(a, exclude_keys=["energy", "forces", "stress"])), r_max=R_MAX)
            for a in group]
        data = AtomicDataDict.batched_from_list(graphs)
        target = {
            "energy": torch.tensor([a.info["energy"] for a in group], dtype=dtype),
            "natoms": torch.tensor([len(a) for a in group], dtype=dtype),
            "forces": torch.tensor(np.concatenate([a.arrays["forces"] for a in group]),
                                   dtype=dtype),
            "stress": torch.tensor(np.stack([a.info["stress"] for a in group]), dtype=dtype),
        }
        out.append((data, target))
    return out


def _loss(model: Any, data: dict, target: dict) -> Any:
    from nequip.data import AtomicDataDict

    out = model(dict(data))
    energy = out[AtomicDataDict.TOTAL_ENERGY_KEY].reshape(-1)
    e = ((energy - target["energy"]) / target["natoms"]).square().mean()
    f = (out[AtomicDataDict.FORCE_KEY] - target["forces"]).square().mean()
    s = (out[AtomicDataDict.STRESS_KEY] - target["stress"]).square().mean()
    return e + f + STRESS_WEIGHT * s


def build_backend(backend: str, size: str, n_structures: int, seed: int = 0):
    """One backend's training step (a callable doing one Adam step, returning the loss) on its
    own model copy."""
    from .loop import adam_step
    from .mace_train import emt_structures

    cfg = _check_size(size)
    if backend not in ("e3nn", "tp_torch"):
        raise ValueError(f"unknown backend {backend!r}; known: 'e3nn', 'tp_torch'")
    if n_structures < 1:
        raise ValueError(f"n_structures must be >= 1, got {n_structures}")
    model = build_nequip(size, seed)
    if backend == "tp_torch":
        from tp_torch.integrations.nequip import convert

        model = convert(model)
    model.train()
    batches = _batches(emt_structures(n_structures, cfg["repeat"], seed), cfg["batch"])
    return adam_step(model, batches, _loss)


def run(size: str = "small", steps: int = 10, threads: str | int = 1, n_structures: int = 8,
        seed: int = 0, memory: bool = True) -> dict[str, Any]:
    """Train ``steps`` steps per backend, interleaved (plus one warm-up) -> the record's
    entry: config, per-backend losses, step times (median/quartiles), peak memory, and the
    e3nn/tp_torch median step-time ratio."""
    import platform

    import torch
    from nequip import __version__ as nequip_version

    from .loop import peak_memory, set_threads, train_interleaved

    _check_size(size)
    n_threads = set_threads(threads)
    # the e3nn model and its converted copy start from the same weights
    step_e3nn = build_backend("e3nn", size, n_structures, seed)
    step_tp = build_backend("tp_torch", size, n_structures, seed)
    res = train_interleaved({"e3nn": step_e3nn, "tp_torch": step_tp}, steps)
    if memory:
        for name in res:
            res[name]["memory"] = peak_memory(build_backend, (name, size, n_structures, seed),
                                              threads=threads)
    losses = list(zip(res["e3nn"]["loss"], res["tp_torch"]["loss"], strict=True))
    return {
        "model": "nequip", "size": size,
        "config": dict(SIZES[size], r_max=R_MAX, types=TYPES,
                       avg_num_neighbors=AVG_NUM_NEIGHBORS, stress_weight=STRESS_WEIGHT),
        "steps": steps, "n_structures": n_structures, "dtype": "float32",
        "threads": str(threads), "torch_threads": n_threads,
        "versions": {"torch": torch.__version__, "nequip": nequip_version,
                     "python": platform.python_version()},
        "backends": res,
        "speedup": res["e3nn"]["time"]["median"] / res["tp_torch"]["time"]["median"],
        "max_loss_rel_diff": max(abs(a - b) / max(abs(a), 1e-30) for a, b in losses),
    }
