"""The worker's batch handlers with a fake sink: no Kafka, but the real ordering guarantees."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from streams.config import Settings, default_config
from streams.domain.facts import PUT, ROUND, Fact
from streams.pipeline import outbox
from streams.pipeline import runtime as runtime_module
from streams.pipeline.runtime import Runtime
from streams.ports import Record
from streams.state import HEARTBEAT_GRACE_S, Health

T0 = 1_731_290_000_000


class RecordingSink:
    """Remembers every send, and resolves each ack only after a short delay (like a broker)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []  # ("send"|"ack", topic)
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None, Any]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, headers: Any = None) -> asyncio.Future[None]:
        self.log.append(("send", topic))
        self.sent.append((topic, key, value, partition, headers))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def ack() -> None:
            self.log.append(("ack", topic))
            fut.set_result(None)

        asyncio.get_running_loop().call_later(0.001, ack)
        return fut

    async def send_many(self, topic: str, records: Any, *, seal: bool = False) -> Any:
        futures = [await self.send(topic, k, v, p, h) for k, v, p, h in records]
        return asyncio.gather(*futures)


def chat(mid: str, sender: str, ts: int, agent: str | None = "a1", buyer: str = "b1") -> bytes:
    return orjson.dumps({"message_id": mid, "shop_id": "s", "buyer_id": buyer, "sender": sender,
                         "agent_id": agent, "ts": ts})


def rec(value: bytes, key: bytes | None = b"s:b1", topic: str = "kefu.chat", offset: int = 0,
        headers: dict[str, bytes] | None = None) -> Record:
    return Record(topic, 0, offset, key, value, headers)


def runtime() -> Runtime:
    return Runtime(Settings(), default_config(), partitions=4)


async def test_the_state_with_its_outbox_is_acked_before_any_fact_is_sent() -> None:
    """The outbox order (see `streams.pipeline.outbox`): state records, each holding the facts
    its conversation made, are durable before a fact leaves; the handler returns (so Faust may
    ack the batch) only once the facts are acked too."""
    rt, sink = runtime(), RecordingSink()
    batch = [rec(chat("m1", "buyer", T0)), rec(chat("m2", "agent", T0 + 9_000), offset=1)]
    await rt.on_input_batch(batch, sink)
    names = rt.names
    state_acks = [i for i, e in enumerate(sink.log) if e == ("ack", names.conv_changelog)]
    first_fact = sink.log.index(("send", names.facts))
    assert state_acks and max(state_acks) < first_fact, sink.log
    assert sink.log[-1] == ("ack", names.facts)
    (record,) = [orjson.loads(v) for t, k, v, _p, _h in sink.sent
                 if t == names.conv_changelog and k == b"s:b1"]
    sent = [row for t, _k, v, _p, _h in sink.sent if t == names.facts
            for rows in orjson.loads(v).values() for row in rows]
    assert sorted(row[1:] for row in record[outbox.FIELD]) == sorted(sent)


async def test_bad_events_are_dead_lettered_with_reason_and_source() -> None:
    rt, sink = runtime(), RecordingSink()
    bad = b'{"message_id": "x", "shop_id": "s"'
    await rt.on_input_batch([rec(bad, offset=7)], sink)
    (_topic, key, value, _, headers), = [s for s in sink.sent if s[0] == rt.names.deadletter]
    assert value == bad and key == b"s:b1"
    h = dict(headers)
    assert h["kefu-reason"] == b"invalid_json"
    assert h["kefu-source-topic"] == b"kefu.chat" and h["kefu-source-offset"] == b"7"
    assert rt.events_total[("kefu.chat", "rejected")] == 1
    assert rt.rejected_reasons[("kefu.chat", "invalid_json")] == 1


