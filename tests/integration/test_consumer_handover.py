"""The batch consumer against aiokafka's real fetcher: no fetched record is lost at the end of
a recovery, whatever Faust's pause state and whether or not an offset was ever committed.

Faust's consumer thread is replaced by a thin one that calls a real `AIOKafkaConsumer`'s
fetcher on the real broker (the same call Faust's thread makes), and that can hold a fetch in
flight. No timing luck: the test pauses the changelog partition exactly while the fetch is in
flight — what the end of a recovery does — then seeks as Faust does and reads on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from streams.config import Settings
from streams.pipeline.faust_adapter import BatchApp, BatchConsumer
from streams.tooling.broker import EmbeddedBroker
from streams.topics import ensure_topics
from tests.integration.harness import produce

pytestmark = pytest.mark.integration


class RealFetcherThread:
    """What `BatchConsumer` asks of Faust's consumer thread, done by a real aiokafka consumer."""

    def __init__(self, aio: AIOKafkaConsumer, assigned: set[TP]) -> None:
        self.aio = aio
        self.assigned = assigned
        self.hold = False  # hold the next fetch in flight until `release`
        self.in_flight = asyncio.Event()
        self.release = asyncio.Event()

    async def getmany(self, partitions: Any, timeout: float) -> Any:
        if self.hold:
            self.hold = False
            self.in_flight.set()
            await self.release.wait()  # the caller's partition set is read only now
        return await self.aio._fetcher.fetched_records(partitions, timeout=0, max_records=500)

    async def seek_to_committed(self) -> Mapping[TP, int | None]:
        return dict.fromkeys(self.assigned)  # never committed (killed before its first commit)

    async def earliest_offsets(self, *tps: TP) -> Mapping[TP, int]:
        found = await self.aio.beginning_offsets([TopicPartition(*tp) for tp in tps])
        return {TP(tp.topic, tp.partition): offset for tp, offset in found.items()}

    async def seek_wait(self, targets: Mapping[TP, int]) -> None:
        for tp, offset in targets.items():
            self.aio.seek(TopicPartition(*tp), offset)

    def assignment(self) -> set[TP]:
        return set(self.assigned)

    def highwater(self, tp: TP) -> int:
        return int(self.aio.highwater(TopicPartition(*tp)) or 0)


async def _buffered(aio: AIOKafkaConsumer, tps: Iterable[TP], timeout: float = 20) -> None:
    """Wait until aiokafka's fetcher holds records of every partition (prefetched, unread)."""
    deadline = asyncio.get_running_loop().time() + timeout
    want = {TopicPartition(*tp) for tp in tps}
    while not want <= set(aio._fetcher._records):
        assert asyncio.get_running_loop().time() < deadline, "records never prefetched"
        await asyncio.sleep(0.05)


async def _take(consumer: BatchConsumer) -> list[tuple[str, int]]:
    return [(tp.topic, message.offset) async for tp, message in consumer.getmany(timeout=0)]


async def test_facts_prefetched_during_recovery_reach_the_handler_from_offset_0(
    broker: EmbeddedBroker, app_id: str
) -> None:
    facts, changelog = f"{app_id}-facts", f"{app_id}-aggregates-changelog"
    ensure_topics(broker.bootstrap, {facts: 1, changelog: 1}, settings=Settings())
    produce(broker, facts, [(None, b'{"f": %d}' % i) for i in range(5)])
    produce(broker, changelog, [(b"k", b"{}")])
    facts_tp, changelog_tp = TP(facts, 0), TP(changelog, 0)

    aio = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await aio.start()
    try:
        aio.assign([TopicPartition(*facts_tp), TopicPartition(*changelog_tp)])
        await aio.seek_to_beginning()
        app = BatchApp(app_id, broker=broker.url)

        async def handler(messages: Any) -> None: ...

        app.route_batches([app.topic(facts)], handler)
        consumer = app.consumer
        assert isinstance(consumer, BatchConsumer)
        consumer._routes()
        thread = RealFetcherThread(aio, {facts_tp, changelog_tp})
        consumer._thread = thread
        # Recovery under way: only the changelog partition is active; facts are paused in
        # Faust, but aiokafka prefetches them anyway.
        consumer._active_partitions = {changelog_tp}
        consumer._paused_partitions = {facts_tp}
        await _buffered(aio, [facts_tp, changelog_tp])

        # The recovery ends while a fetch is in flight: its changelog partition is paused.
        thread.hold = True
        fetch = asyncio.ensure_future(_take(consumer))
        await thread.in_flight.wait()
        consumer.pause_partitions({changelog_tp})
        thread.release.set()
        during = await fetch
        assert all(topic != facts for topic, _ in during), "facts handed over while paused"

        # Faust resumes the stream partitions and seeks them to their committed offsets.
        consumer.resume_partitions({facts_tp})
        await consumer.perform_seek()
        if consumer.positions.resync_due(flow_active=True):
            await consumer._resync_dropped()
        offsets: list[int] = []
        deadline = asyncio.get_running_loop().time() + 5
        while len(offsets) < 5 and asyncio.get_running_loop().time() < deadline:
            offsets += [offset for topic, offset in await _take(consumer) if topic == facts]
            await asyncio.sleep(0.05)
        assert offsets[:1] == [0], f"first facts offset handed over: {offsets[:1]} (want 0)"
        assert offsets == list(range(5))
    finally:
        await aio.stop()
