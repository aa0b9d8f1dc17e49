"""MTP product kernels (``tp_torch._bmm.matprod``) and every MTP layout variant.

The MTP kernels pick a product layout by matrix size (batch-last broadcast multiply-adds for
``n <= 7``, batch-first ``bmm`` above) and, for ``sparse`` with one channel and all four parity
pairs, a fused read-out. The default test cases only reach some of these combinations, so here
every variant is forced on small descriptors and checked against ``tp_spec.reference`` (values)
and against finite differences (``gradcheck``/``gradgradcheck``, float64).
"""

from __future__ import annotations

import itertools

import pytest
import torch
import tp_spec as spec
import tp_torch
from conftest import random_inputs, tensors
from tp_spec import plan, reference
from tp_spec.plan import Tuning
from tp_torch import _mtp
from tp_torch._bmm import matprod

#: small descriptors covering: all four parity pairs (one channel: fused read-out), channels,
#: one broadcast x2 channel with per-degree weights, a single parity pair, two pairs into one
#: output class, n = 5 and n = 9 matrices; ``sparse``'s transpose regime (natural or pseudo
#: irreps only, one or more channels) and inputs that mix both (no transpose regime)
MTP_CASES = {
    "mimo_l1": spec.mtp("0e+1o", "0e+1o"),
    "mimo_l2": spec.mtp("0e+1o+2e", "0e+1o+2e"),
    "channels": spec.mtp("2x0e+2x1o+2x1e", "2x0e+2x1o+2x0o"),
    "broadcast_w": spec.mtp("3x0e+3x1o+3x2e", "0e+1o+2e+3o", per_degree_weights=True),
    "one_pair": spec.mtp("2x0e+2x1o", "2x0e+2x1o", "2x0e+2x1e"),
    "two_pairs": spec.mtp("2x0e+2x1e", "0e+1o+0o", per_degree_weights=True),
    "big_n": spec.mtp("0e+1o", "0e+1o+1e", lt=4),
    "pseudo": spec.mtp("2x0o+2x1e+2x2o", "0e+1o+2e"),
    "channels_nat": spec.mtp("2x0e+2x1o+2x2e", "2x0e+2x1o", lt=4),
}

#: the cases ``sparse`` runs in its transpose regime (``X' = +-X^T``) when it is enabled for
#: every matrix size (the fixture below); by default it starts at n = 7
TRANSPOSE_REGIME = {"mimo_l1", "mimo_l2", "broadcast_w", "pseudo", "channels_nat"}


#: the transpose regime for every matrix size
TR_EVERYWHERE = Tuning(mtp_transpose_min_n=1)


def _module(d, method, tuning=TR_EVERYWHERE):
    """``TensorProduct(d, method)`` whose kernel executes the plan built with ``tuning``."""
    tp = tp_torch.TensorProduct(d, method)
    p = plan.plan(d, method, tuning)
    tp.kernel = _mtp.EXECUTORS[type(p)](p)
    return tp


def test_transpose_regime_cases():
    """Which descriptors take ``sparse``'s transpose regime: all four parity pairs and each
    input all natural or all pseudo irreps; by default from n = 7."""
    got = {name for name, d in MTP_CASES.items() if _module(d, "sparse").kernel.tr}
    assert got == TRANSPOSE_REGIME
    assert not tp_torch.TensorProduct(MTP_CASES["mimo_l2"], "sparse").kernel.tr  # n = 5
    assert tp_torch.TensorProduct(MTP_CASES["channels_nat"], "sparse").kernel.tr  # n = 9


def _variants(kernel):
    """(batch_last, fused_out) combinations the kernel supports."""
    fused = [False, True] if kernel.fused_out else [False]
    return list(itertools.product([True, False], fused))


def _set(kernel, batch_last, fused_out):
    kernel.batch_last = batch_last
    kernel.fused_out = fused_out


