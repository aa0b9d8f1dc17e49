"""The one-channel MTP as one autograd Function (``tp_torch._bilinear``).

``bilinear`` is checked against a NumPy evaluation of its definition (random matrices and terms,
transposed operands included, both layouts), and by finite differences to second order; the
``sparse`` MTP kernels that run it (one channel: ``[P, Q]``, the transpose regime, single
parity pairs) against ``tp_spec.reference`` and finite differences, in batch chunks and in one
piece, and against the same kernel with the form turned off.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tp_spec as spec
import tp_torch
from conftest import random_inputs, tensors
from tp_spec import plan, reference
from tp_spec.plan import Tuning
from tp_torch import _bilinear, _common, _mtp
from tp_torch._bilinear import Term, bilinear, grad_terms

#: one-channel descriptors: all four parity pairs ([P, Q]), the transpose regime (natural
#: irreps, pseudo irreps), one parity pair, two pairs into one output class with weights, n = 9
ONE_CHANNEL = {
    "pq": spec.mtp("0e+1o+2e", "0e+1o+2e+1e"),
    "natural": spec.mtp("0e+1o+2e", "0e+1o+2e"),
    "pseudo": spec.mtp("0o+1e+2o", "0e+1o"),
    "one_pair": spec.mtp("0e+1e+2e", "0e+1e", "0e+1e+2e+3e"),
    "two_pairs_w": spec.mtp("0e+1e", "0e+1o+0o", per_degree_weights=True),
    "big_n": spec.mtp("0e+1o+2e", "0e+1o", lt=4),
}

#: small chunks (several per batch), and the transpose regime from n = 1
CHUNKED = Tuning(function_chunk_entries=1, function_chunk_min_rows=3, mtp_transpose_min_n=1)
#: CHUNKED, every form matrix as its dense blocks (batch-first)
BLOCKS = Tuning(function_chunk_entries=1, function_chunk_min_rows=3, mtp_transpose_min_n=1,
                mtp_block_min_size=1, mtp_block_max_fill=1.0)


def _kernel(d, tuning, batch_last=None):
    tp = tp_torch.TensorProduct(d, "sparse")
    p = plan.plan(d, "sparse", tuning)
    tp.kernel = _mtp.EXECUTORS[type(p)](p)
    if batch_last is not None:
        tp.kernel.batch_last = batch_last
    return tp


def _form_numpy(x0, x1, mats, terms, n):
    """The form of ``tp_torch._bilinear``'s docstring, per sample, in float64."""
    a = [np.einsum("kd,bd->bk", m, x).reshape(len(x), -1, n, n)
         for m, x in zip(mats[:2], (x0, x1), strict=True)]
    z = np.zeros((len(x0), mats[2].shape[0] // (n * n), n, n))
    for t in terms:
        left = a[t.lsrc][:, t.lslot]
        right = a[t.rsrc][:, t.rslot]
        z[:, t.out] += (left.transpose(0, 2, 1) if t.lt else left) @ (
            right.transpose(0, 2, 1) if t.rt else right)
    return z.reshape(len(x0), -1) @ mats[2]


#: terms with every operand flag, a slot left empty (slot 2 of the output) and two terms into
#: one slot; and a diagonal set (one product over all slots)
TERMS = {
    "mixed": (Term(0, 0, False, 1, 1, True, 0), Term(1, 0, True, 0, 1, False, 0),
              Term(0, 1, True, 1, 0, True, 1)),
    "diagonal": (Term(0, 0, False, 1, 0, True, 0), Term(0, 1, False, 1, 1, True, 1)),
}


@pytest.mark.parametrize("batch_last", [True, False])
@pytest.mark.parametrize("name", list(TERMS))
def test_bilinear_against_numpy_and_finite_differences(name, batch_last):
    terms, n = TERMS[name], 3
    slots = (2, 2, 3) if name == "mixed" else (2, 2, 2)
    rng = np.random.default_rng(7)
    mats_np = [rng.normal(size=(s * n * n, d)) for s, d in zip(slots, (4, 5, 6), strict=True)]
    x0, x1 = rng.normal(size=(11, 4)), rng.normal(size=(11, 5))
    expected = _form_numpy(x0, x1, mats_np, terms, n)
    mats = tuple(torch.tensor(m) for m in mats_np)
    for rows in (None, 4):
        got = bilinear(torch.tensor(x0), torch.tensor(x1), mats, terms, n, batch_last, rows)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)
    a, b = tensors(x0[:5], x1[:5], grad=True)

    def f(u, v):
        return bilinear(u, v, mats, terms, n, batch_last, 2)

    assert torch.autograd.gradcheck(f, (a, b))
    assert torch.autograd.gradgradcheck(f, (a, b))


def test_grad_terms_are_the_transposed_products():
    """``dF/dx_i`` of a form is the form of ``grad_terms``: its value is ``<g, dF/dx_i . e>``,
    checked through NumPy on the mixed terms (every flag)."""
    terms, n = TERMS["mixed"], 2
    rng = np.random.default_rng(3)
    m0, m1, mo = (rng.normal(size=(s * n * n, d)) for s, d in ((2, 3), (2, 4), (3, 5)))
    x0, x1, g = rng.normal(size=(6, 3)), rng.normal(size=(6, 4)), rng.normal(size=(6, 5))
    eps = 1e-6
    for i, (mi, mj, xi, xj) in enumerate(((m0, m1, x0, x1), (m1, m0, x1, x0))):
        grad = _form_numpy(g, xj, (mo, mj, mi), grad_terms(terms, i), n)
        for k in range(xi.shape[1]):
            dx = np.zeros_like(xi)
            dx[:, k] = eps
            args = [(xi + dx, xj), (xi - dx, xj)] if i == 0 else [(xj, xi + dx), (xj, xi - dx)]
            fd = [(_form_numpy(*a, (m0, m1, mo), terms, n) * g).sum(axis=1) for a in args]
            np.testing.assert_allclose(grad[:, k], (fd[0] - fd[1]) / (2 * eps), rtol=1e-6,
                                       atol=1e-8)


def test_grad_terms_refuses_a_product_of_one_input():
    with pytest.raises(ValueError, match="each input"):
        grad_terms((Term(0, 0, False, 0, 0, False, 0),), 0)


@pytest.mark.parametrize("batch_last", [True, False])
@pytest.mark.parametrize("tuning", [None, CHUNKED, BLOCKS], ids=["default", "chunked", "blocks"])
@pytest.mark.parametrize("name", list(ONE_CHANNEL))
def test_sparse_one_channel_values_and_derivatives(name, tuning, batch_last, rng):
    d = ONE_CHANNEL[name]
    tp = _kernel(d, tuning, batch_last)
    assert tp.kernel.one_form
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-5)):
        x1, x2, w = random_inputs(d, (13,), rng, per_sample=True)
        ref = reference.apply(d, x1, x2, w)
        out = tp(*tensors(x1, x2, w, dtype=dtype))
        torch.testing.assert_close(out.double(), torch.as_tensor(ref), rtol=0,
                                   atol=tol * max(1.0, abs(ref).max()))
    x1, x2, w = random_inputs(d, (4,), rng, per_sample=True)
    ins = tuple(t for t in tensors(x1, x2, w, grad=True) if t is not None)
    assert torch.autograd.gradcheck(tp, ins)
    assert torch.autograd.gradgradcheck(tp, ins)


