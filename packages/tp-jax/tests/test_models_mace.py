"""tp_jax.models.MACE: forces against finite differences, rotation / translation / permutation
symmetry, training, and a data-parallel step over two CPU devices (in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tp_spec import DTypeError, ShapeError

pytest.importorskip("flax")
from tp_jax.models import MACE, Graph, energy_and_forces, loss_fn  # noqa: E402

R_MAX = 3.0
SMALL = dict(num_species=2, hidden_irreps="2x0e+2x1o", max_ell=1, correlation=3,
             num_interactions=2, r_max=R_MAX, num_bessel=4, radial_hidden=(8,),
             avg_num_neighbors=6.0)


def periodic_graph(seed: int, n: int = 5, dtype=np.float64) -> tuple[Graph, np.ndarray]:
    """``n`` random atoms in a skewed ~4 A cell, every pair (and periodic image) closer than
    ``R_MAX``; returns the graph (NumPy arrays) and the cell."""
    rng = np.random.default_rng(seed)
    cell = 4.0 * np.eye(3) + 0.3 * rng.normal(size=(3, 3))
    pos = rng.uniform(size=(n, 3)) @ cell
    s, r, shifts = [], [], []
    for a in range(n):
        for b in range(n):
            for S in np.array(np.meshgrid(*[[-1, 0, 1]] * 3)).reshape(3, -1).T:
                d = np.linalg.norm(pos[b] - pos[a] + S @ cell)
                if 1e-8 < d < R_MAX:
                    s.append(a), r.append(b), shifts.append(S @ cell)
    g = Graph(pos.astype(dtype), rng.integers(0, 2, n), np.array(s), np.array(r),
              np.array(shifts, dtype), np.zeros(n, int))
    return g, cell


def _jnp(g: Graph) -> Graph:
    return Graph(*map(jnp.asarray, g))


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.fixture(scope="module")
def model64():
    m = MACE(**SMALL, param_dtype=jnp.float64)
    g, _ = periodic_graph(0)
    params = jax.jit(m.init, static_argnums=2)(jax.random.PRNGKey(0), _jnp(g), 1)
    ef = jax.jit(lambda p, gg: energy_and_forces(m, p, gg, 1))
    return m, params, ef


def test_forces_are_minus_grad_by_finite_differences(model64):
    _, params, ef = model64
    g, _ = periodic_graph(0)
    e, f = ef(params, _jnp(g))
    assert e.shape == (1,) and f.shape == g.positions.shape and np.abs(f).max() > 1e-6
    h = 1e-5
    for i, c in [(0, 0), (2, 1), (4, 2)]:
        step = np.zeros_like(g.positions)
        step[i, c] = h
        ep = ef(params, _jnp(g._replace(positions=g.positions + step)))[0][0]
        em = ef(params, _jnp(g._replace(positions=g.positions - step)))[0][0]
        fd = -(float(ep) - float(em)) / (2 * h)
        assert abs(fd - float(f[i, c])) < 1e-6 * max(1.0, abs(fd)), (i, c, fd, f[i, c])


def test_rotation_translation_and_permutation(model64):
    _, params, ef = model64
    g, _ = periodic_graph(0)
    e, f = (np.asarray(a) for a in ef(params, _jnp(g)))
    rng = np.random.default_rng(1)
    R, t = _random_rotation(rng), rng.normal(size=3)
    # rotated cell (cell @ R.T): the Cartesian shifts S @ cell rotate with it
    g_rot = g._replace(positions=g.positions @ R.T + t, shifts=g.shifts @ R.T)
    e_rot, f_rot = (np.asarray(a) for a in ef(params, _jnp(g_rot)))
    np.testing.assert_allclose(e_rot, e, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(f_rot, f @ R.T, atol=1e-10 * max(1.0, np.abs(f).max()))
    perm = rng.permutation(len(g.species))
    inv = np.argsort(perm)
    g_perm = g._replace(positions=g.positions[perm], species=g.species[perm],
                        senders=inv[g.senders], receivers=inv[g.receivers])
    e_perm, f_perm = (np.asarray(a) for a in ef(params, _jnp(g_perm)))
    np.testing.assert_allclose(e_perm, e, rtol=1e-10)
    np.testing.assert_allclose(f_perm, f[perm], atol=1e-10)
    # a model that ignored the geometry would pass the above: energies must move with it
    g_far = g._replace(positions=g.positions * 1.05)
    assert abs(float(ef(params, _jnp(g_far))[0][0]) - float(e[0])) > 1e-6


def test_same_init_and_adam_decreases_loss():
    optax = pytest.importorskip("optax")
    m = MACE(**dict(SMALL, num_interactions=1), param_dtype=jnp.float64)
    g, _ = periodic_graph(2)
    g = _jnp(g)
    init = jax.jit(m.init, static_argnums=2)
    p1, p2 = init(jax.random.PRNGKey(3), g, 1), init(jax.random.PRNGKey(3), g, 1)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2),
                                                    strict=True))
    # reachable targets: scaled-down energies and forces (the readouts can shrink)
    energy, forces = jnp.zeros(1), jnp.zeros((5, 3))
    opt = optax.adam(1e-2)

    @jax.jit
    def step(p, o, gg):
        loss, grads = jax.value_and_grad(lambda q: loss_fn(m, q, gg, 1, energy, forces))(p)
        u, o = opt.update(grads, o, p)
        return optax.apply_updates(p, u), o, loss

    o, losses = opt.init(p1), []
    for _ in range(6):
        p1, o, loss = step(p1, o, g)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.9 * losses[0], losses


def test_bad_inputs_raise():
    m = MACE(**SMALL, param_dtype=jnp.float64)
    g, _ = periodic_graph(0)
    with pytest.raises(DTypeError, match="positions"):
        m.init(jax.random.PRNGKey(0), _jnp(g._replace(positions=g.positions.astype(np.float32))),
               1)
    with pytest.raises(ShapeError, match="shifts"):
        m.init(jax.random.PRNGKey(0), _jnp(g._replace(shifts=g.shifts[:-1])), 1)
    with pytest.raises(DTypeError, match="species"):
        m.init(jax.random.PRNGKey(0), _jnp(g._replace(species=g.species * 1.0)), 1)


def _sharded_main() -> None:
    """Subprocess body: one training gradient (float32) over a batch of 2 graphs concatenated
    (jraph style), on one device, then with every node and edge array sharded over two
    devices along the batch (NamedSharding, each device holding one graph); they must agree to
    1e-5."""
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    assert len(jax.devices()) == 2, jax.devices()
    base, _ = periodic_graph(5, dtype=np.float32)
    rng = np.random.default_rng(6)
    n, n_edges = len(base.species), len(base.senders)
    pos = [base.positions + 0.05 * rng.normal(size=(n, 3)).astype(np.float32) for _ in range(2)]
    batch = Graph(np.concatenate(pos), np.tile(base.species, 2),
                  np.concatenate([base.senders, base.senders + n]),
                  np.concatenate([base.receivers, base.receivers + n]),
                  np.tile(base.shifts, (2, 1)), np.repeat(np.arange(2), n))
    energy = rng.normal(size=2).astype(np.float32)
    forces = rng.normal(size=(2 * n, 3)).astype(np.float32)
    m = MACE(**dict(SMALL, num_interactions=1))
    params = jax.jit(m.init, static_argnums=2)(jax.random.PRNGKey(0), _jnp(batch), 2)
    grad = jax.jit(jax.grad(lambda p, g, e, f: loss_fn(m, p, g, 2, e, f)))
    one = grad(params, _jnp(batch), jnp.asarray(energy), jnp.asarray(forces))
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    put = lambda a: jax.device_put(a, NamedSharding(mesh, P("batch")))  # noqa: E731
    sharded = Graph(*map(put, batch))
    assert all(len(a.sharding.device_set) == 2 for a in sharded)
    assert sharded.senders.addressable_shards[0].data.shape == (n_edges,)
    two = grad(jax.device_put(params, NamedSharding(mesh, P())), sharded, put(energy),
               put(forces))
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(two), strict=True):
        scale = max(1e-3, float(jnp.abs(a).max()))
        assert float(jnp.abs(a - b).max()) <= 1e-5 * scale, (float(jnp.abs(a - b).max()), scale)
    print("MACE SHARDED OK")


def test_data_parallel_two_devices_subprocess():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    res = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "MACE SHARDED OK" in res.stdout


if __name__ == "__main__":
    _sharded_main()
