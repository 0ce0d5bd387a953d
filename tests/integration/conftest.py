"""Shared real parts: one embedded broker per test session; each test uses its own topics."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.tooling.broker import EmbeddedBroker

_ids = itertools.count(1)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    b = EmbeddedBroker(log_path=log).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def app_id(request: pytest.FixtureRequest) -> str:
    """A fresh consumer group and topic prefix per test: tests share the broker, not state."""
    return f"t{next(_ids)}-{request.node.name[:20].replace('[', '-').replace(']', '')}"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
