"""The engine against the oracle (tests/domain/reference.py), on generated conversations.

Every property feeds the engine some delivery of a scenario and compares its snapshots with the
oracle's at the last event's ts and at a later instant (so unanswered crossings, waiting and
windows move on). Deterministic: derandomized, no example database.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from streams.domain.model import ChatEvent
from tests.domain.reference import assert_same_snapshots, dedup, reference_snapshots
from tests.domain.strategies import (
    Scenario,
    batches,
    describe,
    jittered,
    nows,
    scenarios,
    team_of,
    with_duplicates,
)

engine_module = pytest.importorskip("streams.domain.engine")
Engine = engine_module.Engine

# Exploration switch: compare the monotone counters too (see README of the oracle's flags).
COMPARE_TOTALS = os.environ.get("KEFU_ORACLE_TOTALS", "1") != "0"

SETTINGS = settings(
    derandomize=True,
    database=None,
    max_examples=int(os.environ.get("KEFU_PROPERTY_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def new_engine(scn: Scenario):
    return Engine(scn.rules_for, scn.filters, team_of)


def feed_all(engine: object, parts: Sequence[Sequence[ChatEvent]]) -> None:
    for part in parts:
        engine.feed(part)  # type: ignore[attr-defined]


def check(engine: object, scn: Scenario, arrival: Sequence[ChatEvent], instants: list[int]) -> None:
    note("events (arrival order):\n" + describe(arrival, scn.first_ts))
    note(f"rules: {scn.rules}\nblock_list: {sorted(scn.filters.block_list)}")
    for now in instants:
        expected = reference_snapshots(arrival, scn.rules_for, scn.filters, now, team_of)
        actual = engine.snapshots(now)  # type: ignore[attr-defined]
        context = f"now=t{(now - scn.first_ts) / 1000:+.3f}s: "
        assert_same_snapshots(actual, expected, context, COMPARE_TOTALS)


@SETTINGS
@given(data=st.data())
def test_in_order_feed_in_random_batches(data: st.DataObject) -> None:
    scn = data.draw(scenarios())
    parts = data.draw(batches(scn.events))
    instants = data.draw(nows(scn.last_ts))
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
    instants = data.draw(nows(scn.last_ts))
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
    instants = data.draw(nows(scn.last_ts))
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
    instants = data.draw(nows(scn.last_ts))
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
    instants = data.draw(nows(scn.last_ts))
    j = data.draw(st.integers(0, len(parts)), label="checkpoint after batch")
    engine = new_engine(scn)
    feed_all(engine, parts[:j])
    restored = Engine.restore(engine.checkpoint(), scn.rules_for, scn.filters, team_of)
    feed_all(restored, parts[j:])
    check(restored, scn, dedup(arrival), instants)
