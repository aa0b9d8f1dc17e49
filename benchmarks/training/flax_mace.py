"""Training speed of one MACE-style Flax model on tp_jax and on e3nn-jax (energy + forces).

``tp_jax``: :class:`tp_jax.models.MACE`. ``e3nn-jax``: :class:`E3nnMACE` below, the same
architecture and hyperparameters written with e3nn-jax's layers as MACE-JAX code writes them:
``e3nn.flax.Linear`` (indexed for the species skip), the message ``e3nn.tensor_product(x[s],
Y, filter_ir_out, regroup_output=False)`` times the per-path per-channel radial weights then
``segment_sum``, and the product basis written here on ``e3nn.reduced_symmetric_tensor_product_
basis`` (Horner form, one weight per species, basis element and channel). Both share the plain
JAX pieces of :mod:`tp_jax.models.edges` (Bessel basis, cutoff, radial MLP) and
:func:`tp_jax.models.loss_fn`; e3nn-jax computes its own spherical harmonics.

Data: ``ase.build.bulk("Cu", "fcc", cubic=True).repeat(repeat)``, each configuration strained
and rattled with fixed seeds, EMT energies and forces, ``ase.neighborlist.neighbor_list``.
Training: optax adam on per-atom energy MSE + force MSE, jitted, one batch of
``graphs_per_batch`` configurations per step, cycling.

    python -m benchmarks.training.flax_mace --threads 1 --steps 20 --repeats 3

runs both backends in one worker process (XLA flags set before jax is imported), interleaving
blocks of ``steps`` steps, and prints the step times and the ratio. ``--threads 1,0`` runs
one worker per setting (0: XLA's default threading); ``--out FILE`` writes them as one
record (``kind: "flax-training"``) that ``python -m benchmarks docs-page`` shows with the
training records.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tp_jax.models import MACE, Graph, loss_fn
from tp_jax.models.edges import RadialMLP

from ..threads import ONE_THREAD_XLA_FLAGS, pin_child
from .flax_record import BACKENDS

__all__ = ["CONFIG", "E3nnMACE", "compare", "make_dataset", "time_training"]

CONFIG: dict[str, Any] = {
    "hidden_irreps": "64x0e+64x1o+64x2e", "max_ell": 3, "correlation": 3,
    "num_interactions": 2, "r_max": 4.75, "num_bessel": 8, "radial_hidden": (64, 64, 64),
    "repeat": (3, 3, 3), "num_configs": 4, "graphs_per_batch": 1, "rattle": 0.05,
    "strain": 0.01, "learning_rate": 1e-3, "force_weight": 10.0, "seed": 0,
}
_WORKER = "TP_BENCH_FLAX_MACE_WORKER"


def _natural(mul: int, lmax: int) -> e3nn.Irreps:
    return e3nn.Irreps([(mul, (l, (-1) ** l)) for l in range(lmax + 1)])


class E3nnSymmetricContraction(nn.Module):
    """MACE's product basis on e3nn-jax: ``x (n, k * (0e+1o+...))`` (``k x`` each irrep),
    ``species (n,)`` -> ``(n, irreps_out)``, ``((w_c x + w_{c-1}) x + ...) x`` per channel."""

    irreps_out: e3nn.Irreps
    correlation: int
    num_species: int

    @nn.compact
    def __call__(self, x: e3nn.IrrepsArray, species: jax.Array) -> e3nn.IrrepsArray:
        xs = x.mul_to_axis()  # (n, k, D) with irreps 0e + 1o + ...
        a, k = xs.array, xs.shape[1]
        keep = [ir for _, ir in self.irreps_out]
        out: dict[Any, jax.Array] = {}
        for order in range(self.correlation, 0, -1):
            basis = e3nn.reduced_symmetric_tensor_product_basis(xs.irreps, order, keep_ir=keep)
            fresh = set()
            for (mul, ir), u in zip(basis.irreps, basis.list, strict=True):
                u = u.astype(a.dtype)  # (D,) * order + (mul, ir.dim)
                w = self.param(f"w{order}_{ir}", nn.initializers.normal(1.0),
                               (self.num_species, mul, k), a.dtype)[species] * mul**-0.5
                if ir not in out:
                    out[ir] = jnp.einsum("...jki,nkc,ncj->nc...i", u, w, a)
                    fresh.add(ir)
                else:
                    out[ir] = out[ir] + jnp.einsum("...ki,nkc->nc...i", u, w)
            for ir in out:
                if ir not in fresh:
                    out[ir] = jnp.einsum("nc...ji,ncj->nc...i", out[ir], a)
        irreps = e3nn.Irreps(keep)
        arr = jnp.concatenate([out[ir] for ir in keep], axis=-1)
        return e3nn.IrrepsArray(irreps, arr).axis_to_mul()


class E3nnInteraction(nn.Module):
    """:class:`tp_jax.models.mace.Interaction` on e3nn-jax's layers."""

    hidden: e3nn.Irreps
    max_ell: int
    correlation: int
    num_species: int
    r_max: float
    num_bessel: int
    radial_hidden: tuple[int, ...]
    avg_num_neighbors: float

    @nn.compact
    def __call__(self, h, z, sh, r, senders, receivers):
        target = _natural(self.hidden[0].mul, self.max_ell)
        skip = e3nn.flax.Linear(self.hidden, num_indexed_weights=self.num_species,
                                force_irreps_out=True)(z, h)
        up = e3nn.flax.Linear(h.irreps)(h)
        m = e3nn.tensor_product(up[senders], sh, filter_ir_out=target, regroup_output=False)
        w = RadialMLP(self.r_max, self.num_bessel, self.radial_hidden, m.irreps.num_irreps)(r)
        m = m * w
        m = e3nn.IrrepsArray(m.irreps, jax.ops.segment_sum(m.array, receivers, h.shape[0]))
        m = e3nn.flax.Linear(target)(m / self.avg_num_neighbors)
        b = E3nnSymmetricContraction(self.hidden, self.correlation, self.num_species)(m, z)
        return e3nn.flax.Linear(self.hidden)(b) + skip


