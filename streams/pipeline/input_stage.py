"""Stage 1 of the worker: input records → decoded events → conversation state → facts.

Write order per batch (see `outbox` and docs/crash-safety.md): the state of every conversation
the batch changed, each record holding the facts it made, is made durable first; then the facts;
the batch is acked only after both. A crash before the state lands loses nothing (no fact left);
a crash after it leaves a state that remembers its facts, and recovery re-sends them
(`resend_outboxes`). Repeated chat events are dropped by message id, repeated facts by fact id.

Which errors do what: anything wrong with *one input record* — it breaks the rules, is dated
past `max_future_skew`, or makes a decoder or the conversation state machine raise — sends that
record to the dead letter with its reason (a value of any size fits: see `events.dead_letter`)
and the batch goes on. Errors of the worker's *own* state or of the broker still escape the
handler and crash the worker, which recovers on restart: skipping those would lose or
double-count data silently.

`InputStage` is a part of `runtime.Runtime` (a mixin): it holds no state of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import orjson

from streams import failpoints
from streams.config import Config, Settings
from streams.domain import conversation_codec
from streams.domain.facts import Fact
from streams.domain.keys import agent_key, routing_key_of
from streams.domain.stage1 import ConversationStage, InputEvent
from streams.events import (
    Rejected,
    dead_letter,
    decode_agent_status,
    decode_chat,
    decode_order,
    decode_rating,
)
from streams.pipeline import outbox
from streams.pipeline.conversation_table import ConversationTable, stored
from streams.pipeline.names import KIND_HEADER, Names
from streams.pipeline.partitioning import partition_of
from streams.pipeline.progress import Progress
from streams.ports import Out, Record, Sink
from streams.state import Clock, Health

log = logging.getLogger(__name__)

# Events of one conversation decided per write when a batch floods it (see `_input_batch`).
OUTBOX_EVENTS_MAX = 500
# Seconds spent putting quiet conversations in compact form (~25-40 µs each): at the end of
# each input batch, which holds stage 1's lock anyway (at 2,000 events/s ~350 conversations a
# second go quiet; ~10-20 batches a second take up to ~100 each); and in a tick that finds
# the lock free with nothing waiting (what a catch-up left live, within seconds). A tick never
# waits for the lock: that would hold up the snapshot refresh behind a whole batch.
COMPACT_BATCH_BUDGET_S = 0.003
COMPACT_IDLE_BUDGET_S = 0.03  # not yielding meanwhile: pages and heartbeats wait that long
Decoder = Callable[[bytes, int], InputEvent]
DECODERS: dict[str, Decoder] = {
    "chat": decode_chat, "orders": decode_order, "ratings": decode_rating,
    "agents": decode_agent_status,
}


class InputStage:
    """Stage 1's handlers and its recovery and retention writes, on the runtime's state.

    The attributes below are the runtime's (set in `Runtime.__init__`); stage 1 reads them.
    """

    settings: Settings
    config: Config
    partitions: int
    names: Names
    clock: Clock
    health: Health
    stage1: ConversationStage
    owned: set[int]
    topic_of_kind: dict[str, str]
    kind_of_topic: dict[str, str]
    events_total: Counter[tuple[str, str]]
    rejected_reasons: Counter[tuple[str, str]]
    last_offsets: dict[tuple[str, int], int]
    partition_watermarks: dict[int, int]
    outbox_listed: set[int]
    progress: Progress
    stage1_lock: asyncio.Lock

    def _decoder(self, rec: Record) -> tuple[str, Decoder]:
        """(input kind, decoder) of a record: by topic, or by header on the rekey topic."""
        names = self.names
        kind = self.kind_of_topic.get(rec.topic)
        if kind is None:  # the internal rekey topic: the header says what it carries
            kind = (rec.headers or {}).get(KIND_HEADER, b"chat").decode()
        return kind, DECODERS.get(kind, DECODERS[names.chat_kind])

    async def on_input_batch(self, records: Sequence[Record], sink: Sink) -> None:
        """Stage 1: chat, order and rating events of the partitions this worker owns."""
        async with self.stage1_lock:
            try:
                await self._input_batch(records, sink)
            except Exception:  # the worker crashes (see `faust_adapter.consumer`); until then
                self.progress.failed = True  # its records are not read, whatever the backlog says
                raise

    async def _input_batch(self, records: Sequence[Record], sink: Sink) -> None:
        names = self.names
        good: list[InputEvent] = []
        early: list[Awaitable[Any]] = []
        rekeyed: list[Out] = []
        sources: list[tuple[Record, str]] = []  # each good event's record and topic
        counts = self.events_total
        max_bytes = self.settings.max_event_bytes
        for rec in records:
            self.last_offsets[(rec.topic, rec.partition)] = rec.offset
            kind, decode = self._decoder(rec)
            topic = self.topic_of_kind[kind]
            raw = rec.value or b""
            reason = self._check(decode, raw, max_bytes)
            if isinstance(reason, str):
                early.append(await self._dead_letter(rec, topic, reason, sink))
                failpoints.hit("stage1.dead_letter_sent")
                continue
            ev = reason
            key = ev.routing_key
            if rec.key != key and rec.topic != names.rekey:
                rekeyed.append(self._rekey(kind, key, raw))
                counts[(topic, "rekeyed")] += 1
                continue
            good.append(ev)
            sources.append((rec, topic))
        if rekeyed:
            early.append(await sink.send_many(names.rekey, rekeyed))
        # A conversation's outbox holds what it made in one write: a flood on one conversation
        # is decided in slices so that its record stays well under the producer's size limit.
        step = len(good)
        if step > OUTBOX_EVENTS_MAX and max(
                Counter(ev.state_key for ev in good).values()) > OUTBOX_EVENTS_MAX:
            step = OUTBOX_EVENTS_MAX
        for start in range(0, max(len(good), 1), max(step, 1)):
            await self._decide(good[start:start + step], sources[start:start + step], early, sink)
            early = []
        self.health.last_batch_at = time.time()
        self._compact(self.clock.now_ms(), COMPACT_BATCH_BUDGET_S)

    async def _decide(self, good: Sequence[InputEvent], sources: Sequence[tuple[Record, str]],
                      early: list[Awaitable[Any]], sink: Sink) -> None:
        """Run the state machine over events, then make its state and facts durable."""
        counts = self.events_total
        marks = self.partition_watermarks
        made_by: dict[str, list[Fact]] = {}
        facts, touched = self.stage1.process_batch(good, emitted_by=made_by)
        failed = {index for index, _ in self.stage1.failed}
        for index, reason in self.stage1.failed:
            rec, topic = sources[index]
            early.append(await self._dead_letter(rec, topic, reason, sink))
        self.stage1.failed.clear()
        chat = self.names.chat
        chat_read: dict[int, int] = {}  # chat partition -> largest ts decided in this batch
        for index, ev in enumerate(good):
            if index not in failed:
                self.clock.observe(ev.ts)
                rec, topic = sources[index]
                part = rec.partition
                if ev.ts > marks.get(part, 0):
                    marks[part] = ev.ts
                if topic == chat and ev.ts > chat_read.get(part, 0):
                    chat_read[part] = ev.ts
        convs = self.stage1.conversations
        if isinstance(convs, ConversationTable):  # by the clock these events moved
            convs.mark_written(touched, self.clock.now_ms())
        for kind, outcomes in self.stage1.outcome_counters():
            for outcome, n in outcomes.items():
                if n:
                    counts[(self.topic_of_kind[kind], outcome)] += n
                    outcomes[outcome] = 0
        # The state first, each record with the facts it made (its outbox), then the facts:
        # a crash in between leaves a state that remembers its facts (see `outbox`).
        parts = self.partitions
        state, listed = outbox.state_records(
            touched, made_by, lambda key: conversation_codec.encode(convs[key]),
            lambda key: partition_of(routing_key_of(key), parts))
        if state:
            early.append(await sink.send_many(self.names.conv_changelog, state, seal=True))
        if early:
            await asyncio.gather(*early)
        await failpoints.ahit("stage1.state_durable")
        futures = await self._send_facts(facts, sink)
        if futures:
            await asyncio.gather(*futures)
        self.outbox_listed |= listed  # delivered: their markers are emptied at the next tick
        self.progress.facts_durable(chat_read)  # reported to stage 2 at the next tick
        await failpoints.ahit("stage1.facts_durable")

    def _check(self, decode: Decoder, raw: bytes, max_bytes: int) -> InputEvent | str:
        """The decoded event, or the reason to dead-letter it.

        Input errors of one record never escape: `Rejected` (the rules) and any other
        exception (a decoder bug some input found) both become that record's reason. Errors
        of the worker's own state and of the broker still raise (see `pipeline.faust_adapter`).
        """
        try:
            ev = decode(raw, max_bytes)
        except Rejected as exc:
            return exc.reason
        except Exception as exc:
            log.warning("decoder failed on a record: %r", exc)
            return f"error:{type(exc).__name__}"
        if ev.ts > time.time() * 1000 + self.config.rules(ev.shop_id).max_future_skew_ms:
            return "future:ts"  # one bad clock must not move *now* or hide lag
        return ev

    async def _dead_letter(
        self, rec: Record, topic: str, reason: str, sink: Sink
    ) -> Awaitable[Any]:
        """Count a rejected record and send its dead letter (a value that always fits)."""
        self.events_total[(topic, "rejected")] += 1
        self.rejected_reasons[(topic, reason.split(":")[0])] += 1
        key, value, headers = dead_letter(
            rec.value or b"", rec.key, reason, topic, rec.partition, rec.offset
        )
        return await sink.send(self.names.deadletter, key, value, None, headers)

    def _rekey(self, kind: str, key: bytes, raw: bytes) -> Out:
        """An event for where its conversation lives; it is processed from there."""
        return key, raw, partition_of(key, self.partitions), [(KIND_HEADER, kind.encode())]

    async def on_forward_batch(self, records: Sequence[Record], sink: Sink) -> None:
        """Input topics partitioned unlike the chat topic: everything goes through the rekey
        topic, so orders still meet their conversation on one partition."""
        out: list[Out] = []
        early: list[Awaitable[Any]] = []
        for rec in records:
            kind, decode = self._decoder(rec)
            topic = self.topic_of_kind[kind]
            raw = rec.value or b""
            checked = self._check(decode, raw, self.settings.max_event_bytes)
            if isinstance(checked, str):  # dead-lettered here, with its own offset
                early.append(await self._dead_letter(rec, topic, checked, sink))
                continue
            out.append(self._rekey(kind, checked.routing_key, raw))
            self.events_total[(topic, "rekeyed")] += 1
        if out:
            early.append(await sink.send_many(self.names.rekey, out))
        if early:
            await asyncio.gather(*early)

    async def _send_facts(self, facts: Iterable[Fact], sink: Sink) -> list[Awaitable[Any]]:
        """One message per facts partition: {"shop\x1fagent": [fact rows…], …}.

        Per partition, not per agent: a batch touching 1,000 agents is a handful of messages.
        """
        by_agent: dict[tuple[str, str], list[list[object]]] = {}
        for f in facts:
            by_agent.setdefault((f.shop, f.agent), []).append(f.to_wire())
        if not by_agent:
            return []
        by_part: dict[int, dict[str, list[list[object]]]] = {}
        for (shop, agent), rows in by_agent.items():
            akey = agent_key(shop, agent)
            by_part.setdefault(partition_of(akey.encode(), self.partitions), {})[akey] = rows
        out: list[Out] = [(None, orjson.dumps(group), part, None)
                          for part, group in by_part.items()]
        return [await sink.send_many(self.names.facts, out)]

    async def resend_outboxes(self, sink: Sink) -> int:
        """After recovery: send again the facts of states that were written just before a crash.

        Runs before any input of the new assignment: a replayed event the recovered state
        already holds is a duplicate and makes no fact, so its facts come from here.
        """
        convs = self.stage1.conversations
        if not isinstance(convs, ConversationTable):
            return 0
        async with self.stage1_lock:
            facts = outbox.take_pending(convs.store, sorted(self.owned), stored)
            futures = await self._send_facts(facts, sink)
            if futures:
                await asyncio.gather(*futures)
        if facts:
            log.info("re-sent %d facts from the outboxes of recovered conversations", len(facts))
        return len(facts)

    def _quiet_before(self, now: int) -> int:
        return now - round(self.settings.quiet_after_s * 1000)

    def _compact(self, now: int, budget_s: float) -> int:
        """Keep conversations no batch wrote for `quiet_after_s` in compact form (see
        `conversation_table`) for at most `budget_s`; the caller holds stage 1's lock (never
        between a batch's decisions and its writes). Returns how many."""
        convs = self.stage1.conversations
        if not isinstance(convs, ConversationTable) or now <= 0:
            return 0
        return convs.compact(self._quiet_before(now), time.perf_counter() + budget_s)

    def compact_when_idle(self, now: int) -> int:
        """A tick's share of `_compact`: only with nothing waiting and stage 1's lock free."""
        health = self.health
        waiting = (sum(health.backlog.values()) + sum(health.facts_backlog.values())
                   + sum(health.rekey_backlog.values()))
        if waiting or self.stage1_lock.locked():
            return 0
        return self._compact(now, COMPACT_IDLE_BUDGET_S)  # nothing awaited: the lock stays free

    async def clear_outboxes(self, sink: Sink) -> None:
        """Empty the markers whose facts are acknowledged, so a restart re-sends nothing old."""
        async with self.stage1_lock:  # a batch writes markers too: never in between
            if not self.outbox_listed:
                return
            records = outbox.cleared_markers(self.outbox_listed & self.owned)
            self.outbox_listed.clear()
            if records:
                await sink.send_many(self.names.conv_changelog, records)

    async def sweep_conversations(self, now: int, sink: Sink) -> int:
        """Forget idle conversations: closing facts first (durable), then the tombstones."""
        async with self.stage1_lock:
            convs = self.stage1.conversations
            candidates = None
            if isinstance(convs, ConversationTable):  # quiet ones are decoded only when due
                candidates = convs.expiry_candidates(now, self._quiet_before(now),
                                                     self.stage1.rules_for)
            facts, gone = self.stage1.expire(now, candidates)
            if not gone:
                return 0
            futures = await self._send_facts(facts, sink)
            if futures:
                await asyncio.gather(*futures)
            await failpoints.ahit("sweep.facts_durable")
            tombstones: list[Out] = [
                (key.encode(), None, partition_of(routing_key_of(key), self.partitions), None)
                for key in gone
            ]
            await (await sink.send_many(self.names.conv_changelog, tombstones, seal=True))
        log.info("forgot %d idle conversations", len(gone))
        return len(gone)
