"""Training benchmarks of whole models (``python -m benchmarks train``, :mod:`.report`), each
model in its own environment."""
