"""The composition root: one worker = the runtime + the Faust adapter + the HTTP pages.

Thin on purpose: every decision lives in `Runtime` and the domain, every touch of Faust in
`pipeline.faust_adapter`. Here they are wired together, and the pages (`export`) mounted on the
web server — from outside `pipeline`, so that neither the pipeline nor the exporters import
each other. Faust provides consumer groups, partition assignment, offset commits and changelog
recovery of the two tables; the adapter hands each fetch round of the worker's topics to one
handler call.

Topics (all with the chat topic's partition count, so one worker owns partition *p* of each):
  kefu.chat + <app>-chat-rekey  →  stage 1, `on_input_batch` (state: table `conversations`)
  <app>-facts (per partition)   →  stage 2, `on_facts_batch` (state: table `aggregates`)
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from streams import failpoints, gc_policy, heap
from streams.config import Config, Settings
from streams.export import web
from streams.pipeline.faust_adapter import (
    BatchApp,
    BatchSink,
    add_table,
    backlog,
    build_batch_app,
    route_records,
)
from streams.pipeline.runtime import HEARTBEAT_INTERVAL_S, TICK_S, Runtime

log = logging.getLogger(__name__)


def build_app(
    settings: Settings,
    config: Config,
    partitions: int,
    input_partitions: dict[str, int] | None = None,
) -> tuple[BatchApp, Runtime]:
    """Create the Faust app for a worker.

    `partitions` is the chat topic's partition count; orders, ratings and agents topics with
    the same count are consumed next to chat (co-partitioned), others are forwarded through the
    rekey topic first (`input_partitions` holds the actual counts).
    """
    rt = Runtime(settings, config, partitions)
    names = rt.names
    app = build_batch_app(settings, partitions)
    sink = BatchSink(app)

    counts = input_partitions or {}
    direct = [names.chat, names.rekey]
    forwarded: list[str] = []
    for topic in (names.orders, names.ratings, names.agents):
        (direct if counts.get(topic, partitions) == partitions else forwarded).append(topic)
    conversations = add_table(app, "conversations", partitions)
    aggregates = add_table(app, "aggregates", partitions)
    rt.use_table(conversations.data)

    # Stage 1 before stage 2 within a fetch round: facts produced now are read back in a later
    # round, so the order only keeps the hop short.
    route_records(app, direct, lambda records: rt.on_input_batch(records, sink))
    if forwarded:
        log.warning("%s partitioned unlike %s: forwarding through %s", forwarded, names.chat,
                    names.rekey)
        route_records(app, forwarded, lambda records: rt.on_forward_batch(records, sink))
    route_records(app, [names.facts], lambda records: rt.on_facts_batch(records, sink))

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        rt.on_assigned({tp.partition for tp in assigned if tp.topic == names.chat})

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        rt.paused = True  # no expiry/sweep writes until the new assignment is recovered

    recovered_at = [0.0]

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
        recovered_at[0] = time.time()  # the restore's buffers are freed: trim once settled
        if settings.gc_threshold:
            gc_policy.freeze_state()  # the recovered state is long-lived: stop scanning it
        await rt.resend_outboxes(sink)
        rt.paused = False
        rt.health.ready = True
        log.info("recovered %d aggregate records for partitions %s", n, sorted(rt.owned))

    beat = [0.0]
    pending: set[asyncio.Future[Any]] = set()
    trimmer = heap.Trimmer(settings.heap_trim_s, heap.libc_trim(), time.time())

    @app.timer(TICK_S)  # type: ignore[untyped-decorator]
    async def refresh() -> None:
        rt.health.backlog = backlog(app, names.chat, rt.owned, rt.last_offsets)
        rt.health.facts_backlog = backlog(app, names.facts, rt.owned, rt.last_offsets)
        rt.health.rekey_backlog = backlog(app, names.rekey, rt.owned, rt.last_offsets)
        now = time.monotonic()
        if now - beat[0] >= HEARTBEAT_INTERVAL_S:
            beat[0] = now
            pending.add(asyncio.ensure_future(rt.heartbeat(sink)))  # never blocks the refresh
            pending.difference_update([t for t in pending if t.done()])
        wall = time.time()
        settled = not rt.snapshot_queue and not any(rt.health.facts_backlog.values())
        worked_at = max(rt.health.last_batch_at, recovered_at[0])
        if trimmer.due(wall, worked_at, settled):  # freed heap back (heap.py)
            trim = trimmer.started(wall)
            pending.add(asyncio.get_running_loop().run_in_executor(None, trim))
        await rt.tick(sink)

    web.register(app, rt, sink)

    del on_assigned, on_revoked, on_recover, refresh
    return app, rt
