"""``tp_jax._multilinear``: the primitive's derivatives, through its hand-written functions,
against JAX's own derivatives of the plain product, in every order users call (grad, jvp,
forward over reverse, reverse over reverse) and under vmap; a bilinear product with row-wise
slots and a trilinear one whose weights are shared by the rows, each also with a joint
transpose (every cotangent a backward pass asks for in one call)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tp_jax._multilinear import Multilinear, Slot, multilinear

# y[n, k] = sum_ijl C[i, j, l, k] a[n, i] b[n, j] w[l]   (float64: conftest)
_RNG = np.random.default_rng(3)
C = jnp.asarray(_RNG.standard_normal((3, 4, 2, 5)))


def plain2(a, b):
    return jnp.einsum("ijk,ni,nj->nk", C[:, :, 0], a, b)


def plain3(a, b, w):
    return jnp.einsum("ijlk,ni,nj,l->nk", C, a, b, w)


# the transposes written by hand, as a caller of ``multilinear`` writes them
BI = Multilinear(fns=(lambda b, y: jnp.einsum("ijk,nj,nk->ni", C[:, :, 0], b, y),
                      lambda a, y: jnp.einsum("ijk,ni,nk->nj", C[:, :, 0], a, y),
                      plain2),
                 slots=(Slot(3), Slot(4), Slot(5)))
TRI = Multilinear(fns=(lambda b, w, y: jnp.einsum("ijlk,nj,l,nk->ni", C, b, w, y),
                       lambda a, w, y: jnp.einsum("ijlk,ni,l,nk->nj", C, a, w, y),
                       lambda a, b, y: jnp.einsum("ijlk,ni,nj,nk->l", C, a, b, y),
                       plain3),
                  slots=(Slot(3), Slot(4), Slot(2, rows_axis=None), Slot(5)))


#: the ``need`` of every joint call traced, and of every joint dual call
JOINT_CALLS: list[tuple[bool, ...]] = []
DUAL_CALLS: list[tuple[bool, ...]] = []


def _joint(m: Multilinear):
    """The joint transpose of ``m``: its transposes, written once more as one function; and
    its dual (the transposes' derivative along the inputs, as a sum of transposes)."""
    def others(ops, i):
        return [x for k, x in enumerate(ops) if k != i]

    def joint(*operands, need):
        JOINT_CALLS.append(need)
        return tuple(m.fns[i](*others(operands, i)) for i in range(len(need)) if need[i])

    def joint_dual(*operands, need):
        DUAL_CALLS.append(need)
        n = len(need)
        prim, v = operands[:n + 1], operands[n + 1:]
        res = []
        for i in (i for i in range(n) if need[i]):
            terms = []
            for j in (j for j in range(n) if j != i):
                ops = list(prim)
                ops[j] = v[j]
                terms.append(m.fns[i](*others(ops, i)))
            res.append(sum(terms[1:], terms[0]))
        return tuple(res)

    return Multilinear(fns=m.fns, slots=m.slots, joint=joint, joint_dual=joint_dual)


BI_JOINT, TRI_JOINT = _joint(BI), _joint(TRI)


def prim2(a, b):
    return multilinear(BI, a, b)


def prim3(a, b, w):
    return multilinear(TRI, a, b, w)


CASES = {"bilinear": (prim2, plain2, 2), "trilinear": (prim3, plain3, 3),
         "bilinear_joint": (lambda a, b: multilinear(BI_JOINT, a, b), plain2, 2),
         "trilinear_joint": (lambda a, b, w: multilinear(TRI_JOINT, a, b, w), plain3, 3)}


def test_joint_transpose_serves_a_backward_pass():
    """A gradient in several inputs is one joint call; in one input, the plain transpose."""
    prim = CASES["trilinear_joint"][0]
    xs, c = _inputs(3)
    JOINT_CALLS.clear()
    jax.grad(lambda *a: jnp.sum(c * prim(*a)), (0, 2))(*xs)
    assert JOINT_CALLS == [(True, False, True)]
    JOINT_CALLS.clear()
    jax.grad(lambda *a: jnp.sum(c * prim(*a)), 1)(*xs)
    assert JOINT_CALLS == []


def test_unused_gradients_are_not_computed():
    """Under jit, a joint (or dual) call whose results are partly unused computes only the
    used ones (a force: the gradient in one input of a gradient taken in all)."""
    prim = CASES["trilinear_joint"][0]
    xs, c = _inputs(3)
    JOINT_CALLS.clear()
    got = jax.jit(lambda *a: jax.grad(lambda *b: jnp.sum(c * prim(*b)), (0, 1, 2))(*a)[1])(*xs)
    assert JOINT_CALLS == [(False, True, False)]
    want = jax.grad(lambda b: jnp.sum(c * plain3(xs[0], b, xs[2])))(xs[1])
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("case", ["trilinear_joint", "trilinear"])
def test_force_training(case):
    """Force training: ``F = d<c, f>/d b`` (one input), gradient of ``|F|^2`` in the others
    (one direction for the joint's derivative, one cotangent for its transpose: the joint at
    substituted inputs, no dual call), equal to JAX's derivatives of the plain product."""
    prim = CASES[case][0]
    xs, c = _inputs(3)
    outs = []
    DUAL_CALLS.clear()
    for f in (prim, plain3):
        def loss(a, w, f=f):
            # every gradient taken, one kept (as force fields are often written): a joint
            # call, dead code eliminated down to one result
            force = jax.grad(lambda *z: jnp.sum(c * f(*z)), (0, 1, 2))(a, xs[1], w)[1]
            return jnp.sum(force ** 2)
        outs.append(jax.jit(jax.grad(loss, (0, 1)))(xs[0], xs[2]))
    assert DUAL_CALLS == []
    for g, w in zip(outs[0], outs[1], strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-11)


def test_joint_dual_serves_a_double_backward():
    """The double backward of a gradient in every input: one dual call (its transpose)."""
    prim = CASES["trilinear_joint"][0]
    xs, c = _inputs(3)
    vs, _ = _inputs(3, seed=2)

    def phi(*a):
        gs = jax.grad(lambda *b: jnp.sum(c * prim(*b)), (0, 1, 2))(*a)
        return sum(jnp.sum(g * v) for g, v in zip(gs, vs, strict=True))

    DUAL_CALLS.clear()
    jax.grad(phi, (0, 1, 2))(*xs)
    assert DUAL_CALLS == [(True, True, True)]


def _inputs(n_args, n=6, seed=0):
    r = np.random.default_rng(seed)
    xs = [jnp.asarray(r.standard_normal((n, 3))), jnp.asarray(r.standard_normal((n, 4))),
          jnp.asarray(r.standard_normal(2))]
    return xs[:n_args], jnp.asarray(r.standard_normal((n, 5)))


@pytest.mark.parametrize("case", CASES)
def test_value_and_first_derivatives(case):
    prim, plain, k = CASES[case]
    xs, c = _inputs(k)
    np.testing.assert_allclose(prim(*xs), plain(*xs), rtol=1e-13)
    loss = {f: (lambda *a, f=f: jnp.sum(c * f(*a))) for f in (prim, plain)}
    for argnums in [*range(k), tuple(range(k))]:
        got = jax.grad(loss[prim], argnums)(*xs)
        want = jax.grad(loss[plain], argnums)(*xs)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-12)
    ts, _ = _inputs(k, seed=1)
    np.testing.assert_allclose(jax.jvp(prim, xs, ts)[1], jax.jvp(plain, xs, ts)[1], rtol=1e-12)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("order", ["fwd_over_rev", "rev_over_rev"])
