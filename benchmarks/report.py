"""Benchmark records: JSON schema and validation, Markdown tables, plots, comparisons.

Record (``schema_version`` 1)::

    {"schema": "tp-bench", "schema_version": 1, "created": ISO time,
     "machine": {"name", "hostname", "cpu", "cores", "os", "gpu", "load_average"},
     "versions": {distribution: version}, "device": "cpu" | "cuda",
     "config": {"passes", "dtype", "device", "flop_convention", ...}, "wall_s": float,
     "results": [result, ...]}

    result = {"workload": {"suite", "name", "op", "L", "batch", "channels", ...},
              "subject", "library", "framework", "method", "anchor", "pass", "dtype", "device",
              "status": "ok" | "unavailable" | "not applicable" | "failed check" | "error"
                        | "skipped",
              "reason": str,
              # status "ok" only:
              "samples_s": [float], "stats": {"median", "q1", "q3", "iqr", "min", "max",
              "mean", "n"}, "compile_s", "first_call_s", "setup_s", "memory": {...},
              "cost": {"flops_min", "flops_method", "cost_method", "bytes_min",
                       "expressivity", "pass_factor"},
              "gflops", "gflops_per_s", "time_per_expressivity_s", "expressivity_throughput",
              "check": {"ok", "rel_err", "tol", "batch"}}
"""

from __future__ import annotations

import copy
import json
import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .runner import SLOW_CALL
from .subjects import ANCHORS

__all__ = ["SchemaError", "compare", "load", "markdown", "merge", "plots", "validate"]

STATUSES = ("ok", "unavailable", "not applicable", "failed check", "error", "skipped")
SCHEMA_VERSION = 1


class SchemaError(ValueError):
    """A benchmark record does not follow the schema."""


def _need(obj: dict[str, Any], key: str, types: Any, where: str) -> Any:
    if key not in obj:
        raise SchemaError(f"{where}: missing key {key!r}")
    if not isinstance(obj[key], types):
        raise SchemaError(f"{where}.{key}: expected {types}, got {type(obj[key]).__name__}")
    return obj[key]


