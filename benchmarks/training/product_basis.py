"""The paper's MACE experiment at CPU scale: MACE's product basis as the Clebsch-Gordan
symmetric contraction, as the Gaunt product on a sphere grid, and as the Gaunt product through
2D Fourier series; time per epoch and validation errors after a fixed number of epochs.

All three start from the same MACE model (mace-torch's constructors, converted by
:func:`tp_torch.integrations.mace.convert` with ``product_basis`` ``cg``, ``gaunt-grid``,
``gaunt-fourier``). The two Gaunt variants get the same initial weights, so they are the same
model computed two ways: their losses agree to float32 noise and only their time differs. The
data are :func:`.mace_train.emt_structures` (train and validation sets of different seeds);
an epoch is one Adam step per training batch; epochs alternate between the variants.

The paper (Xie et al. 2025) trained MACE with 256x0e+256x1o+256x2e, max_ell 3, correlation 3
on rMD17 and 3BPA on a GPU: the Fourier run took 1.30x (3BPA) and 1.31x (rMD17) the grid run's
time per epoch.
"""

from __future__ import annotations

import time
from typing import Any

from .mace_train import SIZES, Z, _batches, _loss, build_mace, emt_structures

__all__ = ["VARIANTS", "run"]

VARIANTS = ("cg", "gaunt-grid", "gaunt-fourier")


def _errors(model: Any, batches: list) -> dict[str, float]:
    """Validation energy MAE per atom (eV/atom) and force MAE (eV/A)."""
    e_err, f_err, atoms, comps = 0.0, 0.0, 0, 0
    for batch, target in batches:
        out = model(dict(batch), training=False, compute_force=True)
        e_err += float(((out["energy"].detach() - target["energy"]) / target["natoms"])
                       .abs().sum())
        f_err += float((out["forces"].detach() - target["forces"]).abs().sum())
        atoms += len(target["energy"])
        comps += target["forces"].numel()
    return {"energy_mae_per_atom": e_err / atoms, "force_mae": f_err / comps}


def run(size: str = "product-basis", epochs: int = 10, threads: str | int = 1,
        n_train: int = 8, n_val: int = 4, seed: int = 0) -> dict[str, Any]:
    """Train the three variants ``epochs`` epochs each -> the record: per variant the epoch
    times (median, quartiles), the training loss of every step, the validation errors after
    every epoch; and the Fourier/grid epoch-time ratio."""
    import platform

    import torch
    from mace import __version__ as mace_version
    from tp_torch.integrations.mace import convert

    from benchmarks.timing import summarize

    from .loop import set_threads

    n_threads = set_threads(threads)
    dtype = torch.float32
    base = build_mace(size, dtype, seed)
    models = {v: convert(base, product_basis=v) for v in VARIANTS}
    models["gaunt-fourier"].load_state_dict(models["gaunt-grid"].state_dict())
    train = _batches(emt_structures(n_train, SIZES[size]["repeat"], seed),
                     SIZES[size]["batch"], dtype)
    val = _batches(emt_structures(n_val, SIZES[size]["repeat"], seed + 1000),
                   SIZES[size]["batch"], dtype)
    opts = {v: torch.optim.Adam(m.parameters(), lr=1e-3) for v, m in models.items()}
    rec: dict[str, dict[str, Any]] = {v: {"loss": [], "epoch_s": [], "val": []} for v in VARIANTS}
    for epoch in range(epochs + 1):  # epoch 0: warm-up (first-use compilation), not timed
        for v in VARIANTS if epoch % 2 == 0 else VARIANTS[::-1]:
            model, opt = models[v], opts[v]
            t0 = time.perf_counter()
            for batch, target in train:
                opt.zero_grad(set_to_none=True)
                loss = _loss(model, batch, target)
                loss.backward()
                opt.step()
                rec[v]["loss"].append(float(loss.detach()))
            dt = time.perf_counter() - t0
            if epoch:
                rec[v]["epoch_s"].append(dt)
            rec[v]["val"].append(_errors(model, val))
    for r in rec.values():
        r["time"] = summarize(r["epoch_s"])
    return {
        "model": "mace", "experiment": "product-basis", "size": size,
        "config": dict(SIZES[size], Z=list(Z)), "epochs": epochs, "n_train": n_train,
        "n_val": n_val, "dtype": "float32", "threads": str(threads),
        "torch_threads": n_threads,
        "versions": {"torch": torch.__version__, "mace": mace_version,
                     "python": platform.python_version()},
        "variants": rec,
        "fourier_over_grid": (rec["gaunt-fourier"]["time"]["median"]
                              / rec["gaunt-grid"]["time"]["median"]),
        "cg_over_grid": rec["cg"]["time"]["median"] / rec["gaunt-grid"]["time"]["median"],
        "paper_fourier_over_grid": {"3BPA": 1.30, "rMD17": 1.31},
    }


def markdown(record: dict[str, Any]) -> str:
    """One row per thread setting and variant."""
    lines = [f"### MACE product basis ({record['size']}: {record['runs'][0]['config']['hidden']}, "
             f"max_ell {record['runs'][0]['config']['max_ell']}, correlation "
             f"{record['runs'][0]['config']['correlation']}), {record['steps']} epochs",
             "",
             "| threads | product basis | epoch time, s: median [q1, q3] | vs grid | val energy "
             "MAE, meV/atom | val force MAE, meV/A |",
             "|---|---|---|---|---|---|"]
    for run in record["runs"]:
        grid = run["variants"]["gaunt-grid"]["time"]["median"]
        for v, r in run["variants"].items():
            t, last = r["time"], r["val"][-1]
            lines.append(f"| {run['threads']} | {v} | {t['median']:.2f} [{t['q1']:.2f}, "
                         f"{t['q3']:.2f}] | {t['median'] / grid:.2f}x | "
                         f"{1e3 * last['energy_mae_per_atom']:.1f} | "
                         f"{1e3 * last['force_mae']:.0f} |")
    lines += ["", "Fourier / grid time per epoch: "
              + ", ".join(f"{run['fourier_over_grid']:.2f}x ({run['threads']} threads)"
                          for run in record["runs"])
              + "; the paper's MACE runs: 1.30x (3BPA), 1.31x (rMD17), on a GPU at 256 channels."]
    return "\n".join(lines)


def plot(record: dict[str, Any], path: Any) -> None:
    """Validation force MAE per epoch, and epoch-time medians with quartile error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_err, ax_time) = plt.subplots(1, 2, figsize=(10, 4))
    run = record["runs"][0]
    for v, r in run["variants"].items():
        ax_err.plot(range(len(r["val"])), [1e3 * e["force_mae"] for e in r["val"]],
                    marker="o", ms=3, ls="--" if v == "gaunt-fourier" else "-", label=v)
    ax_err.set_xlabel("epoch")
    ax_err.set_ylabel("validation force MAE, meV/A")
    ax_err.set_title(f"accuracy ({run['threads']} threads)")
    ax_err.legend(fontsize=8)
    labels, med, lo, hi = [], [], [], []
    for run in record["runs"]:
        for v, r in run["variants"].items():
            t = r["time"]
            labels.append(f"{v}\n{run['threads']} thr")
            med.append(t["median"])
            lo.append(t["median"] - t["q1"])
            hi.append(t["q3"] - t["median"])
    ax_time.bar(range(len(med)), med, yerr=[lo, hi], capsize=4)
    ax_time.set_xticks(range(len(med)), labels, fontsize=7)
    ax_time.set_ylabel("s per epoch (median, quartiles)")
    ax_time.set_title("MACE product basis: time per epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
