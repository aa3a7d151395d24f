"""Benchmarks (``python -m bench.<name>``); never part of ``make test``."""