class E3nnMACE(nn.Module):
    """:class:`tp_jax.models.MACE` on e3nn-jax: ``__call__(graph, num_graphs)`` ->
    ``(num_graphs,)``."""

    num_species: int
    hidden_irreps: str = "64x0e+64x1o+64x2e"
    max_ell: int = 3
    correlation: int = 3
    num_interactions: int = 2
    r_max: float = 5.0
    num_bessel: int = 8
    radial_hidden: tuple[int, ...] = (64, 64, 64)
    avg_num_neighbors: float = 1.0

    @nn.compact
    def __call__(self, g: Graph, num_graphs: int) -> jax.Array:
        hidden = e3nn.Irreps(self.hidden_irreps)
        vectors = g.positions[g.receivers] - g.positions[g.senders] + g.shifts
        r = jnp.linalg.norm(vectors, axis=-1)
        sh = e3nn.spherical_harmonics(_natural(1, self.max_ell), vectors, normalize=True,
                                      normalization="component")
        onehot = e3nn.IrrepsArray(f"{self.num_species}x0e",
                                  jax.nn.one_hot(g.species, self.num_species, dtype=r.dtype))
        h = e3nn.flax.Linear(f"{hidden[0].mul}x0e")(onehot)
        energy = jnp.zeros(g.positions.shape[0], r.dtype)
        for _ in range(self.num_interactions):
            h = E3nnInteraction(hidden, self.max_ell, self.correlation, self.num_species,
                                self.r_max, self.num_bessel, tuple(self.radial_hidden),
                                self.avg_num_neighbors)(h, g.species, sh, r, g.senders,
                                                        g.receivers)
            energy = energy + e3nn.flax.Linear("0e")(h).array[:, 0]
        return jax.ops.segment_sum(energy, g.graph_index, num_segments=num_graphs)


