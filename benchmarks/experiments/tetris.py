"""The chirality experiment of "The Price of Freedom" (Xie et al., ICML 2025) on e3nn's tetris
shapes: one small equivariant network per tensor product family, trained to classify the 8
shapes, evaluated on randomly rotated copies.

The CGTP can build the pseudoscalar that separates the mirror-image pair and reaches 8/8; the
Gaunt product (only even ``l1 + l2 + l3`` paths) cannot, so the pair gets identical logits and
its accuracy stops at 7/8. Network: :mod:`benchmarks.experiments.tetris_model`. A product
that ``tp_spec`` lacks or ``tp_torch`` cannot run is recorded as not available, with the reason.

``python -m benchmarks experiment tetris [--quick] [--seeds N] [--steps N] --out DIR`` writes
``tetris.json`` (per product: accuracy, median over seeds, per-seed accuracies, final loss,
steps, seconds; the command, versions and machine) and ``tetris.png`` (test accuracy vs step).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OPS", "accuracy", "add_parser", "evaluation_graph", "run", "train_one"]

#: the products compared, in the record's order (``vstp`` where ``tp_spec`` has it)
OPS = ("cgtp", "gtp", "mtp", "vstp")
#: the method of each product's convolution (``None``: the backend's default)
METHODS = {"cgtp": None, "gtp": "grid", "mtp": None, "vstp": None}
#: (steps, seeds, evaluation interval, rotations per evaluation) of --quick and of the full run
QUICK = {"steps": 150, "seeds": 3, "eval_every": 10, "rotations": 4}
FULL = {"steps": 600, "seeds": 10, "eval_every": 20, "rotations": 8}
#: rotations of the final evaluation (each a copy of all 8 shapes)
FINAL_ROTATIONS = 32


def evaluation_graph(model: Any, rotations: int, rng: np.random.Generator,
                     dtype: Any = None) -> tuple[dict[str, Any], Any]:
    """``rotations`` Haar-random rotations of the 8 shapes as one batch: the graph's tensors
    and the labels ``(rotations * 8,)``."""
    import torch
    import tp_spec

    from .tetris_model import SHAPES, graph

    r = tp_spec.random_rotation(rng, shape=(rotations,))             # (R, 3, 3)
    pos = np.einsum("rij,spj->rspi", r, SHAPES).reshape(-1, *SHAPES.shape[1:])
    labels = torch.arange(len(SHAPES)).repeat(rotations)
    return model.tensors(graph(pos, model.lmax), dtype or torch.float32), labels


def accuracy(model: Any, g: dict[str, Any], labels: Any) -> float:
    """Fraction of shapes whose largest logit is their class (ties: the lowest index)."""
    import torch

    with torch.no_grad():
        return float((model(g).argmax(dim=1) == labels).double().mean())


def train_one(op: str, seed: int, steps: int, eval_every: int, rotations: int,
              lr: float = 1e-2, channels: int = 8, layers: int = 3,
              lmax: int = 2) -> dict[str, Any]:
    """Train one network of product ``op`` from ``seed`` on the 8 shapes in their given
    orientation (full batch, Adam, cross-entropy); every ``eval_every`` steps measure the
    accuracy on ``rotations`` random rotations. Returns the curve, the final accuracy (on
    :data:`FINAL_ROTATIONS` further rotations), the final loss and the seconds."""
    import torch

    from .tetris_model import SHAPES, TetrisNet, graph

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = TetrisNet(op, channels=channels, layers=layers, lmax=lmax, method=METHODS[op])
    train = model.tensors(graph(SHAPES, lmax))
    labels = torch.arange(len(SHAPES))
    test, test_labels = evaluation_graph(model, rotations, rng)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    curve_steps, curve_acc, loss = [], [], float("nan")
    start = time.perf_counter()
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            curve_steps.append(step)
            curve_acc.append(accuracy(model, test, test_labels))
        if step == steps:
            break
        opt.zero_grad()
        out = torch.nn.functional.cross_entropy(model(train), labels)
        out.backward()
        opt.step()
        loss = float(out.detach())
    seconds = time.perf_counter() - start
    final, final_labels = evaluation_graph(model, FINAL_ROTATIONS, rng)
    return {"seed": seed, "method": model.method, "accuracy": accuracy(model, final, final_labels),
            "final_loss": loss, "seconds": seconds, "curve_steps": curve_steps,
            "curve_accuracy": curve_acc, "model": model}


def _unavailable(op: str) -> str | None:
    """Why product ``op`` cannot run here (``None``: it can): ``tp_spec`` lacks it, or
    ``tp_torch`` has no executor for its descriptor."""
    import torch
    import tp_spec
    import tp_torch

    from .tetris_model import build_descriptor, hidden_irreps

    if not hasattr(tp_spec, op):
        return f"not available: tp_spec {tp_spec.__version__} has no {op}()"
    d = build_descriptor(op, hidden_irreps(1, 1), tp_spec.Irreps("0e + 1o"))
    try:  # a probe: any failure to build or run one edge means the product is not usable
        conv = tp_torch.TensorProductConv(d, METHODS[op])
        edge = torch.zeros(1, dtype=torch.int64)
        conv(torch.ones(1, d.irreps_in1.dim), torch.ones(1, d.irreps_in2.dim),
             torch.ones(d.weight_numel), edge, edge)
    except Exception as exc:
        return (f"not available: tp_spec has {op}() but tp_torch does not execute it "
                f"({type(exc).__name__}: {exc})")
    return None


def run(ops: tuple[str, ...] = OPS, seeds: int = 3, steps: int = 150, eval_every: int = 10,
        rotations: int = 4, lr: float = 1e-2, progress: bool = True) -> dict[str, Any]:
    """Train every product of ``ops`` from ``seeds`` seeds; the record (without command,
    versions and machine)."""
    products = []
    for op in ops:
        reason = _unavailable(op)
        if reason is not None:
            products.append({"op": op, "available": False, "reason": reason})
            continue
        runs = []
        for seed in range(seeds):
            r = train_one(op, seed, steps, eval_every, rotations, lr=lr)
            r.pop("model")
            runs.append(r)
            if progress:
                print(f"tetris: {op} seed {seed}: accuracy {r['accuracy']:.4f}, loss "
                      f"{r['final_loss']:.4g}, {r['seconds']:.1f} s", file=sys.stderr)
        products.append({
            "op": op, "available": True, "method": runs[0]["method"],
            "accuracy": statistics.median(r["accuracy"] for r in runs),
            "accuracies": [r["accuracy"] for r in runs],
            "final_loss": statistics.median(r["final_loss"] for r in runs),
            "final_losses": [r["final_loss"] for r in runs],
            "steps": steps, "seconds": sum(r["seconds"] for r in runs),
            "curve_steps": runs[0]["curve_steps"],
            "curve_accuracy": [r["curve_accuracy"] for r in runs]})
    return {"kind": "experiment", "experiment": "tetris",
            "config": {"seeds": seeds, "steps": steps, "eval_every": eval_every,
                       "rotations_per_eval": rotations, "final_rotations": FINAL_ROTATIONS,
                       "lr": lr, "channels": 8, "layers": 3, "lmax": 2,
                       "optimizer": "Adam, full batch (the 8 shapes), cross-entropy"},
            "products": products}


def plot(record: dict[str, Any], path: Path) -> Path:
    """Test accuracy vs step, one panel per product, each seed a thin line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    products = [p for p in record["products"] if p["available"]]
    fig, axes = plt.subplots(1, len(products), figsize=(3.2 * len(products), 3.4),
                             sharey=True, squeeze=False)
    for i, (ax, p) in enumerate(zip(axes[0], products, strict=True)):
        for acc in p["curve_accuracy"]:
            ax.plot(p["curve_steps"], acc, color=f"C{i}", lw=0.8, alpha=0.6)
        ax.axhline(7 / 8, color="grey", ls=":", lw=1)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(0, max(p["curve_steps"]))
        ax.set_title(f"{p['op'].upper()} ({p['method']}): {p['accuracy']:.3f}", fontsize=10)
        ax.set_xlabel("training step")
    axes[0][0].set_ylabel("accuracy on rotated shapes")
    axes[0][0].set_ylim(0, 1.05)
    axes[0][0].text(10, 7 / 8 - 0.06, "7/8", color="grey", fontsize=8)
    fig.suptitle("tetris (8 shapes, one mirror-image pair): final accuracy, median over seeds; "
                 "thin lines: seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def cmd_tetris(args: argparse.Namespace) -> int:
    import torch

    from ..runner import machine_info, versions

    torch.set_num_threads(args.threads)
    preset = dict(QUICK if args.quick else FULL)
    for key in ("steps", "seeds"):
        if getattr(args, key) is not None:
            preset[key] = getattr(args, key)
    ops = tuple(o.strip() for o in args.ops.split(",") if o.strip())
    unknown = [o for o in ops if o not in OPS]
    if unknown or not ops:
        raise SystemExit(f"--ops: unknown products {unknown}; expected a comma list of "
                         f"{','.join(OPS)}")
    print(f"tetris: {','.join(ops)}, {preset['seeds']} seeds x {preset['steps']} steps, "
          f"{args.threads} thread(s)", file=sys.stderr)
    record = run(ops, seeds=preset["seeds"], steps=preset["steps"],
                 eval_every=preset["eval_every"], rotations=preset["rotations"], lr=args.lr)
    record["config"].update(quick=args.quick, threads=args.threads)
    record["command"] = " ".join(["python -m benchmarks"] + sys.argv[1:])
    record["versions"] = versions()
    record["machine"] = machine_info(args.machine)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tetris.json").write_text(json.dumps(record, indent=1) + "\n")
    plot(record, out / "tetris.png")
    for p in record["products"]:
        if p["available"]:
            print(f"{p['op']:5s} ({p['method']}): accuracy {p['accuracy']:.4f} (median of "
                  f"{', '.join(f'{a:.4f}' for a in p['accuracies'])}), final loss "
                  f"{p['final_loss']:.3g}, {p['seconds']:.0f} s")
        else:
            print(f"{p['op']:5s}: {p['reason']}")
    print(f"wrote {out / 'tetris.json'} and {out / 'tetris.png'}", file=sys.stderr)
    return 0


def add_parser(sub: Any) -> None:
    """The ``tetris`` subcommand of ``python -m benchmarks experiment``."""
    from ..cli import add_command

    t = add_command(sub, "tetris", "chirality: classify e3nn's 8 tetris shapes (one "
                    "mirror-image pair) with one small network per tensor product")
    t.add_argument("--quick", action="store_true",
                   help=f"{QUICK['seeds']} seeds x {QUICK['steps']} steps (a few minutes on 2 "
                        f"cores) instead of {FULL['seeds']} x {FULL['steps']}")
    t.add_argument("--seeds", type=_positive_int, help="training seeds per product (default: "
                   f"{FULL['seeds']}, {QUICK['seeds']} with --quick)")
    t.add_argument("--steps", type=_positive_int, help="Adam steps per network (default: "
                   f"{FULL['steps']}, {QUICK['steps']} with --quick)")
    t.add_argument("--ops", default=",".join(OPS),
                   help="comma list of products (default: all; one that tp_spec lacks or "
                        "tp_torch cannot run is recorded as not available)")
    t.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 0.01)")
    t.add_argument("--threads", type=_positive_int, default=1,
                   help="torch CPU threads (default 1)")
    t.add_argument("--machine", help="machine label stored in the record (default "
                   "cpu-<N>core)")
    t.add_argument("--out", required=True, help="output directory (tetris.json, tetris.png)")
    t.set_defaults(func=cmd_tetris)
