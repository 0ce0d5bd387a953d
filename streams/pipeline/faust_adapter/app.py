"""The Faust app of a worker: its settings, its tables, and batch routes that hand over `Record`s.

Why here: everything that configures Faust or reaches into it lives in this package, so the
composition root (`streams.worker`) wires the runtime to Faust through these few functions and
knows no Faust type. Private members used here: `App._new_transport` (installs the batch
transport) and, through `JsonTable`, `Table._serializer_from_type`.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from streams.config import Settings
from streams.pipeline.faust_adapter import codecs
from streams.pipeline.faust_adapter.consumer import BatchConsumer, BatchHandler
from streams.pipeline.faust_adapter.restore import JsonTable
from streams.ports import Record

PRODUCER_BATCH_BYTES = 512 * 1024  # record batches the sink fills (Kafka's default limit is 1 MB)
RecordHandler = Callable[[list[Record]], Awaitable[None]]


class BatchTransport(faust_aiokafka.Transport):
    Consumer = BatchConsumer


class BatchApp(faust.App):
    """A Faust app whose consumer delivers the topics of `batch_routes` in batches."""

    batch_routes: list[tuple[list[str], BatchHandler]]
    fetch_wait_ms: int | None = None  # None: Faust's 1500 ms

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)

    def route_batches(self, topics: Sequence[faust.TopicT], handler: BatchHandler) -> None:
        """Deliver these topics' messages to `handler`, a fetch round at a time.

        The topics are registered with the conductor so Faust subscribes to them, assigns
        their partitions (co-partitioned by partition count) and commits their acked offsets.
        """
        if not hasattr(self, "batch_routes"):
            self.batch_routes = []
        names: list[str] = []
        for topic in topics:
            self.topics.add(topic)
            names.extend(topic.topics)
        self.batch_routes.append((names, handler))


def broker_credentials(settings: Settings) -> Any:
    """TLS/SASL for Faust from the KEFU_* settings (None for plaintext)."""
    proto = settings.security_protocol.upper()
    context = None
    if proto in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.ssl_cafile)
        if settings.ssl_certfile:
            context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
    if proto.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password,
            mechanism=settings.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    return context


def build_batch_app(settings: Settings, partitions: int) -> BatchApp:
    """The worker's Faust app: memory tables, only the worker's own web pages, batch delivery.

    `partitions` is the chat topic's partition count (every internal topic gets it).
    """
    codecs.register()
    app = BatchApp(
        settings.app_id,
        broker=list(settings.brokers),
        broker_credentials=broker_credentials(settings),
        store="memory://",
        datadir=str(settings.data_dir),
        web_enabled=True,
        # Faust's own views answered whether a buyer exists (/table) and listed internal
        # topics (/router): only the worker's pages are served.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=partitions,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_s,
        broker_rebalance_timeout=max(settings.session_timeout_s * 2, 10.0),
        table_standby_replicas=settings.standby_replicas,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=1,
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        broker_max_poll_records=settings.batch_max,
        stream_buffer_maxsize=max(4096, settings.batch_max * 4),
    )
    app.fetch_wait_ms = int(settings.fetch_wait_s * 1000)
    return app


def add_table(app: faust.App, name: str, partitions: int) -> JsonTable:
    """A changelog-backed table with str keys and orjson values (see `JsonTable`)."""
    table = JsonTable(app, name=name, partitions=partitions, key_type=str, beacon=app.tables.beacon)
    app.tables.add(table)
    return table


def to_records(messages: Sequence[Message]) -> list[Record]:
    """Faust's messages as the runtime's `Record`s."""
    return [
        Record(m.topic, m.partition, m.offset, m.key, m.value,
               dict(m.headers) if m.headers else None)
        for m in messages
    ]


def route_records(app: BatchApp, topics: Sequence[str], handler: RecordHandler) -> None:
    """Deliver these (raw bytes) topics to `handler` as `Record`s, a fetch round at a time.

    Routes run in the order they are added, within each fetch round.
    """

    async def on_batch(messages: Sequence[Message]) -> None:
        await handler(to_records(messages))

    app.route_batches(
        [app.topic(*topics, key_serializer="raw", value_serializer="raw")], on_batch
    )


def backlog(
    app: faust.App,
    topic: str,
    partitions: Iterable[int],
    last_offsets: Mapping[tuple[str, int], int],
) -> dict[int, int]:
    """Unread messages per owned partition of `topic`: the high-water mark minus the next read.

    The next read is after the last offset a handler took (`last_offsets`), or, with nothing
    handled since the start, where reading starts (the committed offset the consumer sought).
    Partitions not fetched yet are left out.
    """
    consumer = app.consumer
    positions = getattr(consumer, "positions", None)
    out: dict[int, int] = {}
    for part in partitions:
        tp = TP(topic, part)
        try:
            high = consumer.highwater(tp)
        except Exception:  # not fetched yet
            continue
        last = last_offsets.get((topic, part))
        if last is not None:
            read = last + 1
        else:  # nothing handled since the start: where reading starts (committed)
            read = positions.next.get(tp, 0) if positions is not None else 0
        if high is not None:
            out[part] = max(0, int(high) - read)
    return out
