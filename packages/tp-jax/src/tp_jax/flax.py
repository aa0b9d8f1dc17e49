"""Flax (linen) module around :func:`tp_jax.tensor_product` (needs the ``flax`` extra).

>>> import jax, jax.numpy as jnp, tp_spec as spec
>>> from tp_jax.flax import TensorProduct
>>> d = spec.cgtp("4x0e + 4x1o", "0e + 1o", "4x0e + 4x1o", mode="uvw")
>>> m = TensorProduct(d)
>>> x1, x2 = jnp.ones((10, 16)), jnp.ones((10, 4))
>>> params = m.init(jax.random.PRNGKey(0), x1, x2)
>>> m.apply(params, x1, x2).shape
(10, 16)

The module holds one shared weight vector ``"weights"`` of shape ``(d.weight_numel,)`` (none
when ``weight_numel == 0``). Default init: standard normal for CGTP (with e3nn's path
normalization baked into the descriptor's coefficients, unit-variance inputs then give outputs
of variance ~1); ones for GTP/MTP per-degree weights (the unweighted operation at init).
Per-sample weights (e.g. from a radial MLP) can be passed to ``__call__`` instead.

``Linear`` and ``IndexedLinear`` are the equivariant linear layers of :mod:`tp_jax.linear`;
``TensorProductConv`` the convolution (:func:`tp_jax.tensor_product_conv`);
``SymmetricContraction`` and ``GauntSymmetricContraction`` MACE's product basis and its Gaunt
variant (:mod:`tp_jax.symmetric_contraction`):

>>> m = SymmetricContraction("4x0e+4x1o", "4x0e+4x1o", correlation=3, num_species=2)
>>> x, z = jnp.ones((5, 16)), jnp.zeros(5, int)
>>> params = m.init(jax.random.PRNGKey(0), x, z)
>>> m.apply(params, x, z).shape
(5, 16)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from tp_spec import InstructionError, Irreps, ShapeError, TensorProductDescriptor
from tp_spec.linear import linear as linear_descriptor

from ._api import tensor_product
from ._conv import tensor_product_conv
from .linear import indexed_linear, linear
from .symmetric_contraction import gaunt_symmetric_contraction, symmetric_contraction

# the module (tp_spec exports its function of the same name)
sc_spec = importlib.import_module("tp_spec.symmetric_contraction")

__all__ = ["GauntSymmetricContraction", "IndexedLinear", "Linear", "SymmetricContraction",
           "TensorProduct", "TensorProductConv", "linear_params_from_e3nn_jax"]


def _default_init(d: TensorProductDescriptor) -> Callable:
    if d.kind == "cgtp":
        return jax.nn.initializers.normal(stddev=1.0)
    return jax.nn.initializers.ones


class TensorProduct(nn.Module):
    """``y = TP(x1, x2; weights)`` for a tp_spec descriptor.

    Attributes:
        descriptor: any tp_spec descriptor (cgtp / gtp / mtp).
        method: method name or ``None`` (the CPU default), see :func:`tp_jax.methods`.
        weight_init: initializer of the ``[weight_numel]`` parameter (default: see module doc).
        param_dtype: dtype of the parameter (float32).

    The module holds one ``"weights"`` parameter ``[weight_numel]`` (none when
    ``weight_numel == 0``). Inputs and the parameter must share a dtype.
    """

    descriptor: TensorProductDescriptor
    method: str | None = None
    weight_init: Callable | None = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x1: jax.Array, x2: jax.Array, weights: jax.Array | None = None
                 ) -> jax.Array:
        """The product with the module's weights (or the given ones).

        Args:
            x1: ``[*batch, irreps_in1.dim]``.
            x2: ``[*batch, irreps_in2.dim]``.
            weights: ``[weight_numel]`` or ``[*batch, weight_numel]``, replacing the
                parameter (``None``: the parameter).

        Returns:
            ``[*batch, irreps_out.dim]``.
        """
        d = self.descriptor
        f = tensor_product(d, self.method)
        if weights is None and d.weight_numel:
            init = self.weight_init or _default_init(d)
            weights = self.param("weights", init, (d.weight_numel,), self.param_dtype)
        return f(x1, x2, weights)


class Linear(nn.Module):
    """e3nn ``o3.Linear`` (:mod:`tp_spec.linear`): ``[*batch, irreps_in.dim] -> [*batch,
    irreps_out.dim]``.

    Attributes ``irreps_in``, ``irreps_out``, ``instructions``, ``path_normalization`` and
    ``biases`` are the arguments of :func:`tp_spec.linear`. Parameters: ``"weights"``
    ``[weight_numel]`` ~ N(0, 1) in e3nn's layout, and ``"bias"`` ``[bias_numel]`` of zeros
    when ``biases``.
    """

    irreps_in: Irreps | str
    irreps_out: Irreps | str
    instructions: tuple[tuple[int, int], ...] | None = None
    path_normalization: str = "element"
    biases: bool | tuple[bool, ...] = False
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, weights: jax.Array | None = None) -> jax.Array:
        """The linear map.

        Args:
            x: ``[*batch, irreps_in.dim]``.
            weights: ``[weight_numel]`` or ``[*batch, weight_numel]``, replacing the
                parameters (only without biases; ``None``: the parameters).

        Returns:
            ``[*batch, irreps_out.dim]``.
        """
        d = linear_descriptor(self.irreps_in, self.irreps_out, instructions=self.instructions,
                              path_normalization=self.path_normalization, biases=self.biases)
        bias = None
        if weights is None:
            if d.weight_numel:
                weights = self.param("weights", jax.nn.initializers.normal(stddev=1.0),
                                     (d.weight_numel,), self.param_dtype)
            if d.bias_numel:
                bias = self.param("bias", jax.nn.initializers.zeros, (d.bias_numel,),
                                  self.param_dtype)
        elif d.bias_numel:
            raise ShapeError("explicit weights replace the parameters; with biases, use the "
                             "pure function tp_jax.linear(d)(x, weights, bias)")
        return linear(d)(x, weights, bias)


def _merged_positions(blocks: list[tuple[int, int, Any]]) -> dict[int, tuple[int, int]]:
    """``(original index, mul, (l, p))`` in e3nn-jax's internal order -> ``{original index:
    (merged block index, channel offset)}``: consecutive equal irreps merge, empty blocks drop."""
    out, index, offset, previous = {}, -1, 0, None
    for orig, mul, ir in blocks:
        if mul == 0:
            continue
        if ir != previous:
            index, offset, previous = index + 1, 0, ir
        out[orig] = (index, offset)
        offset += mul
    return out


def _gradient_normalization(value: str | float | None) -> float:
    """e3nn-jax's ``gradient_normalization`` as its number: ``"element"`` 0, ``"path"`` 1."""
    if value is None:
        try:
            import e3nn_jax
        except ImportError:
            return 1.0
        value = e3nn_jax.config("gradient_normalization")
    named = {"element": 0.0, "path": 1.0}
    if isinstance(value, str) and value in named:
        return named[value]
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    raise InstructionError(f"gradient_normalization must be 'element', 'path' or a number in "
                           f"[0, 1], got {value!r}")


