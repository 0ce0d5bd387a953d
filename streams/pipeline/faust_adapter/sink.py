"""`BatchSink`: the runtime's `Sink` over Faust's producer, a record batch per partition.

Why: Faust's `send` makes a future, a `FutureMessage` and a buffer entry per record; a batch of
facts or changelog writes is thousands of records. `send_many` appends them to aiokafka
`BatchBuilder`s (one per partition, from the private `Producer._ensure_producer()`), with one
future per batch instead of one per record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

import faust

from streams.ports import Headers, Out


class BatchSink:
    """`Sink` over Faust's producer; `send_many` fills one record batch per partition."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        headers: Headers | None = None,
    ) -> Awaitable[Any]:
        fut: Awaitable[Any] = await self.app.producer.send(
            topic, key, value, partition, None, headers
        )
        return fut

    async def send_many(
        self, topic: str, records: Sequence[Out], *, seal: bool = False
    ) -> Awaitable[Any]:
        """Send records (in order within each partition); one awaitable for all of them.

        `seal` (changelogs): end each partition's write with a one-record batch repeating its
        last record. Some brokers (the embedded Tansu) answer ListOffsets(latest) with the
        *last batch's base offset*, and Faust's recovery stops there — it would silently skip
        the whole last batch of state. Sealed, it skips only the repeat.
        """
        if not records:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        # Handing the batches to the producer is shielded: a cancelled caller (shutdown) must
        # not leave half a write — data without its seal — for a recovery to read.
        return await asyncio.shield(self._enqueue(topic, records, seal))

    async def _enqueue(self, topic: str, records: Sequence[Out], seal: bool) -> Awaitable[Any]:
        producer = self.app.producer._ensure_producer()  # type: ignore[attr-defined]
        by_partition: dict[int, list[Out]] = {}
        for rec in records:
            by_partition.setdefault(rec[2], []).append(rec)
        futures: list[Awaitable[Any]] = []
        for partition, recs in by_partition.items():
            batch = producer.create_batch()
            n = 0
            for key, value, _, headers in recs:
                if batch.append(timestamp=None, key=key, value=value, headers=headers or []) \
                        is not None:
                    n += 1
                    continue
                if n:  # full: send it and start the next one
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    n = 0
                    if batch.append(timestamp=None, key=key, value=value,
                                    headers=headers or []) is not None:
                        n = 1
                        continue
                # larger than a batch on its own: the ordinary path (still in order: queued
                # behind the batches already handed to the accumulator)
                futures.append(await self.send(topic, key, value, partition, headers))
            if n:
                futures.append(await producer.send_batch(batch, topic, partition=partition))
            if seal:
                key, value, _, headers = recs[-1]
                batch = producer.create_batch()
                batch.append(timestamp=None, key=key, value=value, headers=headers or [])
                futures.append(await producer.send_batch(batch, topic, partition=partition))
        return asyncio.gather(*futures)
