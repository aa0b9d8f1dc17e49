"""Every speed threshold of the executors, in one frozen object.

A plan is built for a descriptor, a method and a :class:`Tuning`; executors read thresholds from
``plan.tuning``, never from module globals, so a test passes ``Tuning(...)`` with small values to
reach a code path (chunking, padding, splitting) on small inputs instead of patching globals.
Every field says what it decides and the measurement behind its value (CPU, float32, one thread
unless stated; the machines are 2-core Intel Xeon and AMD EPYC slices). Changing a default is a
speed decision: re-run the benchmark that measured it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_TUNING", "Tuning"]


@dataclass(frozen=True)
class Tuning:
    """Thresholds of the plans and executors (see each field)."""

    #: CGTP ``fused`` scalar regime: split the product by parity (at most four quarter-size
    #: GEMMs) from this many dense entries ``dim1 * dim2 * dim_out``. Split / one-matmul time,
    #: batch 10,000, MIMO, fwd / fwd+bwd: L=2 (3,240 entries) 2.3 / 2.1x, L=3 (21,504)
    #: 1.5 / 1.4x, L=4 (90,000) 1.0 / 1.0x, L=5 0.72 / 1.0x, L=6 0.60 / 0.65x.
    split_min_entries: int = 40_000

    #: CGTP ``fused`` channelwise regime: torch's CPU ``bmm`` uses MKL from this many
    #: multiply-adds per matrix (``k * m * n``) and a scalar loop below (~4 ns per multiply-add,
    #: 10-30x slower); the contraction is zero padded up to it ...
    bmm_min_macs: int = 400
    #: ... by at most this many columns ...
    pad_max: int = 16
    #: ... and only for matrices of at least this many multiply-adds (below, the scalar loop is
    #: cheaper than MKL's ~0.2 us per-matrix overhead).
    pad_from_macs: int = 64

    #: CGTP ``fused`` folded regime: channelwise products whose single multiplicity ``C``
    #: satisfies ``1 < C <= fold_max_channels`` run as one single-channel scalar product per
    #: channel. Channelwise / folded time, batch 10,000, channelwise MIMO, fwd / fwd+bwd:
    #: L=3 C=4 1.76 / 2.79x, C=8 0.92 / 1.11x, C=16 0.46 / 0.82x; C=8 L=1 1.19 / 1.42x,
    #: L=2 1.29 / 1.57x. (XLA measured the fold through ``vmap`` slower in reverse mode, 0.43x
    #: at L=3 C=4: the JAX executor runs these products channelwise.)
    fold_max_channels: int = 8

    #: CPU batch chunking (torch executors): a batch whose intermediates exceed one chunk runs
    #: chunk by chunk so that each chunk's intermediates are reused from the allocator's heap
    #: and stay in cache (unchunked, glibc maps every large intermediate anew and each 4 kB page
    #: faults on first touch). Scalar regime: outer products of about this many entries ...
    scalar_chunk_entries: int = 2 ** 19
    #: ... and at least this many rows (MIMO L=6 parity group, 28 x 28 -> 85: fwd 34 -> 20 ms,
    #: fwd+bwd 101 -> 63 ms; chunks of 2^17 .. 2^20 entries within 10% of each other).
    scalar_chunk_min_rows: int = 16
    #: Channelwise regime (torch ops): chunks of about this many output entries ...
    channelwise_chunk_entries: int = 2 ** 21
    #: ... and at least this many rows (fewer cost more in per-op overhead than they save).
    channelwise_chunk_min_rows: int = 256
    #: GTP (grid, fourier) and MTP (torch, CPU): chunks of about this many entries of the
    #: largest intermediate. Unchunked, MIMO L=10 at batch 10,000 makes 34-134 MB
    #: intermediates per call, each mapped anew by the allocator (a page fault per 4 kB) and
    #: streamed from memory. Unchunked / 2^18 entries, MIMO, batch 10,000, AMD EPYC, fwd;
    #: fwd+bwd: grid L=6 57.7 / 15.4; 72 / 49 ms, L=10 162 / 49; 356 / 170 ms; fourier L=6
    #: 551 / 239; 1272 / 596 ms, L=10 6177 / 1930; 9251 / 3993 ms; MTP sparse L=6
    #: 85.7 / 35.0; 133 / 97 ms, L=10 316 / 172; 593 / 395 ms; MTP dense L=10 364 / 308;
    #: 839 / 699 ms. 2^17 .. 2^20 are within ~15 % of each other from L = 4 ...
    function_chunk_entries: int = 2 ** 18
    #: ... and at least this many rows.
    function_chunk_min_rows: int = 64

    #: Scalar regime backward (torch): from this many entries ``n * k`` of a ``(B, n, k)``
    #: outer-product gradient the input gradient is a batched matrix-vector product instead of
    #: a broadcast multiply and sum (36 x 36: 11 vs 44 ms; 16 x 16 equal) ...
    matvec_min_entries: int = 256
    #: ... and for the transposed product (summing over the middle axis is cheaper: later).
    matvec_t_min_entries: int = 576

    #: CPU matmul outputs are written into rows starting every this many elements (MKL's GEMM
    #: is slower into rows of odd length: ``(10000, 49) @ (49, 169)`` 6.7 ms into rows of 169,
    #: 2.7 ms into rows of 176).
    row_align: int = 16

    #: Compiled channelwise CPU kernels (Numba): paths with more CG nonzeros than this (from
    #: l ~ 7) stay torch ops (the generated source grows with the nonzeros) ...
    kernel_max_nonzeros: int = 220
    #: ... the batch runs in chunks of about this many entries ...
    kernel_chunk_entries: int = 2 ** 17
    #: ... of at least this many rows ...
    kernel_chunk_min_rows: int = 16
    #: ... and is split over threads only with at least this many rows per thread.
    kernel_thread_min_rows: int = 256

    #: Convolution (message passing) without a fused kernel: the receiver-sorted edges run in
    #: chunks whose messages hold about this many entries (gather, product, add into the
    #: receivers per chunk; the ``(n_edges, dim_out)`` messages never exist at once) ...
    conv_chunk_entries: int = 2 ** 20
    #: ... and at least this many edges.
    conv_chunk_min_edges: int = 64
    #: ... and under torch autograd each chunk's product is recomputed in the backward pass
    #: (a checkpoint) instead of keeping its intermediates: MACE-large, 27,742 edges, sparse
    #: CGTP, force training kept them all and ran out of 24 GB. It costs the recomputation:
    #: 1,000 nodes x 27,742 edges, 32x(0e+1o+2e) x (0e+1o+2e), one thread, fwd+bwd / force
    #: training: GTP grid 357 / 775 ms kept, 478 / 1050 ms recomputed; MTP 220 / 494 ms,
    #: 298 / 666 ms.
    conv_checkpoint_chunks: bool = True
    #: Convolution through the compiled CPU kernels: the receiver-sorted (and, for the node
    #: gradient, sender-sorted) edges run in chunks of about this many edges, cut at node
    #: boundaries; each chunk runs every path before the next chunk starts (its receivers'
    #: output rows stay in cache across the paths). 1,000 nodes x 30,000 edges,
    #: 64x(0e+1o+2e) x Y(l<=3), fwd / fwd+bwd ms: chunks of 32 edges 207 / 1013, 128 200 / 962,
    #: 512 214 / 886, 2,048 242 / 1090, unchunked 289 / 1255.
    conv_kernel_chunk_edges: int = 512

    #: MTP ``sparse``: the transpose regime (one matrix read per output instead of two) from
    #: this matrix size ``n = 2 lt + 1`` (below, its concatenation and gather cost more).
    mtp_transpose_min_n: int = 7
    #: MTP (torch): ``n x n`` products run in the batch-last layout while ``n^3`` is below this
    #: (ATen's small-``bmm`` threshold on CPU).
    batch_last_max_n3: int = 400
    #: MTP (torch, batch-first): a change-of-basis matrix runs as its dense blocks
    #: (:mod:`tp_spec.plan.block_diagonal`) when they hold at most this fraction of its
    #: multiply-adds (the MTP's matrices: four blocks, 0.25, at every L). One thread, AMD
    #: EPYC, MIMO, batch 10,000, one channel, interleaved, dense -> blocks, fwd / fwd+bwd /
    #: double backward ms: L = 4 12.3 / 32.8 / 53.6 -> 11.0 / 28.9 / 47.2, L = 5 24.3 / 60.0 /
    #: 95.4 -> 18.0 / 49.9 / 78.5, L = 6 33.6 / 80.5 / 132 -> 22.4 / 55.1 / 98.6.
    mtp_block_max_fill: float = 0.5
    #: ... and when the matrix has at least this many entries: below, the gathers around the
    #: blocks cost about what they save (the same runs with the embeddings, 169 x 49 at L = 6,
    #: as blocks too: L = 4 11.3 / 33.2 / 56.7, L = 5 18.7 / 54.5 / 89.3, L = 6 22.0 / 56.7 /
    #: 100 ms). The read-out (L = 4: 162 x 144) is above it.
    mtp_block_min_size: int = 16384

    #: JAX ``fused`` scalar regime: batch rows per ``lax.map`` chunk (one chunk's intermediates
    #: stay in the L2 cache). MIMO, batch 10,000, one thread, interleaved in one process,
    #: forward+backward ms at 128 / 256 rows: uvw L = 2 9.9 / 12.8, L = 6 421 / 541; full L = 3
    #: 35 / 44, L = 6 571 / 628 (full L = 6 forward 174 / 239, its 2,401 outputs per row); the
    #: other sizes within 7%.
    jax_scalar_chunk_rows: int = 128
    #: Order-blocked scalar layout (``ScalarPlan.order_blocks``, run by tp_jax): a bucket's padded
    #: batched GEMM may cost this much more than its order groups' own GEMMs.
    jax_bucket_slack: float = 0.35
    #: JAX MTP: the batch runs in one piece while its ``n x n x C x batch`` matrices have at most
    #: this many elements, else in checkpointed chunks of that size (L=4, batch 10,000: one
    #: piece 12.6 ms backward, 512- or 2048-row chunks 28-32 ms; forward equal).
    jax_mtp_chunk_elements: int = 1 << 24
    #: JAX ``fused`` outer regime (unweighted full / uuu CGTP): single-channel products of at
    #: most this many dense entries ``dim1 * dim2 * dim_out`` (MIMO L=6: 5.8e6) run the scalar
    #: regime's order-blocked layout, larger ones one matmul per input block pair. Forward ms,
    #: batch 10,000, MIMO full, one thread, order-blocked / per pair: L=2 3.5 / 4.1, L=4 56 / 98,
    #: L=6 980 / 596; but forward + backward per pair ran 0.28x e3nn-jax at L=5 (JAX's
    #: transpose of the pair matmuls), so the order-blocked layout keeps every MIMO size to L=6.
    outer_jax_scalar_max_entries: int = 8_000_000


#: The tuning every plan gets unless one is passed.
DEFAULT_TUNING = Tuning()
