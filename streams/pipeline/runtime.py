"""The worker's runtime: state and handlers between Faust (below) and the domain (above).

One path per event: decode → validate → conversation state → facts (stage 1, `input_stage`)
→ per-agent aggregates (stage 2, here) → snapshots that the exporters read. Everything here
works on plain `Record`s and a `Sink` that sends bytes, so it knows nothing of Faust streams.

Crash safety (at-least-once in, exactly-once effect): stage 1's write order is in
`input_stage`; stage 2 applies a round of facts, writes the changed aggregate records and only
then lets the facts be acked, so a crash repeats facts (ignored by id) and loses none.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Iterable, MutableMapping, Sequence
from typing import Any

import orjson

from streams import failpoints
from streams.config import Config, Settings
from streams.domain import scorecard
from streams.domain.aggregates import SEP, Aggregates
from streams.domain.facts import EXECUTION, PUT, Fact, stable_hash
from streams.domain.keys import agent_key, routing_key_of, split_agent_key
from streams.domain.limits import OVER_LIMIT_TEAM, AgentLimits, is_overflow, overflow_partition
from streams.domain.model import AgentSnapshot
from streams.domain.rules import MINUTE_MS, Lines
from streams.domain.stage1 import ConversationStage
from streams.domain.waiting import WaitingBuyer, waiting_now
from streams.domain.windows import month_start_ms, period_start_ms
from streams.pipeline.conversation_table import ConversationTable, stored
from streams.pipeline.input_stage import DECODERS, OUTBOX_EVENTS_MAX, InputStage
from streams.pipeline.names import KIND_HEADER, Names
from streams.pipeline.partitioning import partition_of
from streams.pipeline.progress import PROGRESS_KEY, Progress
from streams.ports import Out, Record, Sink
from streams.state import HEARTBEAT_GRACE_S, Clock, Health

log = logging.getLogger(__name__)

__all__ = [
    "DECODERS", "HEARTBEAT_INTERVAL_S", "KIND_HEADER", "OUTBOX_EVENTS_MAX", "TICK_S",
    "WATERMARK_KEY", "ConversationTable", "Names", "Record", "Runtime",
]

# Aggregates-changelog record of the watermark, one per partition (ids hold no control
# characters, so no agent record can have this key).
WATERMARK_KEY = "\x00watermark:"
NON_STR_KEYS = orjson.OPT_NON_STR_KEYS  # bucket records are keyed by int fact ids
HEARTBEAT_INTERVAL_S = 2.0
TICK_S = 0.5  # the refresh timer's period (see streams.worker)
# Changed agents a facts batch re-snapshots itself (~0.1 ms each), whatever the backlog.
EAGER_REFRESH_AGENTS = 64
# More changed agents: while fewer than EAGER_BACKLOG input records wait (not a catch-up), a
# facts batch refreshes them itself for up to this long (most stale first); the rest wait for
# the tick's budget.
EAGER_REFRESH_S = 0.02
EAGER_BACKLOG = 1000
# ... and at most once this often: facts batches can come 20 times a second, and 20 ms each
# would then take 40 % of a core from the events (at most 20 % this way).
EAGER_EVERY_S = 0.1
# From this far into a minute, time a tick has left builds the next minute's window prefixes
# (`Aggregates.prepare_turn`): late facts of the last minute are in by then, and the extra
# prefixes live for the rest of the minute only.
PREPARE_AFTER_MS = 40_000
# Seconds in each status grow with *now* alone. With time a tick has left, an agent with a
# status is re-snapshotted once its snapshot is this old, or at once when *now* has not moved
# since the last tick (the input is quiet: the numbers then reach the last *now* exactly).
STATUS_REFRESH_MS = 10_000
# Expiry follows the settle clock (`_expire_settled`); this far behind *now*, say so.
EXPIRY_LAG_WARN_MS = 3_600_000


def _log_failed_report(ack: asyncio.Future[Any]) -> None:
    if not ack.cancelled() and ack.exception() is not None:
        log.warning("progress report not sent: %r", ack.exception())


class Runtime(InputStage):
    """State and batch handlers of one worker."""

    def __init__(self, settings: Settings, config: Config, partitions: int) -> None:
        self.settings = settings
        self.config = config
        self.partitions = partitions
        self.names = Names.for_settings(settings)
        self.clock = Clock(settings.clock)
        self.stage1 = ConversationStage(config.rules, config.filters)
        self.aggs = Aggregates(config.rules, self._lines_for, self._team_of)
        self.limits = AgentLimits(settings.max_agents, settings.max_shops)
        self.aggs.scoring = self._score
        self.aggs.roster_limit = self._roster_limit
        names = self.names
        self.topic_of_kind = {"chat": names.chat, "orders": names.orders, "ratings": names.ratings,
                              "agents": names.agents}
        self.kind_of_topic = {t: k for k, t in self.topic_of_kind.items()}
        self.snapshots: dict[tuple[str, str], AgentSnapshot] = {}
        self.ad_buyers: dict[str, dict[str, int]] = {}
        self.events_total: Counter[tuple[str, str]] = Counter()
        self.rejected_reasons: Counter[tuple[str, str]] = Counter()
        self.owned: set[int] = set()  # partitions this worker owns (same numbers on every topic)
        self.health = Health()
        self.last_offsets: dict[tuple[str, int], int] = {}
        self._snapshot_minute = -1
        self.snapshot_at_ms = 0
        self.snapshot_queue = 0  # agents waiting for a refresh (see refresh_snapshots)
        self.paused = False  # between a revocation and the recovery of the new assignment
        self.snapshot_seconds = 0.0  # time spent re-snapshotting agents, and how many
        self.snapshots_refreshed = 0
        # A batch awaits the broker between processing and writing state; the retention sweep
        # must not drop a conversation in that gap.
        self.stage1_lock = asyncio.Lock()
        # Facts batches, expiry and the counters all change aggregate records: one at a time.
        self.stage2_lock = asyncio.Lock()
        self._swept_minute = -1
        # Largest event ts per input partition, and as last written to the changelog.
        self.partition_watermarks: dict[int, int] = {}
        self._watermarks_written: dict[int, int] = {}
        # Agents to re-snapshot, oldest change first, with the time they were queued: those
        # with new facts (or due by time) first, then those whose windows only slid into a new
        # minute, so a reply is not queued behind a thousand agents' window edges.
        self._stale: dict[tuple[str, str], int] = {}
        self._sliding: dict[tuple[str, str], int] = {}
        self._eager_at = 0.0  # monotonic time of the last budgeted eager refresh
        self._due: dict[tuple[str, str], int] = {}  # agent -> when time alone changes its numbers
        # Agents with a status -> the *now* of their snapshot, oldest first (see `freshen`), and
        # the *now* of the last tick.
        self._taken: dict[tuple[str, str], int] = {}
        self._tick_now = 0
        # Agents whose windows are still to be prepared for the next minute's turn, and which
        # minute that list is for (see `prepare_turn`).
        self._to_prepare: list[tuple[str, str]] = []
        self._prepared_minute = -1
        self._expired_at = 0  # the settle clock's time of the last expiry (see _expire_settled)
        # Changelog partitions whose outbox marker lists facts that are delivered by now.
        self.outbox_listed: set[int] = set()
        # How far each chat partition is read: the SLO counters settle on the slowest.
        self.progress = Progress(partitions)

    def _lines_for(self, shop: str, agent: str) -> Lines:
        return self.config.lines(shop, self._team_of(agent))

    def _team_of(self, agent: str) -> str:
        return OVER_LIMIT_TEAM if is_overflow(agent) else self.config.team_of(agent)

    def _pair_partition(self, shop: str, agent: str) -> int:
        """The partition of a (shop, agent) aggregate; an over-limit one names its own."""
        own = overflow_partition(agent)
        if own is not None:
            return own
        return partition_of(agent_key(shop, agent).encode(), self.partitions)

    def _akey_partition(self, akey: str) -> int:
        try:
            shop, agent = split_agent_key(akey)
        except ValueError:  # not a (shop, agent) key: partitioned by the key itself
            return partition_of(akey.encode(), self.partitions)
        return self._pair_partition(shop, agent)

    def _roster_limit(self, agent: str) -> int | None:
        info = self.config.agent(agent)
        return info.max_concurrent if info is not None else None

    def _score(self, snap: AgentSnapshot, execution: dict[int, float], now: int) -> None:
        if is_overflow(snap.agent):
            return  # agents past KEFU_MAX_AGENTS have no scorecard of their own
        config = self.config
        rules = config.rules(snap.shop)
        info = config.agent(snap.agent)
        scorecard.fill(
            snap, execution, now,
            shop=rules, lines=config.lines(snap.shop, snap.team),
            rules=config.scorecard(snap.team),
            sales_target=info.sales_target if info else None,
            day_start=rules.day_start_ms(now), month_start=month_start_ms(now, rules),
        )

    def use_table(self, store: MutableMapping[str, Any]) -> None:
        """Keep conversations in the Faust table's local store (recovered by Faust)."""
        self.stage1.conversations = ConversationTable(store, self.stage1)  # type: ignore[assignment]

    # -- stage 2: facts → per-agent aggregates ---------------------------------------------------

    async def on_facts_batch(self, records: Sequence[Record], sink: Sink) -> None:
        facts: list[Fact] = []
        last = self.last_offsets
        for rec in records:
            last[(rec.topic, rec.partition)] = rec.offset
            if rec.value is None:
                continue
            try:
                body = orjson.loads(rec.value)
                if rec.key == PROGRESS_KEY:
                    self.progress.hear(rec.partition, body, int(time.time() * 1000))
                    continue
                if rec.key is not None:  # one agent's rows (0.2 format)
                    body = {rec.key.decode(): body}
                for akey, rows in body.items():
                    shop, agent = split_agent_key(akey)
                    facts.extend(Fact.from_wire(shop, agent, row) for row in rows)
            except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
                log.warning("skipping malformed facts message at %s/%s", rec.partition, rec.offset)
        async with self.stage2_lock:
            # Pairs past KEFU_MAX_AGENTS / KEFU_MAX_SHOPS go to the over-limit aggregates.
            self.aggs.apply(self.limits.route(facts, self.aggs.agents, self._pair_partition))
            await failpoints.ahit("stage2.applied")
            await self._persist_aggregates(sink)
            await failpoints.ahit("stage2.durable")
            self._refresh_eagerly()

    def _refresh_eagerly(self) -> None:
        """Show a change at once instead of at the next tick (up to `TICK_S` later): the board
        moves with the reply. A small change is refreshed whole; a bigger one for at most
        `EAGER_REFRESH_S` a batch, and only while the input is nearly caught up, so a
        catch-up's events are never starved by snapshots (the tick's budget takes the rest)."""
        if self.paused:
            return
        now = self.clock.now_ms()
        if now <= 0 or now // MINUTE_MS != self._snapshot_minute:
            return  # the tick slides the windows into a new minute first
        if len(self._stale) + len(self.aggs.dirty_agents) <= EAGER_REFRESH_AGENTS:
            self.refresh_snapshots(now, slide=False)  # the slid windows are the tick's
        elif EAGER_REFRESH_S > 0 and sum(self.health.backlog.values()) < EAGER_BACKLOG:
            started = time.monotonic()
            if started - self._eager_at >= EAGER_EVERY_S:
                self._eager_at = started
                self.refresh_snapshots(now, EAGER_REFRESH_S)

    async def _persist_aggregates(self, sink: Sink, extra: Iterable[str] = ()) -> None:
        """Write changed aggregate records. Callers hold `stage2_lock`: two writers of the same
        key must not interleave, or an older value could land last and win on recovery."""
        dirty = self.aggs.take_dirty()
        for key in extra:
            dirty[key] = None
        # Serialize everything before the first await: the values are the state *now*.
        encoded: list[Out] = [
            (key.encode(), None if value is None else orjson.dumps(value, option=NON_STR_KEYS),
             self._akey_partition(key.rpartition(SEP)[0]), None)
            for key, value in dirty.items()
        ]
        if encoded:
            # With the state they go with: a restart with nothing left to read still knows how
            # far each partition's input went (in replay mode, its *now*).
            written = self._watermarks_written
            for part, ts in self.partition_watermarks.items():
                if ts > written.get(part, 0) and part in self.owned:
                    written[part] = ts
                    encoded.append((f"{WATERMARK_KEY}{part}".encode(), orjson.dumps(ts), part,
                                    None))
            await (await sink.send_many(self.names.agg_changelog, encoded, seal=True))

    # -- supervisor input ------------------------------------------------------------------------

    def waiting(self, now_ms: int, shop: str | None, agent: str | None) -> list[WaitingBuyer]:
        """The waiting list the exporters serve (`streams.domain.waiting`)."""
        return waiting_now(self.aggs, now_ms, shop, agent)

    async def submit_execution(
        self, shop: str, agent: str, period: str, points: float, sink: Sink
    ) -> dict[str, Any]:
        """Record supervisor-entered execution points (绩效考核 执行力) for a day or a month.

        Sent as an idempotent fact to the agent's partition, so it is durable, replayed on
        recovery and applied by whichever worker owns the agent. Raises ValueError on bad input.
        """
        rules = self.config.rules(shop)
        team = self.config.team_of(agent)
        weight = self.config.scorecard(team).weights.get("execution", 0.0)
        if not shop or not agent:
            raise ValueError("shop and agent are required")
        if not 0 <= points <= weight:
            raise ValueError(f"points must be between 0 and {weight:g}")
        start = period_start_ms(period, self.clock.now_ms(), rules)
        fact = Fact(PUT, EXECUTION, shop, agent, stable_hash("exec", str(start)), start,
                    round(points * 100))
        await asyncio.gather(*await self._send_facts([fact], sink))
        return {"shop": shop, "agent": agent, "period_start": start / 1000, "points": points}

    # -- rebalance and recovery ------------------------------------------------------------------

    def owns_agent(self, shop: str, agent: str) -> bool:
        return self._pair_partition(shop, agent) in self.owned

    def on_assigned(self, partitions: set[int]) -> None:
        self.owned = set(partitions)
        self.aggs.drop(self.owns_agent)
        for ident in [i for i in self.snapshots if not self.owns_agent(*i)]:
            del self.snapshots[ident]
        for pending in (self._stale, self._sliding, self._due):
            for ident in [i for i in pending if not self.owns_agent(*i)]:
                del pending[ident]
        store = self.stage1.conversations
        parts = self.partitions
        for key in [k for k in store if partition_of(routing_key_of(k), parts) not in self.owned]:
            del store[key]
        self.outbox_listed &= self.owned
        self.progress.forget_unowned(self.owned)
        # Partitions new to this worker have not been heard from: what the old ones settled
        # must not count rounds restored or replayed from them (counted ones stay counted).
        self.aggs.hold_back(self.progress.settle_ms(self.owned, self.aggs.now_ms))

    def load_aggregates(self, store: MutableMapping[str, Any]) -> int:
        """Move recovered aggregate records of owned partitions from the table into memory."""
        n = 0
        for key, value in list(store.items()):
            if key.startswith(WATERMARK_KEY):
                part = int(key[len(WATERMARK_KEY):])
                if part in self.owned and value is not None:
                    ts = int(stored(value))
                    self.clock.observe(ts)
                    self.partition_watermarks[part] = max(ts, self.partition_watermarks.get(
                        part, 0))
                    self._watermarks_written[part] = self.partition_watermarks[part]
                continue
            if self._akey_partition(key.rpartition(SEP)[0]) in self.owned:
                self.aggs.load(key, stored(value))
                n += 1
        store.clear()  # the domain objects are the live copy; the changelog is the durable one
        return n

    async def heartbeat(self, sink: Sink) -> None:
        """Produce one tiny record and wait for the broker's ack (see `Health.lag_seconds`)."""
        try:
            fut = await sink.send(self.names.heartbeat, None, b"", 0)
            await asyncio.wait_for(fut, HEARTBEAT_GRACE_S)
        except Exception as exc:  # the broker is away: lag grows, alerts fire
            log.warning("broker heartbeat failed: %r", exc)
            return
        self.health.broker_ok_at = time.time()

    # -- periodic: expiry and snapshots ----------------------------------------------------------

    async def tick(self, sink: Sink) -> None:
        """Refresh the snapshots the exporters read; expire old buckets."""
        now = self.clock.now_ms()
        if self.paused:
            # During a rebalance a write here could land after recovery read the changelog's
            # end, and the recovered (older) value would then replace it.
            return
        await self.report_progress(now, sink)  # even with no *now* yet: others wait for it
        if now <= 0:
            return
        minute = now // MINUTE_MS
        async with self.stage2_lock:
            # Rounds settle on the slowest chat partition, not on this worker's *now*.
            self.aggs.advance(self.progress.settle_ms(self.owned, now))
            gone = self._expire_settled(now)
            slid = minute != self._snapshot_minute
            if slid:
                # Windows slide every minute: every agent's numbers change, not only busy ones.
                self._snapshot_minute = minute
                # Still waiting since an earlier minute's slide: no longer behind new facts (under
                # sustained load an idle agent's windows would never move).
                sliding, stale = self._sliding, self._stale
                for ident, since in sliding.items():
                    stale.setdefault(ident, since)
                sliding.clear()
                for ident in self.aggs.agents:
                    if ident not in stale:
                        sliding[ident] = now
            if gone is not None or slid:
                await self._persist_aggregates(sink, gone or ())
        if minute == self._snapshot_minute and self._swept_minute != minute:
            self._swept_minute = minute
            await self.sweep_conversations(now, sink)
        await self.clear_outboxes(sink)
        self.compact_when_idle(now)
        budget = self.snapshot_budget()
        deadline = time.perf_counter() + budget
        quiet, self._tick_now = now == self._tick_now, now
        if not self.refresh_snapshots(now, budget):
            self.freshen(now, deadline, quiet=quiet)
            self.prepare_turn(now, deadline)

    def freshen(self, now: int, deadline: float, *, quiet: bool) -> int:
        """With nothing else to refresh, re-snapshot agents whose seconds in a status have
        grown since their snapshot: those `STATUS_REFRESH_MS` behind, or every one behind when
        the input is `quiet`, oldest first, until `deadline`. Returns how many are refreshed.

        Nothing else moves these agents between facts and the minute's slide, so without it
        the last minute's status seconds stayed as the slide left them (a replayed day ended
        up to a minute short), and live ones lagged up to a minute."""
        upto = now if quiet else now - STATUS_REFRESH_MS
        behind = dict(itertools.takewhile(lambda item: item[1] < upto, self._taken.items()))
        if not behind:
            return 0
        return self._refresh_queue(behind, now, deadline)

    def _expire_settled(self, now: int) -> list[str] | None:
        """Expire old buckets once a minute of the settle clock; the deleted records' keys, or
        None when it is not yet time.

        On the settle clock, not on *now*: every fact up to it has been applied, so expiry
        drops nothing still on its way. Stage 1 may run an hour of event time ahead of stage 2
        in a catch-up or a replay; on its clock, a day folded at 01:00 while its last minutes'
        facts were in flight, and they were dropped as late (a round lost from the day). The
        clock used never goes back (`hold_back` lowers the settle clock after a rebalance): a
        lower retention floor would take a redelivered fact of a folded day as new.
        """
        settled = max(self.aggs.now_ms, self._expired_at)
        if settled <= 0 or settled // MINUTE_MS == self._expired_at // MINUTE_MS:
            return None
        if now - settled > EXPIRY_LAG_WARN_MS:
            log.warning("expiry waits for the slowest chat partition: settled %.0f s behind",
                        (now - settled) / 1000)
        self._expired_at = settled
        gone = self.aggs.expire(settled)
        failpoints.hit("tick.expired")
        return gone

    def prepare_turn(self, now: int, deadline: float) -> int:
        """With nothing left to refresh, build the next minute's window prefixes of as many
        agents as fit before `deadline` (late in the minute only; see `PREPARE_AFTER_MS`), so
        the turn costs each agent one minute's merge instead of an hour's. Returns how many
        agents are still to prepare this minute."""
        if now % MINUTE_MS < PREPARE_AFTER_MS:
            return 0
        minute = now // MINUTE_MS
        todo = self._to_prepare
        if self._prepared_minute != minute:
            self._prepared_minute = minute
            todo[:] = self.aggs.agents
        aggs = self.aggs
        while todo and time.perf_counter() < deadline:
            shop, agent = todo.pop()
            aggs.prepare_turn(shop, agent, now)
        return len(todo)

    async def report_progress(self, now: int, sink: Sink) -> None:
        """Tell every facts partition how far this worker's chat partitions are read (see
        `pipeline.progress`); only what a handled batch made durable, so under the batch lock.
        Not awaited: a broker outage must not stall the refresh (the heartbeat reports it)."""
        async with self.stage1_lock:
            values = self.progress.report(self.owned, self.health.backlog, now, time.monotonic(),
                                          self.health.rekey_backlog)
        if values is None:
            return
        body = self.progress.encode(values)
        out: list[Out] = [(PROGRESS_KEY, body, part, None) for part in range(self.partitions)]
        ack = asyncio.ensure_future(await sink.send_many(self.names.facts, out))
        ack.add_done_callback(_log_failed_report)

    def snapshot_budget(self) -> float:
        """Seconds of snapshot refresh this tick: the configured share while input is waiting
        (events first), most of the tick once caught up (fresh numbers first)."""
        budget = self.settings.snapshot_budget_s
        health = self.health
        if sum(health.backlog.values()) + sum(health.facts_backlog.values()) > 0:
            return budget
        return max(budget, TICK_S * 0.8)

    def refresh_snapshots(self, now: int, budget_s: float | None = None, *,
                          slide: bool = True) -> int:
        """Re-snapshot changed agents, most stale first, for at most `budget_s` seconds; then,
        if time is left (and `slide`), those whose windows only slid into a new minute.

        Agents left over stay queued in order and go first next tick, so under load numbers
        age by a tick or two instead of event processing stalling behind 1,000 snapshots.
        Returns how many agents are still queued.
        """
        queue = self._stale
        for ident in self.aggs.dirty_agents:
            queue.setdefault(ident, now)  # keeps its place (and age) if already queued
        self.aggs.dirty_agents.clear()
        # Waiting buyers change an agent's numbers with time alone: re-snapshot when due.
        due = self._due
        for ident in [i for i, t in due.items() if t <= now]:
            del due[ident]
            queue.setdefault(ident, now)
        started = time.perf_counter()
        deadline = None if budget_s is None else started + budget_s
        done = self._refresh_queue(queue, now, deadline)
        sliding = self._sliding
        for ident in itertools.islice(queue, done):
            sliding.pop(ident, None)  # refreshed now: its windows have slid too
        if done == len(queue):
            queue.clear()
            if slide and sliding and (deadline is None or time.perf_counter() <= deadline):
                slid = self._refresh_queue(sliding, now, deadline)
                done += slid
                for ident in list(itertools.islice(sliding, slid)):
                    del sliding[ident]
        else:
            for ident in list(itertools.islice(queue, done)):
                del queue[ident]
        shops = {shop for shop, _ in self.aggs.agents}
        self.ad_buyers = {shop: self.aggs.ad_buyers(shop, now) for shop in shops}
        # Every snapshot holds everything up to this time (the oldest queued change, if any).
        oldest = [next(iter(q.values())) for q in (queue, sliding) if q]
        self.snapshot_at_ms = min(oldest) if oldest else now
        self.snapshot_queue = len(queue) + len(sliding)
        return self.snapshot_queue

    def _refresh_queue(self, queue: dict[tuple[str, str], int], now: int,
                       deadline: float | None) -> int:
        """Re-snapshot agents from the front of `queue` until `deadline`; return how many (the
        caller removes them). Counted in `snapshots_refreshed` and `snapshot_seconds`."""
        started = time.perf_counter()
        done = 0
        aggs, due, taken = self.aggs, self._due, self._taken
        for ident in queue:
            shop, agent = ident
            fresh = aggs.snapshot(shop, agent, now)
            taken.pop(ident, None)
            if fresh is None:
                self.snapshots.pop(ident, None)
            else:
                self.snapshots[ident] = fresh
                if fresh.status is not None:
                    taken[ident] = now  # to the end: the dict stays oldest first
            when = aggs.next_change(shop, agent, now)
            if when is None:
                due.pop(ident, None)
            else:
                due[ident] = when
            done += 1
            if deadline is not None and not done % 16 and time.perf_counter() > deadline:
                break
        self.snapshot_seconds += time.perf_counter() - started
        self.snapshots_refreshed += done
        return done