async def test_misskeyed_events_go_to_the_rekey_topic_with_their_kind() -> None:
    rt, sink = runtime(), RecordingSink()
    order = orjson.dumps({"order_id": "o1", "shop_id": "s", "buyer_id": "b1", "status": "created",
                          "amount": "9.90", "ts": T0})
    await rt.on_input_batch(
        [rec(chat("m1", "buyer", T0), key=b"b1"), rec(order, key=None, topic="kefu.orders")], sink
    )
    rekeyed = [s for s in sink.sent if s[0] == rt.names.rekey]
    assert [(k, dict(h)["kefu-kind"]) for _, k, _, _, h in rekeyed] == [
        (b"s:b1", b"chat"), (b"s:b1", b"orders")
    ]
    assert all(p == rekeyed[0][3] for *_, p, _ in rekeyed)  # one conversation, one partition
    # coming back from the rekey topic they are decoded by kind and processed
    sink2 = RecordingSink()
    back = [rec(v, key=k, topic=rt.names.rekey, headers=dict(h)) for _, k, v, _, h in rekeyed]
    await rt.on_input_batch(back, sink2)
    assert rt.events_total[("kefu.chat", "accepted")] == 1
    assert rt.events_total[("kefu.orders", "accepted")] == 1


async def test_redelivered_batch_changes_nothing() -> None:
    rt, sink = runtime(), RecordingSink()
    batch = [rec(chat("m1", "buyer", T0)), rec(chat("m2", "agent", T0 + 9_000), offset=1)]
    await rt.on_input_batch(batch, sink)
    facts_before = [s for s in sink.sent if s[0] == rt.names.facts]
    sink2 = RecordingSink()
    await rt.on_input_batch(batch, sink2)  # at-least-once: the same batch again
    assert [s for s in sink2.sent if s[0] == rt.names.facts] == []
    assert rt.events_total[("kefu.chat", "duplicate")] == 2
    # the aggregates see the facts once, and a repeat of the facts changes nothing either
    facts = [Record(rt.names.facts, 0, i, k, v) for i, (_, k, v, _, _) in enumerate(facts_before)]
    await rt.on_facts_batch(facts, RecordingSink())
    await rt.on_facts_batch(facts, RecordingSink())
    rt.aggs.advance(T0 + 60_000)
    snap = rt.aggs.snapshot("s", "a1", T0 + 60_000)
    assert snap is not None and snap.windows["today"].rounds == 1 and snap.rounds_total == 1


async def tick_caught_up(rt: Runtime, sink: RecordingSink | None = None) -> RecordingSink:
    """A tick of a worker that has read all its chat partitions, then a tick after its stage 2
    read the progress reports that tick sent (the SLO counters settle on them)."""
    sink = sink or RecordingSink()
    rt.progress.min_interval_s = 0
    rt.health.backlog = dict.fromkeys(rt.owned, 0)
    start = len(sink.sent)
    await rt.tick(sink)
    reports = [Record(rt.names.facts, p, i, k, v)
               for i, (t, k, v, p, _) in enumerate(sink.sent[start:])
               if t == rt.names.facts and p in rt.owned]
    await rt.on_facts_batch(reports, sink)
    await rt.tick(sink)
    return sink


async def answer_one_round(rt: Runtime) -> RecordingSink:
    """Both stages of a worker owning every partition answer one round (buyer at T0, reply
    9 s later); returns what stage 2 wrote to the aggregates changelog."""
    sink = RecordingSink()
    rt.on_assigned({0, 1, 2, 3})
    batch = [rec(chat("m1", "buyer", T0)), rec(chat("m2", "agent", T0 + 9_000), offset=1)]
    await rt.on_input_batch(batch, sink)
    facts = [Record(rt.names.facts, p, i, k, v)
             for i, (t, k, v, p, _) in enumerate(sink.sent) if t == rt.names.facts]
    changelog = RecordingSink()
    await rt.on_facts_batch(facts, changelog)
    return changelog


async def _both_stages(rt: Runtime, sink: RecordingSink, batch: list[Record]) -> None:
    """Stage 1 on `batch`, then stage 2 on the facts it sent."""
    start = len(sink.sent)
    await rt.on_input_batch(batch, sink)
    await rt.on_facts_batch([Record(rt.names.facts, p, i, k, v)
                             for i, (t, k, v, p, _) in enumerate(sink.sent[start:])
                             if t == rt.names.facts], RecordingSink())