def linear_params_from_e3nn_jax(params: Any, irreps_in: Irreps | str, irreps_out: Irreps | str,
                                *, biases: bool = False,
                                gradient_normalization: str | float | None = None
                                ) -> dict[str, Any]:
    """The parameters of :class:`Linear` ``(irreps_in, irreps_out, biases=biases)`` that compute
    what ``e3nn_jax.flax.Linear(irreps_out, irreps_in=irreps_in, biases=biases,
    gradient_normalization=gradient_normalization)`` computes with ``params`` (its
    ``init``/``apply`` variables; e3nn-jax sorts and merges the input irreps and merges the
    output irreps internally) -> ``{"params": {...}}``.

    ``gradient_normalization``: ``"path"`` (1), ``"element"`` (0) or a number in ``[0, 1]``, as
    e3nn-jax takes it; ``None``: e3nn-jax's configured default
    (``e3nn_jax.config("gradient_normalization")``, ``"path"`` unless changed). e3nn-jax
    scales a block's output by ``alpha ** g`` (``alpha = fan_in ** -0.5``); this layer by
    ``alpha``, so each block's weights are multiplied by ``alpha ** (g - 1)``."""
    import re

    import numpy as np

    g = _gradient_normalization(gradient_normalization)
    params = params.get("params", params)
    d = linear_descriptor(irreps_in, irreps_out, biases=biases)
    key = [(b.ir.l, b.ir.p) for b in d.irreps_in]
    order = sorted(range(len(key)), key=lambda i: (key[i][0], -key[i][1] * (-1) ** key[i][0]))
    pos_in = _merged_positions([(i, d.irreps_in[i].mul, key[i]) for i in order])
    pos_out = _merged_positions([(i, b.mul, (b.ir.l, b.ir.p))
                                 for i, b in enumerate(d.irreps_out)])
    blocks: dict[tuple[int, int], Any] = {}
    bias_blocks: dict[int, Any] = {}
    for name, value in params.items():
        if m := re.match(r"w\[(\d+),(\d+)\]", name):
            blocks[int(m[1]), int(m[2])] = np.asarray(value)
        elif m := re.match(r"b\[(\d+)\]", name):
            bias_blocks[int(m[1])] = np.asarray(value)
        else:
            raise ShapeError(f"unexpected e3nn-jax Linear parameter {name!r}")
    weights = np.zeros(d.weight_numel, dtype=np.result_type(*blocks.values(), np.float32)
                       if blocks else np.float32)
    for ins in d.instructions:
        if not ins.weight_numel:
            continue
        (a, r), (b, c) = pos_in[ins.i_in], pos_out[ins.i_out]
        if (a, b) not in blocks:
            raise ShapeError(f"e3nn-jax parameters lack the block w[{a},{b}] of "
                             f"{d.irreps_in[ins.i_in]} -> {d.irreps_out[ins.i_out]}")
        weights[ins.weight_slice] = (blocks[a, b][r:r + ins.mul_in, c:c + ins.mul_out]
                                     * ins.alpha ** (g - 1.0)).reshape(-1)
    out: dict[str, Any] = {"weights": jnp.asarray(weights)} if d.weight_numel else {}
    if d.bias_numel:
        bias = np.zeros(d.bias_numel, dtype=weights.dtype)
        for i_out, sl in d.bias_slices():
            b, c = pos_out[i_out]
            bias[sl] = bias_blocks[b][c:c + d.irreps_out[i_out].mul]
        out["bias"] = jnp.asarray(bias)
    return {"params": out}


