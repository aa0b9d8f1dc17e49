"""MACE's SymmetricContraction against tp_torch's, same process, same weights.

    python -m benchmarks.symmetric_contraction --threads 1 --out sc.json

Runs in an environment holding both mace-torch and tp_torch (the ``mace`` venv; MACE pins
e3nn 0.4.4, which needs ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` to load its constants). Shapes
are MACE-medium's product basis: ``128x0e+128x1o+128x2e+128x3o -> 128x0e+128x1o``,
correlation 3, 10 species, float32. For each node count and each subject it times the forward,
forward+backward (gradients of x and the weights) and, with ``--double``, a forces-like double
backward (``create_graph`` on the x-gradient, then backward through it). Reports the median and
the spread (min, max) over ``--repeats`` runs after one warm-up, and the MACE/tp_torch ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

IRREPS_IN = "128x0e+128x1o+128x2e+128x3o"
IRREPS_OUT = "128x0e+128x1o"


def _build(correlation: int, species: int):
    import torch
    from e3nn import o3
    from mace.modules.symmetric_contraction import SymmetricContraction as MaceSC
    from tp_torch.symmetric_contraction import SymmetricContraction

    mace = MaceSC(o3.Irreps(IRREPS_IN), o3.Irreps(IRREPS_OUT), correlation,
                  num_elements=species)
    ours = SymmetricContraction(IRREPS_IN, IRREPS_OUT, correlation, species)
    ours.load_mace_weights(mace)
    return torch, mace, ours


def _mace_call(torch, mace, x, attrs, k, dims):
    """MACE takes ``(n, k, D)`` (channels, then the irreps concatenated)."""
    n = x.shape[0]
    blocks, start = [], 0
    for d in dims:
        blocks.append(x[:, start : start + k * d].reshape(n, k, d))
        start += k * d
    return mace(torch.cat(blocks, dim=-1), attrs)


def _time(fn, repeats: int) -> dict:
    fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return {"median_s": statistics.median(samples), "min_s": min(samples),
            "max_s": max(samples), "samples_s": samples}


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks.symmetric_contraction``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.symmetric_contraction",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000],
                        help="node counts to time, one case each (default 1000 5000)")
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed runs per pass after one warm-up (default 7)")
    parser.add_argument("--correlation", type=int, default=3,
                        help="body order of the contraction (default 3, MACE's)")
    parser.add_argument("--species", type=int, default=10,
                        help="chemical species, one weight set each (default 10)")
    parser.add_argument("--double", action="store_true", help="also time the double backward")
    parser.add_argument("--out", default=None, help="JSON output path")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    torch, mace, ours = _build(args.correlation, args.species)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    k, dims = 128, [1, 3, 5, 7]
    dim_in = k * sum(dims)
    result = {
        "irreps_in": IRREPS_IN, "irreps_out": IRREPS_OUT, "correlation": args.correlation,
        "species": args.species, "dtype": "float32", "threads": torch.get_num_threads(),
        "repeats": args.repeats, "torch": torch.__version__, "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "cases": [],
    }
    for n in args.nodes:
        z = torch.randint(0, args.species, (n,))
        attrs = torch.nn.functional.one_hot(z, args.species).float()
        x = torch.randn(n, dim_in, requires_grad=True)
        subjects = {
            "mace": lambda x, attrs=attrs: _mace_call(torch, mace, x, attrs, k, dims),
            "tp_torch": lambda x, z=z: ours(x, z),
        }
        with torch.no_grad():
            a, b = subjects["mace"](x), subjects["tp_torch"](x)
        err = float((a - b).abs().max() / a.abs().max())
        case = {"nodes": n, "max_rel_diff": err, "timings": {}}
        for name, f in subjects.items():
            params = list(mace.parameters() if name == "mace" else ours.parameters())

            def fwd(f=f, x=x):
                with torch.no_grad():
                    f(x)

            def fwd_bwd(f=f, x=x, params=params):
                out = f(x)
                torch.autograd.grad(out.square().sum(), [x, *[p for p in params
                                                             if p.requires_grad]])

            def double(f=f, x=x, params=params):
                out = f(x)
                (gx,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
                torch.autograd.grad(gx.square().sum(), [p for p in params if p.requires_grad])

            modes = {"forward": fwd, "forward_backward": fwd_bwd}
            if args.double:
                modes["double_backward"] = double
            case["timings"][name] = {m: _time(fn, args.repeats) for m, fn in modes.items()}
        case["speedup"] = {
            m: case["timings"]["mace"][m]["median_s"] / case["timings"]["tp_torch"][m]["median_s"]
            for m in case["timings"]["mace"]
        }
        result["cases"].append(case)
        line = ", ".join(
            f"{m} mace {case['timings']['mace'][m]['median_s']:.3f}s "
            f"ours {case['timings']['tp_torch'][m]['median_s']:.3f}s x{s:.2f}"
            for m, s in case["speedup"].items()
        )
        print(f"n={n} threads={result['threads']} rel.diff {err:.1e}: {line}", flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)
    return result


if __name__ == "__main__":
    main()
