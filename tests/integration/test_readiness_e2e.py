"""Readiness tells the truth: a worker whose broker is gone is not ready.

Before: with the broker gone for 20 s, /readyz stayed 200 and kefu_worker_ready 1 throughout.
A broker of its own (the session's is shared by every test), stopped under a ready worker.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from streams.tooling.broker import EmbeddedBroker
from tests.integration.harness import Worker

pytestmark = pytest.mark.integration


def test_not_ready_while_the_broker_is_gone(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log").start()
    worker = Worker(broker, app_id="ready", workdir=tmp_path)
    try:
        worker.start()
        assert worker.metrics()[("kefu_worker_ready", frozenset())] == 1
        broker.stop()
        gone = time.monotonic()
        worker.wait_until(lambda: worker.get("/readyz")[0] == 503, 30, "/readyz to say 503")
        assert time.monotonic() - gone < 25
        status, body = worker.get("/readyz")
        assert status == 503 and orjson.loads(body)["broker"] == "unreachable"
        assert worker.metrics()[("kefu_worker_ready", frozenset())] == 0
        assert worker.get("/healthz")[0] == 200  # alive: restarting it would not help
    finally:
        worker.kill()
        broker.stop()