def validate(record: Any) -> None:
    """Raise :class:`SchemaError` naming the first problem in ``record``."""
    if not isinstance(record, dict):
        raise SchemaError("record must be a JSON object")
    if record.get("schema") != "tp-bench":
        raise SchemaError(f"record.schema must be 'tp-bench', got {record.get('schema')!r}")
    version = _need(record, "schema_version", int, "record")
    if version != SCHEMA_VERSION:
        raise SchemaError(f"unsupported schema_version {version} (this code reads "
                          f"{SCHEMA_VERSION})")
    _need(record, "created", str, "record")
    machine = _need(record, "machine", dict, "record")
    _need(machine, "name", str, "record.machine")
    _need(record, "versions", dict, "record")
    _need(record, "device", str, "record")
    _need(record, "config", dict, "record")
    results = _need(record, "results", list, "record")
    for i, r in enumerate(results):
        where = f"results[{i}]"
        if not isinstance(r, dict):
            raise SchemaError(f"{where}: expected an object")
        wl = _need(r, "workload", dict, where)
        for key in ("suite", "name", "op"):
            _need(wl, key, str, f"{where}.workload")
        _need(wl, "batch", int, f"{where}.workload")
        for key in ("subject", "framework", "pass", "dtype", "device", "status"):
            _need(r, key, str, where)
        _need(r, "anchor", bool, where)
        if r["status"] not in STATUSES:
            raise SchemaError(f"{where}.status: {r['status']!r} is not one of {STATUSES}")
        if r["pass"] not in ("fwd", "bwd", "dbl"):
            raise SchemaError(f"{where}.pass: {r['pass']!r} is not fwd/bwd/dbl")
        if r["status"] == "ok":
            samples = _need(r, "samples_s", list, where)
            if not samples or not all(isinstance(s, (int, float)) and s > 0 for s in samples):
                raise SchemaError(f"{where}.samples_s: need positive numbers")
            stats = _need(r, "stats", dict, where)
            for key in ("median", "q1", "q3", "iqr", "min", "max", "n"):
                _need(stats, key, (int, float), f"{where}.stats")
            if not stats["min"] <= stats["median"] <= stats["max"]:
                raise SchemaError(f"{where}.stats: median outside [min, max]")
            check = _need(r, "check", dict, where)
            if check.get("ok") is not True:
                raise SchemaError(f"{where}: timed result without a passed reference check")
            _need(r, "cost", dict, where)
        else:
            _need(r, "reason", str, where)


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate a record."""
    with open(path) as fh:
        record = json.load(fh)
    validate(record)
    return record


def dump(record: dict[str, Any], path: str | Path) -> None:
    validate(record)
    with open(path, "w") as fh:
        json.dump(record, fh, indent=1, sort_keys=False)
        fh.write("\n")


# ----------------------------------------------------------------------------- tables
def _ok(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if r["status"] == "ok"]


def _row_key(r: dict[str, Any]) -> tuple[Any, ...]:
    w = r["workload"]
    return (w["suite"], w["name"], w.get("L"), w["batch"], w.get("channels", 1), w["op"],
            r["pass"], r["dtype"], r["device"])


def _fmt_t(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


def speedups(record: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, float]]:
    """``{(row key..., subject): {anchor name: anchor_median / subject_median}}``, measured in
    the same run."""
    ok = _ok(record["results"])
    by_key: dict[tuple[Any, ...], dict[str, float]] = defaultdict(dict)
    for r in ok:
        by_key[_row_key(r)][r["subject"]] = r["stats"]["median"]
    out: dict[tuple[Any, ...], dict[str, float]] = {}
    for r in ok:
        key = _row_key(r)
        op = r["workload"]["op"]
        ratios = {}
        for anchor in ANCHORS.get(op, {}).values():
            if anchor in by_key[key] and anchor != r["subject"]:
                ratios[anchor] = by_key[key][anchor] / r["stats"]["median"]
        out[key + (r["subject"],)] = ratios
    return out


def _pass_ordered(groups: dict[tuple[Any, ...], list[dict[str, Any]]]
                  ) -> list[tuple[tuple[Any, ...], list[dict[str, Any]]]]:
    """``groups`` keyed ``(suite, name, pass, dtype)``: first-seen order of (suite, name), then
    the passes as fwd, bwd, dbl."""
    first: dict[tuple[Any, ...], int] = {}
    for key in groups:
        first.setdefault(key[:2], len(first))
    order = {"fwd": 0, "bwd": 1, "dbl": 2}
    return sorted(groups.items(), key=lambda kv: (first[kv[0][:2]], order.get(kv[0][2], 3),
                                                  str(kv[0][3])))


def markdown(record: dict[str, Any], *, max_rows: int | None = None) -> str:
    """Pivot tables (one per suite/workload/pass): rows op/subject, columns the swept size;
    cells ``median (xS_torch | xS_jax)`` with speedups against the op's anchors of this run."""
    ok = _ok(record["results"])
    sp = speedups(record)
    lines: list[str] = []
    m = record["machine"]
    lines.append(f"Machine: {m['name']} ({m.get('cpu')}, {m.get('cores')} cores"
                 f"{', GPU ' + m['gpu'] if m.get('gpu') else ''}); device {record['device']}; "
                 f"dtype {record['config'].get('dtype')}; created {record['created']}")
    lines.append("")
    lines.append("Cells: median wall time per call; in brackets the speedup against this run's "
                 "anchors for the op (CGTP: e3nn / e3nn-jax; GTP: e3nn grid / e3nn-jax grid; "
                 "MTP: e3x), anchor median / subject median, > 1 = faster than the anchor.")
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in ok:
        w = r["workload"]
        groups[(w["suite"], w["name"], r["pass"], r["dtype"])].append(r)
    for (suite, name, pass_, dtype), rs in _pass_ordered(groups):
        def xval(r: dict[str, Any], name: str = name) -> Any:
            w = r["workload"]
            if name.endswith("-batch"):
                return w["batch"]
            if name.endswith("-channels"):
                return w.get("channels", 1)
            return w.get("L") if w.get("L") is not None else w["batch"]

        xlabel = ("batch" if name.endswith("-batch") else "C" if name.endswith("-channels")
                  else "L" if rs[0]["workload"].get("L") is not None else "batch")
        xs = sorted({xval(r) for r in rs})
        rows: dict[tuple[str, str], dict[Any, str]] = defaultdict(dict)
        for r in rs:
            ratios = sp.get(_row_key(r) + (r["subject"],), {})
            cell = _fmt_t(r["stats"]["median"])
            if ratios:
                cell += " (" + " \\| ".join(f"x{v:.2g}" for v in ratios.values()) + ")"
            rows[(r["workload"]["op"], r["subject"])][xval(r)] = cell
        b = rs[0]["workload"]["batch"]
        lines.append("")
        lines.append(f"### {suite} / {name} / {pass_} ({dtype}"
                     f"{'' if xlabel == 'batch' else f', batch {b}'})")
        lines.append("")
        lines.append("| op | subject | " + " | ".join(f"{xlabel}={x}" for x in xs) + " |")
        lines.append("|---|---|" + "---|" * len(xs))
        for (op, subj), cells in sorted(rows.items()):
            star = " (anchor)" if any(subj == a for a in ANCHORS.get(op, {}).values()) else ""
            lines.append(f"| {op} | {subj}{star} | " + " | ".join(cells.get(x, "-") for x in xs)
                         + " |")
    not_ok = [r for r in record["results"] if r["status"] not in ("ok", "skipped")]
    skipped = [r for r in record["results"] if r["status"] == "skipped"]
    by_reason: dict[str, list[dict[str, Any]]] = {}
    for r in skipped:
        why = SLOW_CALL if r["reason"].startswith(SLOW_CALL) else r["reason"]
        by_reason.setdefault(why, []).append(r)
    for why, rs in by_reason.items():
        lines.append("")
        if why == SLOW_CALL:
            lines.append(f"{len(rs)} measurements skipped (slow call: the first call took "
                         "longer than the run's --max-call-s; first call in brackets): "
                         + ", ".join(f"{r['subject']} {r['workload']['op']} "
                                     f"{r['workload']['name']} L={r['workload'].get('L')} "
                                     f"{r['pass']}"
                                     + (f" ({r['first_call_s']:.0f} s)"
                                        if r.get("first_call_s") else "")
                                     for r in rs))
        else:
            lines.append(f"{len(rs)} measurements skipped ({why}), from "
                         + ", ".join(sorted({f"{r['workload']['name']} L={r['workload'].get('L')}"
                                             for r in rs}, key=str)))
    if not_ok:
        lines.append("")
        lines.append("Not timed (subject: status, reason):")
        seen = set()
        for r in not_ok:
            key = (r["subject"], r["workload"]["op"], r["status"], r["reason"][:80])
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"- {r['subject']} [{r['workload']['op']}]: {r['status']}"
                         f"{': ' + r['reason'][:160] if r['reason'] else ''}")
            if max_rows and len(seen) >= max_rows:
                lines.append("- ...")
                break
    lines += peak_lines(record)
    return "\n".join(lines) + "\n"


