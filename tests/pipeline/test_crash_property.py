"""The worker's two stages in one process, crashed at a random durable-write boundary.

An in-memory log stands in for Kafka (topics of partitions of records; a send is durable when
it returns) and a small driver for Faust: it restores both tables from their changelogs, feeds
rounds of chat and facts records to the real `Runtime` handlers from the committed offsets,
acks, ticks and commits now and then. Hypothesis picks the scenario, the round size, the commit
cadence and where the first worker dies (`streams.failpoints` armed with `raise`); a second
worker then restarts from the committed offsets and the changelogs, and its KPIs must equal the
oracle's on every field — nothing lost, nothing counted twice.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from streams import failpoints
from streams.config import Config, Settings, default_config
from streams.domain.conversation import Conversation
from streams.domain.model import ChatEvent
from streams.domain.rules import AgentInfo, Lines, ShopRules
from streams.pipeline.partitioning import partition_of
from streams.pipeline.runtime import Names, Runtime
from streams.ports import Headers, Out, Record
from tests.domain.reference import reference_snapshots, snapshot_differences
from tests.domain.strategies import TEAMS, Scenario, describe, scenarios, team_of

PARTITIONS = 2
T0 = 1_710_475_200_000
HOPS = (0, 0, 1, 2, 3, 8, 30)  # event-loop turns until a send lands: mostly soon, sometimes late
CRASHES: Counter[str] = Counter()  # crashes per point, checked by the last test
POINTS = (
    "stage1.facts_durable", "stage1.state_durable", "round.acked", "stage2.applied",
    "stage2.durable", "commit.before", "commit.done", "tick.expired",
)  # fmt: skip  (the idle sweep needs longer days than these: the crash matrix covers it)
SETTINGS = settings(derandomize=True, database=None, max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass
class Log:
    """Kafka in memory: topic → partition → records (key, value)."""

    topics: dict[str, dict[int, list[tuple[bytes | None, bytes | None]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    committed: dict[tuple[str, int], int] = field(default_factory=dict)

    def append(self, topic: str, key: bytes | None, value: bytes | None, part: int) -> None:
        self.topics[topic][part].append((key, value))

    def table(self, topic: str) -> dict[str, Any]:
        """A changelog read to its end: the latest value of each key (tombstones delete)."""
        out: dict[str, Any] = {}
        for records in self.topics[topic].values():
            for key, value in records:
                assert key is not None
                if value is None:
                    out.pop(key.decode(), None)
                else:
                    out[key.decode()] = value
        return out


class LogSink:
    """Runtime's `Sink` over the in-memory log, with Kafka's durability: a record lands (and its
    awaitable resolves) a few event-loop turns after it is sent, in order within its partition
    but in any order across partitions; a crash loses whatever has not landed yet."""

    def __init__(self, log: Log, seed: int) -> None:
        self.log = log
        self.alive = True
        self.rng = random.Random(seed)
        self.pending: dict[tuple[str, int], deque[Pending]] = defaultdict(deque)
        self.seq = 0

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, headers: Headers | None = None) -> Any:
        return self._send(topic, [(key, value, partition or 0, headers)])

    async def send_many(self, topic: str, records: Sequence[Out], *, seal: bool = False) -> Any:
        return self._send(topic, records)

    def _send(self, topic: str, records: Sequence[Out]) -> Any:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for key, value, part, _ in records:
            self.seq += 1
            fut: asyncio.Future[None] = loop.create_future()
            self.pending[(topic, part)].append(Pending(self.seq, key, value, fut))
            self._after(self.rng.choice(HOPS), topic, part, self.seq)
            futures.append(fut)
        return asyncio.gather(*futures)

    def _after(self, hops: int, topic: str, part: int, seq: int) -> None:
        if hops:
            asyncio.get_running_loop().call_soon(self._after, hops - 1, topic, part, seq)
            return
        queue = self.pending[(topic, part)]
        while self.alive and queue and queue[0].seq <= seq:  # lands with all before it
            rec = queue.popleft()
            self.log.append(topic, rec.key, rec.value, part)
            rec.future.set_result(None)


@dataclass
class Pending:
    seq: int
    key: bytes | None
    value: bytes | None
    future: asyncio.Future[None]


def _config(scn: Scenario) -> Config:
    base = default_config()
    return Config(defaults=next(iter(scn.rules.values())), shops=scn.rules, team_lines={},
                  filters=scn.filters, agents={a: AgentInfo(a, team=t) for a, t in TEAMS.items()},
                  scorecard_defaults=base.scorecard_defaults)


def _wire(e: ChatEvent) -> bytes:
    return orjson.dumps({"message_id": e.message_id, "shop_id": e.shop_id, "buyer_id": e.buyer_id,
                         "sender": e.sender, "agent_id": e.agent_id, "ts": e.ts,
                         "event": e.event, "text": e.text})


async def run_worker(log: Log, config: Config, round_size: int, commit_every: int,
                     sink: LogSink, compact: bool = False) -> Runtime:
    """One worker's life: restore, then rounds until the log is read (or a failpoint raises).

    With `compact`, every conversation goes to compact form after each batch that wrote it
    (`quiet_after_s=0`) and is decoded again by the next round that touches it."""
    quiet_after_s = 0.0 if compact else Settings.quiet_after_s
    rt = Runtime(Settings(clock="event", quiet_after_s=quiet_after_s), config, PARTITIONS)
    rt.progress.min_interval_s = 0  # a report at every tick: these ticks are microseconds apart
    names = rt.names
    rt.use_table(log.table(names.conv_changelog))
    rt.on_assigned(set(range(PARTITIONS)))
    rt.load_aggregates(log.table(names.agg_changelog))
    await rt.resend_outboxes(sink)
    read = {(t, p): log.committed.get((t, p), 0)
            for t in (names.chat, names.facts) for p in range(PARTITIONS)}
    rounds = 0
    while True:
        taken: dict[str, list[Record]] = {names.chat: [], names.facts: []}
        for (topic, part), offset in read.items():
            records = log.topics[topic][part][offset:offset + round_size]
            taken[topic] += [Record(topic, part, offset + i, k, v)
                             for i, (k, v) in enumerate(records)]
        if not any(taken.values()):
            break
        if taken[names.chat]:
            await rt.on_input_batch(taken[names.chat], sink)
        if taken[names.facts]:
            await rt.on_facts_batch(taken[names.facts], sink)
        for records in taken.values():
            for rec in records:
                read[(rec.topic, rec.partition)] = rec.offset + 1
        await failpoints.ahit("round.acked")
        rounds += 1
        if rounds % commit_every == 0:
            await failpoints.ahit("commit.before")
            log.committed.update(read)
            await failpoints.ahit("commit.done")
        # What a real worker knows at its tick: how much of each chat partition is unread.
        rt.health.backlog = {part: len(log.topics[names.chat][part]) - read[(names.chat, part)]
                             for part in range(PARTITIONS)}
        await rt.tick(sink)
    if compact:  # the last tick came after the last round: nothing is left decoded
        store = rt.stage1.conversations.store  # type: ignore[attr-defined]
        assert not [key for key, value in store.items() if isinstance(value, Conversation)]
    return rt


async def crash_and_restart(scn: Scenario, round_size: int, commit_every: int,
                            crash: str | None, seed: int, compact: bool = False) -> None:
    """Run a worker until `crash` (a failpoint spec) fires, restart one, compare with the oracle.

    The monotone SLO counters are compared too: the driver ticks with the real chat backlog,
    so they settle on the progress reports as in a worker (see the xfail test below for the
    one reorder they cannot take back).
    """
    config = _config(scn)
    log = Log()
    chat_topic = Names.for_settings(Settings()).chat
    for e in scn.events:
        key = e.conversation_key.encode()
        log.append(chat_topic, key, _wire(e), partition_of(key, PARTITIONS))
    failpoints.configure(crash)
    crashed = False
    sink = LogSink(log, seed)
    try:
        await run_worker(log, config, round_size, commit_every, sink, compact)
    except failpoints.FailpointError:
        crashed = True
    finally:
        sink.alive = False  # whatever has not landed is lost with the process
        failpoints.configure(None)
    if crash:
        CRASHES[crash.partition("=")[0]] += crashed
    note(f"crash {crash}: {crashed}; committed {log.committed}")
    note("events:\n" + describe(scn.events, scn.first_ts))
    rt = await run_worker(log, config, round_size, commit_every, LogSink(log, seed + 1),
                          compact)
    now = scn.last_ts
    rt.aggs.advance(now)
    rt.aggs.expire(now)
    actual = rt.aggs.snapshots(now)
    expected = reference_snapshots(scn.events, scn.rules_for, scn.filters, now, team_of)
    diffs = snapshot_differences(actual, expected)
    assert not diffs, f"{len(diffs)} differences, first: " + "; ".join(diffs[:4])


@settings(SETTINGS, max_examples=300)
@given(scn=scenarios(), round_size=st.integers(1, 6), commit_every=st.integers(1, 4),
       point=st.sampled_from(POINTS), hit=st.integers(1, 5), seed=st.integers(0, 2**16),
       compact=st.booleans())
async def test_a_crash_at_any_boundary_loses_and_doubles_nothing(
    scn: Scenario, round_size: int, commit_every: int, point: str, hit: int, seed: int,
    compact: bool,
) -> None:
    """With `compact`, every conversation is also kept in compact form between rounds."""
    await crash_and_restart(scn, round_size, commit_every, f"{point}=raise@{hit}", seed,
                            compact)


def test_the_property_crashed_at_every_boundary() -> None:
    """The property above is no property if its crashes never happen: each point fired."""
    assert set(CRASHES) == set(POINTS) and all(CRASHES.values()), CRASHES


def _across_local_midnight() -> Scenario:
    """Two rounds at 23:59 in Shanghai, then a buyer at 01:00 on the same chat partition.

    Read one record a round, stage 1 reaches 01:00 while the facts of the rounds still wait on
    the facts topic: expiry on stage 1's clock folded the day before they were applied and
    dropped them as late (hypothesis found it: the round counted once of twice)."""
    base = 1_710_518_220_000  # 2024-03-15 23:57 Asia/Shanghai

    def ev(mid: str, sender: str, after_ms: int) -> ChatEvent:
        return ChatEvent(message_id=mid, shop_id="s2", buyer_id="b1", sender=sender,
                         agent_id="a1", ts=base + after_ms)

    rules = ShopRules(timezone="Asia/Shanghai", lines=Lines(5, 10, 20), session_idle_ms=60_000,
                      unanswered_after_ms=30_000, reorder_window_ms=2_000)
    return Scenario(
        events=(ev("m1", "buyer", 60_001), ev("m2", "agent", 80_001),
                ev("m3", "buyer", 140_002), ev("m4", "agent", 160_002),
                ev("m5", "agent", 805_377), ev("m6", "buyer", 3_780_000)),
        rules={"s2": rules}, filters=default_config().filters)


@settings(SETTINGS, max_examples=1)
@given(scn=st.just(_across_local_midnight()), round_size=st.sampled_from((1, 2)))
async def test_facts_still_in_flight_when_stage_1_passes_the_days_fold_are_kept(
    scn: Scenario, round_size: int
) -> None:
    await crash_and_restart(scn, round_size, 1, None, 0)


async def _late_close(mover: str, backlog: dict[int, int]) -> list[str]:
    """One conversation's close arrives after the reply with the same ts (an in-window reorder:
    it retracts the round) while buyer `mover` has moved the worker's clock 2 s on; stage 2
    ticks in between with the chat backlog `backlog`. Returns the differences from the oracle,
    SLO counters included."""
    rules = ShopRules(lines=Lines(5, 10, 20), session_idle_ms=60_000,
                      unanswered_after_ms=30_000, reorder_window_ms=2_000)
    scn = Scenario(events=tuple(
        ChatEvent(mid, shop, buyer, sender, agent, T0 + dt, event)  # type: ignore[arg-type]
        for mid, shop, buyer, sender, agent, dt, event in (
            ("m07", "s2", "b3", "buyer", None, 0, "message"),
            ("m08", "s2", "b3", "agent", "a1", 0, "message"),
            ("m11", "s2", "b3", "buyer", None, 0, "message"),
            ("m13", "s2", "b3", "agent", "a1", 0, "message"),
            ("m99", "s1", mover, "buyer", "a1", 2_000, "message"),  # the clock moves on
            ("m12", "s2", "b3", "system", None, 0, "close"),  # sorts before m13: a reorder
        )), rules={"s1": rules, "s2": rules})
    config = _config(scn)
    rt = Runtime(Settings(clock="event"), config, PARTITIONS)
    rt.on_assigned(set(range(PARTITIONS)))
    log = Log()
    sink = LogSink(log, 0)

    async def stage1(events: Sequence[ChatEvent]) -> None:
        await rt.on_input_batch([
            Record(rt.names.chat, partition_of(e.conversation_key.encode(), PARTITIONS), i,
                   e.conversation_key.encode(), _wire(e)) for i, e in enumerate(events)], sink)

    async def stage2() -> None:
        facts = [Record(rt.names.facts, p, i, k, v)
                 for p, recs in log.topics[rt.names.facts].items() for i, (k, v) in enumerate(recs)]
        log.topics[rt.names.facts].clear()
        await rt.on_facts_batch(facts, sink)
        await rt.tick(sink)
        for _ in range(max(HOPS) + 2):  # the reports land (the tick does not wait for them)
            await asyncio.sleep(0)
        await rt.on_facts_batch([Record(rt.names.facts, p, i, k, v)  # the tick's reports
                                 for p, recs in log.topics[rt.names.facts].items()
                                 for i, (k, v) in enumerate(recs)], sink)
        log.topics[rt.names.facts].clear()
        await rt.tick(sink)

    await stage1(scn.events[:5])
    rt.health.backlog = dict(backlog)
    await stage2()  # counted if the settle clock is 2 s past the reply
    rt.health.backlog = dict.fromkeys(range(PARTITIONS), 0)
    await stage1(scn.events[5:])
    await stage2()  # the close retracts the round
    now = scn.last_ts
    rt.aggs.advance(now)
    actual = rt.aggs.snapshots(now)
    expected = reference_snapshots(scn.events, scn.rules_for, scn.filters, now, team_of)
    return snapshot_differences(actual, expected)


async def test_slo_counters_wait_for_a_partition_read_behind_the_clock() -> None:
    """Found by the property above, then seen on a SIGKILL hand-over (ten rounds of one agent
    counted twice): another partition moved the worker's clock 2 s past a reply while the
    reply's own partition still had its reorder unread. Counting on the worker's clock counted
    the round, and the retraction's re-decision counted it again; the counters now settle on
    the slowest chat partition (`pipeline.progress`)."""
    assert partition_of(b"s1:b2", PARTITIONS) != partition_of(b"s2:b3", PARTITIONS)
    lagging = partition_of(b"s2:b3", PARTITIONS)
    backlog = {part: int(part == lagging) for part in range(PARTITIONS)}
    diffs = await _late_close("b2", backlog)
    assert not diffs, diffs


@pytest.mark.xfail(strict=True, reason=(
    "SLO counters (kefu_rounds_total, _within_target_total, the histogram) settle a round once "
    "every chat partition is read past its reply + reorder_window; a reorder within one "
    "conversation's window that arrives after its own partition moved on (the conversation "
    "quiet while others on its partition talk) still retracts it: counted twice. A known "
    "limitation in docs/crash-safety.md."))
async def test_slo_counters_count_a_round_once_when_a_reorder_retracts_it_late() -> None:
    """The same, with the buyer who moves the clock on the reply's own partition, read to its
    end: the partition is past the reply, yet the conversation's window still takes the close."""
    assert partition_of(b"s1:b1", PARTITIONS) == partition_of(b"s2:b3", PARTITIONS)
    diffs = await _late_close("b1", dict.fromkeys(range(PARTITIONS), 0))
    assert not diffs, diffs


