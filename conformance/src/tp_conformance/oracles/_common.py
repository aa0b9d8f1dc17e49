"""Shared pieces of the oracle adapters: e3nn-style instructions, and the autodiff plumbing for
torch and jax functions of flattened ``(B, dim)`` arrays.

An oracle wraps an outside library (e3nn, e3nn-jax, cuEquivariance, OpenEquivariance) behind the
:class:`tp_spec.backend.Backend` protocol. ``methods(d)`` maps the oracle's single method to
``None`` or to the reason the library cannot express ``d`` (that becomes the skip message).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..numpy_backend import validate_common

__all__ = ["JaxOracle", "OracleBase", "TorchOracle", "Unsupported", "e3nn_instructions",
           "target_cgtp"]

NATIVE_IRREP = ("component", "norm", "none")
NATIVE_PATH = ("element", "path", "none")


class Unsupported(Exception):
    """The library cannot express this descriptor (the message is the skip reason)."""


def target_cgtp(d):
    """The CGTP an oracle runs for ``d`` (GTP/MTP through ``as_cgtp()``, fixed weights only)."""
    if d.kind == "cgtp":
        return d
    if d.weight_numel:
        raise Unsupported(f"{d.kind} with per-degree weights has no equivalent in this library")
    return d.as_cgtp()


def check_e3nn_modes(cg) -> None:
    for p in cg.paths:
        if p.mode == "uvw" and not p.has_weight:
            raise Unsupported("e3nn has no unweighted 'uvw' path")
        if p.mode == "uuw" and not p.has_weight and p.mul_out != 1:
            raise Unsupported("e3nn's unweighted 'uuw' path needs output multiplicity 1")


def e3nn_instructions(cg, final_weights: Callable[[list[tuple], str, str], list[float]],
                      native_irrep=NATIVE_IRREP, native_path=NATIVE_PATH
                      ) -> tuple[list[tuple], str, str]:
    """e3nn instruction tuples and normalizations reproducing ``cg``.

    A CGTP built by :func:`tp_spec.cgtp` with normalizations the library has is passed natively
    (so the library's own normalization formulas are compared with ours). Otherwise (explicit
    coefficients, e.g. GTP/MTP emulations) each ``path_weight`` is rescaled so the library's final
    per-path factor equals our coefficient: ``final_weights(instructions, irrep, path)`` returns
    the library's factors for given instructions. e3nn puts ``path_weight`` under a square root,
    so negative coefficients cannot be expressed.
    """
    check_e3nn_modes(cg)
    explicit = bool(cg.metadata) or (cg.irrep_normalization, cg.path_normalization) == (
        "none", "none")
    if (not explicit and cg.irrep_normalization in native_irrep
            and cg.path_normalization in native_path):
        ins = [(p.i_in1, p.i_in2, p.i_out, p.mode, p.has_weight, p.path_weight)
               for p in cg.paths]
        return ins, cg.irrep_normalization, cg.path_normalization
    if any(p.coefficient < 0 for p in cg.paths):
        raise Unsupported("negative path coefficients cannot be expressed (e3nn's path_weight "
                          "sits under a square root)")
    irrep, path = native_irrep[0], native_path[0]
    base = [(p.i_in1, p.i_in2, p.i_out, p.mode, p.has_weight, 1.0) for p in cg.paths]
    factors = final_weights(base, irrep, path)
    ins = []
    for p, b, f in zip(cg.paths, base, factors, strict=True):
        if f == 0:
            raise Unsupported("library normalization gives a zero path factor")
        ins.append(b[:5] + ((p.coefficient / f) ** 2,))
    return ins, irrep, path


def _flat(a: np.ndarray | None, batch: tuple[int, ...]) -> np.ndarray | None:
    if a is None:
        return None
    return a.reshape((math.prod(batch), a.shape[-1]))


class OracleBase:
    """Protocol plumbing; subclasses define ``name``, ``method``, ``_supported(d)`` and the
    framework-specific ``_apply_flat`` / ``_vjp_flat`` / ``_force_flat`` / ``_hvp_flat``."""

    name = "oracle"
    method = "oracle"
    is_oracle = True

    def devices(self) -> list[str]:
        return ["cpu"]

    def _supported(self, d) -> None:  # raise Unsupported(reason)
        raise NotImplementedError

    def methods(self, descriptor, device: str = "cpu") -> dict[str, str | None]:
        if device not in self.devices():
            return {self.method: f"{self.name} does not run on {device}"}
        cache = self.__dict__.setdefault("_support_cache", {})
        key = id(descriptor)
        if key not in cache:
            try:
                self._supported(descriptor)
                reason = None
            except Unsupported as exc:
                reason = f"{self.name} cannot express this case: {exc}"
            cache[key] = (descriptor, reason)  # keep the descriptor alive: id() stays unique
        return {self.method: cache[key][1]}

    def _prepare(self, d, method, dtype, device, *arrays):
        batch = validate_common(self.name, d, self.methods(d, device), method, dtype, device,
                                self.devices(), *arrays)
        arrs = [None if a is None else np.asarray(a, dtype=dtype) for a in arrays]
        return arrs, tuple(batch)

    @staticmethod
    def _weights_flat(w, batch):
        """Per-sample ``(B, numel)`` weights and whether they were shared."""
        if w is None:
            return None, False
        if w.ndim == 1 and len(batch) > 0:
            return np.broadcast_to(w, (math.prod(batch), w.shape[0])).copy(), True
        return _flat(w, batch), False

    @staticmethod
    def _unflat(g, like, shared):
        if like is None:
            return None
        if shared:
            return g.sum(axis=0)
        return g.reshape(like.shape)

    def apply(self, descriptor, method, x1, x2, weights=None, *, dtype="float64", device="cpu"):
        (a, b, w), batch = self._prepare(descriptor, method, dtype, device, x1, x2, weights)
        wf, _ = self._weights_flat(w, batch)
        out = self._apply_flat(descriptor, _flat(a, batch), _flat(b, batch), wf, dtype)
        return np.asarray(out, dtype=dtype).reshape(batch + (descriptor.irreps_out.dim,))

    def _grads(self, kind, descriptor, method, x1, x2, weights, cotangent, tangents, dtype,
               device):
        extra = [] if tangents is None else list(tangents[:2])
        (a, b, w, c, *t), batch = self._prepare(descriptor, method, dtype, device, x1, x2,
                                                weights, cotangent, *extra)
        wf, shared = self._weights_flat(w, batch)
        args: list[Any] = [descriptor, _flat(a, batch), _flat(b, batch), wf, _flat(c, batch)]
        if kind == "hvp":
            vw = tangents[2]
            vwf, _ = self._weights_flat(None if vw is None else np.asarray(vw, dtype=dtype),
                                        batch)
            args.append((_flat(t[0], batch), _flat(t[1], batch), vwf))
        fn = {"vjp": self._vjp_flat, "force": self._force_flat, "hvp": self._hvp_flat}[kind]
        g = fn(*args, dtype)
        return (np.asarray(g[0], dtype=dtype).reshape(a.shape),
                np.asarray(g[1], dtype=dtype).reshape(b.shape),
                self._unflat(None if g[2] is None else np.asarray(g[2], dtype=dtype), w, shared))

    def vjp(self, descriptor, method, x1, x2, weights, cotangent, *, dtype="float64",
            device="cpu"):
        return self._grads("vjp", descriptor, method, x1, x2, weights, cotangent, None, dtype,
                           device)

    def force_loss_grad(self, descriptor, method, x1, x2, weights, cotangent, *,
                        dtype="float64", device="cpu"):
        return self._grads("force", descriptor, method, x1, x2, weights, cotangent, None, dtype,
                           device)

    def hvp(self, descriptor, method, x1, x2, weights, cotangent, tangents, *, dtype="float64",
            device="cpu"):
        return self._grads("hvp", descriptor, method, x1, x2, weights, cotangent, tangents,
                           dtype, device)


class TorchOracle(OracleBase):
    """Autodiff through ``self._torch_fn(d, dtype)``: ``f(x1 (B,d1), x2 (B,d2), w (B,n)|None)``."""

    def _torch_fn(self, d, dtype):
        raise NotImplementedError

    def _t(self, a, dtype, grad=False):
        import torch

        if a is None:
            return None
        t = torch.tensor(np.ascontiguousarray(a), dtype=getattr(torch, dtype))
        return t.requires_grad_(grad)

    def _apply_flat(self, d, x1, x2, w, dtype):
        import torch

        with torch.no_grad():
            return self._torch_fn(d, dtype)(self._t(x1, dtype), self._t(x2, dtype),
                                            self._t(w, dtype)).numpy()

    def _inputs(self, x1, x2, w, dtype):
        ts = [self._t(x1, dtype, True), self._t(x2, dtype, True), self._t(w, dtype, True)]
        return ts, [t for t in ts if t is not None]

    @staticmethod
    def _out(ts, grads):
        import torch

        it = iter(grads)
        res = []
        for t in ts:
            if t is None:
                res.append(None)
                continue
            g = next(it)
            res.append((torch.zeros_like(t) if g is None else g).detach().numpy())
        return res

    def _vjp_flat(self, d, x1, x2, w, c, dtype):
        import torch

        ts, live = self._inputs(x1, x2, w, dtype)
        e = (self._torch_fn(d, dtype)(*ts) * self._t(c, dtype)).sum()
        return self._out(ts, torch.autograd.grad(e, live, allow_unused=True))

    def _force_flat(self, d, x1, x2, w, c, dtype):
        import torch

        ts, live = self._inputs(x1, x2, w, dtype)
        e = (self._torch_fn(d, dtype)(*ts) * self._t(c, dtype)).sum()
        (f,) = torch.autograd.grad(e, [ts[0]], create_graph=True)
        loss = (f**2).sum()
        if not loss.requires_grad:  # no second-order dependence at all
            return [np.zeros_like(a) if a is not None else None for a in (x1, x2, w)]
        return self._out(ts, torch.autograd.grad(loss, live, allow_unused=True))

    def _hvp_flat(self, d, x1, x2, w, c, tangents, dtype):
        import torch

        ts, live = self._inputs(x1, x2, w, dtype)
        e = (self._torch_fn(d, dtype)(*ts) * self._t(c, dtype)).sum()
        g = torch.autograd.grad(e, live, create_graph=True)
        vs = [self._t(v, dtype) for v, t in zip(tangents, ts, strict=True) if t is not None]
        dot = sum((gi * vi).sum() for gi, vi in zip(g, vs, strict=True))
        return self._out(ts, torch.autograd.grad(dot, live, allow_unused=True))


class JaxOracle(OracleBase):
    """Autodiff through ``self._jax_fn(d, dtype)``: ``f(x1 (B,d1), x2 (B,d2), w (B,n)|None)``.

    Every derived function (forward, vjp, force-loss gradient, hvp) is ``jax.jit``-ed once per
    (descriptor, dtype): the outside libraries do a lot of Python work while tracing."""

    #: CPU budget: tracing and compiling these libraries' per-path Python code costs ~0.1-0.3 s
    #: per path and per function shape, so larger descriptors are skipped (with this reason);
    #: the torch oracles cover them.
    max_paths = 45

    def __init__(self) -> None:
        import jax

        jax.config.update("jax_enable_x64", True)
        self._jit_cache: dict = {}

    def _check_size(self, d) -> None:
        n = len(target_cgtp(d).paths)
        if n > self.max_paths:
            raise Unsupported(f"{n} paths > {self.max_paths}: jit tracing too slow for the CPU "
                              "budget (the torch oracles cover this case)")

    def _jax_fn(self, d, dtype):
        raise NotImplementedError

    #: Descriptors whose compiled functions are kept; the next new one drops every JAX cache
    #: (XLA:CPU executables hold memory mappings; thousands of them exceed Linux's
    #: vm.max_map_count and a later compile segfaults; see tp_jax._backend.MAX_LIVE_PAIRS).
    max_live_descriptors = 8

    def _compiled(self, d, dtype, kind):
        key = (id(d), dtype, kind)
        if key in self._jit_cache:
            return self._jit_cache[key][1]
        import jax
        import jax.numpy as jnp

        live = {k[0] for k in self._jit_cache}
        if id(d) not in live and len(live) >= self.max_live_descriptors:
            self._jit_cache.clear()
            jax.clear_caches()

        fn = self._jax_fn(d, dtype)

        def energy(a, b, w, c):
            return jnp.sum(fn(a, b, w) * c)

        def vjp(a, b, w, c):
            return jax.grad(energy, argnums=(0, 1, 2))(a, b, w, c)

        def force(a, b, w, c):
            def loss(a, b, w):
                return jnp.sum(jax.grad(energy, argnums=0)(a, b, w, c) ** 2)

            return jax.grad(loss, argnums=(0, 1, 2))(a, b, w)

        def hvp(a, b, w, c, va, vb, vw):
            return jax.jvp(lambda p, q, r: vjp(p, q, r, c), (a, b, w), (va, vb, vw))[1]

        f = jax.jit({"apply": fn, "vjp": vjp, "force": force, "hvp": hvp}[kind])
        self._jit_cache[key] = (d, f)
        return f

    @staticmethod
    def _args(dtype, *arrays):
        import jax.numpy as jnp

        # Missing weights become an empty (B, 0) array so every function has the same arity.
        b = arrays[0].shape[0]
        return [jnp.zeros((b, 0), dtype=dtype) if a is None else jnp.asarray(a, dtype=dtype)
                for a in arrays]

    def _apply_flat(self, d, x1, x2, w, dtype):
        return np.asarray(self._compiled(d, dtype, "apply")(*self._args(dtype, x1, x2, w)))

    @staticmethod
    def _res(g, w):
        return [np.asarray(g[0]), np.asarray(g[1]), None if w is None else np.asarray(g[2])]

    def _vjp_flat(self, d, x1, x2, w, c, dtype):
        return self._res(self._compiled(d, dtype, "vjp")(*self._args(dtype, x1, x2, w, c)), w)

    def _force_flat(self, d, x1, x2, w, c, dtype):
        return self._res(self._compiled(d, dtype, "force")(*self._args(dtype, x1, x2, w, c)), w)

    def _hvp_flat(self, d, x1, x2, w, c, tangents, dtype):
        v1, v2, vw = tangents
        args = self._args(dtype, x1, x2, w, c, v1, v2, vw)
        return self._res(self._compiled(d, dtype, "hvp")(*args), w)
