"""GTP method ``s2fft`` (optional extra ``s2fft``): grid GTP with the ``s2fft`` transforms.

Same operation as ``grid``: per parity class, ``f = sum x_lm Y_lm`` is sampled with
``s2fft.inverse`` on its Gauss-Legendre (``sampling="gl"``) grid, the class products are taken
pointwise and ``s2fft.forward`` projects back. ``s2fft`` uses complex spherical harmonics in its
own angles; we read our angles ``(theta, phi)`` (polar axis ``y``) as its angles and convert
coefficients per degree with ``flm_l = R_l c_l``, where column ``m`` of ``R_l`` is the ``s2fft``
transform of our real ``Y_lm`` (computed once, float64, exact for band-limited functions); the
output is ``Re(R_l^{-1} flm_l)``. Band limit ``Ls = max(L + 1, ceil((L1 + L2 + Lout + 2) / 2))``
makes both quadratures exact (``n_theta = Ls`` Gauss-Legendre nodes, ``n_phi = 2 Ls - 1``).
Needs ``jax_enable_x64`` (float32 inputs are computed in float64 and rounded); without it the
function raises :class:`tp_spec.DTypeError`.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import tp_spec
from tp_spec import plan as tp_plan
from tp_spec.errors import DTypeError
from tp_spec.gtp import GTPDescriptor
from tp_spec.plan.gtp import FourierPlan

from ._gtp import assemble, gather_classes, products, scale_inputs
from ._ops import HIGHEST, einsum

#: Largest s2fft band limit we allow. Measured (s2fft 1.5.0, jax 0.10.2, 2-core CPU): tracing
#: and compiling the vmapped ``s2fft.inverse``/``forward`` takes ~3 s at band limit 5 but more
#: than 100 s at band limit 7 (with or without precomputed recursion tables), so larger
#: descriptors are reported as unavailable instead of hanging a benchmark.
MAX_BAND_LIMIT = 5


def _available(d) -> str | None:
    if not isinstance(d, GTPDescriptor):
        return f"not a GTP descriptor ({type(d).__name__})"
    if importlib.util.find_spec("s2fft") is None:
        return "s2fft is not installed (pip install 'tp-jax[s2fft]')"
    ls = _band_limit(d)
    if ls > MAX_BAND_LIMIT:
        return (f"s2fft band limit {ls} > {MAX_BAND_LIMIT}: its JAX transforms take minutes to "
                "compile on CPU at this size (use method 'grid')")
    return None


def _band_limit(d: GTPDescriptor) -> int:
    l1, l2, lo = d.lmax
    return max(max(l1, l2, lo) + 1, math.ceil((l1 + l2 + lo + 2) / 2))


def _conversion(lmax: int, ls: int) -> np.ndarray:
    """``A ((lmax+1)**2, ls * (2 ls - 1))`` complex: our coefficients -> flattened s2fft flm."""
    import s2fft
    from s2fft.sampling import s2_samples

    theta = s2_samples.thetas(ls, "gl")
    phi = s2_samples.phis_equiang(ls, "gl")
    t, p = np.meshgrid(theta, phi, indexing="ij")
    xyz = np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], axis=-1)
    ys = tp_spec.spherical_harmonics(lmax, xyz, normalization="component")  # (nt, np, dim)
    out = np.zeros(((lmax + 1) ** 2, ls * (2 * ls - 1)), dtype=np.complex128)
    for s in range(ys.shape[-1]):
        flm = s2fft.forward(ys[..., s].astype(np.complex128), ls, sampling="gl",
                            method="numpy")
        out[s] = flm.reshape(-1)
    # keep only the degree of each row (the others are rounding noise)
    mask = np.zeros_like(out, dtype=bool)
    for l in range(lmax + 1):
        mask[l * l:(l + 1) ** 2, l * (2 * ls - 1):(l + 1) * (2 * ls - 1)] = True
    return np.where(mask, out, 0)


def _projection(lmax: int, ls: int) -> np.ndarray:
    """``(ls * (2 ls - 1), (lmax+1)**2)`` complex: flattened flm -> our coefficients."""
    a = _conversion(lmax, ls)
    out = np.zeros((ls * (2 * ls - 1), (lmax + 1) ** 2), dtype=np.complex128)
    for l in range(lmax + 1):
        cols = slice(l * (2 * ls - 1) + ls - 1 - l, l * (2 * ls - 1) + ls + l)
        r = a[l * l:(l + 1) ** 2, cols].T  # (2l+1 complex m', 2l+1 real m): flm_l = r @ c_l
        out[cols, l * l:(l + 1) ** 2] = np.linalg.inv(r).T
    return out


@dataclass
class _S2fftPlan:
    """``base``: the ``fourier`` plan, for its classes, gathers ``(C, (L + 1)^2)`` per class,
    weights and output index; ``a1``, ``a2``, ``proj``: the coefficient conversions at band
    limit ``ls``."""

    base: FourierPlan
    ls: int
    a1: np.ndarray
    a2: np.ndarray
    proj: np.ndarray


def _build(d: GTPDescriptor) -> _S2fftPlan:
    base = tp_plan.plan(d, "fourier")
    ls = _band_limit(d)
    return _S2fftPlan(base, ls, _conversion(base.lmax1, ls), _conversion(base.lmax2, ls),
                      _projection(base.lmax_out, ls))


def _run(plan: _S2fftPlan, x1: jax.Array, x2: jax.Array, w: jax.Array | None) -> jax.Array:
    import s2fft

    base = plan.base
    n, dt, ls = x1.shape[0], x1.dtype, plan.ls
    if not jax.config.jax_enable_x64:
        # Measured: with x64 off, s2fft's complex64 transforms are wrong by O(1) at band
        # limit 5 (e.g. 2e x 2e -> 0..4), so refuse rather than return wrong numbers.
        raise DTypeError("method 's2fft' needs jax_enable_x64 (its float32 transforms are "
                         "inaccurate); float32 inputs are then computed in float64 and rounded")
    # s2fft builds its internal tables in float64 when x64 is on (and then fails to lower
    # complex64 programs): compute in complex128 and round the result to ``dt``.
    cdt = jnp.complex128
    if not base.active:
        return jnp.zeros((n, base.descriptor.irreps_out.dim), dt)
    x1, x2, mult = scale_inputs(base, x1, x2, w)

    def to_grid(x: jax.Array, a: np.ndarray) -> jax.Array:  # (N, C, rows) -> (N, C, nt, np)
        flm = einsum("ncs,sk->nck", x.astype(cdt), jnp.asarray(a.astype(cdt)))
        flm = flm.reshape(-1, ls, 2 * ls - 1)
        g = jax.vmap(lambda f: s2fft.inverse(f, ls, sampling="gl", method="jax"))(flm)
        return g.reshape(x.shape[0], x.shape[1], ls, 2 * ls - 1)

    g1 = [to_grid(c, plan.a1) for c in gather_classes(x1, base.index1)]
    g2 = [to_grid(c, plan.a2) for c in gather_classes(x2, base.index2)]
    per_class = []
    for h in products(base, g1, g2):
        flm = jax.vmap(lambda f: s2fft.forward(f, ls, sampling="gl", method="jax"))(
            h.reshape(-1, ls, 2 * ls - 1))
        z = jnp.matmul(flm.reshape(n, base.channels, -1), jnp.asarray(plan.proj.astype(cdt)),
                       precision=HIGHEST)
        per_class.append(z.real.astype(dt))  # (N, C, rows)
    return assemble(base, per_class, mult)


#: The adapter: ``(available(d), build(d), run(state, x1, x2, w))``.
ADAPTER = (_available, _build, _run)
