"""Status and load: the engine against the oracle (tests/domain/status_reference.py).

Generated days (tests/domain/strategies.py) get status events of their agents: some agents
none at all, gaps past the offline assumption, replies while `away` or `offline`, several
status events in one millisecond, limits from events and from the roster. The engine is fed
in batches (in order, reordered within the reorder window, with redelivered status events,
with crashes), and asked at times of its own in between (so it folds its timeline at the
retention floor, as a worker's minute tick does) and at the oracle's instants.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, note
from hypothesis import strategies as st

from streams.domain.model import AgentSnapshot, AgentStatusEvent, ChatEvent
from streams.domain.stage1 import InputEvent
from streams.tooling.engine import Engine
from tests.domain.status_reference import StatusKpis, status_reference
from tests.domain.strategies import (
    MINUTE,
    PROPERTY_SETTINGS,
    SECOND,
    Scenario,
    batches,
    chance,
    jittered,
    nows,
    scenarios,
    team_of,
)

SETTINGS = PROPERTY_SETTINGS
ROSTER = {"a1": 3, "a3": 25}
STATUS_NAMES = ("online", "online", "busy", "away", "away", "offline")


@st.composite
def status_events(draw: st.DrawFn, scn: Scenario) -> list[AgentStatusEvent]:
    """Status events of the scenario's agents (and one agent that never chats)."""
    agents = sorted({(e.shop_id, e.agent_id) for e in scn.events if e.agent_id} | {("s1", "a9")})
    lo, hi = scn.first_ts - 10 * MINUTE, scn.last_ts
    out: list[AgentStatusEvent] = []
    for shop, agent in agents:
        if chance(draw, 4):
            continue  # an agent without any status event
        for _ in range(draw(st.integers(1, 6))):
            ts = draw(st.one_of(st.integers(lo, hi), st.sampled_from([e.ts for e in scn.events])))
            limit = draw(st.sampled_from((None, None, None, 1, 2, 8)))
            status = draw(st.sampled_from(STATUS_NAMES))
            out.append(AgentStatusEvent(shop, agent, status, ts, limit))  # type: ignore[arg-type]
            if chance(draw, 6):  # another status in the same millisecond
                other = draw(st.sampled_from(STATUS_NAMES))
                out.append(AgentStatusEvent(shop, agent, other, ts))  # type: ignore[arg-type]
    return out


def merged(chat: Sequence[ChatEvent], statuses: Sequence[AgentStatusEvent]) -> list[InputEvent]:
    return sorted([*chat, *statuses], key=lambda e: e.ts)


def new_engine(scn: Scenario) -> Engine:
    return Engine(scn.rules_for, scn.filters, team_of, roster_limit=ROSTER.get)


def compare(actual: dict[tuple[str, str], AgentSnapshot],
            expected: dict[tuple[str, str], StatusKpis], context: str) -> None:
    for key, want in expected.items():
        snap = actual.get(key)
        if snap is None:
            # Shown once it has a status event or any windowed KPI (docs/kpis.md).
            assert want.status is None and not any(
                v for w in want.seconds.values() for v in w.values()), f"{context}{key} missing"
            continue
        got = StatusKpis(snap.status, snap.status_seconds, snap.concurrent, snap.max_concurrent,
                         snap.occupancy)
        assert got == want, f"{context}{key}:\n engine    {got}\n reference {want}"
    for key, snap in actual.items():
        if key[1] and key not in expected:
            assert snap.status is None and snap.concurrent == 0, f"{context}{key} unexpected"


def check(engine: Engine, scn: Scenario, chat: Sequence[ChatEvent],
          statuses: Sequence[AgentStatusEvent], instants: list[int]) -> None:
    note(f"status events: {sorted(statuses, key=lambda e: e.ts)}")
    for now in instants:
        expected = status_reference(chat, statuses, scn.rules_for, scn.filters, now, ROSTER.get)
        compare(engine.snapshots(now), expected, f"now=t{(now - scn.first_ts) / 1000:+.3f}s: ")


