"""CPU microbenchmark of the symmetric contraction in JAX: tp_jax in both contraction orders
against e3nn-jax's reduced basis in Horner form, side by side in one process.

Subjects: ``tp_jax/weights-first`` and ``tp_jax/coefficients-first`` (the two orders of
``tp_spec.plan.symmetric_contraction``, forced), ``e3nn-jax`` (the Flax module of
``benchmarks/training/flax_mace.py``, built on ``e3nn.reduced_symmetric_tensor_product_basis``).
Passes: ``fwd`` (a scalar of the output), ``bwd`` (its gradient with respect to the features),
``force`` (the gradient with respect to the weights of the squared feature gradient: the
parameter gradient of a force loss). Repeats are interleaved across subjects; XLA is pinned to
one thread unless ``--threads 0``.

Example (from the repository root)::

    python packages/tp-jax/scripts/bench_symmetric_contraction.py --nodes 108 --channels 64
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=108, help="nodes (default 108)")
    ap.add_argument("--channels", type=int, default=64, help="channels k (default 64)")
    ap.add_argument("--lmax-in", type=int, default=3, help="input irreps k x (0e+1o+...) up to "
                    "this degree (default 3)")
    ap.add_argument("--lmax-out", type=int, default=2, help="output degrees (default 2)")
    ap.add_argument("--correlation", type=int, default=3, help="correlation (default 3)")
    ap.add_argument("--species", type=int, default=1, help="species (default 1)")
    ap.add_argument("--basis", default="reduced", choices=("reduced", "mace"),
                    help="tp_jax's product basis (default reduced, the one e3nn-jax has)")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved repeats (default 7)")
    ap.add_argument("--threads", type=int, default=1, help="1, or 0 for XLA's default")
    a = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
    from benchmarks.threads import pin  # XLA's dots follow the CPU affinity, not the flags

    if a.threads == 1:
        pin(1)

    import e3nn_jax as e3nn
    import jax
    import jax.numpy as jnp
    import numpy as np
    import tp_spec
    from tp_jax.symmetric_contraction import symmetric_contraction

    from benchmarks.training.flax_mace import E3nnSymmetricContraction

    plans = importlib.import_module("tp_spec.plan.symmetric_contraction")

    def natural(lmax: int) -> str:
        return "+".join(f"{a.channels}x{l}{'eo'[l % 2]}" for l in range(lmax + 1))

    d = tp_spec.symmetric_contraction(natural(a.lmax_in), natural(a.lmax_out), a.correlation,
                                      a.species, basis=a.basis)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(a.nodes, d.irreps_in.dim)), jnp.float32)
    z = jnp.asarray(rng.integers(0, a.species, a.nodes), jnp.int32)
    proj = jnp.asarray(rng.normal(size=(d.irreps_out.dim,)), jnp.float32)

    def tp_subject(first: bool):
        real = plans.weights_first
        plans.weights_first = lambda d_, n_: first  # the order is fixed when f is traced
        f = symmetric_contraction.__wrapped__(d)
        w = jnp.asarray(rng.normal(size=(a.species, d.weight_numel)), jnp.float32)
        fns = _passes(lambda p, xa: jnp.sum(jnp.tanh(f(xa, p, z) @ proj)), w, x, jax)
        plans.weights_first = real
        return fns

    module = E3nnSymmetricContraction(e3nn.Irreps(natural(a.lmax_out)), a.correlation, a.species)
    params = module.init(jax.random.PRNGKey(0), e3nn.IrrepsArray(natural(a.lmax_in), x), z)

    def e3nn_energy(p, xa):
        out = module.apply(p, e3nn.IrrepsArray(natural(a.lmax_in), xa), z).array
        return jnp.sum(jnp.tanh(out @ proj))

    subjects = {"tp_jax/weights-first": tp_subject(True),
                "tp_jax/coefficients-first": tp_subject(False),
                "e3nn-jax": _passes(e3nn_energy, params, x, jax)}
    times = {(s, p): [] for s, fns in subjects.items() for p in fns}
    for _ in range(a.repeats):
        for s, fns in subjects.items():
            for p, (f, args) in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f(*args))
                times[s, p].append(time.perf_counter() - t0)
    print(f"{d.irreps_in} -> {d.irreps_out}, correlation {a.correlation}, {a.species} species, "
          f"{a.nodes} nodes, {a.basis} basis, float32, threads {a.threads or 'default'}; rule: "
          f"{'weights' if plans.weights_first(d, a.nodes) else 'coefficients'} first; "
          "ms median [q1, q3]")
    for (s, p), ts in times.items():
        q1, med, q3 = np.percentile(ts, [25, 50, 75]) * 1e3
        print(f"{s:26s} {p:6s} {med:9.2f} [{q1:.2f}, {q3:.2f}]")


def _passes(energy, params, x, jax):
    """``{pass: (jitted function, args)}``, each compiled and run once."""
    fns = {"fwd": jax.jit(energy),
           "bwd": jax.jit(jax.grad(energy, argnums=1)),
           "force": jax.jit(jax.grad(lambda p, xa: (jax.grad(energy, argnums=1)(p, xa) ** 2)
                                     .sum()))}
    out = {}
    for name, f in fns.items():
        jax.block_until_ready(f(params, x))
        out[name] = (f, (params, x))
    return out


if __name__ == "__main__":
    main()
