"""The VSTP in the harness: its workloads (output pruning, which suites time it), the
subjects that accept it, a timed run with a fake subject and the VSTP-vs-CGTP claim row."""

from __future__ import annotations

import numpy as np
import pytest
import tp_spec
from tp_spec import Irreps, reference

from benchmarks import claims, report, runner
from benchmarks.subjects import BackendSubject
from benchmarks.workloads import (
    MAIN_OPS,
    OPS,
    build_descriptor,
    paper_workloads,
    suite_ops,
    suite_workloads,
)

from .conftest import FAST, FakeSubject


class FakeVSTP(FakeSubject):
    """``factor * reference`` for the VSTP only."""

    ops = ("vstp",)


def test_vstp_output_pruning_keeps_every_reached_irrep() -> None:
    """The pruned MIMO VSTP keeps exactly the output blocks the unpruned one fills, with the
    same values (NumPy reference on random inputs)."""
    (wl,) = paper_workloads(("MIMO",), (2,), ("vstp",), 4)
    pruned = wl.descriptor
    full = build_descriptor("vstp", wl.irreps_in1, wl.irreps_in2, wl.irreps_out, prune=False)
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((5, Irreps(wl.irreps_in1).dim))
    x2 = rng.standard_normal((5, Irreps(wl.irreps_in2).dim))
    y_full = reference.apply(full, x1, x2)
    kept_irreps, kept, offset = [], [], 0
    for mul_ir in full.irreps_out:
        block = y_full[:, offset:offset + mul_ir.dim]
        offset += mul_ir.dim
        if np.abs(block).max() > 1e-10:
            kept_irreps.append(mul_ir.ir)
            kept.append(block)
    assert len(kept_irreps) < len(full.irreps_out)  # the target has unreachable irreps
    assert [m.ir for m in pruned.irreps_out] == kept_irreps
    np.testing.assert_allclose(reference.apply(pruned, x1, x2), np.concatenate(kept, axis=1),
                               atol=1e-12)


def test_paper_suite_times_vstp_and_the_main_job_does_not() -> None:
    assert "vstp" in OPS and "vstp" not in MAIN_OPS
    assert suite_ops("paper") == OPS
    for suite in ("default", "models", "scaling", "conv"):
        assert suite_ops(suite) == MAIN_OPS
    paper = suite_workloads("paper", kinds=("MIMO",), Ls=(1,), batch=4)
    assert {w.op for w in paper} == set(OPS)
    default = suite_workloads("default", Ls=(1,), batch=4)
    assert {w.op for w in default} == set(MAIN_OPS)
    (v,) = [w for w in paper if w.op == "vstp"]
    assert isinstance(v.descriptor, tp_spec.VSTPDescriptor)


def test_unknown_op_or_suite_is_refused() -> None:
    with pytest.raises(ValueError, match="'vstpp'"):
        suite_workloads("paper", ops=("cgtp", "vstpp"), Ls=(1,))
    with pytest.raises(ValueError, match="'nope'"):
        suite_ops("nope")


def test_vstp_workload_is_timed_and_checked_and_other_ops_not_applicable() -> None:
    """A right VSTP subject is timed after the reference check; a deliberately wrong one is
    refused; subjects of other ops say why they do not apply and are left out of the run."""
    (wl,) = paper_workloads(("MIMO",), (1,), ("vstp",), 8)
    others = [FakeSubject("fake/cgtp-only"), BackendSubject("tp_torch", "cgtp", "dense")]
    for s in others:
        assert s.applicable(wl, "cpu") == f"{s.name} does not implement vstp"
    subjects = [FakeVSTP("fake/vstp"), FakeVSTP("fake/vstp-wrong", factor=1.01), *others]
    rec = runner.run([wl], subjects, passes=("fwd",), progress=False, timing=FAST)
    report.validate(rec)
    by = {r["subject"]: r for r in rec["results"]}
    assert set(by) == {"fake/vstp", "fake/vstp-wrong"}
    assert by["fake/vstp"]["status"] == "ok" and by["fake/vstp"]["check"]["ok"]
    assert by["fake/vstp-wrong"]["status"] == "failed check"


@pytest.mark.parametrize("package", ["tp_torch", "tp_jax"])
def test_backend_grid_accepts_vstp(package: str) -> None:
    pytest.importorskip(package)
    (wl,) = paper_workloads(("MIMO",), (2,), ("vstp",), 4)
    assert BackendSubject(package, "vstp", "grid").applicable(wl, "cpu") is None
    assert "does not implement" in BackendSubject(package, "gtp", "grid").applicable(wl, "cpu")


@pytest.mark.parametrize("ratios, verdict", [
    ({1: 0.2, 2: 0.3}, "not measured"),                 # the crossover L = 6 is not there
    ({5: 0.8, 6: 1.3, 7: 1.6}, "reproduced"),
    ({5: 0.8, 6: 0.9, 7: 1.1}, "partly (crossover at L=7)"),
    ({5: 0.5, 6: 0.7, 7: 0.9}, "not reproduced"),
])
def test_vstp_claim_row_from_a_harness_record(ratios: dict[int, float], verdict: str) -> None:
    """MIMO VSTP and CGTP records from the runner (fake subjects renamed, times set so that
    dense CGTP time / VSTP time = ``ratios``) give the claim's verdict."""
    Ls = sorted(ratios)
    small = tuple(range(1, len(Ls) + 1))  # timed at small L (fast reference), relabelled
    wls = paper_workloads(("MIMO",), small, ("cgtp", "vstp"), 4)
    fakes = [FakeSubject("tp_torch/dense"), FakeVSTP("tp_torch/grid")]
    rec = runner.run(wls, fakes, passes=("fwd",), progress=False, timing=FAST)
    for r in rec["results"]:
        assert r["status"] == "ok", r
        L, op = Ls[r["workload"]["L"] - 1], r["workload"]["op"]
        r["workload"]["L"] = L
        t = ratios[L] if op == "cgtp" else 1.0
        r["stats"] = {k: (t if k != "n" else v) for k, v in r["stats"].items()}
        r["samples_s"] = [t] * len(r["samples_s"])
    report.validate(rec)
    rows = [c for c in claims.claims(rec) if c["claim"].startswith("VSTP vs dense CGTP, tp_torch")]
    assert len(rows) == 1 and rows[0]["verdict"].startswith(verdict), rows
