"""The training benchmark's command (``python -m benchmarks train``), Markdown table and plot.

A record (``train-<model>-<size>.json``) holds one entry per thread setting, each from the
model's ``run`` (:mod:`.mace_train`, :mod:`.nequip_train`): per backend the loss of every step,
the step times with their median and quartiles, and the peak memory.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = ["cmd_train", "markdown", "plot"]

MODELS = ("mace", "nequip")


def _runner(model: str) -> Any:
    if model == "mace":
        from . import mace_train as mod
    else:
        from . import nequip_train as mod
    return mod


def markdown(record: dict[str, Any]) -> str:
    """One row per thread setting and backend: step time median [q1, q3], speedup over e3nn,
    peak memory, first and last loss."""
    lines = [f"### {record['model']} ({record['size']}), {record['steps']} steps, "
             f"{record['runs'][0]['dtype']}",
             "",
             "| threads | backend | step time, ms: median [q1, q3] | vs e3nn | peak RSS, MiB "
             "(rise in training) | loss first -> last |",
             "|---|---|---|---|---|---|"]
    for run in record["runs"]:
        base = run["backends"]["e3nn"]["time"]["median"]
        for name, b in run["backends"].items():
            t = b["time"]
            mem = b.get("memory")
            mem_s = (f"{mem['rss_peak_mib']:.0f} ({mem['training_rise_mib']:.0f})" if mem
                     else "not measured")
            lines.append(f"| {run['threads']} | {name} | {1e3 * t['median']:.0f} "
                         f"[{1e3 * t['q1']:.0f}, {1e3 * t['q3']:.0f}] | "
                         f"{base / t['median']:.2f}x | {mem_s} | "
                         f"{b['loss'][0]:.4g} -> {b['loss'][-1]:.4g} |")
    lines.append("")
    lines.append("Largest relative difference of e3nn's and tp_torch's losses at the same step: "
                 + ", ".join(f"{run['max_loss_rel_diff']:.1e} ({run['threads']} threads)"
                             for run in record["runs"]) + ".")
    return "\n".join(lines)


def plot(record: dict[str, Any], path: Path) -> None:
    """Loss curves (every backend and thread setting) and step-time medians with quartile
    error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_time) = plt.subplots(1, 2, figsize=(10, 4))
    for run in record["runs"]:
        for name, b in run["backends"].items():
            ax_loss.plot(range(len(b["loss"])), b["loss"], marker="o", ms=3,
                         ls="-" if name == "e3nn" else "--",
                         label=f"{name}, {run['threads']} thr")
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("training loss (same data, same initial weights)")
    ax_loss.legend(fontsize=8)
    labels, med, lo, hi = [], [], [], []
    for run in record["runs"]:
        for name, b in run["backends"].items():
            t = b["time"]
            labels.append(f"{name}\n{run['threads']} thr")
            med.append(1e3 * t["median"])
            lo.append(1e3 * (t["median"] - t["q1"]))
            hi.append(1e3 * (t["q3"] - t["median"]))
    ax_time.bar(range(len(med)), med, yerr=[lo, hi], capsize=4,
                color=["tab:gray" if lab.startswith("e3nn") else "tab:blue" for lab in labels])
    ax_time.set_xticks(range(len(med)), labels, fontsize=8)
    ax_time.set_ylabel("ms per training step (median, quartiles)")
    ax_time.set_title(f"{record['model']} {record['size']}: time per step")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmd_train(args: argparse.Namespace) -> int:
    runs = []
    experiment = args.experiment == "product-basis"
    if experiment and args.model != "mace":
        raise SystemExit("--experiment product-basis is a MACE experiment (--model mace)")
    for threads in args.threads.split(","):
        if experiment:
            from . import product_basis

            runs.append(product_basis.run(size=args.size, epochs=args.steps, threads=threads,
                                          n_train=args.structures, seed=args.seed))
            print(f"product basis, threads={threads}: Fourier/grid time per epoch "
                  f"{runs[-1]['fourier_over_grid']:.2f}x", file=sys.stderr)
            continue
        extra = {"cueq": not args.no_cueq} if args.model == "mace" else {}
        runs.append(_runner(args.model).run(size=args.size, steps=args.steps, threads=threads,
                                            n_structures=args.structures, seed=args.seed,
                                            memory=not args.no_memory, **extra))
        print(f"{args.model} {args.size} threads={threads}: e3nn/tp_torch step time "
              f"{runs[-1]['speedup']:.2f}x", file=sys.stderr)
    record = {
        "kind": "training" if not experiment else "product-basis",
        "model": args.model, "size": args.size, "steps": args.steps,
        "command": args.command_line or "python -m benchmarks " + " ".join(sys.argv[1:]),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "runs": runs,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"train-{args.model}-{args.size}"
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
    if experiment:
        from .product_basis import markdown as table_of
        from .product_basis import plot as plot_of
    else:
        table_of, plot_of = markdown, plot
    table = table_of(record)
    (out / f"{stem}.md").write_text(table + "\n")
    if not args.no_plots:
        plot_of(record, out / f"{stem}.png")
    print(table)
    return 0


def add_parser(sub: Any) -> None:
    from ..cli import add_command

    t = add_command(sub, "train", "training steps of a real model (MACE, NequIP) on e3nn and on "
                    "tp_torch, side by side")
    t.add_argument("--model", choices=MODELS, default="mace",
                   help="mace (needs the mace environment) or nequip (the nequip environment)")
    t.add_argument("--experiment", choices=("speed", "product-basis"), default="speed",
                   help="speed: e3nn vs tp_torch, the same model; product-basis: the paper's "
                        "MACE experiment (CG vs Gaunt grid vs Gaunt Fourier product basis; "
                        "use --size product-basis)")
    t.add_argument("--size", default="small", help="model size: tiny, small, medium or "
                   "product-basis")
    t.add_argument("--steps", type=int, default=10, help="timed steps per backend (after one "
                   "warm-up step); epochs with --experiment product-basis")
    t.add_argument("--threads", default="1,default",
                   help="comma list of thread settings: N or 'default' (torch's own)")
    t.add_argument("--structures", type=int, default=8,
                   help="generated structures (the batches cycle through them)")
    t.add_argument("--seed", type=int, default=0, help="weights and data seed")
    t.add_argument("--no-memory", action="store_true",
                   help="skip the per-backend peak-memory processes")
    t.add_argument("--no-cueq", action="store_true",
                   help="MACE: leave out cuEquivariance (its naive CPU path is slow)")
    t.add_argument("--no-plots", action="store_true", help="no PNG")
    t.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "out" / "train"),
                   help="output directory (default benchmarks/out/train in the harness's "
                        "folder, whatever the working directory)")
    t.add_argument("--command-line", help=argparse.SUPPRESS)
    t.set_defaults(func=cmd_train)
