"""The ways users run a tp_torch product: eager, ``torch.compile`` and ``torch.export``, with
e3nn's ``o3.TensorProduct`` eager and compiled as the anchor, in one process.

    python -m benchmarks.modes [--problem mace-medium] [--batch 2000] [--threads 1|default]
                               [--dtype float32] [--out FILE.json]

The product is the conv suite's message (``--problem``: a channelwise CGTP of
:data:`benchmarks.conv.CONV_PROBLEMS`) over ``--batch`` edges with per-edge weights. Passes:
``fwd`` (under ``torch.no_grad``) and ``fwd+bwd`` (forward, then the gradient of the summed
squares along all three inputs). Export runs only ``fwd`` (an exported program is an inference
graph). Every cell is checked against eager tp_torch before it is timed. Prints a table of
medians with quartiles and the ratios against eager tp_torch; ``--out`` writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Any

import torch

from .conv import CONV_PROBLEMS
from .timing import measure, summarize
from .workloads import build_descriptor


def _problem(name: str) -> Any:
    for p, family, in1, in2, out in CONV_PROBLEMS:
        if p == name and family == "cgtp":
            return build_descriptor("cgtp", in1, in2, out, mode="uvu")
    raise SystemExit(f"--problem must name a CGTP problem of the conv suite, got {name!r}")


def _modules(d: Any) -> dict[str, torch.nn.Module]:
    import tp_torch

    mods: dict[str, torch.nn.Module] = {"tp_torch": tp_torch.TensorProduct(d, "fused")}
    try:
        from e3nn import o3

        mods["e3nn"] = o3.TensorProduct(
            str(d.irreps_in1), str(d.irreps_in2), str(d.irreps_out),
            [(p.i_in1, p.i_in2, p.i_out, "uvu", True) for p in d.paths],
            internal_weights=False, shared_weights=False)
    except ImportError:
        pass
    return mods


def _passes(fn: Any, args: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    def fwd() -> torch.Tensor:
        with torch.no_grad():
            return fn(*args)

    def fwd_bwd() -> tuple[torch.Tensor, ...]:
        out = fn(*args)
        return torch.autograd.grad(out.square().sum(), args)

    return {"fwd": fwd, "fwd+bwd": fwd_bwd}


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks.modes``."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.modes", description=__doc__.split(
        "\n\n")[0])
    ap.add_argument("--problem", default="mace-medium", help="a CGTP problem of the conv suite")
    ap.add_argument("--batch", type=int, default=2000, help="edges (rows) per call")
    ap.add_argument("--threads", default="1", help="torch threads: a number or 'default'")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                    help="input and weight dtype (default float32)")
    ap.add_argument("--target-s", type=float, default=1.0, help="seconds of samples per cell")
    ap.add_argument("--out", help="write the JSON record here")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads != "default":
        torch.set_num_threads(int(args.threads))
    d = _problem(args.problem)
    dt = getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(0)
    b = args.batch
    x = tuple(torch.randn(b, n, dtype=dt, generator=g).requires_grad_()
              for n in (d.irreps_in1.dim, d.irreps_in2.dim, d.weight_numel))
    mods = _modules(d)
    ref = mods["tp_torch"](*x).detach()
    cells: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    for subject, mod in mods.items():
        mod = mod.to(dt)
        runs: dict[str, Any] = {"eager": mod, "compile": torch.compile(mod, fullgraph=True)}
        if subject == "tp_torch":
            batch = torch.export.Dim("batch", min=2)
            try:
                with torch.no_grad():
                    ep = torch.export.export(mod, tuple(t.detach() for t in x),
                                             dynamic_shapes=({0: batch},) * 3)
                runs["export"] = ep.module()
            except Exception as e:  # recorded: a version where export fails
                failures.append({"subject": subject, "mode": "export",
                                 "error": f"{type(e).__name__}: {str(e)[:300]}"})
                print(f"{subject} export failed: {failures[-1]['error']}")
        for mode, fn in runs.items():
            if subject == "tp_torch":  # e3nn's own weights differ: its numbers are its own
                with torch.no_grad():
                    torch.testing.assert_close(fn(*x), ref, rtol=1e-4, atol=1e-4)
            for pass_, call in _passes(fn, x).items():
                if mode == "export" and pass_ != "fwd":
                    continue
                samples, _ = measure(call, warmup=3, target_s=args.target_s, min_repeats=5)
                cells.append({"subject": subject, "mode": mode, "pass": pass_,
                              **summarize(samples)})
                s = cells[-1]
                print(f"{subject:9s} {mode:8s} {pass_:8s} median {s['median'] * 1e3:8.2f} ms "
                      f"(q1 {s['q1'] * 1e3:.2f}, q3 {s['q3'] * 1e3:.2f})", flush=True)
    base = {c["pass"]: c["median"] for c in cells
            if c["subject"] == "tp_torch" and c["mode"] == "eager"}
    for c in cells:
        c["vs_tp_torch_eager"] = c["median"] / base[c["pass"]]
    print("\nratio of each cell's median to eager tp_torch's (lower is faster):")
    for c in cells:
        print(f"  {c['subject']:9s} {c['mode']:8s} {c['pass']:8s} {c['vs_tp_torch_eager']:7.2f}")
    record = {"problem": args.problem, "batch": b, "dtype": args.dtype,
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              "machine": platform.processor() or platform.machine(),
              "command": " ".join(["python -m benchmarks.modes", *(argv or sys.argv[1:])]),
              "cells": cells, "failures": failures}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
