"""The batch consumer: Faust's fetch loop, with whole fetch rounds to the batch handlers.

Why: Faust's stream machinery costs ~100-200 µs per message (a task per message in the fetch
loop, an `Event`, a queue, per-event acking) — a do-nothing agent tops out at a few thousand
events a second here, below what the KPI logic itself can do. This consumer keeps everything
Faust is good at (group membership, co-partitioned assignment, flow control during rebalances,
offset commits from acks, changelog recovery of tables) and replaces only the per-message
delivery for the worker's own topics:

`BatchConsumer._drain_messages` is Faust's fetch loop, but messages of topics with a batch
handler are tracked (`track_message`, so rebalances and shutdown wait for them), collected per
fetch round and given to their handler in one call; the handler's messages are acked when it
returns. Every other topic (the table changelogs during recovery) takes Faust's usual path, or
the bulk restore of `restore.BulkRestore`.

Soundness: a handler runs only while flow is active (not during a rebalance); a round that
arrives while flow is suspended, or while Faust seeks back to the committed offsets, is dropped
unacked and its partitions are sought back to where their handlers need them next
(`positions.Positions` keeps that account, and catches stale prefetch after a seek). A handler
that raises crashes the worker (restart + recovery) rather than silently skipping messages.
`KEFU_TRACE_ROUNDS=1` logs every round's offsets, seek and commit (for diagnosing hand-overs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import Message

from streams import failpoints
from streams.pipeline.faust_adapter.restore import BulkRestore
from streams.pipeline.positions import Positions

log = logging.getLogger(__name__)

ROUND_FINISH_S = 30.0  # how long a stopping worker waits for the round in hand
BatchHandler = Callable[[Sequence[Message]], Awaitable[None]]
TRACE = bool(os.environ.get("KEFU_TRACE_ROUNDS"))


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with a configurable fetch wait.

    Faust hard-codes `fetch_max_wait_ms=1500`; a broker that answers a fetch only when that
    wait runs out (the embedded one does) then adds up to 1.5 s per hop, and the worker has
    two hops (input → facts → aggregates). The app's `fetch_wait_ms` replaces it.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_wait_ms", None)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = int(wait_ms)  # read when the consumer starts
        return consumer

    async def _fetch_records(self, consumer: Any, active_partitions: Any,
                             timeout: float | None = None,
                             max_records: int | None = None) -> Any:
        failpoints.hit("fetch.in_thread")  # crash tests: keep a fetch in flight
        return await super()._fetch_records(consumer, active_partitions, timeout, max_records)


class BatchConsumer(BulkRestore, faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with per-fetch batch delivery for registered topics."""

    batch_order: dict[BatchHandler, int]
    positions: Positions[Any]  # where each partition's handler stands across seeks (see there)
    batch_topics: frozenset[str] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.positions = Positions()
        super().__init__(*args, **kwargs)

    async def perform_seek(self) -> None:
        positions = self.positions
        positions.seek_started()
        committed: dict[Any, int | None] | None = None
        try:
            await super().perform_seek()
            committed = dict(self._read_offset)  # Faust set these to the committed offsets
            await self._seek_uncommitted(committed)
        finally:
            positions.seek_ended(committed)
        if TRACE:
            log.info("TRACE seek targets %s", sorted((str(tp.topic)[-6:], tp.partition, o)
                                                  for tp, o in positions.targets.items()))

    async def _seek_uncommitted(self, committed: dict[Any, int | None]) -> None:
        """Seek batch partitions that have no committed offset to the start of their log.

        aiokafka seeks only to a committed offset > 0; a partition never committed (a worker
        killed before its first commit) keeps whatever position its fetcher had. Sought
        explicitly, every batch partition has a known offset its handler needs next, so a
        round dropped later is re-read from there, and stale prefetch is recognised.
        """
        batch = self.batch_topics
        tps = [tp for tp in self.assignment() if tp.topic in batch and not committed.get(tp)]
        if not tps:
            return
        earliest = await self.earliest_offsets(*tps)
        targets = {tp: offset for tp in tps if (offset := earliest.get(tp)) is not None}
        await self.seek_in_thread(targets)
        committed.update(targets)

    async def seek_in_thread(self, targets: dict[Any, int]) -> None:
        """Seek in the consumer thread, and wait until the positions are set.

        Faust's `seek` sets aiokafka's position from this (the main) thread, which resolves a
        future of the consumer thread's loop from outside it; asyncio futures are not
        thread-safe, and a fetcher waiting for a freshly assigned partition's position could
        miss the wake-up. Every partition is now sought right after each assignment, so the
        seek goes through the consumer thread as Faust's own `seek_wait` does.
        """
        if not targets:
            return
        await self._thread.seek_wait(targets)
        for tp, offset in targets.items():
            self._read_offset[tp] = offset or None  # as Faust's `seek` leaves it

    async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        if TRACE:
            log.info("TRACE commit %s", sorted((str(tp.topic)[-6:], tp.partition, o)
                                               for tp, o in offsets.items()))
        await failpoints.ahit("commit.before")
        done = await super()._commit_offsets(offsets, start_new_transaction)
        await failpoints.ahit("commit.done")
        return done

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _routes(self) -> dict[str, BatchHandler]:
        """Topic → handler from the app's `batch_routes`; handlers run in that order."""
        handlers: dict[str, BatchHandler] = {}
        self.batch_order = {}
        for i, (topics, handler) in enumerate(getattr(self.app, "batch_routes", ())):
            self.batch_order[handler] = i
            for topic in topics:
                handlers[topic] = handler
        self.batch_topics = frozenset(handlers)
        return handlers

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
        """Fetch for a frozen copy of the active partitions, never for an empty set.

        Faust hands the consumer thread its live active-partition set. The thread reads it
        while the fetch is in flight, and when the end of a recovery pauses the changelog
        partitions the set becomes empty under it — which aiokafka reads as "every
        partition": it hands over (and moves past) records of partitions Faust keeps paused.
        """
        asked = None if active_partitions is None else frozenset(active_partitions)
        if asked is not None and not asked:
            return {}
        return await self._thread.getmany(asked, timeout)  # type: ignore[arg-type]

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Message]]:
        """Faust's `getmany`, except that no fetched record of a batch topic goes unaccounted.

        Faust drops records it cannot hand over now (flow suspended, a new generation, the
        partition paused since the fetch began) and relies on a seek to committed offsets to
        read them again — which does nothing for a partition never committed, and loses them.
        Here every such record marks its partition for a re-read from where its handler needs
        it (`Positions.dropped`). Records of other topics (changelogs) are dropped as Faust
        drops them: the recovery seeks those partitions itself.
        """
        records, _ = await self._wait_next_records(timeout)
        if not records:
            return
        items = list(records.items())
        if self.should_stop:
            return  # stopping: the next owner starts from the committed offsets
        if not self.flow_active:
            self._forget(items)
            with contextlib.suppress(Exception):  # as Faust: back to the committed offsets
                await self.perform_seek()
            return
        app = self.app
        generation = app.consumer_generation_id
        to_message = self._to_message
        for i, (tp, batch) in enumerate(items):
            if not (tp in self._active_partitions or tp in self._buffered_partitions):
                self._forget([(tp, batch)])  # paused while the fetch was in flight
                continue
            app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            for j, record in enumerate(batch):
                if not self.flow_active or app.consumer_generation_id != generation:
                    self._forget([(tp, batch[j:]), *items[i + 1:]])
                    return
                yield tp, to_message(tp, record)

    def _forget(self, items: Sequence[tuple[Any, Sequence[Any]]]) -> None:
        """Records fetched but not handed over: their batch partitions are read again."""
        spans = {tp: (batch[0].offset, batch[-1].offset)
                 for tp, batch in items if batch and tp.topic in self.batch_topics}
        if spans:
            log.info("re-reading %d partitions: fetched records could not be handed over",
                     len(spans))
            self.positions.dropped(spans)

    async def _resync_dropped(self) -> None:
        """Seek partitions whose round was dropped back to the offset their handler needs."""
        for tp, offset in self.positions.take_resync(self.assignment()).items():
            log.info("re-reading %s from %d after a dropped round", tp, offset)
            await failpoints.ahit("resync.seek")
            await self.seek_in_thread({tp: offset})

    async def _run_round(self, groups: dict[BatchHandler, list[Message]],
                         spans: dict[Any, tuple[int, int]], epoch: int) -> None:
        app = self.app
        if TRACE:
            log.info("TRACE round active=%s seeking=%s epoch=%s %s", app.flow_control.is_active(),
                     self.positions.seeking, epoch == self.positions.epoch,
                     sorted(((tp.topic[-6:], tp.partition), a, b, b - a + 1)
                            for tp, (a, b) in spans.items()))
        positions = self.positions
        if not positions.can_run(epoch, app.flow_control.is_active()):
            # A rebalance began, or a seek back to the committed offsets ran while this round
            # was collected: forget the round, and read its partitions again once the seek is
            # done (from where their handlers need them next).
            log.debug("flow suspended or seek under way: dropping a round of %d messages",
                      sum(len(m) for m in groups.values()))
            positions.dropped(spans)
            failpoints.hit("round.dropped")
            return
        task = asyncio.ensure_future(self._handle(groups))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # Shutdown stops the fetcher while a round may be half written: let it finish (its
            # writes and acks stay whole), then stop.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), ROUND_FINISH_S)
            raise
        positions.handled(spans)

    async def _handle(self, groups: dict[BatchHandler, list[Message]]) -> None:
        ack = self.ack
        for handler in sorted(groups, key=self.batch_order.__getitem__):
            messages = groups[handler]
            await handler(messages)
            for message in messages:
                ack(message)
        await failpoints.ahit("round.acked")

    async def _drain_messages(self, fetcher: Any) -> None:
        handlers = self._routes()
        if not handlers:
            await super()._drain_messages(fetcher)
            return
        deliver = self._deliver
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        acks_enabled_for = self.app.topics.acks_enabled_for
        track = self.track_message
        get_handler = handlers.get
        positions = self.positions
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                groups: dict[BatchHandler, list[Message]] = {}
                spans: dict[Any, tuple[int, int]] = {}
                early: set[Any] = set()
                await sleep(0)
                if self.should_stop:
                    break
                if positions.resync_due(self.app.flow_control.is_active()):
                    await self._resync_dropped()
                epoch = positions.epoch
                restoring = await self._restoring_tables()
                restored: dict[Any, list[Message]] = {}
                async for tp, message in getmany(timeout=1.0):
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is not None and offset < r_offset:
                        if positions.seeking and get_handler(message.topic) is not None:
                            # The read offset is the old one until the seek is done: this may
                            # be a record the seek went back to. Read it again after the seek.
                            positions.dropped({tp: (offset, offset)})
                        continue  # already read (Faust drops these too)
                    handler = get_handler(message.topic)
                    if handler is not None and (tp in early or positions.early(tp, offset)):
                        early.add(tp)  # stale prefetch: this round's records of tp wait
                        continue
                    gap = offset - (r_offset or 0)
                    if gap > 1 and r_offset and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    if handler is None:
                        if restoring and tp in restoring:
                            restored.setdefault(tp, []).append(message)
                        else:
                            await deliver(message)
                    else:
                        track(message)
                        groups.setdefault(handler, []).append(message)
                        span = spans.get(tp)
                        spans[tp] = (offset, offset) if span is None else (span[0], offset)
                    set_read_offset(tp, offset)
                if restored and restoring:
                    for message in self._restore(restored, restoring):
                        await deliver(message)
                for tp in early:
                    target = positions.reseek(tp)
                    log.info("records of %s arrived ahead of offset %d after a seek: re-reading",
                             tp, target)
                    await self.seek_in_thread({tp: target})
                if groups:
                    await self._run_round(groups, spans, epoch)
                commit_every = self._commit_every
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                log.info("broker stopped the consumer, shutting down")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            log.exception("batch handler failed: crashing the worker (it recovers on restart)")
            await self.app.crash(exc)
