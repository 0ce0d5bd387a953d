"""Tooling around the product: the embedded broker, the simulator and the benchmark.

None of it runs inside a production worker. `streams.cli` imports it only inside the commands
that need it (`demo`, `simulate`, `replay`, `bench`), so a worker never loads it, and the
integration tests drive workers through the same `worker.WorkerProcess` the benchmark uses.
`engine.Engine` runs both domain stages in one process, for the tests and the bench.
"""
