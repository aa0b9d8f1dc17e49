"""The conv suite: the graph generator (against brute force), the anchors against
``tp_spec.reference.conv`` (float64), the passes against finite differences, and a tiny
end-to-end run of ``python -m benchmarks run --suite conv``."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import conv_subjects, report
from benchmarks.cli import main
from benchmarks.conv import ConvWorkload, conv_workloads
from benchmarks.graphs import cutoff_for_degree, edge_features, periodic_graph
from benchmarks.runner import check_subject


# ----------------------------------------------------------------------------- graphs
def test_default_graph_has_liquid_shape() -> None:
    g = periodic_graph(1000, 30.0)
    s = g.summary()
    assert 15 <= s["degree"]["mean"] <= 40
    assert 25_000 <= g.n_edges <= 35_000
    assert s["degree"]["min"] >= 10 and s["degree"]["max"] <= 50
    assert s["density"] == pytest.approx(0.1, rel=1e-9)
    assert g.senders.dtype == g.receivers.dtype == np.int64
    # symmetric list, no self-loops, every edge shorter than the cutoff
    pairs = set(zip(g.senders.tolist(), g.receivers.tolist(), strict=True))
    assert all((r, s) in pairs for s, r in pairs)
    assert not np.any(g.senders == g.receivers)
    assert np.linalg.norm(g.vectors, axis=1).max() < g.cutoff


def test_minimum_image_matches_brute_force_over_images() -> None:
    """Every pair closer than the cutoff through any of the 27 periodic images is an edge, with
    that image's displacement ``r[receiver] + shift - r[sender]``, and nothing else is."""
    g = periodic_graph(30, 8.0, seed=3)
    pos, box = g.positions, g.box
    expected = {}
    for s, r in itertools.permutations(range(g.n_nodes), 2):
        for shift in itertools.product((-1, 0, 1), repeat=3):
            v = pos[r] + box * np.array(shift) - pos[s]
            if np.linalg.norm(v) < g.cutoff:
                assert (s, r) not in expected  # cutoff < box/2: one image at most
                expected[(s, r)] = v
    got = {(s, r): v for s, r, v in zip(g.senders.tolist(), g.receivers.tolist(), g.vectors,
                                        strict=True)}
    assert set(got) == set(expected) and len(got) == g.n_edges
    for k, v in expected.items():
        np.testing.assert_allclose(got[k], v, atol=1e-12)
    assert np.all(np.diff(g.senders) >= 0)  # sorted by sender


def test_graph_is_deterministic_and_seeded() -> None:
    a, b, c = periodic_graph(100, 12.0, seed=1), periodic_graph(100, 12.0, seed=1), \
        periodic_graph(100, 12.0, seed=2)
    for name in ("positions", "senders", "receivers", "vectors"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.positions, c.positions)


def test_graph_refuses_a_cutoff_beyond_half_the_box() -> None:
    with pytest.raises(ValueError, match="half the box"):
        periodic_graph(20, 40.0)
    assert cutoff_for_degree(30.0, 0.1) == pytest.approx((90 / (4 * np.pi * 0.1)) ** (1 / 3))


def test_edge_features_are_e3nn_harmonics_of_the_edge_directions() -> None:
    """Component normalization: ``|Y_l(r/|r|)|^2 = 2l + 1`` per degree; and e3nn's
    ``spherical_harmonics(..., normalize=True, normalization="component")`` where installed."""
    g = periodic_graph(40, 8.0)
    y = edge_features(g, "0e+1o+2e+3o")
    for l in range(4):
        np.testing.assert_allclose((y[:, l * l:(l + 1) ** 2] ** 2).sum(1), 2 * l + 1,
                                   rtol=1e-10)
    try:
        import torch
        from e3nn import o3
    except ImportError:
        return
    want = o3.spherical_harmonics("0e+1o+2e+3o", torch.as_tensor(g.vectors), normalize=True,
                                  normalization="component").numpy()
    np.testing.assert_allclose(y, want, atol=1e-12)


# ----------------------------------------------------------------------------- anchors
TINY = ConvWorkload("tiny", "cgtp", "3x0e+2x1o+2x2e", "0e+1o+2e+3o", "0e+1o+2e+3o",
                    n_nodes=40, mean_degree=8.0)


@pytest.mark.parametrize("name", ["E3nnConv", "E3nnJaxConv", "CueqTorchConv"])
def test_anchor_matches_reference_conv_float64(name: str) -> None:
    """The anchors compute ``tp_spec.reference.conv`` on every node (not only the rows the
    runner checks): what makes them fair anchors."""
    subject: Any = getattr(conv_subjects, name)()
    reason = subject.available()
    if reason:
        pytest.skip(reason)
    if subject.framework == "jax":
        import jax

        x64 = jax.config.jax_enable_x64
        jax.config.update("jax_enable_x64", True)
        try:
            _anchor_vs_reference(subject)
        finally:
            jax.config.update("jax_enable_x64", x64)
    else:
        _anchor_vs_reference(subject)


def _anchor_vs_reference(subject: Any) -> None:
    assert subject.applicable(TINY, "cpu") is None
    built = subject.build(TINY, "float64", "cpu")
    args = TINY.inputs(seed=5)
    g = TINY.graph
    from tp_spec import reference

    ref = reference.conv(TINY.descriptor, *args, g.senders, g.receivers)
    native = built.to_native(args) if built.to_native else args
    out = TINY.engine(built.framework, "cpu").forward_numpy(built.fn, native, "float64")
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())
    check = check_subject(built, TINY, "float64", "cpu", seed=5)
    assert check["ok"] and check["rel_err"] < 1e-12, check


