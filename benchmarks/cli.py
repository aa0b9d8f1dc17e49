"""Command line: ``python -m benchmarks {run,compare,report,merge,docs-page,validate,train,
experiment} ...`` (or ``tp-bench ...`` once the harness is installed: ``pip install -e .`` at the
repository root).

* ``run [--suite default|paper|models|scaling|conv] [--ops cgtp,gtp,mtp,vstp] [--L 1,2,4]
  [--kinds SISO,SIMO,MIMO] [--batch N] [--passes fwd,bwd,dbl] [--subjects tp_jax,e3nn,...]
  [--dtype float32] [--device auto|cpu|cuda] [--budget SECONDS] [--target-s S]
  [--machine NAME] [--memory-cap auto|off|GIB] [--max-call-s S] [--nodes N] [--degree K]
  [--out DIR]``: run, print
  the Markdown table (speedups against the anchors measured in the same run) and the paper's
  headline claims, write ``results.json``, ``results.md`` and PNG plots to ``DIR`` (default
  ``benchmarks/out/<timestamp>-<suite>/`` in the harness's folder, from any directory).
* ``compare A.json B.json``: per-measurement ratios B / A.
* ``report A.json [--out DIR]``: the table, claims and plots of an existing record.
* ``merge A.json B.json [...] --out DIR``: one record from runs on the same machine and
  versions, B's cells replacing A's of the same workload, pass and subject, or added.
* ``docs-page A.json [B.json ...]``: the Markdown results page (stdout).
* ``validate A.json [...]``: check records against the JSON schema.
* ``train --model mace|nequip [--size S] ...``: training steps of a real model
  (:mod:`benchmarks.training.report`).
* ``experiment tetris [--quick] [--seeds N] [--steps N] --out DIR``: the chirality experiment
  (:mod:`benchmarks.experiments.tetris`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any

from .threads import pin as pin_threads

__all__ = ["OUT_DIR", "RESULTS_DIR", "add_command", "build_parser", "default_pass", "main"]

#: Default output folder of ``run``: ``benchmarks/out`` next to this file (not the working
#: directory's), so that ``tp-bench`` writes to the same place from any directory.
OUT_DIR = Path(__file__).resolve().parent / "out"
#: The committed records (``benchmarks/results/<machine>/<run>/``), the records of ``docs-page``
#: without arguments.
RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: The default (main job) suite times the forward at every L, and the backward and the double
#: backward (force training) at these L only, to fit in minutes on 2 cores.
DEFAULT_BWD_L = (2,)
DEFAULT_DBL_L = (1,)
#: Measuring budget of the default suite. `nox -s bench` from a fresh clone, quiet machine, with
#: L = 1, 2, 4, 6 and 150 s: 5 min 13 s (installs and imports ~2.7 min; the budget skipped
#: nearly all of L=6), so the default is L = 1, 2, 4 (workloads.py) with 120 s.
DEFAULT_BUDGET_S = 120.0
#: Left out of the default (main job) run to fit in minutes on 2 cores; all run with --subjects.
DEFAULT_EXCLUDED = ("numpy/reference", "cueq-torch/cgtp", "cueq-jax/cgtp", "tp_torch/cueq",
                    "tp_jax/cueq")


def default_pass(wl: Any, pass_: str) -> bool:
    """The main job's slice: forward at every L, backward and double backward at
    ``DEFAULT_BWD_L`` / ``DEFAULT_DBL_L`` only (fits in minutes on 2 cores)."""
    return (pass_ == "fwd" or (pass_ == "bwd" and wl.L in DEFAULT_BWD_L)
            or (pass_ == "dbl" and wl.L in DEFAULT_DBL_L))


def _csv(text: str | None, conv: Any = str) -> tuple[Any, ...] | None:
    if text is None or text == "":
        return None
    return tuple(conv(t.strip()) for t in text.split(",") if t.strip())


def _positive_float(text: str, expected: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = -1.0
    if not x > 0:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return x


def _memory_cap(text: str) -> str | float:
    if text in ("auto", "off"):
        return text
    return _positive_float(text, "'auto', 'off' or a positive GiB")


def _positive(text: str) -> float:
    return _positive_float(text, "a positive number of seconds")


def _device(name: str) -> str:
    if name != "auto":
        return name
    try:
        import torch

        if torch.cuda.is_available():
            return "cuda"
    except ImportError:
        pass
    return "cpu"


def _write_outputs(record: dict[str, Any], out: Path, plots: bool = True) -> list[Path]:
    from .claims import record_page
    from .report import dump
    from .report import plots as make_plots

    out.mkdir(parents=True, exist_ok=True)
    dump(record, out / "results.json")
    files = make_plots(record, out) if plots else []
    text = record_page(str(out / "results.json"), record, [p.name for p in files])
    (out / "results.md").write_text(text)
    print(text)
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}"
          + (f" and {len(files)} plots ({', '.join(p.name for p in files)})" if files else "")
          + f" to {out}/", file=sys.stderr)
    return files


def _threads(text: str) -> int | str:
    if text == "default":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected 'default' or a positive integer, got {text!r}")
    return n


def _frameworks(subjects: list[Any]) -> dict[str, list[Any]]:
    """Subjects per process group at default threading: ``torch`` (with the NumPy reference)
    and ``jax``."""
    groups: dict[str, list[Any]] = {}
    for s in subjects:
        groups.setdefault("jax" if s.framework == "jax" else "torch", []).append(s)
    return groups


def _run_per_framework(args: argparse.Namespace, out: Path) -> int:
    """``--threads default`` with torch and JAX subjects: one child process per framework, then
    one merged record. torch's OpenMP pool and XLA's Eigen pool, both at full size in one
    process, spin while the other framework runs (measured on 2 cores: torch subjects 10x-60x
    slower), which no user running one framework sees."""
    import subprocess

    from .report import load, merge

    argv = [a for a in sys.argv[1:]]
    if "--out" in argv:
        i = argv.index("--out")
        del argv[i:i + 2]
    argv = [a for a in argv if not a.startswith("--out=")]
    parts = []
    for fw in ("torch", "jax"):
        sub = out / f"part-{fw}"
        cmd = [sys.executable, "-m", "benchmarks", *argv, "--framework", fw, "--out", str(sub),
               "--no-plots"]
        print(f"benchmarks: --threads default: {fw} subjects in their own process",
              file=sys.stderr)
        rc = subprocess.run(cmd, check=False).returncode
        if rc != 0:
            print(f"benchmarks: the {fw} process exited with {rc}", file=sys.stderr)
            return rc
        parts.append(load(sub / "results.json"))
    record = merge(*parts)
    record["config"]["command"] = " ".join(["python -m benchmarks"] + sys.argv[1:])
    record["config"]["framework"] = None
    _write_outputs(record, out, plots=not args.no_plots)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import os

    if args.threads is None:
        # torch's OpenMP pool and XLA's Eigen pool live in the same process here and spin while
        # the other framework runs: measured on 2 cores, that made torch subjects 10x-60x slower
        # with the default pools. One thread each keeps every side-by-side ratio honest;
        # --threads default runs each framework in its own process instead.
        args.threads = 1
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        print(f"benchmarks: torch and XLA pinned to 1 CPU thread (load average {load:.1f}); "
              "pass --threads N or --threads default to change", file=sys.stderr)
    threads = pin_threads(args.threads)
    from .runner import run
    from .subjects import all_subjects
    from .workloads import suite_ops, suite_workloads

    device = _device(args.device)
    ops = _csv(args.ops) or suite_ops(args.suite)
    passes = _csv(args.passes) or ("fwd", "bwd", "dbl")
    if args.suite == "conv":
        from .conv import conv_workloads
        from .conv_subjects import conv_subjects

        workloads: list[Any] = conv_workloads(args.nodes, args.degree, families=ops)
        subjects = conv_subjects(_csv(args.subjects))
    else:
        workloads = suite_workloads(args.suite, Ls=_csv(args.L, int), batch=args.batch,
                                    ops=ops, kinds=_csv(args.kinds), device=device,
                                    cgtp_modes=_csv(args.modes))
        subjects = all_subjects(_csv(args.subjects))
    if args.suite == "default" and args.subjects is None:
        subjects = [s for s in subjects if s.name not in DEFAULT_EXCLUDED]
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else OUT_DIR / f"{stamp}-{args.suite}"
    groups = _frameworks(subjects)
    if args.framework is not None:
        subjects = groups.get(args.framework, [])
    elif args.threads == "default" and len(groups) > 1:
        return _run_per_framework(args, out)
    pass_filter = None
    if args.suite == "default" and args.passes is None:
        pass_filter = default_pass
    quick = args.suite == "default"  # the main job: a few minutes in all
    timing = {"target_s": args.target_s, "min_repeats": args.min_repeats,
              "max_repeats": args.max_repeats,
              "warmup": args.warmup if args.warmup is not None else (1 if quick else 5),
              "warmup_s": args.warmup_s if args.warmup_s is not None else (0.2 if quick else 0.5)}
    budget = args.budget
    if args.suite == "default":
        budget = DEFAULT_BUDGET_S if budget is None else budget
        if args.target_s is None:
            timing.update(target_s=0.15, min_repeats=3, max_repeats=10)
    if args.suite == "conv" and args.target_s is None:
        timing.update(target_s=0.3, min_repeats=3, max_repeats=10)
    if timing["target_s"] is None:
        timing["target_s"] = 0.3
    config = {"suite": args.suite, "ops": list(ops), "L": args.L, "kinds": args.kinds,
              "modes": args.modes,
              "batch": args.batch, "subjects": args.subjects, "nodes": args.nodes,
              "degree": args.degree,
              "command": " ".join(["python -m benchmarks"] + sys.argv[1:]),
              "max_call_s": args.max_call_s, "framework": args.framework, **threads}
    print(f"benchmarks: suite {args.suite}, {len(workloads)} workloads, {len(subjects)} "
          f"subjects, passes {','.join(passes)}, device {device}, dtype {args.dtype}",
          file=sys.stderr)
    before_task = None
    if args.memory_cap != "off" and device == "cpu":
        from .memory import cap_address_space

        extra = None if args.memory_cap == "auto" else int(args.memory_cap * 2**30)
        cap = cap_address_space(extra)
        config["memory_cap_bytes"] = cap  # at the start; re-armed before each task
        if cap:
            def before_task() -> None:
                cap_address_space(extra)

            print(f"benchmarks: address space capped at {cap / 2**30:.1f} GiB (re-armed before "
                  "each task; an allocation that does not fit is recorded as an error; "
                  "--memory-cap off to disable)", file=sys.stderr)
    partial = out / "results.partial.json"

    def checkpoint(rec: dict[str, Any]) -> None:
        from .report import dump

        out.mkdir(parents=True, exist_ok=True)
        dump(rec, partial)

    record = run(workloads, subjects, passes=passes, dtype=args.dtype, device=device,
                 budget_s=budget, pass_filter=pass_filter, timing=timing,
                 progress=not args.no_progress, machine=args.machine, config=config,
                 seed=args.seed, checkpoint=checkpoint, before_task=before_task,
                 max_call_s=args.max_call_s, measure_peak=True)
    _write_outputs(record, out, plots=not args.no_plots)
    partial.unlink(missing_ok=True)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .report import compare, load

    print(compare(load(args.a), load(args.b)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import load

    record = load(args.record)
    out = Path(args.out) if args.out else Path(args.record).parent
    _write_outputs(record, out, plots=not args.no_plots)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from .report import load, merge

    record = merge(load(args.base), *[load(p) for p in args.more])
    if args.note:
        record["config"]["note"] = args.note
    _write_outputs(record, Path(args.out), plots=not args.no_plots)
    return 0


def committed_records() -> dict[str, Path]:
    """The suite records, then the training records, under :data:`RESULTS_DIR`: name shown on
    the page (``benchmarks/results/...``, whatever the working directory) -> file."""
    found = (sorted(RESULTS_DIR.glob("*/*/results.json"), key=str)  # the shell's order
             + sorted(RESULTS_DIR.glob("*/train/*.json"), key=str))
    return {str(p.relative_to(RESULTS_DIR.parent.parent)): p for p in found}


def cmd_docs_page(args: argparse.Namespace) -> int:
    from .claims import docs_page, record_label, record_page
    from .report import load, plot_names
    from .report import plots as make_plots
    from .summary import older_anchors, superseded

    records = {p: Path(p) for p in args.records} or committed_records()
    suites, training = [], []
    for name, p in records.items():
        raw = json.loads(p.read_text())
        if raw.get("kind") in ("training", "product-basis", "flax-training"):  # train records
            training.append((name, raw))
        else:
            suites.append((name, load(p)))
    sup, older = superseded(suites), older_anchors(suites)
    plots: dict[str, list[str]] = {}
    for name, rec in suites:
        folder = records[name].parent
        if args.write_pages:
            make_plots(rec, folder)
        files = [f for f in plot_names(rec) if (folder / f).exists()]
        plots[name] = [f"{record_label(name)}/{f}" for f in files]
        if args.write_pages:
            (folder / "results.md").write_text(record_page(name, rec, files, sup, older))
            print(f"wrote {folder / 'results.md'} and {len(files)} plots", file=sys.stderr)
    print(docs_page(suites, training, plots))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .report import SchemaError, load

    bad = 0
    for p in args.records:
        try:
            load(p)
            print(f"{p}: ok")
        except (SchemaError, json.JSONDecodeError) as exc:
            print(f"{p}: {exc}")
            bad += 1
    return 1 if bad else 0


def add_command(sub: Any, name: str, text: str) -> argparse.ArgumentParser:
    """A subcommand whose one-line ``text`` is both its entry in the command list and the
    description of its own ``--help``."""
    return sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    """The whole command line: every subcommand, the ``train`` and ``experiment`` ones
    included."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="run, compare, report, merge, docs-page, train, "
                                     "experiment or validate")
    r = add_command(sub, "run", "run a suite and write JSON, Markdown and plots")
    r.add_argument("--suite", default="default", choices=("default", "paper", "models",
                                                           "scaling", "conv"),
                   help="default: the main job (MIMO at growing L within a budget); paper: the "
                        "paper's SISO/SIMO/MIMO microbenchmark; models: channelwise shapes of "
                        "MACE, NequIP, DiffDock, SevenNet; scaling: batch sizes; conv: "
                        "convolutions on a periodic graph")
    r.add_argument("--ops", help="comma list of cgtp,gtp,mtp,vstp (default: paper suite all "
                   "four; other suites cgtp,gtp,mtp)")
    r.add_argument("--L", help="comma list of degrees (paper/default); scaling uses the first")
    r.add_argument("--kinds", help="comma list of SISO,SIMO,MIMO (paper suite)")
    r.add_argument("--modes", help="comma list of CGTP modes uvw,full,uuu (paper suite default: "
                   "all three; main job: uvw)")
    r.add_argument("--batch", type=int, help="batch size (overrides the suite's)")
    r.add_argument("--nodes", type=int, help="conv suite: atoms in the periodic box "
                   "(default 1000)")
    r.add_argument("--degree", type=float, help="conv suite: target mean degree, sets the "
                   "cutoff (default 30: about 28 measured, 28,000 edges at 1000 atoms)")
    r.add_argument("--passes", help="comma list of fwd,bwd,dbl (default: all; the default "
                   "suite times fwd at every L, bwd at L="
                   f"{','.join(map(str, DEFAULT_BWD_L))} and dbl at L="
                   f"{','.join(map(str, DEFAULT_DBL_L))} only)")
    r.add_argument("--subjects", help="comma list of subject name prefixes, e.g. "
                   "tp_jax,tp_torch/dense,e3nn-jax; name@op for one op's subject, e.g. "
                   "tp_torch/sparse@mtp (default: all; conv suite: the anchors and each "
                   "family's default method, '*' for all)")
    r.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                   help="input and weight dtype (default float32, the paper's)")
    r.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    r.add_argument("--budget", type=float, help="wall-clock budget in seconds; later tasks "
                   f"are recorded as skipped (default suite: {DEFAULT_BUDGET_S:.0f})")
    r.add_argument("--target-s", type=float, help="timed seconds per measurement (default 0.3; "
                   "0.15 for the default suite)")
    r.add_argument("--min-repeats", type=int, default=5,
                   help="fewest timed samples per measurement (default 5)")
    r.add_argument("--max-repeats", type=int, default=30,
                   help="most timed samples per measurement (default 30)")
    r.add_argument("--warmup", type=int, default=None,
                   help="untimed calls before timing (default 5, the default suite 1; "
                        "compilation happens in the first; a call slower than 1 s gets one)")
    r.add_argument("--warmup-s", type=float, default=None,
                   help="... and untimed calls until this many seconds have passed (default "
                        "0.5, the default suite 0.2). The first calls of a shape may pay "
                        "one-off memory costs: on the 2-core VM a 96 MB output took 120-130 ms "
                        "for its first four calls and 28 ms after")
    r.add_argument("--machine", help="machine label stored in the record (default "
                   "cpu-<N>core / gpu-<N>core)")
    r.add_argument("--out", help="output directory (default benchmarks/out/<timestamp>-<suite> "
                   "in the harness's folder, whatever the working directory)")
    r.add_argument("--threads", type=_threads,
                   help="CPU threads of torch and XLA: N, or 'default' (the frameworks' own "
                        "defaults, every core; torch and JAX subjects then run in separate "
                        "processes, merged into one record). Default 1: both pinned to one "
                        "thread in one process")
    r.add_argument("--framework", choices=("torch", "jax"),
                   help="only this framework's subjects (torch includes the NumPy reference)")
    r.add_argument("--memory-cap", default="auto", type=_memory_cap,
                   help="CPU runs: cap the address space so that an allocation that does not "
                        "fit raises (recorded as an error) instead of the OOM killer ending "
                        "the run; 'auto' (in use + 85%% of available memory), 'off', or the "
                        "GiB to add to what is in use")
    r.add_argument("--max-call-s", type=_positive, help="a pass whose first call takes "
                   "longer is recorded as skipped (with that call's time) and the subject's "
                   "later passes on the workload are not run (default: no limit)")
    r.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    r.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    r.add_argument("--no-plots", action="store_true", help="no PNG plots")
    r.set_defaults(func=cmd_run)
    c = add_command(sub, "compare", "diff two JSON records: per-measurement ratios B / A")
    c.add_argument("a", help="the first record, A (results.json)")
    c.add_argument("b", help="the second record: the table gives B / A per cell (< 1: B is "
                   "faster)")
    c.set_defaults(func=cmd_compare)
    p = add_command(sub, "report", "table, claims and plots of an existing record")
    p.add_argument("record", help="a record (results.json)")
    p.add_argument("--out", help="output directory (default: the record's)")
    p.add_argument("--no-plots", action="store_true", help="no PNG plots")
    p.set_defaults(func=cmd_report)
    m = add_command(sub, "merge", "one record from runs on the same machine: later "
                     "records' cells replace or extend the first's")
    m.add_argument("base", help="the record to start from")
    m.add_argument("more", nargs="+", help="records whose cells replace or extend base's")
    m.add_argument("--out", required=True, help="output directory of the merged record")
    m.add_argument("--note", help="stored as config.note (shown on the results page)")
    m.add_argument("--no-plots", action="store_true", help="no PNG plots")
    m.set_defaults(func=cmd_merge)
    d = add_command(sub, "docs-page", "Markdown results page from records (stdout): suite "
                     "records and training records (train-*.json)")
    d.add_argument("records", nargs="*", help="results.json and train-*.json records (default: "
                   "the committed ones, benchmarks/results/*/*/results.json then "
                   "benchmarks/results/*/train/*.json)")
    d.add_argument("--write-pages", action="store_true", help="also write each suite "
                   "record's page (results.md: full tables, claims, plots) and its plots "
                   "(<workload>_<op>.png) beside its results.json; the summary shows the "
                   "plots found there either way")
    d.set_defaults(func=cmd_docs_page)
    from .training.report import add_parser as add_train_parser

    add_train_parser(sub)
    from .experiments import add_parser as add_experiment_parser

    add_experiment_parser(sub)
    v = add_command(sub, "validate", "check records against the JSON schema")
    v.add_argument("records", nargs="+", help="results.json records")
    v.set_defaults(func=cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks`` and the installed ``tp-bench`` command."""
    prog = "tp-bench" if Path(sys.argv[0]).name == "tp-bench" else "python -m benchmarks"
    args = build_parser(prog).parse_args(argv)
    return int(args.func(args) or 0)
