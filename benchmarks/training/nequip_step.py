"""Training-step time of one NequIP model (nequip 0.19) on e3nn and on tp_torch.

``e3nn``: the model as ``nequip.model.NequIPGNNModel`` builds it. ``tp_torch``: a deep copy
with every ``TensorProductScatter`` converted by :func:`tp_torch.integrations.nequip.convert`
(same weights). A step: forward in training mode (forces by autograd with ``create_graph``),
loss = per-atom energy MSE + force MSE against fixed targets, backward into every weight
(no optimizer update: it is the same for both).

Data: ``ase.build.bulk("NaCl", "rocksalt", cubic=True).repeat(repeat)`` with one Na made K,
rattled with a fixed seed; nequip's own neighbour list.

    python -m benchmarks.training.nequip_step --threads 1 --repeats 10

Needs the ``nequip`` environment (``nox -s nequip``). Both models run in one process, samples
interleaved (alternating which goes first), so the ratio is robust to load changes.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from typing import Any

import torch

from benchmarks.timing import summarize

__all__ = ["CONFIG", "time_step"]

CONFIG: dict[str, Any] = {
    "num_layers": 3, "l_max": 2, "num_features": 32, "radial_mlp_width": 64,
    "radial_mlp_depth": 2, "r_max": 4.5, "repeat": (2, 2, 2), "rattle": 0.1,
    "model_dtype": "float32", "seed": 0,
}
TYPES = ["Na", "Cl", "K"]


def _setup(cfg: dict[str, Any]) -> tuple[torch.nn.Module, torch.nn.Module, dict, dict]:
    from ase.build import bulk
    from nequip.data import AtomicDataDict, compute_neighborlist_, from_ase
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper
    from nequip.model import NequIPGNNModel
    from nequip.utils.global_state import set_global_state
    from tp_torch.integrations.nequip import convert

    set_global_state()
    ref = NequIPGNNModel(
        seed=cfg["seed"], model_dtype=cfg["model_dtype"], type_names=TYPES, r_max=cfg["r_max"],
        num_layers=cfg["num_layers"], l_max=cfg["l_max"], num_features=cfg["num_features"],
        radial_mlp_width=cfg["radial_mlp_width"], radial_mlp_depth=cfg["radial_mlp_depth"],
        avg_num_neighbors=30.0, per_type_energy_shifts={t: 0.0 for t in TYPES},
        per_type_energy_scales={t: 1.0 for t in TYPES})
    ours = convert(copy.deepcopy(ref))
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(cfg["repeat"])
    atoms.numbers[0] = 19
    atoms.rattle(cfg["rattle"], seed=cfg["seed"])
    data = ChemicalSpeciesToAtomTypeMapper(TYPES)(from_ase(atoms))
    data = compute_neighborlist_(data, r_max=cfg["r_max"])
    g = torch.Generator().manual_seed(cfg["seed"])
    n = len(atoms)
    dtype = getattr(torch, cfg["model_dtype"])
    targets = {AtomicDataDict.TOTAL_ENERGY_KEY: torch.randn(1, 1, generator=g, dtype=dtype),
               AtomicDataDict.FORCE_KEY: torch.randn(n, 3, generator=g, dtype=dtype)}
    return ref, ours, data, targets


def _step(model: torch.nn.Module, data: dict, targets: dict) -> None:
    from nequip.data import AtomicDataDict

    model.zero_grad(set_to_none=True)
    out = model(dict(data))
    n = out[AtomicDataDict.FORCE_KEY].shape[0]
    e, f = AtomicDataDict.TOTAL_ENERGY_KEY, AtomicDataDict.FORCE_KEY
    loss = ((out[e] - targets[e]) / n).square().mean() + (out[f] - targets[f]).square().mean()
    loss.backward()


def time_step(threads: int | None = 1, repeats: int = 10, steps_per_sample: int = 2,
              config: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """Seconds per training step: ``{"e3nn": {"median", "q1", "q3"}, "tp_torch": {...}}``.

    ``threads``: ``torch.set_num_threads`` for the measurement (``None``: torch's default);
    ``repeats`` interleaved samples per model, each the mean of ``steps_per_sample`` steps
    after two untimed warm-up steps; ``config`` overrides entries of :data:`CONFIG`."""
    cfg = {**CONFIG, **(config or {})}
    unknown = set(cfg) - set(CONFIG)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}; known: {sorted(CONFIG)}")
    if repeats < 1 or steps_per_sample < 1:
        raise ValueError("repeats and steps_per_sample must be >= 1")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        ref, ours, data, targets = _setup(cfg)
        models = {"e3nn": ref.train(), "tp_torch": ours.train()}
        for m in models.values():
            for _ in range(2):
                _step(m, data, targets)
        samples: dict[str, list[float]] = {k: [] for k in models}
        for r in range(repeats):
            order = list(models) if r % 2 == 0 else list(models)[::-1]
            for name in order:
                t0 = time.perf_counter()
                for _ in range(steps_per_sample):
                    _step(models[name], data, targets)
                samples[name].append((time.perf_counter() - t0) / steps_per_sample)
    finally:
        torch.set_num_threads(before)
    keep = ("median", "q1", "q3")
    return {k: {s: v for s, v in summarize(xs).items() if s in keep}
            for k, xs in samples.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=None, help="default: torch's default")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--steps-per-sample", type=int, default=2)
    a = p.parse_args(argv)
    res = time_step(a.threads, a.repeats, a.steps_per_sample)
    res_ratio = res["e3nn"]["median"] / res["tp_torch"]["median"]
    print(json.dumps({"threads": a.threads or torch.get_num_threads(), **res,
                      "speedup_median": res_ratio}, indent=1))


if __name__ == "__main__":
    main()
