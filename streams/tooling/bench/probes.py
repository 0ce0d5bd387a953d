"""Plain aiokafka clients: the producer, the bare-consumer baseline and broker probes.

The bare consumer is the yardstick every throughput figure is divided by; the probes measure
the broker itself (one hop's latency, whether ListOffsets tells the truth) so the report can
say what share of the worker's figures is the broker's.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from streams.tooling.bench.common import log


async def _produce(bootstrap: str, records: Iterable[tuple[str, bytes | None, bytes]]) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1,
                                max_batch_size=256 * 1024, max_request_size=4 * 1024 * 1024)
    await producer.start()
    n = 0
    try:
        pending: list[Any] = []
        for topic, key, value in records:
            pending.append(await producer.send(topic, value, key=key))
            n += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await producer.flush()
        if pending:
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n


def produce(bootstrap: str, records: Iterable[tuple[str, bytes | None, bytes]]) -> int:
    return asyncio.run(_produce(bootstrap, records))


async def _bare_consume(bootstrap: str, topics: Mapping[str, int], total: int,
                        timeout: float) -> tuple[float, int]:
    """(seconds from the first fetch to the last record decoded, records that were not JSON)."""
    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        seen = errors = 0
        deadline = time.monotonic() + timeout
        started = time.monotonic()  # the first fetch is part of the time
        while seen < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"bare consumer: {seen}/{total} records in {timeout:g}s")
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for recs in batches.values():
                for rec in recs:
                    try:
                        loads(rec.value)
                    except decode_error:
                        errors += 1
                    seen += 1
        return time.monotonic() - started, errors
    finally:
        await consumer.stop()


def bare_consume(bootstrap: str, topics: Mapping[str, int], total: int) -> float:
    span, _ = asyncio.run(_bare_consume(bootstrap, topics, total, 120.0))
    return total / span if span > 0 else math.nan


async def _count_records(bootstrap: str, topics: Sequence[str],
                         timeout: float) -> dict[str, int]:
    """Records in each topic, by reading them (Tansu's ListOffsets(latest) answers the last
    batch's base offset, so end offsets undercount)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=100,
                                max_partition_fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    try:
        parts: list[Any] = []
        for topic in topics:
            found = consumer.partitions_for_topic(topic)
            if not found:
                await consumer._client.force_metadata_update()
                found = consumer.partitions_for_topic(topic) or set()
            parts += [TopicPartition(topic, p) for p in found]
        out = dict.fromkeys(topics, 0)
        if not parts:
            return out
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout
        empty = 0
        while empty < 3 and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300, max_records=50_000)
            empty = 0 if batches else empty + 1
            for tp, recs in batches.items():
                out[tp.topic] += len(recs)
        return out
    finally:
        await consumer.stop()


def count_records(bootstrap: str, topics: Sequence[str], timeout: float = 60) -> dict[str, int]:
    try:
        return asyncio.run(_count_records(bootstrap, topics, timeout))
    except Exception as exc:  # informative only
        log(f"could not count records: {exc!r}")
        return {}


async def hop_latency(bootstrap: str, topic: str, wait_ms: int, rate: float,
                       seconds: float) -> list[float]:
    """Produce → consumed delay (s) of one Kafka hop for a consumer with `fetch_max_wait_ms`."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                fetch_max_wait_ms=wait_ms, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await consumer.start()
    await producer.start()
    sent: dict[bytes, float] = {}
    delays: list[float] = []
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)

        async def consume(until: float) -> None:
            while time.monotonic() < until:
                batches = await consumer.getmany(timeout_ms=200)
                now = time.monotonic()
                for recs in batches.values():
                    for rec in recs:
                        t = sent.pop(rec.value, None)
                        if t is not None:
                            delays.append(now - t)

        end = time.monotonic() + seconds
        task = asyncio.ensure_future(consume(end + 2.0))
        await asyncio.sleep(0.5)
        i = 0
        while time.monotonic() < end:
            value = f"{wait_ms}-{i}".encode()
            sent[value] = time.monotonic()
            await producer.send_and_wait(topic, value, partition=0)
            i += 1
            await asyncio.sleep(1.0 / rate)
        await task
    finally:
        await producer.stop()
        await consumer.stop()
    return delays


async def list_offsets_check(bootstrap: str, topic: str, n: int) -> int:
    """Produce `n` records in several batches to partition 0; return ListOffsets(latest)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_batch_size=16 * 1024)
    await producer.start()
    try:
        futs = [await producer.send(topic, b"x" * 200, partition=0) for _ in range(n)]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        ends = await consumer.end_offsets([tp])
        return int(ends[tp])
    finally:
        await consumer.stop()