@pytest.mark.parametrize("point", ["stage1.state_durable", "stage1.facts_durable"])
async def test_an_order_decided_differently_after_a_crash_leaves_no_orphan_fact(
    point: str,
) -> None:
    """The order is read before the reply that precedes it: silent. The worker dies after its
    state (or also its facts) is durable, before the input is acked. The restart recovers the
    state, re-sends its outbox and reads the reply first: credited to the agent. The silent
    fact of the first run must not stay counted.

    With facts written before the state (the old order) this failed: the replay started from
    an older state that did not know the silent fact existed, and never retracted it."""
    settings = Settings(clock="event")
    names = Names.for_settings(settings)
    key = b"s:b1"
    buyer = orjson.dumps({"message_id": "m1", "shop_id": "s", "buyer_id": "b1",
                          "sender": "buyer", "agent_id": "a1", "ts": T0})
    reply = orjson.dumps({"message_id": "m2", "shop_id": "s", "buyer_id": "b1",
                          "sender": "agent", "agent_id": "a1", "ts": T0 + 5_000})
    order = orjson.dumps({"order_id": "o1", "shop_id": "s", "buyer_id": "b1",
                          "status": "created", "amount": "9.90", "ts": T0 + 60_000})
    log = Log()

    def records(*items: tuple[str, bytes]) -> list[Record]:
        return [Record(topic, 0, i, key, value) for i, (topic, value) in enumerate(items)]

    first = Runtime(settings, default_config(), PARTITIONS)
    first.on_assigned(set(range(PARTITIONS)))
    failpoints.configure(f"{point}=raise@1")
    try:
        with pytest.raises(failpoints.FailpointError):
            await first.on_input_batch(records((names.orders, order)), LogSink(log, 0))
    finally:
        failpoints.configure(None)
    for _ in range(40):  # let what was sent land
        await asyncio.sleep(0)
    restarted = Runtime(settings, default_config(), PARTITIONS)
    restarted.use_table(log.table(names.conv_changelog))
    restarted.on_assigned(set(range(PARTITIONS)))
    sink = LogSink(log, 1)
    await restarted.resend_outboxes(sink)
    await restarted.on_input_batch(
        records((names.chat, buyer), (names.chat, reply), (names.orders, order)), sink)
    facts = [Record(names.facts, p, i, k, v)
             for p, recs in log.topics[names.facts].items() for i, (k, v) in enumerate(recs)]
    await restarted.on_facts_batch(facts, sink)
    now = T0 + 60_000
    restarted.aggs.advance(now)
    shop = restarted.aggs.snapshot("s", "", now)
    silent = shop.windows["today"].ordered_buyers if shop is not None else 0
    agent = restarted.aggs.snapshot("s", "a1", now)
    assert agent is not None and agent.windows["today"].ordered_buyers == 1
    assert silent == 0, f"{silent} silent order(s) left by the crashed run"


