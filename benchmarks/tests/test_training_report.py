"""The training records' tables, the product-basis claim and the results page (synthetic
records: no model runs here)."""

from __future__ import annotations

from benchmarks.claims import docs_page, product_basis_claim
from benchmarks.training.report import markdown


def _time(median):
    return {"median": median, "q1": 0.9 * median, "q3": 1.1 * median}


def _product_basis(grid_s, fourier_s):
    cfg = {"hidden": "8x0e+8x1o+8x2e", "max_ell": 3, "correlation": 3}
    variants = {v: {"time": _time(t), "val": [{"energy_mae_per_atom": 0.01, "force_mae": 0.1}],
                    "loss": [1.0], "epoch_s": [t]}
                for v, t in (("cg", 3.0), ("gaunt-grid", grid_s), ("gaunt-fourier", fourier_s))}
    run = {"threads": "1", "config": cfg, "variants": variants,
           "fourier_over_grid": fourier_s / grid_s}
    return {"kind": "product-basis", "model": "mace", "size": "product-basis", "steps": 4,
            "created": "2026-01-01T00:00:00+00:00", "command": "python -m benchmarks train",
            "runs": [run]}


def test_product_basis_claim_verdict_follows_the_ratio():
    slow_fourier = product_basis_claim(_product_basis(2.0, 2.6))
    assert slow_fourier["verdict"] == "reproduced (grid faster)"
    assert "1.30x (1 threads)" in slow_fourier["ours"]
    assert "1.30x (3BPA)" in slow_fourier["paper"]
    assert product_basis_claim(_product_basis(2.0, 1.5))["verdict"] == "not reproduced"


def test_training_table_and_results_page():
    backends = {"e3nn": {"time": _time(3.0), "loss": [2.0, 1.0], "memory": None},
                "tp_torch": {"time": _time(1.2), "loss": [2.0, 1.0],
                             "memory": {"rss_peak_mib": 700.0, "training_rise_mib": 50.0}}}
    rec = {"kind": "training", "model": "mace", "size": "medium", "steps": 2,
           "created": "2026-01-01T00:00:00+00:00", "command": "python -m benchmarks train",
           "runs": [{"threads": "1", "dtype": "float32", "backends": backends,
                     "max_loss_rel_diff": 3e-7}]}
    table = markdown(rec)
    assert "| 1 | tp_torch | 1200 [1080, 1320] | 2.50x | 700 (50) | 2 -> 1 |" in table
    assert "| 1 | e3nn | 3000 [2700, 3300] | 1.00x | not measured |" in table
    page = docs_page([], [("a.json", rec), ("b.json", _product_basis(2.0, 2.6))])
    assert "## Training: MACE, NequIP and a Flax model" in page and table in page
    assert "| MACE product basis: Gaunt through Fourier series" in page


def test_flax_training_record_on_the_results_page():
    """A ``flax-training`` record (``python -m benchmarks.training.flax_mace --out``): one row
    per thread setting, step times in ms and the e3nn-jax / tp_jax ratio, on the page."""
    cfg = {"hidden_irreps": "8x0e+8x1o", "max_ell": 2, "correlation": 2, "num_interactions": 1,
           "repeat": [2, 2, 2]}

    def run(threads, tp_s, e3_s):
        return {"threads": threads, "ratio": e3_s / tp_s,
                "tp_jax": {"median_s": tp_s, "q1_s": 0.9 * tp_s, "q3_s": 1.1 * tp_s},
                "e3nn-jax": {"median_s": e3_s, "q1_s": 0.9 * e3_s, "q3_s": 1.1 * e3_s}}

    rec = {"kind": "flax-training", "model": "flax-mace", "steps": 10, "repeats": 3,
           "created": "2026-01-01T00:00:00+00:00", "config": cfg,
           "command": "python -m benchmarks.training.flax_mace --threads 1,0",
           "runs": [run("1", 1.0, 1.6), run("default", 0.5, 0.55)]}
    page = docs_page([], [("benchmarks/results/x/train/train-flax-mace.json", rec)], {})
    assert "### Flax MACE-style model (8x0e+8x1o, max_ell 2, correlation 2" in page
    assert "| 1 | 1000 [900, 1100] | 1600 [1440, 1760] | 1.60x |" in page
    assert "| default | 500 [450, 550] | 550 [495, 605] | 1.10x |" in page
    assert "`python -m benchmarks.training.flax_mace --threads 1,0`" in page