@pytest.mark.parametrize("tuning", [CHUNKED, BLOCKS], ids=["chunked", "blocks"])
@pytest.mark.parametrize("name", list(ONE_CHANNEL))
def test_form_matches_the_per_op_graph(name, tuning, rng):
    """Values, gradients and double-backward gradients equal those of the same kernel with the
    form turned off (the per-op autograd graph); with the matrices as blocks too."""
    d = ONE_CHANNEL[name]
    tp = _kernel(d, tuning, batch_last=False if tuning is BLOCKS else None)
    x1, x2, w = random_inputs(d, (9,), rng, per_sample=True)
    cot = torch.as_tensor(rng.normal(size=(9, d.irreps_out.dim)))
    results = []
    for one_form in (True, False):
        tp.kernel.one_form = one_form
        ins = [t for t in tensors(x1, x2, w, grad=True) if t is not None]
        out = tp(*ins)
        gs = torch.autograd.grad(out, ins, cot, create_graph=True)
        gg = torch.autograd.grad(sum((g * g).sum() for g in gs), ins)
        results.append([out, *gs, *gg])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_one_autograd_node_and_empty_batch(rng):
    d = ONE_CHANNEL["pq"]
    tp = tp_torch.TensorProduct(d, "sparse")
    x1, x2, _ = random_inputs(d, (5,), rng)
    out = tp(*tensors(x1, x2, grad=True))
    names, fn = set(), out.grad_fn
    while fn is not None:  # the reshapes around the kernel, then the form
        names.add(type(fn).__name__)
        fn = fn.next_functions[0][0] if fn.next_functions else None
    assert "_FormBackward" in names and "MmBackward0" not in names
    x1, x2, _ = random_inputs(d, (0,), rng)
    ins = tensors(x1, x2, grad=True)
    out = tp(*ins)
    assert out.shape == (0, d.irreps_out.dim)
    g = torch.autograd.grad(out.sum(), ins)
    assert all(t.shape == x.shape for t, x in zip(g, ins, strict=True))


