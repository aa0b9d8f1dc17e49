"""The shared conformance suite of tensor-product backends (catalogue, checks, oracles)."""

__version__ = "0.1.0"
