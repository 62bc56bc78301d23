"""Benchmarks of the handler (or of any other handler given as a command-line template): reaction
time, drain throughput, Preempt budget and footprint, against the real local control plane and the
IMDS simulator. Run with ``make bench`` (``python -m bench.run --help``); see ``bench/README.md``.
"""