def test_form_runs_in_batch_chunks(rng, monkeypatch):
    """23 rows as 6 + 6 + 6 + 5 (``Tuning.function_chunk_*``), forward and both backward
    passes; values checked above."""
    tuning = Tuning(function_chunk_entries=1, function_chunk_min_rows=7)
    d = ONE_CHANNEL["pq"]
    tp = _kernel(d, tuning)
    rows, embed = [], _bilinear._embed
    monkeypatch.setattr(_bilinear, "_embed",
                        lambda m, x, *a: rows.append(x.shape[0]) or embed(m, x, *a))
    x1, x2, _ = random_inputs(d, (23,), rng)
    ins = tensors(x1, x2, grad=True)
    out = tp(*ins)
    # both inputs per chunk (sorted: with torch at two threads the chunks run on two threads)
    assert sorted(rows) == sorted([6, 6] * 3 + [5, 5])
    rows.clear()
    torch.autograd.grad(out.sum(), ins)
    assert sorted(rows) == sorted([6, 6, 6] * 3 + [5, 5, 5])  # cotangent and inputs per chunk


def test_scratch_reuse_across_batch_sizes(rng):
    """The per-thread scratch buffers are reused across calls of different batch sizes and
    dtypes without mixing results."""
    d = ONE_CHANNEL["natural"]
    tp = _kernel(d, CHUNKED)
    for b, dtype in ((7, torch.float64), (30, torch.float64), (3, torch.float32),
                     (12, torch.float64)):
        x1, x2, _ = random_inputs(d, (b,), rng)
        ref = reference.apply(d, x1, x2, None)
        out = tp(*tensors(x1, x2, dtype=dtype))
        torch.testing.assert_close(out.double(), torch.as_tensor(ref), rtol=0,
                                   atol=(1e-12 if dtype == torch.float64 else 2e-5) *
                                   max(1.0, abs(ref).max()))
    assert _common._SCRATCH.bufs  # the buffers of this thread


def test_double_backward_embeds_the_cotangent_once_per_pass(rng, monkeypatch):
    """Under ``create_graph`` both gradients are one node (``_Grads``): the cotangent is
    embedded by ``M_out`` once when the gradients are formed and once in their backward (one
    chunk here), not once per gradient in each."""
    d = ONE_CHANNEL["pq"]
    tp = tp_torch.TensorProduct(d, "sparse")
    x1, x2, _ = random_inputs(d, (8,), rng)
    ins = tensors(x1, x2, grad=True)
    cot = torch.as_tensor(rng.normal(size=(8, d.irreps_out.dim)))
    out = tp(*ins)
    mo = tp.kernel.const("fmo", torch.float64)
    seen, embed = [], _bilinear._embed
    monkeypatch.setattr(_bilinear, "_embed",
                        lambda m, x, *a: seen.append(m.dense is mo) or embed(m, x, *a))
    gs = torch.autograd.grad(out, ins, cot, create_graph=True)
    assert sum(seen) == 1
    seen.clear()
    torch.autograd.grad(sum((g * v.detach()).sum() for g, v in zip(gs, ins, strict=True)), ins)
    assert sum(seen) == 1