class IndexedLinear(nn.Module):
    """A linear layer with one weight row per index (e.g. per chemical species):
    ``[*batch, irreps_in.dim] -> [*batch, irreps_out.dim]``, sample ``b`` with row
    ``indices[b]``.

    Parameter ``"weights"`` ``(num_indices, weight_numel)`` ~ N(0, 1), each row in
    :class:`Linear`'s layout.
    """

    irreps_in: Irreps | str
    irreps_out: Irreps | str
    num_indices: int
    instructions: tuple[tuple[int, int], ...] | None = None
    path_normalization: str = "element"
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, indices: jax.Array) -> jax.Array:
        """Args: ``x [*batch, irreps_in.dim]``, ``indices [*batch]`` ints in
        ``[0, num_indices)``. Returns ``[*batch, irreps_out.dim]``."""
        d = linear_descriptor(self.irreps_in, self.irreps_out, instructions=self.instructions,
                              path_normalization=self.path_normalization)
        weights = self.param("weights", jax.nn.initializers.normal(stddev=1.0),
                             (self.num_indices, d.weight_numel), self.param_dtype)
        return indexed_linear(d)(x, weights, indices)


class TensorProductConv(nn.Module):
    """The tensor-product convolution of :func:`tp_jax.tensor_product_conv`:
    ``out[i] = sum over edges e into i of TP(x_nodes[senders[e]], x_edges[e]; weights)``.

    Attributes as :class:`TensorProduct`. The module holds one shared ``"weights"``
    ``(weight_numel,)`` parameter; per-edge weights (e.g. from a radial MLP) passed to
    ``__call__`` replace it (and no parameter is made).

    Index rules of :func:`tp_jax.tensor_product_conv`.
    """

    descriptor: TensorProductDescriptor
    method: str | None = None
    weight_init: Callable | None = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_nodes: jax.Array, x_edges: jax.Array, senders: jax.Array,
                 receivers: jax.Array, weights: jax.Array | None = None) -> jax.Array:
        """Sum the messages of each node's incoming edges.

        Args:
            x_nodes: ``[n_nodes, irreps_in1.dim]``.
            x_edges: ``[n_edges, irreps_in2.dim]``.
            senders: ``[n_edges]`` ints in ``[0, n_nodes)``.
            receivers: ``[n_edges]`` ints in ``[0, n_nodes)``.
            weights: ``[weight_numel]`` or ``[n_edges, weight_numel]``, replacing the
                parameter (``None``: the parameter).

        Returns:
            ``[n_nodes, irreps_out.dim]``.
        """
        d = self.descriptor
        f = tensor_product_conv(d, self.method)
        if weights is None and d.weight_numel:
            init = self.weight_init or _default_init(d)
            weights = self.param("weights", init, (d.weight_numel,), self.param_dtype)
        return f(x_nodes, x_edges, weights, senders, receivers)


