"""The cueq adapter is exact (float64, 1e-12) against tp_spec.reference where supported."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tp_spec as spec
import tp_torch
from conftest import CASES, random_inputs, tensors
from tp_spec import InstructionError, reference

pytest.importorskip("cuequivariance_torch")

CGTP = [n for n, d in CASES.items() if d.kind == "cgtp"]


@pytest.mark.parametrize("name", CGTP)
def test_cueq_exact_or_reported(name, rng):
    d = CASES[name]
    reason = tp_torch.methods(d)["cueq"]
    assert reason is None, reason  # mixed modes and mixed weighted/unweighted paths run too
    tp = tp_torch.TensorProduct(d, "cueq")
    for batch in [(), (1,), (3, 4), (0,)]:
        for per_sample in ([False, True] if d.weight_numel else [False]):
            x1, x2, w = random_inputs(d, batch, rng, per_sample)
            out = tp(*tensors(x1, x2, w)).numpy()
            np.testing.assert_allclose(out, reference.apply(d, x1, x2, w), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["uvw", "uvu_sh", "uuu"])
def test_cueq_gradients_match_fused(name, rng):
    d = CASES[name]
    x1, x2, w = random_inputs(d, (3,), rng, per_sample=True)
    ct = torch.tensor(rng.normal(size=(3, d.irreps_out.dim)))
    grads = []
    for m in ("cueq", "fused"):
        ins = [t for t in tensors(x1, x2, w, grad=True) if t is not None]
        e = (tp_torch.TensorProduct(d, m)(*ins) * ct).sum()
        (f,) = torch.autograd.grad(e, ins[0], create_graph=True)
        g = torch.autograd.grad((f ** 2).sum(), ins[1:])
        grads.append(g)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_cueq_refuses_zero_multiplicities():
    d = spec.cgtp("0x0e + 1o", "1o", "0e + 0x1e", mode="uvw")
    assert "zero multiplicity" in tp_torch.methods(d)["cueq"]
    with pytest.raises(InstructionError, match="zero multiplicity"):
        tp_torch.TensorProduct(d, "cueq")


def test_cueq_reports_unsupported():
    assert tp_torch.methods(spec.gtp("0e", "0e")).get("cueq") is None  # not a GTP method
    assert "cueq" not in tp_torch.methods(spec.gtp("0e", "0e"))