@SETTINGS
@given(data=st.data())
def test_in_order_with_ticks_between_batches(data: st.DataObject) -> None:
    scn = data.draw(scenarios())
    statuses = data.draw(status_events(scn))
    parts = data.draw(batches(merged(scn.events, statuses)))
    engine = new_engine(scn)
    for part in parts:
        engine.feed(part)
        if chance(data.draw, 3):  # a minute tick: expiry folds the timeline at the floor
            engine.snapshots(max(e.ts for p in parts for e in p if e in part))
    check(engine, scn, scn.events, statuses, data.draw(nows(scn)))


@SETTINGS
@given(data=st.data())
def test_reordered_and_redelivered(data: st.DataObject) -> None:
    scn = data.draw(scenarios())
    statuses = data.draw(status_events(scn))
    arrival = data.draw(jittered(merged(scn.events, statuses), scn.reorder_window_ms))
    again = data.draw(st.lists(st.sampled_from(statuses), max_size=4)) if statuses else []
    parts = data.draw(batches([*arrival, *again]))
    engine = new_engine(scn)
    for part in parts:
        engine.feed(part)
    chat = [e for e in arrival if isinstance(e, ChatEvent)]
    check(engine, scn, chat, statuses, data.draw(nows(scn)))


@SETTINGS
@given(data=st.data())
def test_crash_restore_and_redelivery(data: st.DataObject) -> None:
    scn = data.draw(scenarios())
    statuses = data.draw(status_events(scn))
    events = merged(scn.events, statuses)
    parts = data.draw(batches(events))
    j = data.draw(st.integers(0, len(parts)), label="checkpoint after batch")
    engine = new_engine(scn)
    for part in parts[:j]:
        engine.feed(part)
    if j and chance(data.draw, 2):
        engine.snapshots(max(e.ts for p in parts[:j] for e in p))
    blob = engine.checkpoint()
    for part in parts[j:]:
        engine.feed(part)  # lost with the crash
    restored = Engine.restore(blob, scn.rules_for, scn.filters, team_of)
    restored.stage2.roster_limit = ROSTER.get
    back = data.draw(st.integers(0, j), label="redeliver from batch")
    for part in parts[back:]:
        restored.feed(part)
    check(restored, scn, scn.events, statuses, data.draw(nows(scn)))


def test_the_walk_by_hand() -> None:
    """One agent's morning, computed by hand: the oracle and the engine agree with it."""
    from streams.domain.rules import Filters, ShopRules

    rules = ShopRules(timezone="UTC", session_idle_ms=60 * SECOND)  # offline after 6 min
    t0 = 1_710_000_000_000 - 1_710_000_000_000 % (86_400 * SECOND) + 8 * 3600 * SECOND
    chat = [
        ChatEvent("m1", "s", "b1", "buyer", "a", t0 + 10 * SECOND),
        ChatEvent("m2", "s", "b1", "agent", "a", t0 + 130 * SECOND),  # while away: online
        ChatEvent("m3", "s", "b2", "buyer", "a", t0 + 140 * SECOND),
    ]
    statuses = [
        AgentStatusEvent("s", "a", "online", t0, 4),
        AgentStatusEvent("s", "a", "away", t0 + 60 * SECOND),
    ]
    # The agent's last event is its reply at 130 s (a buyer's message is not the agent's):
    # offline is assumed from 130 + 360 = 490 s.
    now = t0 + 20 * MINUTE
    engine = Engine(lambda _s: rules, Filters())
    engine.feed(merged(chat, statuses))
    early = engine.snapshots(t0 + 150 * SECOND)[("s", "a")]
    assert (early.status, early.concurrent, early.occupancy) == ("online", 2, 0.5)
    snap = engine.snapshots(now)[("s", "a")]
    expected = {"online": 60 + (490 - 130), "busy": 0, "away": 70, "offline": 1200 - 490}
    assert snap.status == "offline"
    assert snap.status_seconds["today"] == {k: float(v) for k, v in expected.items()}
    assert (snap.concurrent, snap.max_concurrent) == (0, 4)  # both sessions idle by now
    ref = status_reference(chat, statuses, lambda _s: rules, Filters(), now)[("s", "a")]
    assert ref.seconds["today"] == snap.status_seconds["today"]
