"""Zorgpad's benchmark harness (issue #7): ``python -m bench`` measures, prints and writes docs/benchmarks.md.

A plain folder of scripts, not part of the installed distribution. Every figure is measured through
Zorgpad's real code paths and printed beside baselines measured in the same run (see
:mod:`bench.baselines`); speed numbers never go in the unit tests.
"""
