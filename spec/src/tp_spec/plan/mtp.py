"""MTP plans: ``dense`` and ``sparse`` change of basis to ``n x n`` matrices around the matrix
products."""

from __future__ import annotations

from .base import Method


def _is_mtp(d) -> str | None:
    return None if d.kind == "mtp" else f"not an MTP descriptor ({type(d).__name__})"


METHODS = (
    Method("mtp", "dense", "change of basis with the full basis of degrees 0..L around the "
           "n x n matrix products", available=_is_mtp, cost_model="dense"),
    Method("mtp", "sparse", "change of basis restricted to the nonzero (parity, degree) blocks "
           "around the n x n matrix products", available=_is_mtp, cost_model="sparse"),
)
