"""Tooling: what measures, feeds and tests the worker, apart from the product (no worker
module imports it; tests/test_architecture.py checks that)."""
