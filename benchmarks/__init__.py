"""Cross-framework benchmark harness for equivariant tensor products (``python -m benchmarks``).

See :mod:`benchmarks.cli` for the commands, :mod:`benchmarks.workloads` for the suites,
:mod:`benchmarks.subjects` for what is timed and :mod:`benchmarks.report` for the JSON schema.
"""