async def test_a_crash_between_the_state_and_its_facts_loses_no_fact() -> None:
    """The worker dies with a round's state durable and its facts never sent. The replay finds
    both events in the recovered state (duplicates: no facts), so only the re-sent outbox can
    count the round."""
    settings = Settings(clock="event")
    names = Names.for_settings(settings)
    key = b"s:b1"
    events = [orjson.dumps({"message_id": f"m{i}", "shop_id": "s", "buyer_id": "b1",
                            "sender": sender, "agent_id": "a1", "ts": T0 + i * 7_000})
              for i, sender in enumerate(("buyer", "agent"))]
    batch = [Record(names.chat, 0, i, key, value) for i, value in enumerate(events)]
    log = Log()
    first = Runtime(settings, default_config(), PARTITIONS)
    first.on_assigned(set(range(PARTITIONS)))
    failpoints.configure("stage1.state_durable=raise@1")
    try:
        with pytest.raises(failpoints.FailpointError):
            await first.on_input_batch(batch, LogSink(log, 0))
    finally:
        failpoints.configure(None)
    for _ in range(40):
        await asyncio.sleep(0)
    assert not log.topics[names.facts], "the crash came before any fact was sent"
    restarted = Runtime(settings, default_config(), PARTITIONS)
    restarted.use_table(log.table(names.conv_changelog))
    restarted.on_assigned(set(range(PARTITIONS)))
    sink = LogSink(log, 1)
    assert await restarted.resend_outboxes(sink) > 0
    await restarted.on_input_batch(batch, sink)
    facts = [Record(names.facts, p, i, k, v)
             for p, recs in log.topics[names.facts].items() for i, (k, v) in enumerate(recs)]
    await restarted.on_facts_batch(facts, sink)
    now = T0 + 60_000
    restarted.aggs.advance(now)
    agent = restarted.aggs.snapshot("s", "a1", now)
    assert agent is not None and agent.windows["today"].rounds == 1
    assert agent.windows["today"].rt_mean == 7.0