class SymmetricContraction(nn.Module):
    """MACE's ``SymmetricContraction``: ``[n, irreps_in.dim] -> [n, irreps_out.dim]`` with
    each node's species weights (arguments of :func:`tp_spec.symmetric_contraction`).

    Parameters ``"weights_{i}_{nu}"`` of MACE's shapes ``(num_species, K, k)`` (output ``i``,
    order ``nu``), initialized like MACE (standard normal / K). ``basis="reduced"``: only the
    independent paths (:func:`tp_spec.symmetric_contraction`), fewer weights, same functions.
    """

    irreps_in: Any
    irreps_out: Any
    correlation: int
    num_species: int
    param_dtype: Any = jnp.float32
    basis: str = "mace"

    @nn.compact
    def __call__(self, x: jax.Array, species: jax.Array) -> jax.Array:
        """Args: ``x [n, irreps_in.dim]``, ``species [n]`` ints in ``[0, num_species)``.
        Returns ``[n, irreps_out.dim]``."""
        d = sc_spec.symmetric_contraction(self.irreps_in, self.irreps_out, self.correlation,
                                          self.num_species, basis=self.basis)
        blocks = []
        for i, shapes in enumerate(d.weight_shapes):
            for nu, (S, K, k) in enumerate(shapes, start=1):

                def init(key, shape, dtype, K=K):
                    return jax.random.normal(key, shape, dtype) / max(K, 1)

                w = self.param(f"weights_{i}_{nu}", init, (S, K, k), self.param_dtype)
                blocks.append(w.reshape(S, -1))
        return symmetric_contraction(d)(x, jnp.concatenate(blocks, axis=1), species)


class GauntSymmetricContraction(nn.Module):
    """The Gaunt variant (:mod:`tp_spec.symmetric_contraction`): parameters ``"u"``
    ``(num_species, correlation, len(irreps_in), k)`` and ``"v"`` ``(num_species,
    correlation, len(irreps_out), k)``, standard normal."""

    irreps_in: Any
    irreps_out: Any
    correlation: int
    num_species: int
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, species: jax.Array) -> jax.Array:
        """Args: ``x [n, irreps_in.dim]``, ``species [n]`` ints in ``[0, num_species)``.
        Returns ``[n, irreps_out.dim]``."""
        d = sc_spec.gaunt_symmetric_contraction(self.irreps_in, self.irreps_out, self.correlation,
                                            self.num_species)
        S, c, k = d.num_species, d.correlation, d.mul
        normal = jax.nn.initializers.normal(1.0)
        u = self.param("u", normal, (S, c, len(d.irreps_in), k), self.param_dtype)
        v = self.param("v", normal, (S, c, len(d.irreps_out), k), self.param_dtype)
        w = jnp.concatenate([u.reshape(S, -1), v.reshape(S, -1)], axis=1)
        return gaunt_symmetric_contraction(d)(x, w, species)
