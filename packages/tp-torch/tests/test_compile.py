"""torch.compile(fullgraph=True): no graph breaks in forward or backward (one small case per
family and fast method; compiling is slow on CPU, so these stay few)."""

from __future__ import annotations

import os

import pytest
import torch
import tp_torch
from conftest import CASES, random_inputs, tensors

# "aot_eager" traces forward and backward with dynamo + AOTAutograd (the part that can break
# the graph) without the slow C++ code generation; one small case per family also goes through
# the default inductor backend. TP_TORCH_COMPILE_ALL=1 runs every case with inductor.
CASES_COMPILED = [("mimo", "fused", False), ("mimo_split", "fused", False),
                  ("uvu_sh", "fused", True), ("uvu_sh", "fused", False),
                  ("uvu_pad", "fused", False), ("uvu_shared_out", "fused", False),
                  ("uvw", "dense", True),
                  ("gtp_broadcast_w", "grid", False), ("mtp_all", "dense", False),
                  ("mtp_broadcast_w", "sparse", True)]
_ALL = os.environ.get("TP_TORCH_COMPILE_ALL") == "1"
COMPILED = [(n, m, p, "aot_eager") for n, m, p in CASES_COMPILED] + [
    (n, m, p, "inductor") for n, m, p in CASES_COMPILED
    if _ALL or (n, m) in {("gtp_broadcast_w", "grid"), ("mtp_all", "dense")}
]


@pytest.mark.compile
@pytest.mark.parametrize(("name", "method", "per_sample", "backend"), COMPILED)
def test_compile_fullgraph(name, method, per_sample, backend, rng):
    torch._dynamo.reset()
    d = CASES[name]
    tp = tp_torch.TensorProduct(d, method)
    compiled = torch.compile(tp, fullgraph=True, dynamic=False, backend=backend)
    x1, x2, w = random_inputs(d, (5,), rng, per_sample)
    a = tensors(x1, x2, w, dtype=torch.float32, grad=True)
    b = tensors(x1, x2, w, dtype=torch.float32, grad=True)
    out_c = compiled(*a)
    out_e = tp(*b)
    torch.testing.assert_close(out_c, out_e, rtol=1e-5, atol=1e-5)
    (out_c ** 2).sum().backward()
    (out_e ** 2).sum().backward()
    for ta, tb in zip(a, b, strict=True):
        if ta is not None:
            torch.testing.assert_close(ta.grad, tb.grad, rtol=1e-4, atol=1e-4)