def make_dataset(config: dict[str, Any]) -> tuple[list[tuple[Graph, np.ndarray, np.ndarray]],
                                                   float]:
    """``[(graph, energy (1,), forces (n, 3)), ...]`` in float32 NumPy and the mean number of
    neighbours (deterministic: fixed seeds)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.neighborlist import neighbor_list

    rng = np.random.default_rng(config["seed"])
    base = bulk("Cu", "fcc", cubic=True).repeat(config["repeat"])
    items, degrees = [], []
    for i in range(config["num_configs"]):
        atoms = base.copy()
        eps = rng.uniform(-config["strain"], config["strain"], (3, 3))
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + (eps + eps.T) / 2), scale_atoms=True)
        atoms.rattle(stdev=config["rattle"], seed=config["seed"] + i)
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        s, r, shift = neighbor_list("ijS", atoms, config["r_max"])
        n = len(atoms)
        f32 = np.float32
        g = Graph(atoms.positions.astype(f32), np.zeros(n, np.int32), s.astype(np.int32),
                  r.astype(np.int32), (shift @ atoms.cell[:]).astype(f32), np.zeros(n, np.int32))
        items.append((g, np.array([energy], f32), forces.astype(f32)))
        degrees.append(len(s) / n)
    return items, float(np.mean(degrees))


def _batches(items: list, per_batch: int) -> list[tuple[Graph, np.ndarray, np.ndarray]]:
    """Consecutive groups of ``per_batch`` graphs concatenated into one graph each."""
    out = []
    for start in range(0, len(items) - per_batch + 1, per_batch):
        group = items[start : start + per_batch]
        offsets = np.cumsum([0] + [len(g.species) for g, _, _ in group])[:-1]
        parts = [(g.positions, g.species, g.senders + o, g.receivers + o, g.shifts,
                  g.graph_index + b) for b, ((g, _, _), o) in enumerate(zip(group, offsets,
                                                                             strict=True))]
        g = Graph(*(np.concatenate(field) for field in zip(*parts, strict=True)))
        out.append((g, np.concatenate([e for _, e, _ in group]),
                    np.concatenate([f for _, _, f in group])))
    return out


def _build(backend: str, config: dict[str, Any], avg: float):
    kw = {k: config[k] for k in ("hidden_irreps", "max_ell", "correlation", "num_interactions",
                                 "r_max", "num_bessel", "radial_hidden")}
    cls = {"tp_jax": MACE, "e3nn-jax": E3nnMACE}[backend]
    return cls(num_species=1, avg_num_neighbors=avg, **kw)


def _trainer(backend: str, config: dict[str, Any]):
    """``(step, state, batches)``: the jitted adam step ``step(state, batch) -> (state,
    loss)`` and its initial state."""
    import optax

    items, avg = make_dataset(config)
    batches = [tuple(jnp.asarray(a) if not isinstance(a, Graph) else Graph(*map(jnp.asarray, a))
                     for a in b) for b in _batches(items, config["graphs_per_batch"])]
    model = _build(backend, config, avg)
    G = config["graphs_per_batch"]
    params = model.init(jax.random.PRNGKey(config["seed"]), batches[0][0], G)
    opt = optax.adam(config["learning_rate"])

    @jax.jit
    def step(state, batch):
        p, o = state
        g, e, f = batch
        loss, grads = jax.value_and_grad(
            lambda q: loss_fn(model, q, g, G, e, f, config["force_weight"]))(p)
        updates, o = opt.update(grads, o, p)
        return (optax.apply_updates(p, updates), o), loss

    return step, (params, opt.init(params)), batches


def _run(trainers: dict, steps: int, repeats: int) -> dict[str, dict[str, Any]]:
    """Warm up every batch shape, then ``repeats`` interleaved blocks of ``steps`` timed steps
    per backend."""
    res = {b: {"times": [], "losses": []} for b in trainers}
    states = {}
    for b, (step, state, batches) in trainers.items():
        for batch in batches:  # compile every distinct shape
            state, loss = step(state, batch)
        jax.block_until_ready(loss)
        states[b] = state
    for _ in range(repeats):
        for b, (step, _, batches) in trainers.items():
            state = states[b]
            for i in range(steps):
                t0 = time.perf_counter()
                state, loss = step(state, batches[i % len(batches)])
                loss = float(jax.block_until_ready(loss))
                res[b]["times"].append(time.perf_counter() - t0)
                res[b]["losses"].append(loss)
            states[b] = state
    for r in res.values():
        q1, med, q3 = np.percentile(r["times"], [25, 50, 75])
        r.update(median_s=med, q1_s=q1, q3_s=q3)
    return res


def _xla_flags(threads: int | None) -> str:
    flags = os.environ.get("XLA_FLAGS", "")
    if threads == 1:
        flags += " " + ONE_THREAD_XLA_FLAGS
    return flags


def _in_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Run ``job`` in a fresh process on ``job["threads"]`` CPUs (:func:`benchmarks.threads.pin`
    says why the flags alone do not pin XLA), with the thread flags set before jax starts."""
    env = dict(os.environ, XLA_FLAGS=_xla_flags(job["threads"]), JAX_PLATFORMS="cpu")
    env[_WORKER] = "1"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    res = subprocess.run([sys.executable, "-m", "benchmarks.training.flax_mace", "--job",
                          json.dumps(job)], env=env, cwd=root, capture_output=True, text=True,
                         preexec_fn=pin_child(job["threads"]))
    if res.returncode:
        raise RuntimeError(f"worker failed:\n{res.stdout}\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def time_training(backend: str, config: dict[str, Any] | None = None, steps: int = 20,
                  threads: int | None = 1) -> dict[str, Any]:
    """Train ``backend``'s model ``steps`` steps (after compiling) in a fresh process with
    ``threads`` (1, or ``None``: XLA's default): ``{"median_s", "q1_s", "q3_s", "times",
    "losses"}``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    job = {"backends": [backend], "config": {**CONFIG, **(config or {})}, "steps": steps,
           "repeats": 1, "threads": threads}
    return _in_worker(job)[backend]


def compare(config: dict[str, Any] | None = None, steps: int = 20, repeats: int = 3,
            threads: int | None = 1) -> dict[str, Any]:
    """Both backends in one fresh process, interleaved; adds ``"ratio"`` (e3nn-jax median /
    tp_jax median)."""
    job = {"backends": list(BACKENDS), "config": {**CONFIG, **(config or {})}, "steps": steps,
           "repeats": repeats, "threads": threads}
    res = _in_worker(job)
    res["ratio"] = res["e3nn-jax"]["median_s"] / res["tp_jax"]["median_s"]
    return res


def _worker_main(job: dict[str, Any]) -> None:
    config = dict(job["config"], repeat=tuple(job["config"]["repeat"]),
                  radial_hidden=tuple(job["config"]["radial_hidden"]))
    trainers = {b: _trainer(b, config) for b in job["backends"]}
    print(json.dumps(_run(trainers, job["steps"], job["repeats"])))


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks.training.flax_mace``."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.training.flax_mace",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1",
                    help="XLA CPU threads, comma-separated settings: 1, or 0 for XLA's "
                         "default (every core); e.g. 1,0 (default 1)")
    ap.add_argument("--steps", type=int, default=20,
                    help="training steps per timed block (default 20)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed blocks per backend, interleaved (default 3)")
    ap.add_argument("--out", help="write the runs to this JSON record")
    ap.add_argument("--job", help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    if a.job:
        if not os.environ.get(_WORKER):
            raise RuntimeError("--job is the worker's entry; run without it")
        _worker_main(json.loads(a.job))
        return
    settings = [int(t) for t in a.threads.split(",")]
    runs = []
    for threads in settings:
        res = compare(steps=a.steps, repeats=a.repeats, threads=threads or None)
        label = "default" if threads == 0 else str(threads)
        for b in BACKENDS:
            r = res[b]
            print(f"{b:9s} step median {r['median_s'] * 1e3:8.1f} ms (q1 {r['q1_s'] * 1e3:.1f}, "
                  f"q3 {r['q3_s'] * 1e3:.1f}); loss {r['losses'][0]:.4g} -> "
                  f"{r['losses'][-1]:.4g}")
        print(f"ratio e3nn-jax / tp_jax: {res['ratio']:.2f}x (threads: {label})")
        runs.append({"threads": label, **res})
    if a.out:
        import jax

        argv_s = " ".join(argv if argv is not None else sys.argv[1:])
        record = {"kind": "flax-training", "model": "flax-mace",
                  "command": f"python -m benchmarks.training.flax_mace {argv_s}".strip(),
                  "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                      timespec="seconds"),
                  "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                  "versions": {"jax": jax.__version__, "e3nn_jax": e3nn.__version__},
                  "config": {**CONFIG, "repeat": list(CONFIG["repeat"]),
                             "radial_hidden": list(CONFIG["radial_hidden"])},
                  "steps": a.steps, "repeats": a.repeats, "runs": runs}
        with open(a.out, "w") as f:
            json.dump(record, f, indent=1)
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
