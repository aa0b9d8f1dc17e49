"""Models built from tp_jax's Flax layers (need the ``flax`` extra): :class:`MACE`, a
MACE-style interatomic potential (:mod:`tp_jax.models.mace`), and its edge embeddings
(:mod:`tp_jax.models.edges`)."""

from __future__ import annotations

from .mace import MACE, Graph, energy_and_forces, loss_fn

__all__ = ["MACE", "Graph", "energy_and_forces", "loss_fn"]
