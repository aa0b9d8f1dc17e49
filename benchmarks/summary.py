"""Headline ratios of benchmark records: each backend against its op's primary anchor, with a
spread from the quartiles; which records newer ones supersede.

A *cell* is one (workload group, op, pass, size, subject) of a record. Groups: the workload
name for swept workloads (``MIMO``, ``SISO``, ``MIMO-batch``...), the suite for the ``models``
and ``conv`` suites, whose sizes are the shapes. The *reference* of a subject is the anchor it
is compared with: the anchor of its op and framework (``subjects.ANCHORS``), the op's only
anchor where there is one (e3x for the MTP), and for the VSTP, which has no outside anchor,
the same framework's dense CGTP (the paper's comparison).

Ratio of a cell: ``anchor median / subject median`` (> 1: faster than the anchor), and the
conservative quartile bounds ``anchor q1 / subject q3`` to ``anchor q3 / subject q1``.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from typing import Any

from .subjects import ANCHORS, BACKENDS

__all__ = ["Ratio", "anchor_config", "cell_ratio", "cells", "group_of", "headline", "older_anchors",
           "reference", "size_of", "superseded"]

#: The method of each backend a headline row reports, first present wins (the defaults first).
HEADLINE_METHODS = {"cgtp": ("fused", "dense", "sparse"), "gtp": ("grid", "fourier"),
                    "mtp": ("sparse", "dense"), "vstp": ("grid",),
                    "conv-cgtp": ("fused", "dense")}
#: Framework of the outside libraries' subjects (the fake subjects of the tests are NumPy).
LIBRARY_FRAMEWORK = {"e3nn": "torch", "e3nn-jax": "jax", "cueq-torch": "torch",
                     "cueq-jax": "jax", "oeq": "torch", "e3x": "jax", **BACKENDS}
#: Suites whose workloads are shapes, not a sweep: one group, sizes = workload names.
SHAPE_SUITES = ("models", "conv")

Ratio = tuple[float, float, float]  # (median ratio, low quartile bound, high quartile bound)


def group_of(w: dict[str, Any]) -> str:
    """Workload group: the suite for shape suites, else the workload name."""
    return w["suite"] if w["suite"] in SHAPE_SUITES else w["name"]


def size_of(w: dict[str, Any]) -> Any:
    """The swept size of a workload: batch, channels, L, or the shape name."""
    if w["suite"] in SHAPE_SUITES:
        return w["name"]
    if w["name"].endswith("-batch"):
        return w["batch"]
    if w["name"].endswith("-channels"):
        return w.get("channels", 1)
    return w.get("L") if w.get("L") is not None else w["batch"]


def size_label(group: str, w: dict[str, Any]) -> str:
    """Axis name of a group's sizes."""
    if w["suite"] in SHAPE_SUITES:
        return "shape"
    if group.endswith("-batch"):
        return "batch"
    if group.endswith("-channels"):
        return "channels"
    return "L" if w.get("L") is not None else "batch"


def framework_of(subject: str, fallback: str | None = None) -> str | None:
    return LIBRARY_FRAMEWORK.get(subject.split("/")[0], fallback)


def is_anchor(op: str, subject: str) -> bool:
    return subject in ANCHORS.get(op, {}).values()


def reference(op: str, subject: str, framework: str | None = None) -> tuple[str, str] | None:
    """``(op, subject)`` of the primary anchor ``subject`` is compared with, or None (an anchor
    itself, or no anchor for the op)."""
    if is_anchor(op, subject):
        return None
    backend = subject.split("/")[0]
    if op == "vstp":
        return ("cgtp", f"{backend}/dense") if backend in BACKENDS else None
    anchors = ANCHORS.get(op, {})
    anchor = anchors.get(framework_of(subject, framework) or "")
    if anchor is None and len(anchors) == 1:
        anchor = next(iter(anchors.values()))
    return None if anchor is None else (op, anchor)