def test_anchor_refuses_a_wrong_subject() -> None:
    """The row check catches a subject that is off by 1% (float32 tolerance 2e-4)."""
    pytest.importorskip("e3nn")
    built = conv_subjects.E3nnConv().build(TINY, "float32", "cpu")
    inner = built.fn
    built.fn = lambda *a: 1.01 * inner(*a)
    check = check_subject(built, TINY, "float32", "cpu")
    assert not check["ok"] and check["rel_err"] == pytest.approx(0.01, rel=1e-3)


def test_backend_subjects_say_why_they_are_missing() -> None:
    """A backend without the convolution API reports ``<package> has no <API>``."""
    import importlib

    for s in conv_subjects.conv_subjects(("tp_torch", "tp_jax")):
        try:
            mod = importlib.import_module(s.package)
        except ImportError:
            assert "cannot import" in s.available()
            continue
        api = conv_subjects.CONV_API[s.package]
        if hasattr(mod, api):
            assert s.available() is None
        else:
            assert s.available() == f"{s.package} has no {api}"


@pytest.mark.parametrize("pass_", ["bwd", "dbl"])
def test_torch_passes_match_finite_differences(pass_: str) -> None:
    """``bwd`` returns d<cot, out>/d(nodes, edges, weights); ``dbl`` (force training) returns
    d sum(F^2)/d(nodes, weights) with ``F = d<cot, out>/d edges``: both checked by central
    differences of the NumPy reference."""
    pytest.importorskip("e3nn")
    from tp_spec import reference

    wl = ConvWorkload("fd", "cgtp", "2x0e+1x1o", "0e+1o", "0e+1o", n_nodes=12, mean_degree=3.0)
    g, d = wl.graph, wl.descriptor
    built = conv_subjects.E3nnConv().build(wl, "float64", "cpu")
    eng = wl.engine("torch", "cpu")
    args = wl.inputs(seed=2)
    m = eng.prepare(built.fn, pass_, args, "float64", seed=0)
    grads = [g_.detach().numpy() for g_ in m.call()]
    from benchmarks.timing import _cot_and_v

    cot = _cot_and_v(args, (g.n_nodes, d.irreps_out.dim), 0)[0]

    def energy(a: list[np.ndarray]) -> float:
        return float((reference.conv(d, *a, g.senders, g.receivers) * cot).sum())

    def num_grad(f: Any, a: list[np.ndarray], i: int, h: float = 1e-5) -> np.ndarray:
        out = np.zeros_like(a[i])
        for idx in np.ndindex(a[i].shape):
            hi = [x.copy() for x in a]
            lo = [x.copy() for x in a]
            hi[i][idx] += h
            lo[i][idx] -= h
            out[idx] = (f(hi) - f(lo)) / (2 * h)
        return out

    if pass_ == "bwd":
        for i in range(3):
            np.testing.assert_allclose(grads[i], num_grad(energy, args, i), atol=1e-6)
    else:
        def loss(a: list[np.ndarray]) -> float:
            # F[e] = d energy / d x_edges[e]: the energy is linear in x_edges, so column k is
            # the energy's edge terms at the unit vector e_k
            xn, xe, w = a
            per_edge_cot = cot[g.receivers]
            forces = np.stack([
                np.einsum("ej,ej->e", reference.apply(d, xn[g.senders],
                                                      np.eye(xe.shape[1])[[k] * g.n_edges],
                                                      w), per_edge_cot)
                for k in range(xe.shape[1])], axis=1)
            return float((forces**2).sum())

        for k, i in enumerate((0, 2)):
            np.testing.assert_allclose(grads[k], num_grad(loss, args, i, h=1e-3),
                                       rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- end to end
def test_conv_suite_runs_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("e3nn")
    out = tmp_path / "run"
    assert main(["run", "--suite", "conv", "--nodes", "30", "--degree", "6", "--ops", "cgtp",
                 "--subjects", "e3nn/conv,tp_torch/fused", "--target-s", "0.01",
                 "--min-repeats", "2", "--max-repeats", "2", "--no-plots", "--no-progress",
                 "--memory-cap", "off", "--out", str(out)]) == 0
    rec = json.loads((out / "results.json").read_text())
    report.validate(rec)
    names = [w.name for w in conv_workloads(families=("cgtp",))]
    ok = {(r["workload"]["name"], r["pass"]) for r in rec["results"]
          if r["subject"] == "e3nn/conv" and r["status"] == "ok"}
    assert ok == {(n, p) for n in names for p in ("fwd", "bwd", "dbl")}
    for r in rec["results"]:
        assert r["workload"]["suite"] == "conv" and r["workload"]["op"] == "conv-cgtp"
        assert r["workload"]["batch"] == r["workload"]["graph"]["n_edges"]
        if r["status"] == "ok":
            assert r["check"]["ok"] and r["cost"]["flops_min"] > 0
            assert r["memory"].get("peak_rss_growth_bytes", 1) > 0
        elif r["subject"].startswith("tp_torch/"):
            assert r["status"] in ("unavailable", "not applicable", "ok")
    page = (out / "results.md").read_text()
    assert page.count("### conv /") == 3  # one table per pass, a column per workload
    assert all(f"| {n} |" in page for n in names)