#: Op families and degrees of the achieved-GFLOP/s table (the physical limit of the fast
#: products is reached at large L, where their GEMMs are large).
PEAK_OPS = ("gtp", "mtp")
PEAK_MIN_L = 6


def peak_lines(record: dict[str, Any]) -> list[str]:
    """Markdown: achieved GFLOP/s of GTP and MTP at L >= 6 on each method's own FLOP model,
    as a fraction of the machine's matmul peak measured in the same run."""
    from .peak import peak_fraction

    peaks = record.get("machine", {}).get("matmul_peak") or {}
    rows = []
    for r in _ok(record["results"]):
        w = r["workload"]
        if w["op"] not in PEAK_OPS or (w.get("L") or 0) < PEAK_MIN_L:
            continue
        frac = peak_fraction(r, record)
        if frac is None:
            continue
        rate = frac * peaks[r["framework"]]["gflops_per_s"]
        rows.append((w["suite"], w["name"], w["op"], w["L"], r["pass"], r["subject"],
                     r["cost"].get("cost_method"), rate, frac))
    if not rows:
        return []
    out = ["", "### Achieved GFLOP/s against the matmul peak", "",
           "Peak: median GFLOP/s of " + ", ".join(
               f"{fw} {v['n']}x{v['n']} matmul {v['gflops_per_s']:.1f} "
               f"({v['q1']:.1f}-{v['q3']:.1f})" for fw, v in sorted(peaks.items())
               if "gflops_per_s" in v)
           + " in this run's process and threads. Rate: the method's own FLOP model "
           "(`cost.flops_method` x pass factor) / median time.", "",
           "| workload | op | L | pass | subject | FLOP model | GFLOP/s | % of peak |",
           "|---|---|---|---|---|---|---|---|"]
    for suite, name, op, L, pass_, subj, method, rate, frac in sorted(rows, key=str):
        out.append(f"| {suite}/{name} | {op} | {L} | {pass_} | {subj} | {method} | "
                   f"{rate:.1f} | {100 * frac:.0f}% |")
    return out