def cells(record: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """``{(group, op, pass, size, subject): result}`` of the timed results."""
    out = {}
    for r in record["results"]:
        if r["status"] == "ok":
            w = r["workload"]
            out[(group_of(w), w["op"], r["pass"], size_of(w), r["subject"])] = r
    return out


def cell_ratio(anchor: dict[str, Any], subject: dict[str, Any]) -> Ratio:
    """Anchor time / subject time of two results: medians, and the quartile bounds."""
    a, s = anchor["stats"], subject["stats"]
    return a["median"] / s["median"], a["q1"] / s["q3"], a["q3"] / s["q1"]


def ratios(record: dict[str, Any]) -> dict[tuple[Any, ...], tuple[str, Ratio]]:
    """``{(group, op, pass, size, subject): (anchor subject, ratio)}`` for every timed subject
    whose reference was timed at the same size and pass of the same run."""
    index = cells(record)
    out = {}
    for (group, op, pass_, size, subject), r in index.items():
        ref = reference(op, subject, r.get("framework"))
        if ref is None:
            continue
        anchor = index.get((group, ref[0], pass_, size, ref[1]))
        if anchor is not None:
            out[(group, op, pass_, size, subject)] = (ref[1], cell_ratio(anchor, r))
    return out


def sort_key(x: Any) -> tuple[int, Any]:
    """Numbers first in order, then names."""
    return (0, x) if isinstance(x, (int, float)) else (1, str(x))


def headline(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (group, op, backend, pass): the backend's headline method against its
    reference over the sizes timed for both. Row keys: ``group, op, pass, subject, anchor,
    sizes`` (sorted), ``per_size`` (``{size: ratio}``), ``median`` (median over the sizes of
    the ratio of medians), ``low`` / ``high`` (lowest and highest quartile bound over the
    sizes)."""
    rat = ratios(record)
    by: dict[tuple[Any, ...], dict[str, dict[Any, tuple[str, Ratio]]]] = defaultdict(
        lambda: defaultdict(dict))
    for (group, op, pass_, size, subject), value in rat.items():
        backend = subject.split("/")[0]
        if backend in BACKENDS:
            by[(group, op, backend, pass_)][subject][size] = value
    rows = []
    order = {"fwd": 0, "bwd": 1, "dbl": 2}
    for (group, op, backend, pass_), subjects in by.items():
        methods = HEADLINE_METHODS.get(op, ())
        chosen = next((f"{backend}/{m}" for m in methods if f"{backend}/{m}" in subjects),
                      sorted(subjects)[0])
        per = subjects[chosen]
        sizes = sorted(per, key=sort_key)
        rows.append({"group": group, "op": op, "pass": pass_, "subject": chosen,
                     "anchor": per[sizes[0]][0], "sizes": sizes,
                     "per_size": {s: per[s][1] for s in sizes},
                     "median": statistics.median(per[s][1][0] for s in sizes),
                     "low": min(per[s][1][1] for s in sizes),
                     "high": max(per[s][1][2] for s in sizes)})
    rows.sort(key=lambda r: (r["group"], r["op"], r["subject"], order.get(r["pass"], 3)))
    return rows


def measured_at(record: dict[str, Any]) -> tuple[str, str]:
    """First and last creation time of a record's runs (merged runs included), ISO strings."""
    times = [record["created"]] + [m["created"] for m in record["config"].get("merged", [])]
    return min(times), max(times)


def _row_id(record: dict[str, Any], row: dict[str, Any]) -> tuple[Any, ...]:
    return (record["machine"]["name"], record["device"], str(record["config"].get("threads")),
            record["config"].get("dtype"), row["group"], row["op"], row["pass"],
            row["subject"], row["anchor"])


def superseded(records: list[tuple[str, dict[str, Any]]]
               ) -> dict[str, dict[tuple[Any, ...], str]]:
    """``{path: {(group, op, pass, subject): newer path}}``: a headline row of a record is
    superseded where a record started after it was last measured, on the same machine, device,
    thread setting and dtype, has the same row (group, op, pass, method, anchor)."""
    rows = {path: {_row_id(rec, r): r for r in headline(rec)} for path, rec in records}
    when = {path: measured_at(rec) for path, rec in records}
    out: dict[str, dict[tuple[Any, ...], str]] = {path: {} for path, _ in records}
    for path, _ in records:
        for other, _ in records:
            if other == path or when[other][0] <= when[path][1]:
                continue
            for key, r in rows[path].items():
                if key in rows[other]:
                    newer = out[path].get((r["group"], r["op"], r["pass"], r["subject"]))
                    if newer is None or when[other][0] > when[newer][0]:
                        out[path][(r["group"], r["op"], r["pass"], r["subject"])] = other
    return out


def anchor_config(note: str | None) -> frozenset[str]:
    """The configuration phrases of an anchor result's ``note`` (split at commas and
    semicolons; grid sizes such as ``13x25`` blanked)."""
    text = re.sub(r"\d+x\d+", "AxB", note or "")
    return frozenset(p.strip() for p in re.split(r"[;,]", text) if p.strip())


def older_anchors(records: list[tuple[str, dict[str, Any]]]
                  ) -> dict[str, dict[tuple[Any, ...], frozenset[str]]]:
    """``{path: {(group, op, pass, subject): missing phrases}}``: headline rows whose anchor ran
    in an older configuration than in the newest record that times that anchor for the op,
    i.e. its cells lack a phrase that every cell of the anchor has there (e3nn-jax's grid
    without ``fft=False``)."""
    newest: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for path, rec in records:
        for (_, op, _, _, subject) in cells(rec):
            if is_anchor(op, subject):
                seen = newest.get((op, subject))
                if seen is None or measured_at(rec)[0] > measured_at(seen[1])[0]:
                    newest[(op, subject)] = (path, rec)
    required = {}
    for (op, anchor), (_, rec) in newest.items():
        configs = [anchor_config(r.get("note")) for k, r in cells(rec).items()
                   if k[1] == op and k[4] == anchor]
        required[(op, anchor)] = frozenset.intersection(*configs)
    out: dict[str, dict[tuple[Any, ...], frozenset[str]]] = {path: {} for path, _ in records}
    for path, rec in records:
        index = cells(rec)
        for row in headline(rec):
            if not is_anchor(row["op"], row["anchor"]):  # the VSTP's reference: our dense CGTP
                continue
            need = required.get((row["op"], row["anchor"]), frozenset())
            missing = frozenset().union(*(
                need - anchor_config(index[(row["group"], row["op"], row["pass"], size,
                                            row["anchor"])].get("note"))
                for size in row["sizes"]))
            if missing:
                out[path][(row["group"], row["op"], row["pass"], row["subject"])] = missing
    return out


def fmt_ratio(ratio: Ratio | None) -> str:
    """``2.9x (1.3-5.6)``: the median ratio and its quartile bounds."""
    if ratio is None:
        return "-"
    return f"{ratio[0]:.2g}x ({ratio[1]:.2g}-{ratio[2]:.2g})"
