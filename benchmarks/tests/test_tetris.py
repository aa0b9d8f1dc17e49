"""The tetris chirality experiment on a tiny budget: the record, the Gaunt product's blindness to
the mirror-image pair (by symmetry: identical logits), the CGTP's separation of it."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tp_torch")
pytest.importorskip("matplotlib")

import tp_spec  # noqa: E402

from benchmarks.experiments.tetris import evaluation_graph, train_one  # noqa: E402
from benchmarks.experiments.tetris_model import (  # noqa: E402
    MIRROR_PAIR,
    SHAPES,
    TetrisNet,
    build_descriptor,
    graph,
)

STEPS = 100
PAIR_ONLY = 7 / 8  # every shape but one of the mirror pair


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    from benchmarks.cli import main

    out = tmp_path_factory.mktemp("tetris")
    assert main(["experiment", "tetris", "--seeds", "1", "--steps", str(STEPS),
                 "--ops", "cgtp,gtp,vstp", "--out", str(out)]) == 0
    assert (out / "tetris.png").stat().st_size > 0
    return json.loads((out / "tetris.json").read_text())


def test_record_keys(record):
    assert {"command", "versions", "machine", "config", "products"} <= set(record)
    assert record["command"].startswith("python -m benchmarks")
    by_op = {p["op"]: p for p in record["products"]}
    assert list(by_op) == ["cgtp", "gtp", "vstp"]
    for op in ("cgtp", "gtp"):
        p = by_op[op]
        assert {"op", "method", "accuracy", "accuracies", "final_loss", "steps",
                "seconds"} <= set(p)
        assert p["steps"] == STEPS and len(p["accuracies"]) == 1
        assert p["accuracy"] == float(np.median(p["accuracies"]))
        assert p["seconds"] > 0 and np.isfinite(p["final_loss"])
    assert by_op["gtp"]["method"] == "grid"
    vstp = by_op["vstp"]
    if vstp["available"]:
        assert vstp["steps"] == STEPS and len(vstp["accuracies"]) == 1
    else:
        assert set(vstp) == {"op", "available", "reason"}
        assert "not available" in vstp["reason"]
        if not hasattr(tp_spec, "vstp"):
            assert "has no vstp()" in vstp["reason"]


def test_gtp_never_exceeds_seven_eighths(record):
    gtp = next(p for p in record["products"] if p["op"] == "gtp")
    assert max(gtp["accuracies"]) <= PAIR_ONLY
    assert max(max(c) for c in gtp["curve_accuracy"]) <= PAIR_ONLY
    cgtp = next(p for p in record["products"] if p["op"] == "cgtp")
    assert cgtp["accuracy"] > PAIR_ONLY


def test_the_pair_are_mirror_images():
    a, b = (SHAPES[i] for i in MIRROR_PAIR)
    assert np.array_equal(b, a * np.array([1, -1, 1]))
    # no proper rotation maps one onto the other: the distance matrices agree, the triple
    # product of the bonds from the middle points has the opposite sign
    def triple(s):
        return np.linalg.det(np.stack([s[1] - s[0], s[2] - s[0], s[3] - s[2]]))
    assert triple(a) == -triple(b) != 0


def _pair_logits(op: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float64) of the first shape of the pair and of a randomly rotated second."""
    torch.manual_seed(seed)
    net = TetrisNet(op).double()
    rot = tp_spec.random_rotation(seed)
    pos = np.stack([SHAPES[MIRROR_PAIR[0]], SHAPES[MIRROR_PAIR[1]] @ rot.T])
    with torch.no_grad():
        logits = net(net.tensors(graph(pos, net.lmax), torch.float64))
    return logits[0], logits[1]


@pytest.mark.parametrize("seed", [0, 1])
def test_gtp_gives_the_mirror_pair_identical_logits(seed):
    a, b = _pair_logits("gtp", seed)
    assert torch.allclose(a, b, rtol=0, atol=1e-9 * float(a.abs().max()))
    # the CGTP network (same architecture) tells them apart: its pseudoscalar swaps the two
    # chiral logits
    c, d = _pair_logits("cgtp", seed)
    assert float((c[0] - c[1]).abs()) > 1e-6
    assert torch.allclose(c[:2], d[:2].flip(0), rtol=1e-9, atol=1e-9)
    assert torch.allclose(c[2:], d[2:], rtol=1e-9, atol=1e-9)


def test_cgtp_separates_the_pair_after_training():
    r = train_one("cgtp", seed=0, steps=STEPS, eval_every=STEPS, rotations=1)
    model = r["model"]
    g, labels = evaluation_graph(model, 8, np.random.default_rng(123))
    with torch.no_grad():
        pred = model(g).argmax(dim=1)
    pair = (labels == MIRROR_PAIR[0]) | (labels == MIRROR_PAIR[1])
    assert torch.equal(pred[pair], labels[pair])


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown product"):
        build_descriptor("xyz", tp_spec.Irreps("8x0e"), tp_spec.Irreps("0e"))
    with pytest.raises(tp_spec.ShapeError, match="positions"):
        graph(np.zeros((4, 3)), 2)