@pytest.mark.parametrize("n", [1, 3, 5, 9])
@pytest.mark.parametrize("batch_last", [True, False])
@pytest.mark.parametrize("broadcast", [False, True])
def test_matprod_values_and_derivatives(n, batch_last, broadcast):
    """Values for several ``n``; derivatives (finite differences; the code does not depend on
    ``n``) on small sizes to keep gradgradcheck fast."""
    g = torch.Generator().manual_seed(n)
    batch_a, batch_b = (2, 3, 4), ((2, 1, 4) if broadcast else (2, 3, 4))
    a = torch.randn(batch_a + (n, n), generator=g, dtype=torch.float64)
    b = torch.randn(batch_b + (n, n), generator=g, dtype=torch.float64)
    expected = torch.matmul(a, b)

    def to(t):  # (*batch, n, n) -> this layout
        return t.permute(3, 4, 0, 1, 2).contiguous() if batch_last else t

    def back(t):
        return t.permute(2, 3, 4, 0, 1) if batch_last else t

    torch.testing.assert_close(back(matprod(to(a), to(b), batch_last)), expected)
    if n > 3:
        return
    ia, ib = to(a[:, :, :1]).requires_grad_(True), to(b[:, :, :1]).requires_grad_(True)

    def f(x, y):
        return matprod(x, y, batch_last)

    assert torch.autograd.gradcheck(f, (ia, ib))
    assert torch.autograd.gradgradcheck(f, (ia, ib))


def test_layout_choice():
    got = [plan.plan(spec.mtp("0e", "0e", lt=(n - 1) // 2), "sparse").batch_last
           for n in (1, 3, 5, 7, 9, 11, 21)]
    assert got == [True] * 4 + [False] * 3


@pytest.mark.parametrize("method", ["dense", "sparse"])
@pytest.mark.parametrize("name", list(MTP_CASES))
def test_variants_match_reference(name, method, rng):
    d = MTP_CASES[name]
    tp = _module(d, method)
    default = (tp.kernel.batch_last, tp.kernel.fused_out)
    assert default[0] == (d.n ** 3 < 400)
    for per_sample in ([False, True] if d.weight_numel else [False]):
        x1, x2, w = random_inputs(d, (5,), rng, per_sample)
        ref = reference.apply(d, x1, x2, w)
        for variant in _variants(tp.kernel):
            _set(tp.kernel, *variant)
            for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-5)):
                out = tp(*tensors(x1, x2, w, dtype=dtype))
                torch.testing.assert_close(out.double(), torch.as_tensor(ref), rtol=0,
                                           atol=tol * max(1.0, abs(ref).max()))
    _set(tp.kernel, *default)


@pytest.mark.parametrize("method", ["dense", "sparse"])
@pytest.mark.parametrize("name", list(MTP_CASES))
def test_variants_first_and_second_order(name, method, rng):
    d = MTP_CASES[name]
    tp = _module(d, method)
    x1, x2, w = random_inputs(d, (2,), rng, per_sample=True)
    ins = tuple(t for t in tensors(x1, x2, w, grad=True) if t is not None)
    for variant in _variants(tp.kernel):
        _set(tp.kernel, *variant)

        def f(*args):
            return tp(*args)

        assert torch.autograd.gradcheck(f, ins), variant
        assert torch.autograd.gradgradcheck(f, ins), variant


def test_empty_batch(rng):
    for name, method in itertools.product(["mimo_l1", "channels", "big_n"], ["dense", "sparse"]):
        d = MTP_CASES[name]
        tp = _module(d, method)
        for variant in _variants(tp.kernel):
            _set(tp.kernel, *variant)
            x1, x2, w = random_inputs(d, (0,), rng)
            ins = tensors(x1, x2, w, grad=True)
            out = tp(*ins)
            assert out.shape == (0, d.irreps_out.dim)
            out.sum().backward()


@pytest.mark.compile
@pytest.mark.parametrize(("name", "method"), [("big_n", "sparse"), ("mimo_l2", "sparse"),
                                              ("broadcast_w", "dense")])
def test_compile_fullgraph_variants(name, method, rng):
    """Batch-first ``bmm`` and the fused read-out under ``torch.compile(fullgraph=True)``,
    forward and backward (AOTAutograd has no double backward; the default compile test covers
    batch-last only)."""
    torch._dynamo.reset()
    d = MTP_CASES[name]
    tp = _module(d, method)
    compiled = torch.compile(tp, fullgraph=True, dynamic=False, backend="aot_eager")
    x1, x2, w = random_inputs(d, (4,), rng, per_sample=True)
    a = tensors(x1, x2, w, dtype=torch.float64, grad=True)
    b = tensors(x1, x2, w, dtype=torch.float64, grad=True)
    a, b = [t for t in a if t is not None], [t for t in b if t is not None]
    out_c, out_e = compiled(*a), tp(*b)
    torch.testing.assert_close(out_c, out_e)
    gc = torch.autograd.grad((out_c ** 2).sum(), a)
    ge = torch.autograd.grad((out_e ** 2).sum(), b)
    for x, y in zip(gc, ge, strict=True):
        torch.testing.assert_close(x, y)
