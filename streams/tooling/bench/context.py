"""What every bench phase shares: options, results, the broker, the workers, the input data.

The phases are functions of a `BenchContext` (one module each under `phases/`); the runner
owns the order. Attributes a phase fills in for later ones (`data`, `input`, `total`, `kept`)
are declared here so each phase's needs are visible in one place.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streams.tooling.bench.common import rss_mib
from streams.tooling.bench.data import Dataset, ensure
from streams.tooling.bench.options import Options
from streams.tooling.broker import EmbeddedBroker
from streams.tooling.worker import WorkerProcess

__all__ = ["BenchContext"]


class BenchContext:
    """One bench run's shared state; `close()` stops every worker and the broker."""

    def __init__(self, opts: Options) -> None:
        self.o = opts
        self.tag = f"b{int(time.time()) % 1_000_000:06d}"
        self.r: dict[str, Any] = {"command": opts.command(), "notes": []}
        self.workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="kefu-bench-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker: EmbeddedBroker | Any = None
        self.workers: list[WorkerProcess] = []
        self.prestarted: dict[str, WorkerProcess] = {}
        # Stable this long = settled: longer than the SLO counters may lag the rest (a
        # progress report per tick, `streams.pipeline.progress`, heard at the next tick).
        self.settle_s = 1.5 if opts.quick else 2.0
        # Filled in as the run goes: the worker config, then by the data phase.
        self.config: Path = self.workdir / "kefu.toml"
        self.sim: Any = None
        self.data: Dataset = Dataset([], [])
        self.input: dict[str, str] = {}
        self.total = 0
        self.kept: WorkerProcess | None = None  # the last throughput worker, for the scrape
        # /metrics of each finished throughput run once settled (the scale phase compares)
        self.worker_bodies: list[bytes] = []

    def topics(self, app: str, shared_input: str | None = None) -> dict[str, str]:
        base = shared_input or app
        return {"chat": f"{base}.chat", "orders": f"{base}.orders", "ratings": f"{base}.ratings",
                "deadletter": f"{app}.deadletter"}

    def worker(self, app: str, topics: Mapping[str, str], clock: str, config: Path,
               name: str, extra_env: Mapping[str, str] | None = None) -> WorkerProcess:
        """An unstarted worker on the bench's broker; `close()` will stop it."""
        w = WorkerProcess(self.broker.url, self.workdir, app_id=app, topics=topics, clock=clock,
                          config=config, partitions=self.o.partitions, name=name,
                          extra_env=extra_env)
        self.workers.append(w)
        return w

    def start_worker(self, suffix: str, clock: str, name: str) -> WorkerProcess:
        """A worker on its own app id and topics (created first, with --partitions)."""
        app = f"bench-{self.tag}-{suffix}"
        topics = self.topics(app)
        ensure(self.broker.bootstrap, {t: self.o.partitions for t in topics.values()})
        return self.worker(app, topics, clock, self.config, name).start()

    def input_topics(self, t: Mapping[str, str]) -> list[str]:
        return [t["chat"], t["orders"], t["ratings"]] if self.o.with_orders else [t["chat"]]

    def kinds(self) -> tuple[str, ...]:
        return ("chat", "orders", "ratings") if self.o.with_orders else ("chat",)

    def settled_rss(self, w: WorkerProcess) -> float:
        """RSS once the refresh timer has run a few times (snapshots rebuilt after a step)."""
        time.sleep(0.6 if self.o.quick else 1.5)
        return rss_mib(w.pid)

    def close(self) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.stop(10)
        if self.broker is not None:
            self.broker.stop()
