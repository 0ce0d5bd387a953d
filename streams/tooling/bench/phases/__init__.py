"""The bench phases, one module each; every one is a function of a `BenchContext`."""
