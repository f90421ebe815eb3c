"""Benchmarks: the same workloads on the local disk, Strata and JuiceFS, in one run.

Not tests: nothing here asserts speed. ``make bench`` (or ``python -m tests.bench.run``)
runs every workload on every target, interleaved run by run so machine noise hits all
targets alike, and reports medians as ratios to the local disk and to JuiceFS.
See docs/benchmarks.md.
"""
