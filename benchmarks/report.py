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
    """Pivot tables (one per suite / workload group / pass): rows op/subject, columns the swept
    size (L, batch, channels or model shape); cells ``median (xR)`` with R the speedup against
    the subject's primary anchor of this run (:mod:`benchmarks.summary`); anchors: time only."""
    from .summary import group_of, ratios, size_label, size_of, sort_key

    ok = _ok(record["results"])
    rat = ratios(record)
    lines: list[str] = []
    m = record["machine"]
    lines.append(f"Machine: {m['name']} ({m.get('cpu')}, {m.get('cores')} cores"
                 f"{', GPU ' + m['gpu'] if m.get('gpu') else ''}); device {record['device']}; "
                 f"dtype {record['config'].get('dtype')}; created {record['created']}")
    lines.append("")
    lines.append("Cells: median wall time per call; in brackets the speedup against the "
                 "subject's primary anchor in this run (anchor median / subject median, > 1 = "
                 "faster): CGTP e3nn/cgtp (torch subjects) or e3nn-jax/cgtp (JAX), GTP "
                 "e3nn/grid or e3nn-jax/grid, MTP e3x/mtp, VSTP the same framework's dense "
                 "CGTP, conv e3nn/conv or e3nn-jax/conv. Anchor rows show their time only.")
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in ok:
        w = r["workload"]
        groups[(w["suite"], group_of(w), r["pass"], r["dtype"])].append(r)
    for (suite, group, pass_, dtype), rs in _pass_ordered(groups):
        w0 = rs[0]["workload"]
        xlabel = size_label(group, w0)
        xs = sorted({size_of(r["workload"]) for r in rs}, key=sort_key)
        rows: dict[tuple[str, str], dict[Any, str]] = defaultdict(dict)
        for r in rs:
            w = r["workload"]
            size = size_of(w)
            cell = _fmt_t(r["stats"]["median"])
            ratio = rat.get((group, w["op"], pass_, size, r["subject"]))
            if ratio is not None:
                cell += f" (x{ratio[1][0]:.2g})"
            rows[(w["op"], r["subject"])][size] = cell
        lines.append("")
        lines.append(f"### {suite} / {group} / {pass_} ({dtype}{_fixed_sizes(xlabel, w0)})")
        lines.append("")
        heads = [str(x) if xlabel == "shape" else f"{xlabel}={x}" for x in xs]
        lines.append("| op | subject | " + " | ".join(heads) + " |")
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
def _fixed_sizes(xlabel: str, w: dict[str, Any]) -> str:
    """The sizes a group holds fixed, for titles: ``, batch 10000, 1 channel``."""
    c = w.get("channels", 1)
    chan = f"{c} channel{'s' if c != 1 else ''}"
    if xlabel == "batch":
        return (f", L={w['L']}" if w.get("L") is not None else "") + f", {chan}"
    if xlabel == "channels":
        return (f", L={w['L']}" if w.get("L") is not None else "") + f", batch {w['batch']}"
    if xlabel == "shape":
        edges = w["suite"] == "conv"
        return f", {'edges' if edges else 'batch'} {w['batch']}"
    return f", batch {w['batch']}, {chan}"


def _op_label(op: str) -> str:
    """``CGTP``, ``conv CGTP``."""
    return op.upper() if not op.startswith("conv-") else "conv " + op[5:].upper()


def _stats_bounds(r: dict[str, Any]) -> tuple[float, float, float]:
    """(median, q1, q3) of a timed result."""
    return r["stats"]["median"], r["stats"]["q1"], r["stats"]["q3"]


def plot_title(record: dict[str, Any], group: str, op: str, xlabel: str,
               w: dict[str, Any]) -> str:
    """Title of a group's plot: machine, suite, workload, op family, fixed sizes, threads."""
    m = record["machine"]
    threads = record["config"].get("threads")
    at = "" if threads is None else f", {threads} thread{'s' if threads != 1 else ''}"
    where = m["name"] + (f" ({m['gpu']})" if m.get("gpu") else "")
    what = w["suite"] if group == w["suite"] else f"{w['suite']} {group}"
    return (f"{what}: {_op_label(op)} against {xlabel} ({record['config'].get('dtype')}"
            f"{_fixed_sizes(xlabel, w)}{at}) on {where}")


