"""The Faust wiring: topics, tables, two batch handlers, a refresh timer and the HTTP pages.

Thin on purpose: every decision lives in `Runtime` and the domain. Faust provides consumer
groups, partition assignment, offset commits and changelog recovery of the two tables; the
batch hook (`fastpath`) hands each fetch round of the worker's topics to one handler call.

Topics (all with the chat topic's partition count, so one worker owns partition *p* of each):
  kefu.chat + <app>-chat-rekey  →  stage 1, `on_input_batch` (state: table `conversations`)
  <app>-facts (per partition)   →  stage 2, `on_facts_batch` (state: table `aggregates`)
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Sequence
from typing import Any

import faust
from faust.types import TP, Message

from streams import failpoints
from streams.config import Config, Settings
from streams.export import web
from streams.pipeline import codecs
from streams.pipeline.fastpath import BatchApp, BatchSink
from streams.pipeline.runtime import HEARTBEAT_INTERVAL_S, TICK_S, Record, Runtime

log = logging.getLogger(__name__)
PRODUCER_BATCH_BYTES = 512 * 1024  # record batches the sink fills (Kafka's default limit is 1 MB)


def _records(messages: Sequence[Message]) -> list[Record]:
    return [
        Record(m.topic, m.partition, m.offset, m.key, m.value,
               dict(m.headers) if m.headers else None)
        for m in messages
    ]


class JsonTable(faust.Table[str, Any]):
    """A table with str keys and orjson values in its changelog.

    Faust picks table codecs from key_type/value_type (a schema is ignored), so choose here.
    """

    def _serializer_from_type(self, typ: Any) -> str:
        return "kefu-str" if typ is str else "kefu-json"

    def apply_changelog_messages(self, messages: Sequence[Message]) -> None:
        """Recovery in bulk (see `fastpath`): raw records straight into the memory store.

        Values stay undecoded bytes: most are superseded by a later record of the same key,
        and the runtime decodes what is left when it first reads a key.
        """
        store = self.data
        data = store.data
        key_partition = store._key_partition  # type: ignore[attr-defined]
        for m in messages:
            key = m.key.decode() if isinstance(m.key, bytes) else m.key
            if m.value is None:
                data.pop(key, None)
                key_partition.pop(key, None)
            else:
                data[key] = m.value
                key_partition[key] = m.partition


def _table(app: faust.App, name: str, partitions: int) -> JsonTable:
    table = JsonTable(app, name=name, partitions=partitions, key_type=str, beacon=app.tables.beacon)
    app.tables.add(table)
    return table


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


def build_app(
    settings: Settings,
    config: Config,
    partitions: int,
    input_partitions: dict[str, int] | None = None,
) -> tuple[faust.App, Runtime]:
    """Create the Faust app for a worker.

    `partitions` is the chat topic's partition count; orders, ratings and agents topics with
    the same count are consumed next to chat (co-partitioned), others are forwarded through the
    rekey topic first (`input_partitions` holds the actual counts).
    """
    codecs.register()
    rt = Runtime(settings, config, partitions)
    names = rt.names
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
    sink = BatchSink(app)

    counts = input_partitions or {}
    direct = [names.chat, names.rekey]
    forwarded: list[str] = []
    for topic in (names.orders, names.ratings, names.agents):
        (direct if counts.get(topic, partitions) == partitions else forwarded).append(topic)
    chat = app.topic(*direct, key_serializer="raw", value_serializer="raw")
    facts = app.topic(names.facts, key_serializer="raw", value_serializer="raw")
    conversations = _table(app, "conversations", partitions)
    aggregates = _table(app, "aggregates", partitions)
    rt.use_table(conversations.data)

    async def on_input(messages: Sequence[Message]) -> None:
        await rt.on_input_batch(_records(messages), sink)

    async def on_forward(messages: Sequence[Message]) -> None:
        await rt.on_forward_batch(_records(messages), sink)

    async def on_facts(messages: Sequence[Message]) -> None:
        await rt.on_facts_batch(_records(messages), sink)

    # Stage 1 before stage 2 within a fetch round: facts produced now are read back in a later
    # round, so the order only keeps the hop short.
    app.route_batches([chat], on_input)
    if forwarded:
        log.warning("%s partitioned unlike %s: forwarding through %s", forwarded, names.chat,
                    names.rekey)
        app.route_batches(
            [app.topic(*forwarded, key_serializer="raw", value_serializer="raw")], on_forward
        )
    app.route_batches([facts], on_facts)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: set[TP], **_: Any) -> None:
        rt.on_assigned({tp.partition for tp in assigned if tp.topic == names.chat})

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
        rt.paused = True  # no expiry/sweep writes until the new assignment is recovered

    @aggregates.on_recover
    async def on_recover() -> None:
        # Runs inside Faust's end of recovery: changelog partitions paused, stream partitions
        # not resumed yet (the window where a fetch in flight once lost records).
        await failpoints.ahit("recovery.completed")
        bulk = getattr(app.consumer, "restored_in_bulk", 0)
        if bulk:
            log.info("changelog recovery: %d records restored in bulk", bulk)
            app.consumer.restored_in_bulk = 0  # type: ignore[attr-defined]
        n = rt.load_aggregates(aggregates.data)
        await rt.resend_outboxes(sink)
        rt.paused = False
        rt.health.ready = True
        log.info("recovered %d aggregate records for partitions %s", n, sorted(rt.owned))

    beat = [0.0]
    pending: set[asyncio.Future[None]] = set()

    @app.timer(TICK_S)  # type: ignore[untyped-decorator]
    async def refresh() -> None:
        consumer = app.consumer

        positions = getattr(consumer, "positions", None)

        def backlog_of(topic: str) -> dict[int, int]:
            out: dict[int, int] = {}
            for part in rt.owned:
                tp = TP(topic, part)
                try:
                    high = consumer.highwater(tp)
                except Exception:  # not fetched yet
                    continue
                last = rt.last_offsets.get((topic, part))
                if last is not None:
                    read = last + 1
                else:  # nothing handled since the start: where reading starts (committed)
                    read = positions.next.get(tp, 0) if positions is not None else 0
                if high is not None:
                    out[part] = max(0, int(high) - read)
            return out

        rt.health.backlog = backlog_of(names.chat)
        rt.health.facts_backlog = backlog_of(names.facts)
        now = time.monotonic()
        if now - beat[0] >= HEARTBEAT_INTERVAL_S:
            beat[0] = now
            pending.add(asyncio.ensure_future(rt.heartbeat(sink)))  # never blocks the refresh
            pending.difference_update([t for t in pending if t.done()])
        await rt.tick(sink)

    web.register(app, rt, sink)

    del on_assigned, on_revoked, on_recover, refresh
    return app, rt