def test_second_derivatives(case, order):
    """The double backward of training with forces: d/dx of <v, d<c, f>/d(all inputs)>."""
    prim, plain, k = CASES[case]
    xs, c = _inputs(k)
    vs, _ = _inputs(k, seed=2)
    outs = []
    for f in (prim, plain):
        def grads(*a, f=f):
            return jax.grad(lambda *b: jnp.sum(c * f(*b)), tuple(range(k)))(*a)
        if order == "fwd_over_rev":
            outs.append(jax.jvp(grads, xs, vs)[1])
        else:
            outs.append(jax.grad(lambda *a, f=f: sum(jnp.sum(g * v) for g, v in zip(
                grads(*a, f=f), vs, strict=True)), tuple(range(k)))(*xs))
    for g, w in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1]), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-11)


@pytest.mark.parametrize("case", CASES)
def test_vmap(case):
    """Mapped row-wise operands join the rows; a mapped shared operand, or a shared result
    (the weight gradient per mapped index), runs once per index."""
    prim, plain, k = CASES[case]
    xs, c = _inputs(k)
    stack = jnp.stack([xs[0], 2 * xs[0]])
    axes = (0,) + (None,) * (k - 1)
    np.testing.assert_allclose(jax.vmap(prim, axes)(stack, *xs[1:]),
                               jax.vmap(plain, axes)(stack, *xs[1:]), rtol=1e-13)
    both = {f: jax.vmap(jax.grad(lambda a, b, f=f: jnp.sum(c * f(a, b, *xs[2:])) ** 2, (0, 1)),
                        (0, None)) for f in (prim, plain)}  # two cotangents: a joint call
    for g, w in zip(both[prim](stack, xs[1]), both[plain](stack, xs[1]), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    if k == 3:
        ws = jnp.stack([xs[2], -xs[2], 3 * xs[2]])
        np.testing.assert_allclose(jax.vmap(prim, (None, None, 0))(*xs[:2], ws),
                                   jax.vmap(plain, (None, None, 0))(*xs[:2], ws), rtol=1e-13)
        per = {f: jax.vmap(jax.grad(lambda a, f=f: jnp.sum(c * f(a, *xs[1:])) ** 2))
               for f in (prim, plain)}
        np.testing.assert_allclose(per[prim](stack), per[plain](stack), rtol=1e-12)
        wgrad = {f: jax.vmap(jax.grad(lambda w, a, f=f: jnp.sum(c * f(a, xs[1], w)) ** 2),
                             (None, 0)) for f in (prim, plain)}
        np.testing.assert_allclose(wgrad[prim](xs[2], stack), wgrad[plain](xs[2], stack),
                                   rtol=1e-12)


def test_shape_errors():
    (a, b), _ = _inputs(2)
    with pytest.raises(ValueError, match=r"expected \(N, 3\) and \(N, 4\)"):
        prim2(a, a[:, :3].repeat(2, axis=1)[:, :5])
    with pytest.raises(ValueError, match="of one dtype"):
        prim2(a, b.astype(jnp.float32))
    with pytest.raises(ValueError, match=r"\(N, 3\) and \(N, 4\) and \(2,\)"):
        prim3(a, b, jnp.ones((6, 2)))
    with pytest.raises(ValueError, match="output slot must be row-wise"):
        Multilinear(fns=BI.fns, slots=(Slot(3), Slot(4), Slot(5, rows_axis=None)))