async def _round_after_a_tick(rt: Runtime) -> None:
    """A waiting buyer's facts applied and ticked (the minute's tick has run), then one round
    answered and its facts applied, with no tick after them."""
    sink = RecordingSink()
    rt.on_assigned({0, 1, 2, 3})

    async def both_stages(batch: list[Record]) -> None:
        await _both_stages(rt, sink, batch)

    await both_stages([rec(chat("m0", "buyer", T0 + 9_000, buyer="b0"), key=b"s:b0")])
    await rt.tick(sink)
    assert rt.snapshots[("s", "a1")].windows["today"].rounds == 0
    await both_stages([rec(chat("m1", "buyer", T0 + 1_000)),
                       rec(chat("m2", "agent", T0 + 9_000), offset=1)])


def replay_runtime() -> Runtime:
    return Runtime(Settings(clock="event"), default_config(), partitions=4)


async def test_a_small_change_is_shown_without_waiting_for_the_tick() -> None:
    rt = replay_runtime()
    await _round_after_a_tick(rt)
    assert rt.snapshots[("s", "a1")].windows["today"].rounds == 1


async def test_a_big_change_is_shown_within_a_budget_when_nearly_caught_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime_module, "EAGER_REFRESH_AGENTS", 0)
    rt = replay_runtime()
    rt.health.backlog = {0: runtime_module.EAGER_BACKLOG - 1}
    await _round_after_a_tick(rt)
    assert rt.snapshots[("s", "a1")].windows["today"].rounds == 1


async def test_budgeted_eager_refreshes_are_spaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Facts batches may come 20 times a second: a big change waits for the tick when the last
    budgeted refresh was less than EAGER_EVERY_S ago."""
    monkeypatch.setattr(runtime_module, "EAGER_REFRESH_AGENTS", 0)
    monkeypatch.setattr(runtime_module, "EAGER_EVERY_S", 1e12)  # the last one was just now
    rt = replay_runtime()
    await _round_after_a_tick(rt)
    assert rt.snapshots[("s", "a1")].windows["today"].rounds == 0
    await rt.tick(RecordingSink())
    assert rt.snapshots[("s", "a1")].windows["today"].rounds == 1


async def test_a_big_change_in_a_catch_up_waits_for_the_ticks_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime_module, "EAGER_REFRESH_AGENTS", 0)
    rt = replay_runtime()
    rt.health.backlog = {0: runtime_module.EAGER_BACKLOG}  # a catch-up
    await _round_after_a_tick(rt)
    assert rt.snapshots[("s", "a1")].windows["today"].rounds == 0
    await rt.tick(RecordingSink())
    assert rt.snapshots[("s", "a1")].windows["today"].rounds == 1


async def test_a_reply_is_not_queued_behind_the_minutes_window_slide() -> None:
    """At a new minute every agent's windows slide; with the tick's budget spent, those wait,
    and a reply's agent is still refreshed at once."""
    rt = Runtime(Settings(clock="event", snapshot_budget_s=0.0), default_config(), 4)
    sink = RecordingSink()
    rt.on_assigned({0, 1, 2, 3})

    async def both_stages(batch: list[Record]) -> None:
        await _both_stages(rt, sink, batch)

    rounds = [rec(chat(f"{sender}{i}", sender, T0 + ms, agent=f"a{i}", buyer=f"b{i}"),
                  key=f"s:b{i}".encode())
              for i in range(100) for sender, ms in (("buyer", 1_000), ("agent", 2_000))]
    await both_stages(rounds)  # answered: no agent is due for a refresh by time alone
    await rt.tick(sink)  # caught up: every agent refreshed
    assert rt.snapshot_queue == 0
    await both_stages([rec(chat("later", "buyer", T0 + 61_000, agent="a0", buyer="bx"),
                           key=b"s:bx")])
    rt.health.backlog = {0: 1}  # input waiting: the tick keeps to its (empty) budget
    await rt.tick(sink)  # a new minute: 100 agents' windows slide, 16 refreshed at most
    assert rt.snapshot_queue > 50
    await both_stages([rec(chat("q7", "buyer", T0 + 62_000, agent="a7", buyer="b7"),
                           key=b"s:b7"),
                       rec(chat("r7", "agent", T0 + 63_000, agent="a7", buyer="b7"),
                           key=b"s:b7")])
    assert rt.snapshots[("s", "a7")].windows["today"].rounds == 2
    assert rt.snapshot_queue > 50  # the slide still waits for the ticks