def plot_name(group: str, op: str) -> str:
    """File name of a workload group's plot of one op family."""
    return f"{group}_{op}.png".replace("/", "-")


def plot_names(record: dict[str, Any]) -> list[str]:
    """The file names :func:`plots` writes for ``record``, in its order."""
    from .summary import cells

    return [plot_name(g, op) for g, op in sorted({k[:2] for k in cells(record)})]


def plots(record: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """PNG per (workload group, op family): one column per pass; top row the median time per
    call with q1-q3 error bars, bottom row the speedup against the subject's primary anchor of
    the same run (anchor median / subject median; error bars anchor q1 / subject q3 to anchor
    q3 / subject q1), log y, a line at 1. Model and conv shapes on a categorical axis. Returns
    the files written, named ``<group>_<op>.png``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        return []
    from .summary import cells, is_anchor, ratios, reference, size_label, sort_key

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = cells(record)
    rat = ratios(record)
    order = {"fwd": 0, "bwd": 1, "dbl": 2}
    by_group: dict[tuple[str, str], dict[str, Any]] = {}
    for (group, op, pass_, size, subject), r in index.items():
        g = by_group.setdefault((group, op), {"passes": set(), "subjects": set(),
                                              "sizes": set(), "w": r["workload"]})
        g["passes"].add(pass_)
        g["subjects"].add((op, subject))
        g["sizes"].add(size)
        ref = reference(op, subject, r.get("framework"))
        if ref is not None and ref[0] != op:  # the VSTP's reference is another op's subject
            g["subjects"].add(ref)
    written = []
    for (group, op), g in sorted(by_group.items()):
        xlabel = size_label(group, g["w"])
        sizes = sorted(g["sizes"], key=sort_key)
        categorical = xlabel == "shape"
        passes = sorted(g["passes"], key=lambda p: order.get(p, 3))
        series = sorted(g["subjects"], key=lambda s: (s[0] != op, not s[1].startswith("tp_"),
                                                      is_anchor(*s), s[1]))
        palette = plt.get_cmap("tab10" if len(series) <= 10 else "tab20")
        colours = {s: palette(i % palette.N) for i, (_, s) in enumerate(series)}
        has_anchor = any(k[:2] == (group, op) for k in rat)
        nrows = 2 if has_anchor else 1
        fig, axes = plt.subplots(nrows, len(passes),
                                 figsize=(max(4.3 * len(passes) + 1.2, 8.0),
                                          1.0 + 3.4 * nrows),
                                 squeeze=False, sharex="col")
        for j, pass_ in enumerate(passes):
            ax_t, ax_r = axes[0, j], axes[-1, j]
            for k, (sop, subject) in enumerate(series):
                shift = (k - (len(series) - 1) / 2) * 0.8 / len(series)
                xpos = {x: (i + shift if categorical else x) for i, x in enumerate(sizes)}
                anchor_like = sop != op or not subject.split("/")[0].startswith("tp_")
                style = dict(color=colours.get(subject), marker="o", ms=3.5, capsize=2,
                             linestyle=("none" if categorical else
                                        "--" if anchor_like else "-"),
                             label=subject + (f" ({_op_label(sop)})" if sop != op else ""))
                times = [(xpos[x], _stats_bounds(index[(group, sop, pass_, x, subject)]))
                         for x in sizes if (group, sop, pass_, x, subject) in index]
                speed = [(xpos[x], rat[(group, sop, pass_, x, subject)][1]) for x in sizes
                         if (group, sop, pass_, x, subject) in rat and sop == op]
                for ax, pts in ((ax_t, times), (ax_r, speed if has_anchor else [])):
                    if pts:
                        ax.errorbar([x for x, _ in pts], [v[0] for _, v in pts],
                                    yerr=[[v[0] - v[1] for _, v in pts],
                                          [v[2] - v[0] for _, v in pts]], **style)
            ax_t.set_title(pass_)
            ax_t.set_ylabel("time per call [s] (median, q1-q3)")
            if has_anchor:
                ax_r.axhline(1.0, color="black", linewidth=0.8)
                ax_r.set_ylabel("speedup vs anchor (x, >1 faster)")
            ax_r.set_xlabel(xlabel)
            for ax in axes[:, j]:
                ax.set_yscale("log")
                low, high = ax.get_ylim()
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if high < 300 * low
                                                      else (1.0,)))
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.yaxis.set_minor_formatter(NullFormatter())
                ax.grid(True, which="both", alpha=0.3)
                if categorical:
                    ax.set_xticks(range(len(sizes)))
                    ax.set_xticklabels([str(s) for s in sizes], rotation=40, ha="right",
                                       fontsize=7)
                    ax.set_xlim(-0.6, len(sizes) - 0.4)
                elif xlabel == "L":
                    ax.set_xticks(sizes)
                    ax.set_xticklabels([str(s) for s in sizes])
                else:
                    ax.set_xscale("log", base=2 if xlabel == "channels" else 10)
        handles: dict[str, Any] = {}
        for ax in axes.flat:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(lab, h)
        ncol = min(len(handles), 4)
        rows = -(-len(handles) // max(ncol, 1))
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=ncol,
                   fontsize=8, frameon=False)
        fig.suptitle(plot_title(record, group, op, xlabel, g["w"]), fontsize=10)
        fig.tight_layout(rect=(0, 0.03 + 0.03 * rows, 1, 0.96))
        path = out_dir / plot_name(group, op)
        fig.savefig(path, dpi=72)
        plt.close(fig)
        written.append(path)
    return written


# ----------------------------------------------------------------------------- merge
def stamp_cpus(rec: dict[str, Any]) -> None:
    """Give each row of ``rec`` that has none the CPUs its run was pinned to
    (``config.cpus``, set by :func:`benchmarks.threads.pin`; runs before the harness pinned
    CPUs have none), so that rows keep it when merged into another record."""
    cpus = rec["config"].get("cpus")
    if cpus is None:
        return
    for r in rec["results"]:
        r.setdefault("cpus", cpus)


def merge(base: dict[str, Any], *more: dict[str, Any]) -> dict[str, Any]:
    """One record from runs on the same machine, device and library versions: ``base``'s
    cells, each replaced by a later record's cell of the same workload, pass and subject, plus
    the later records' new cells (e.g. a second run that fills the cells a first one skipped,
    or re-times an anchor fixed in between). ``config.merged`` lists every added run (its
    command, date, replaced and added cell counts), after those ``base`` was merged from, so
    the record says how it was made."""
    validate(base)
    out = copy.deepcopy(base)
    stamp_cpus(out)
    out["config"]["merged"] = list(out["config"].get("merged") or [])

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
        rec = copy.deepcopy(rec)  # its rows go into out as they are, stamped
        stamp_cpus(rec)
        for r in rec["results"]:
            k = key(r)
            if k in pos:
                out["results"][pos[k]] = r
                replaced += 1
            else:
                pos[k] = len(out["results"])
                out["results"].append(r)
                added += 1
        out["versions"] = {**rec["versions"], **out["versions"]}
        # a later run's peak replaces the base's for its frameworks: measured beside its cells
        peaks = {**(out["machine"].get("matmul_peak") or {}),
                 **(rec["machine"].get("matmul_peak") or {})}
        if peaks:
            out["machine"]["matmul_peak"] = peaks
        out["wall_s"] = (out.get("wall_s") or 0.0) + (rec.get("wall_s") or 0.0)
        out["load_average_end"] = rec.get("load_average_end")
        out["config"]["merged"].append({"command": rec["config"].get("command"),
                                        "created": rec["created"], "replaced": replaced,
                                        "added": added, "threads": rec["config"].get("threads"),
                                        "cpus": rec["config"].get("cpus")})
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