@pytest.mark.parametrize("name", ["pq", "natural", "one_pair"])
def test_third_derivatives_match_the_per_op_graph(name, rng):
    """The gradients' node differentiated under ``create_graph`` again (forms of forms): third
    derivatives equal the per-op graph's."""
    d = ONE_CHANNEL[name]
    tp = _kernel(d, CHUNKED)
    x1, x2, _ = random_inputs(d, (7,), rng)
    cot = torch.as_tensor(rng.normal(size=(7, d.irreps_out.dim)))
    results = []
    for one_form in (True, False):
        tp.kernel.one_form = one_form
        ins = tensors(x1, x2, grad=True)
        gs = torch.autograd.grad(tp(*ins), ins, cot, create_graph=True)
        gg = torch.autograd.grad(sum((g * g).sum() for g in gs), ins, create_graph=True)
        ggg = torch.autograd.grad(sum((g ** 2).sum() for g in gg), ins)
        results.append([*gg, *ggg])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_blocks_run_where_the_tuning_says(rng, monkeypatch):
    """The read-out of the MIMO MTP at L = 4 (162 x 144, batch-first) runs as its four blocks
    by default, forward and backward (its transpose embeds the cotangent); the smaller
    embeddings stay dense; values as the dense matrices."""
    irreps = "0e+1o+2e+3o+4e"
    d = spec.mtp(irreps, irreps, "+".join(f"{l}e+{l}o" for l in range(9)))  # n = 9
    tp = tp_torch.TensorProduct(d, "sparse")
    assert not tp.kernel.batch_last and set(tp.kernel.form_blocks) == {"fmo"}
    calls, block_mm = [], _bilinear._block_mm
    monkeypatch.setattr(_bilinear, "_block_mm", lambda *a: calls.append(a[-1]) or block_mm(*a))
    x1, x2, _ = random_inputs(d, (6,), rng)
    ins = tensors(x1, x2, grad=True)
    out = tp(*ins)
    torch.autograd.grad(out.sum(), ins)
    assert calls == ["br", "be"]
    torch.testing.assert_close(out.detach(), torch.as_tensor(reference.apply(d, x1, x2, None)),
                               rtol=1e-11, atol=1e-11)
    small = tp_torch.TensorProduct(ONE_CHANNEL["big_n"], "sparse")
    assert small.kernel.form_blocks == {}


def test_chunks_split_over_threads_give_the_serial_result(rng, monkeypatch):
    """With torch at two threads the chunks run on two Python threads (each with its own
    scratch buffers): forward and both gradients equal the one-thread run, and
    torch's thread count is restored."""
    from tp_torch import _common

    d = ONE_CHANNEL["big_n"]
    tp = _kernel(d, BLOCKS, batch_last=False)
    x1, x2, _ = random_inputs(d, (40,), rng)
    cot = torch.as_tensor(rng.normal(size=(40, d.irreps_out.dim)))
    workers, pool = [], _common.ThreadPoolExecutor
    monkeypatch.setattr(_common, "ThreadPoolExecutor",
                        lambda n: workers.append(n) or pool(n))
    threads = torch.get_num_threads()
    results = []
    for t in (1, 2):
        torch.set_num_threads(t)
        try:
            ins = tensors(x1, x2, grad=True)
            out = tp(*ins)
            results.append([out, *torch.autograd.grad(out, ins, cot)])
            assert torch.get_num_threads() == t
        finally:
            torch.set_num_threads(threads)
    assert workers and set(workers) == {2}  # only the two-thread run used workers
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
