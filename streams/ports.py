"""What passes between the runtime and the Faust adapter: `Record`s in, a `Sink` out.

Why a module of its own: the runtime handles plain records and sends bytes, so it can be
driven by tests and benchmarks without Faust; the adapter (`pipeline.faust_adapter`) turns
Faust's messages into `Record`s and implements `Sink` over Faust's producer. Both depend on
this module, not on each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Headers = list[tuple[str, bytes]]
Out = tuple[bytes | None, bytes | None, int, Headers | None]  # key, value, partition, headers


@dataclass(slots=True)
class Record:
    """One consumed Kafka message, as much of it as the handlers need."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] | None = None


class Sink(Protocol):
    """Sends messages; each returned awaitable resolves once the broker has them."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        headers: Headers | None = None,
    ) -> Awaitable[Any]: ...

    async def send_many(
        self, topic: str, records: Sequence[Out], *, seal: bool = False
    ) -> Awaitable[Any]:
        """Many records to one topic, in order within each partition; one awaitable.

        `seal`: the write is a table changelog; make sure recovery reads all of it.
        """
        ...