async def test_time_left_late_in_a_minute_prepares_every_agent_for_the_turn_once() -> None:
    rt = replay_runtime()
    await _both_stages(rt, RecordingSink(), [
        rec(chat(f"{sender}{i}", sender, T0 + ms, agent=f"a{i}", buyer=f"b{i}"),
            key=f"s:b{i}".encode())
        for i in range(5) for sender, ms in (("buyer", 1_000), ("agent", 2_000))])
    prepared: list[tuple[str, str, int]] = []
    rt.aggs.prepare_turn = lambda shop, agent, now: prepared.append(  # type: ignore[method-assign]
        (shop, agent, now))
    minute = (T0 // 60_000 + 1) * 60_000
    far = time.perf_counter() + 60
    assert rt.prepare_turn(minute + 10_000, far) == 0 and not prepared  # too early in it
    late = minute + runtime_module.PREPARE_AFTER_MS
    assert rt.prepare_turn(late, time.perf_counter()) == 5 and not prepared  # no time left
    assert rt.prepare_turn(late + 1_000, far) == 0
    assert sorted(prepared) == [("s", f"a{i}", late + 1_000) for i in range(5)]
    assert rt.prepare_turn(late + 2_000, far) == 0 and len(prepared) == 5  # once a minute
    assert rt.prepare_turn(late + 60_000, far) == 0 and len(prepared) == 10  # the next one


async def test_a_tick_prepares_the_turn_only_with_nothing_left_to_refresh() -> None:
    rt = Runtime(Settings(clock="event", snapshot_budget_s=0.0), default_config(), 4)
    rt.on_assigned({0, 1, 2, 3})
    late = (T0 // 60_000 + 1) * 60_000 + runtime_module.PREPARE_AFTER_MS + 1_000
    await _both_stages(rt, RecordingSink(), [
        rec(chat(f"{sender}{i}", sender, late - 1_000 + ms, agent=f"a{i}", buyer=f"b{i}"),
            key=f"s:b{i}".encode())
        for i in range(100) for sender, ms in (("buyer", 0), ("agent", 1_000))])
    calls: list[str] = []
    rt.aggs.prepare_turn = lambda shop, agent, now: calls.append(agent)  # type: ignore[method-assign]
    rt.health.backlog = {0: 1}  # input waiting: the tick keeps to its (empty) budget
    await rt.tick(RecordingSink())
    assert rt.snapshot_queue > 0 and not calls  # refreshes first
    rt.health.backlog = {0: 0}
    await rt.tick(RecordingSink())  # caught up: time for everything
    assert rt.snapshot_queue == 0 and sorted(calls) == sorted(f"a{i}" for i in range(100))


def test_expiry_follows_the_settle_clock_never_backwards_and_retries_until_it_can() -> None:
    rt = replay_runtime()
    rt.on_assigned({0, 1, 2, 3})
    rules = rt.config.rules("s")
    day = rules.day_start_ms(T0 + 86_400_000)  # a local midnight
    redelivered = Fact(PUT, ROUND, "s", "a1", 7, day - 10 * 60_000, 5_000, 1)  # 23:50
    rt.aggs.apply([redelivered])
    late = day + 3 * 3_600_000
    assert rt._expire_settled(late) is None  # no settle clock yet: nothing heard
    rt.aggs.advance(day + 61 * 60_000)
    assert rt._expire_settled(late) is not None  # heard: at once, not at *now*'s next minute
    assert rt.aggs.agents[("s", "a1")].days  # the day folded at 01:01
    assert rt._expire_settled(late) is None  # once a minute of the settle clock
    rt.aggs.hold_back(day + 59 * 60_000)  # a rebalance held counting back before 01:00
    rt.aggs.advance(day + 59 * 60_000 + 30_000)
    assert rt._expire_settled(late) is None
    rounds = rt.aggs.agents[("s", "a1")].totals.rounds
    rt.aggs.apply([redelivered])  # replayed from the committed offset: a folded day's fact
    assert rt.aggs.agents[("s", "a1")].totals.rounds == rounds  # late, not counted again
    rt.aggs.advance(day + 62 * 60_000)
    assert rt._expire_settled(late) is not None  # the settle clock's next minute


async def test_a_slide_left_waiting_for_a_minute_goes_before_newer_changes() -> None:
    """Under load that fills every tick, agents whose windows slid a minute ago are not left
    behind new facts forever: at the next minute they join the facts queue, oldest first."""
    rt = Runtime(Settings(clock="event", snapshot_budget_s=0.0), default_config(), 4)
    sink = RecordingSink()
    rt.on_assigned({0, 1, 2, 3})

    async def both_stages(batch: list[Record]) -> None:
        await _both_stages(rt, sink, batch)

    def one(mid: str, ts: int) -> list[Record]:
        return [rec(chat(mid, "buyer", ts, agent="a0", buyer=mid), key=f"s:{mid}".encode())]

    await both_stages([rec(chat(f"{sender}{i}", sender, T0 + ms, agent=f"a{i}", buyer=f"b{i}"),
                           key=f"s:b{i}".encode())
                       for i in range(100) for sender, ms in (("buyer", 1_000), ("agent", 2_000))])
    await rt.tick(sink)
    rt.health.backlog = {0: 1}
    await both_stages(one("x1", T0 + 61_000))
    await rt.tick(sink)  # minute 2: 100 slides queued, 16 served
    slid_at = rt.clock.now_ms()
    await both_stages(one("x2", T0 + 121_000))
    await rt.tick(sink)  # minute 3: last minute's leftovers are now ahead of this slide
    assert sum(1 for t in rt._stale.values() if t == slid_at) > 50
    assert next(iter(rt._stale.values())) == slid_at  # served first
    assert rt.snapshot_at_ms == slid_at


@pytest.mark.parametrize(
    ("backlog", "silent", "expected"),
    [
        ({}, 1.0, 0.0),  # quiet room, broker answering: not lagging
        ({0: 5}, 1.0, 30.0),  # behind the input: now − watermark
        ({}, HEARTBEAT_GRACE_S + 5, HEARTBEAT_GRACE_S + 5),  # broker silent: stale, not quiet
    ],
)
def test_lag_is_never_zero_when_the_worker_is_cut_off(backlog, silent, expected) -> None:
    now = 1_000_000.0
    h = Health(backlog=backlog, broker_ok_at=now - silent)
    assert h.lag_seconds(now - 30.0, now) == pytest.approx(expected)


async def test_a_restart_with_nothing_left_to_read_knows_how_far_the_input_went() -> None:
    """The watermark (in replay mode, *now*) is restored with the aggregates: a worker killed
    just after committing everything would otherwise show no KPIs until new input came."""
    a = Runtime(Settings(clock="event"), default_config(), 4)
    changelog = await answer_one_round(a)
    store = {k.decode(): v for t, k, v, _, _ in changelog.sent
             if t == a.names.agg_changelog and k is not None}
    b = Runtime(Settings(clock="event"), default_config(), 4)
    b.on_assigned({0, 1, 2, 3})
    b.load_aggregates(store)
    assert b.clock.now_ms() == T0 + 9_000
    await b.tick(RecordingSink())
    assert b.snapshots[("s", "a1")].windows["today"].rounds == 1
    # a worker that does not own the partition does not take its watermark
    c = Runtime(Settings(clock="event"), default_config(), 4)
    c.on_assigned(set())
    c.load_aggregates(dict(store))
    assert c.clock.now_ms() == 0


def test_not_ready_while_the_broker_is_unreachable_past_the_grace() -> None:
    """With the broker gone, /readyz once stayed 200 and kefu_worker_ready 1: stale data must
    not look ready."""
    from streams.state import BROKER_READY_GRACE_S

    now = 1_000_000.0
    assert Health(ready=True, broker_ok_at=now - 1.0).is_ready(now)
    assert not Health(ready=True, broker_ok_at=now - BROKER_READY_GRACE_S - 1).is_ready(now)
    assert not Health(ready=False, broker_ok_at=now).is_ready(now)


async def test_status_seconds_reach_the_last_now_for_agents_without_new_facts() -> None:
    """Time spent online grows with *now* alone. An agent whose last fact came before the
    minute's slide, while others' events move *now* on within that minute, is shown up to
    the final *now* once the input is quiet, not up to the slide (CI saw online seconds 26 s
    short for every such agent at the end of a replayed day)."""
    rt = replay_runtime()
    rt.on_assigned({0, 1, 2, 3})
    sink = RecordingSink()
    online_at = T0 + 1_000
    await _both_stages(rt, sink, [
        rec(orjson.dumps({"shop_id": "s", "agent_id": "a1", "status": "online", "ts": online_at}),
            key=b"s:a1", topic=rt.names.agents),
        rec(chat("m1", "buyer", online_at, agent="a2", buyer="b2"), key=b"s:b2")])
    await tick_caught_up(rt, sink)  # the minute's slide snapshots everyone
    later = online_at + 5_000  # the same minute (T0 is 20 s into one), under STATUS_REFRESH_MS
    assert later // 60_000 == T0 // 60_000
    await _both_stages(rt, sink, [rec(chat("m2", "agent", later, agent="a2", buyer="b2"),
                                      key=b"s:b2", offset=1)])
    assert rt.clock.now_ms() == later
    await tick_caught_up(rt, sink)
    snap = rt.snapshots[("s", "a1")]
    assert snap.status_seconds["today"]["online"] == (later - online_at) / 1000
    # Live, *now* never stands still: a tick refreshes it once it is STATUS_REFRESH_MS behind.
    for offset, ms in ((2, runtime_module.STATUS_REFRESH_MS - 1_000),
                       (3, runtime_module.STATUS_REFRESH_MS + 1_000)):
        await _both_stages(rt, sink, [rec(chat(f"m{offset}", "buyer", later + ms, agent="a2",
                                               buyer="b2"), key=b"s:b2", offset=offset)])
        await rt.tick(sink)
        seen = rt.snapshots[("s", "a1")].status_seconds["today"]["online"]
        assert seen == (later - online_at if offset == 2 else ms + later - online_at) / 1000


async def test_quiet_conversations_are_compacted_after_a_batch_or_by_an_idle_tick() -> None:
    """KEFU_QUIET_AFTER: a conversation no batch wrote for that long is kept as its record's
    bytes, at the end of a batch (which holds stage 1's lock anyway) or by a tick that finds
    nothing waiting and the lock free. A tick never waits for the lock: that would hold the
    snapshot refresh up behind a whole batch (the latency phase saw p50 +0.2 s)."""
    rt = Runtime(Settings(clock="event", quiet_after_s=60), default_config(), partitions=4)
    store: dict[str, Any] = {}
    rt.use_table(store)
    sink = RecordingSink()
    for offset, (buyer, after_ms) in enumerate((("b1", 0), ("b2", 30_000), ("b3", 61_000))):
        value = chat(f"m{offset}", "buyer", T0 + after_ms, buyer=buyer)
        await rt.on_input_batch([rec(value, key=f"s:{buyer}".encode(), offset=offset)], sink)

    def forms() -> dict[str, str]:
        return {key.rpartition(":")[2]: type(value).__name__ for key, value in store.items()
                if not outbox.is_marker(key)}

    # *now* T0 + 61 s: b1 (written at T0) went at the end of the last batch, b2 (T0 + 30 s) not
    assert forms() == {"b1": "Quiet", "b2": "Conversation", "b3": "Conversation"}
    rt.clock.observe(T0 + 95_000)
    now = rt.clock.now_ms()
    rt.health.backlog = {0: 5}
    assert rt.compact_when_idle(now) == 0  # input waiting: the events first
    rt.health.backlog = {}
    async with rt.stage1_lock:
        assert rt.compact_when_idle(now) == 0  # a batch in progress: not now, and no waiting
    assert rt.compact_when_idle(now) == 1
    assert forms() == {"b1": "Quiet", "b2": "Quiet", "b3": "Conversation"}
