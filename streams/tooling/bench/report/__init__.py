"""Rendering a run's results: the stdout table, docs/benchmarks.md and its soak section."""
