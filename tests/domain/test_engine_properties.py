"""The engine against the oracle (tests/domain/reference.py), on generated conversations.

Every property feeds the engine some delivery of a scenario and compares its snapshots with the
oracle's at the last event's ts and at later instants (so unanswered crossings, waiting and
windows move on). Deterministic: derandomized, no example database.

KEFU_PROPERTY_EXAMPLES=2000 runs a deeper search (about 5 minutes); KEFU_ORACLE_TOTALS=0 leaves
the monotone counters out of the comparison while exploring another difference.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from streams.domain.model import LEVELS, ChatEvent
from streams.domain.rules import Filters, Lines, ShopRules
from streams.tooling.engine import Engine
from tests.domain.reference import BUCKETS, assert_same_snapshots, dedup, reference_snapshots
from tests.domain.strategies import (
    AD_PATTERNS,
    PROPERTY_SETTINGS,
    Scenario,
    batches,
    describe,
    jittered,
    nows,
    scenarios,
    team_of,
    with_duplicates,
)

COMPARE_TOTALS = os.environ.get("KEFU_ORACLE_TOTALS", "1") != "0"

SETTINGS = PROPERTY_SETTINGS


def new_engine(scn: Scenario) -> Engine:
    return Engine(scn.rules_for, scn.filters, team_of)


def feed_all(engine: Engine, parts: Sequence[Sequence[ChatEvent]]) -> None:
    for part in parts:
        engine.feed(part)


def check(engine: Engine, scn: Scenario, arrival: Sequence[ChatEvent], instants: list[int]) -> None:
    note("events (arrival order):\n" + describe(arrival, scn.first_ts))
    note(f"rules: {scn.rules}\nblock_list: {sorted(scn.filters.block_list)}")
    for now in instants:
        expected = reference_snapshots(arrival, scn.rules_for, scn.filters, now, team_of)
        actual = engine.snapshots(now)
        context = f"now=t{(now - scn.first_ts) / 1000:+.3f}s: "
        assert_same_snapshots(actual, expected, context, COMPARE_TOTALS)


@SETTINGS
@given(data=st.data())
def test_in_order_feed_in_random_batches(data: st.DataObject) -> None:
    scn = data.draw(scenarios())
    parts = data.draw(batches(scn.events))
    instants = data.draw(nows(scn))
    engine = new_engine(scn)
    feed_all(engine, parts)
    check(engine, scn, scn.events, instants)
    assert engine.outcomes.get("duplicate", 0) == 0
    assert engine.outcomes.get("late", 0) == 0
    assert engine.outcomes.get("accepted", 0) == len(scn.events)


@SETTINGS
@given(data=st.data())
def test_reordered_within_the_reorder_window(data: st.DataObject) -> None:
    scn = data.draw(scenarios())
    arrival = data.draw(jittered(scn.events, scn.reorder_window_ms))
    parts = data.draw(batches(arrival))
    instants = data.draw(nows(scn))
    engine = new_engine(scn)
    feed_all(engine, parts)
    check(engine, scn, arrival, instants)
    assert engine.outcomes.get("late", 0) == 0


@SETTINGS
@given(data=st.data())
def test_duplicates_change_nothing(data: st.DataObject) -> None:
    scn = data.draw(scenarios())
    arrival, n_dups = data.draw(with_duplicates(scn.events))
    parts = data.draw(batches(arrival))
    instants = data.draw(nows(scn))
    engine = new_engine(scn)
    feed_all(engine, parts)
    check(engine, scn, arrival, instants)
    assert engine.outcomes.get("duplicate", 0) == n_dups


@SETTINGS
@given(data=st.data())
def test_crash_and_redelivery(data: st.DataObject) -> None:
    scn = data.draw(scenarios())
    arrival = data.draw(jittered(scn.events, scn.reorder_window_ms))
    parts = data.draw(batches(arrival))
    instants = data.draw(nows(scn))
    # checkpoint after batch j, keep working up to batch k, crash, restore, redeliver from an
    # offset at or before the checkpoint (everything after the checkpoint is redelivered too)
    j = data.draw(st.integers(0, len(parts)), label="checkpoint after batch")
    k = data.draw(st.integers(j, len(parts)), label="crash after batch")
    committed = sum(len(p) for p in parts[:j])
    offset = data.draw(st.integers(0, committed), label="redelivery offset")

    engine = new_engine(scn)
    feed_all(engine, parts[:j])
    blob = engine.checkpoint()
    feed_all(engine, parts[j:k])  # lost in the crash
    del engine

    restored = Engine.restore(blob, scn.rules_for, scn.filters, team_of)
    feed_all(restored, data.draw(batches(arrival[offset:]), label="redelivered batches"))
    check(restored, scn, arrival, instants)


@SETTINGS
@given(data=st.data())
def test_checkpoint_round_trip_mid_stream(data: st.DataObject) -> None:
    """Restoring a checkpoint and going on gives the same as never stopping."""
    scn = data.draw(scenarios())
    arrival = data.draw(jittered(scn.events, scn.reorder_window_ms))
    parts = data.draw(batches(arrival))
    instants = data.draw(nows(scn))
    j = data.draw(st.integers(0, len(parts)), label="checkpoint after batch")
    engine = new_engine(scn)
    feed_all(engine, parts[:j])
    restored = Engine.restore(engine.checkpoint(), scn.rules_for, scn.filters, team_of)
    feed_all(restored, parts[j:])
    check(restored, scn, dedup(arrival), instants)


@settings(SETTINGS, max_examples=max(10, SETTINGS.max_examples // 2))
@given(data=st.data())
def test_live_snapshots_between_batches(data: st.DataObject) -> None:
    """Replay mode: after every batch, now = the largest ts seen. Each snapshot equals the oracle
    on what has arrived so far, and the counters never go down."""
    scn = data.draw(scenarios(max_steps=25))
    arrival = data.draw(jittered(scn.events, scn.reorder_window_ms))
    parts = data.draw(batches(arrival))
    engine = new_engine(scn)
    arrived: list[ChatEvent] = []
    counters: dict[tuple[str, str], tuple[int, ...]] = {}
    for part in parts:
        engine.feed(part)
        arrived.extend(part)
        now = max(e.ts for e in arrived)
        check(engine, scn, arrived, [now])
        for key, snap in engine.snapshots(now).items():
            mine = (
                snap.rounds_total,
                *(snap.within_total.get(level, 0) for level in LEVELS),
                *(snap.histogram.get(le, 0) for le in BUCKETS),
            )
            before = counters.get(key, (0,) * len(mine))
            assert all(a >= b for a, b in zip(mine, before, strict=True)), (key, before, mine)
            counters[key] = mine


# --------------------------------------------------------------------------------------------
# Concrete cases the properties once found, kept as plain regression tests. Times in seconds
# after T0; each tuple is (message_id, t, sender, agent_id, event, text); one batch per event.

T0 = 1_710_475_200_000  # 2024-03-15 12:00 Asia/Shanghai
_RULES = ShopRules(lines=Lines(5, 10, 20), session_idle_ms=60_000, unanswered_after_ms=30_000)
Row = tuple[str, float, str, str | None, str, str | None]
REGRESSIONS: dict[str, tuple[list[Row], float, frozenset[str]]] = {
    # an earlier buyer message arrives after the reply, 1.5 s out of order: one round, not two
    "late round start": (
        [
            ("m1", 1.0, "buyer", "a1", "message", None),
            ("m2", 2.0, "agent", "a1", "message", None),
            ("m0", 0.5, "buyer", "a1", "message", None),
        ],
        10,
        frozenset(),
    ),
    # an ad message arrives after the round it makes an ad round: the round is retracted
    "late ad message": (
        [
            ("m1", 1.0, "buyer", "a1", "message", None),
            ("m2", 1.5, "agent", "a1", "message", None),
            ("m0", 0.5, "buyer", "a1", "message", "加微信"),
        ],
        10,
        frozenset(),
    ),
    # a transfer arrives after the reply it shortens
    "late transfer": (
        [
            ("m0", 0, "buyer", "a1", "message", None),
            ("m2", 10, "agent", "a1", "message", None),
            ("m1", 9, "system", "a1", "transfer", None),
        ],
        20,
        frozenset(),
    ),
    # a transfer back to the same agent restarts its clock (definition 3)
    "transfer to the same agent": (
        [
            ("m0", 0, "buyer", "a1", "message", None),
            ("m1", 10, "system", "a1", "transfer", None),
            ("m2", 12, "agent", "a1", "message", None),
        ],
        20,
        frozenset(),
    ),
    # a blocked buyer is ad from their first event, even an agent's message
    "blocked buyer, agent speaks first": (
        [("m0", 0, "agent", "a1", "message", None), ("m1", 1, "buyer", "a1", "message", None)],
        20,
        frozenset({"b1"}),
    ),
    # an ad message at the same ts as an earlier-sorting message marks from its own position
    "ad message tied in ts": (
        [("m0", 0, "buyer", "a1", "message", None), ("m1", 0, "buyer", "a1", "message", "加微信")],
        5,
        frozenset(),
    ),
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regressions(name: str) -> None:
    rows, now_s, blocked = REGRESSIONS[name]
    events = [
        ChatEvent(mid, "s1", "b1", sender, agent, T0 + round(t * 1000), kind, text)  # type: ignore[arg-type]
        for mid, t, sender, agent, kind, text in rows
    ]
    filters = Filters(ad_patterns=AD_PATTERNS, block_list=blocked)
    engine = Engine(lambda shop: _RULES, filters, team_of)
    for e in events:
        engine.feed([e])
    for now in (max(e.ts for e in events), T0 + round(now_s * 1000)):
        expected = reference_snapshots(events, lambda shop: _RULES, filters, now, team_of)
        assert_same_snapshots(engine.snapshots(now), expected, f"{name} @ {now - T0} ms: ")
    assert engine.outcomes.get("late", 0) == 0