# ----------------------------------------------------------------------------- plots
def plots(record: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """PNG per (suite, workload, pass): walltime, GFLOPs, GFLOP/s and time per expressivity
    against the swept size, one line per op/subject, log scales. Returns the files written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ok = _ok(record["results"])
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in ok:
        w = r["workload"]
        groups[(w["suite"], w["name"], r["pass"], r["dtype"])].append(r)
    written = []
    panels = (("walltime [s]", lambda r: r["stats"]["median"]),
              ("GFLOPs (minimal count x pass factor)", lambda r: r.get("gflops")),
              ("achieved GFLOP/s", lambda r: r.get("gflops_per_s")),
              ("time / expressivity [s]", lambda r: r.get("time_per_expressivity_s")))
    for (suite, name, pass_, dtype), rs in _pass_ordered(groups):
        if name.endswith("-batch"):
            xlabel, xf = "batch", (lambda r: r["workload"]["batch"])
        elif name.endswith("-channels"):
            xlabel, xf = "channels", (lambda r: r["workload"].get("channels", 1))
        elif rs[0]["workload"].get("L") is not None:
            xlabel, xf = "L", (lambda r: r["workload"]["L"])
        else:
            continue  # model shapes: no swept axis, tables only
        lines: dict[str, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
        for r in rs:
            lines[f"{r['workload']['op']}/{r['subject']}"].append((xf(r), r))
        if all(len(v) < 2 for v in lines.values()):
            continue
        fig, axes = plt.subplots(2, 2, figsize=(13, 9))
        cmap = plt.get_cmap("tab20")
        for ax, (ylabel, yf) in zip(axes.flat, panels, strict=False):
            for i, (label, pts) in enumerate(sorted(lines.items())):
                pts = sorted(pts, key=lambda p: p[0])
                xy = [(x, yf(r)) for x, r in pts if yf(r)]
                if not xy:
                    continue
                style = "--" if any(label.endswith(a) for op in ANCHORS.values()
                                    for a in op.values()) else "-"
                ax.plot([p[0] for p in xy], [p[1] for p in xy], style, marker="o", ms=3,
                        label=label, color=cmap(i % 20))
            ax.set_xscale("log")
            if xlabel == "L":
                xs_all = sorted({x for pts in lines.values() for x, _ in pts})
                ax.set_xticks(xs_all)
                ax.set_xticklabels([str(x) for x in xs_all])
                ax.minorticks_off()
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="both", alpha=0.3)
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="center right", fontsize=7)
        m = record["machine"]
        fig.suptitle(f"{suite} / {name} / {pass_} ({dtype}, batch {rs[0]['workload']['batch']}"
                     f") on {m['name']}{' ' + m['gpu'] if m.get('gpu') else ''}; dashed = anchor")
        fig.tight_layout(rect=(0, 0, 0.8, 0.96))
        path = out_dir / f"{suite}_{name}_{pass_}.png".replace("/", "-")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


# ----------------------------------------------------------------------------- merge
def merge(base: dict[str, Any], *more: dict[str, Any]) -> dict[str, Any]:
    """One record from runs on the same machine, device and library versions: ``base``'s
    cells, each replaced by a later record's cell of the same workload, pass and subject, plus
    the later records' new cells (e.g. a second run that fills the cells a first one skipped,
    or re-times an anchor fixed in between). ``config.merged`` lists every added run (its
    command, date, replaced and added cell counts), so the record says how it was made."""
    validate(base)
    out = copy.deepcopy(base)
    out["config"]["merged"] = []

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return _row_key(r) + (r["subject"],)

    pos = {key(r): i for i, r in enumerate(out["results"])}
    for rec in more:
        validate(rec)
        if rec["device"] != base["device"]:
            raise ValueError(f"cannot merge: device {rec['device']!r} != {base['device']!r}")
        if rec["machine"]["name"] != base["machine"]["name"]:
            raise ValueError(f"cannot merge: machine {rec['machine']['name']!r} != "
                             f"{base['machine']['name']!r}")
        differ = {k for k in set(rec["versions"]) & set(base["versions"])
                  if rec["versions"][k] != base["versions"][k]}
        if differ:
            raise ValueError("cannot merge: different versions of " + ", ".join(
                f"{k} ({base['versions'][k]} vs {rec['versions'][k]})" for k in sorted(differ)))
        replaced = added = 0
        for r in rec["results"]:
            k = key(r)
            if k in pos:
                out["results"][pos[k]] = copy.deepcopy(r)
                replaced += 1
            else:
                pos[k] = len(out["results"])
                out["results"].append(copy.deepcopy(r))
                added += 1
        out["versions"] = {**rec["versions"], **out["versions"]}
        peaks = {**(rec["machine"].get("matmul_peak") or {}),
                 **(out["machine"].get("matmul_peak") or {})}
        if peaks:
            out["machine"]["matmul_peak"] = peaks
        out["wall_s"] = (out.get("wall_s") or 0.0) + (rec.get("wall_s") or 0.0)
        out["load_average_end"] = rec.get("load_average_end")
        out["config"]["merged"].append({"command": rec["config"].get("command"),
                                        "created": rec["created"], "replaced": replaced,
                                        "added": added})
    validate(out)
    return out


# ----------------------------------------------------------------------------- compare
def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Markdown diff of two records: for every (workload, pass, subject) timed in both, the
    medians and the ratio B / A (< 1: B is faster)."""
    def index(rec: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
        # the suite name is left out so that e.g. default and paper records line up
        return {_row_key(r)[1:] + (r["subject"],): r for r in _ok(rec["results"])}

    ia, ib = index(a), index(b)
    common = sorted(set(ia) & set(ib), key=lambda k: tuple(str(x) for x in k))
    lines = [f"A: {a['machine']['name']} {a['created']}  |  B: {b['machine']['name']} "
             f"{b['created']}", "",
             "| workload | L | batch | op | pass | subject | A | B | B/A |",
             "|---|---|---|---|---|---|---|---|---|"]
    ratios = []
    for k in common:
        ta, tb = ia[k]["stats"]["median"], ib[k]["stats"]["median"]
        ratios.append(tb / ta)
        name, L, batch, _c, op, pass_, _dt, _dev, subject = k
        lines.append(f"| {name} | {L} | {batch} | {op} | {pass_} | {subject} | "
                     f"{_fmt_t(ta)} | {_fmt_t(tb)} | {tb / ta:.3g} |")
    only_a, only_b = len(set(ia) - set(ib)), len(set(ib) - set(ia))
    if ratios:
        gm = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        lines.append("")
        lines.append(f"{len(common)} common measurements; geometric mean B/A = {gm:.3g}; "
                     f"only in A: {only_a}; only in B: {only_b}")
    else:
        lines.append("")
        lines.append(f"no common measurements (only in A: {only_a}; only in B: {only_b})")
    return "\n".join(lines) + "\n"
