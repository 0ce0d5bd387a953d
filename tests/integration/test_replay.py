"""`replay` and live `simulate` put exactly the promised records on the embedded broker."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.config import Settings
from streams.tooling.broker import EmbeddedBroker
from streams.tooling.simulate import Simulator, run_replay, run_simulate, write_jsonl
from streams.topics import topic_partitions

pytestmark = pytest.mark.integration

Record = tuple[str, bytes | None, bytes]


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


def _settings(broker: EmbeddedBroker, prefix: str) -> Settings:
    return Settings(
        brokers=(broker.url,),
        partitions=3,
        topic_chat=f"{prefix}.chat",
        topic_orders=f"{prefix}.orders",
        topic_ratings=f"{prefix}.ratings",
        topic_deadletter=f"{prefix}.deadletter",
    )


def _consume(broker: EmbeddedBroker, topics: list[str], expected: int) -> list[Record]:
    """Everything on `topics`, read back without a consumer group (no join delays)."""
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )
    parts = [
        TopicPartition(t, p)
        for t in topics
        for p in range(topic_partitions(broker.bootstrap, t) or 0)
    ]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    records: list[Record] = []
    deadline = time.monotonic() + 60
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend((r.topic, r.key, r.value) for r in batch)
    finally:
        consumer.close()
    return records


def _per_key(records: list[Record]) -> dict[tuple[str, bytes | None], list[bytes]]:
    out: dict[tuple[str, bytes | None], list[bytes]] = defaultdict(list)
    for topic, key, value in records:
        out[(topic, key)].append(value)
    return out


def test_replay_file_round_trip(broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = _settings(broker, "replay")
    messages = list(Simulator(seed=4, buyers_per_minute=20).messages(300))
    path = tmp_path / "events.jsonl"
    write_jsonl(messages, path)
    bare = {"order_id": "o1", "shop_id": "s", "buyer_id": "b", "status": "paid", "amount": "9.90",
            "ts": 1_731_286_800_000}  # fmt: skip
    with path.open("ab") as fh:
        fh.write(orjson.dumps(bare) + b"\n\n{broken line\n")

    sent = run_replay(settings, path, progress=False)
    assert sent == len(messages) + 2

    topic_of = {"chat": settings.topic_chat, "orders": settings.topic_orders,
                "ratings": settings.topic_ratings}  # fmt: skip
    expected: list[Record] = [(topic_of[m.topic], m.key, m.value) for m in messages]
    expected += [
        (settings.topic_orders, b"s:b", orjson.dumps(bare)),
        (settings.topic_chat, None, b"{broken line"),
    ]
    got = _consume(broker, list(topic_of.values()), len(expected))
    assert Counter(got) == Counter(expected)
    # One key, one partition: per-conversation order survives the trip.
    assert _per_key(got) == _per_key(expected)
    assert topic_partitions(broker.bootstrap, settings.topic_chat) == 3


def test_replay_paced_rate(broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = _settings(broker, "paced")
    path = tmp_path / "few.jsonl"
    write_jsonl(list(Simulator(seed=1).messages(60))[:40], path)
    t0 = time.monotonic()
    assert run_replay(settings, path, rate=100.0, progress=False) == 40
    assert time.monotonic() - t0 >= 0.35


def test_simulate_live(broker: EmbeddedBroker) -> None:
    settings = _settings(broker, "live")
    before = time.time() * 1000
    t0 = time.monotonic()
    sent = run_simulate(
        settings, rate=60.0, seed=3, duration=3.0, speedup=4.0, warmup=60.0, progress=False
    )
    assert 2.5 <= time.monotonic() - t0 < 30
    topics = [settings.topic_chat, settings.topic_orders, settings.topic_ratings]
    got = _consume(broker, topics, sent)
    assert len(got) == sent
    chat = [json for t, _, v in got if t == settings.topic_chat and (json := _json(v)) is not None]
    stamps = [c["ts"] for c in chat if isinstance(c.get("ts"), int)]
    # The last simulated minute comes at once, then event time follows the wall clock (x4).
    assert before - 61_000 <= min(stamps) < before - 30_000
    assert before < max(stamps) <= before + 3_000 * 4 + 5_000
    live = sum(1 for s in stamps if s >= before)
    assert 60 * 3 * 0.4 < live < 60 * 3 * 2.5  # ~rate events/s over the wall-clock run


def _json(value: bytes) -> object | None:
    """The simulator's deliberate bad input includes truncated JSON: skip what doesn't parse."""
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
