"""Proving ground for loopprof: a vLLM-shaped serving stack, a load generator and named scenarios.

A plain folder run from the repository root (``python -m examples.stack``); never installed. See
``examples/README.md``.
"""
