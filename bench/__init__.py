"""Benchmarks of fsrouter against two baselines on the built-in FreeSWITCH simulator.

Run every measurement with ``python -m bench`` from the repository root (``--quick`` for a
short run); see bench/README.md for what is measured and this machine's figures.
"""
