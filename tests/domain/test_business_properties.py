"""The engine's business figures against the oracle (tests/domain/business_reference.py).

Generated scenarios: a shop's buyers chat with several agents, order (created / paid / refunded /
cancelled, sometimes without a `created` event, amounts like 0.1 and 0.2), rate, now and then
send an ad; times cross local midnight and a month end. They are delivered the way Kafka does:
chat in `ts` order give or take less than the reorder window, order and rating events anywhere
(a lagging order system, or ahead of the chat around them), some of everything twice, in random
batches; then a crash: checkpoint, lose some work, restore, redeliver from an earlier offset.

`SAFE` (default on) keeps the generator away from the one engine limitation still known, B4
(replies pruned from under an order that arrives late, see the end of this file and
test_attribution.py), so that these properties guard everything else. The same property without
that guard runs as a strict xfail (no shrinking, so it fails in well under a second): when the
engine is fixed it starts passing, and the guard should go. The guards for B1, B2, B3, B5 and B6
(paid-first orders, order and rating events ahead of the chat, ad buyers on two days, the month
between midnight and 01:00, month-only entries) are gone: those bugs are fixed and pinned by
regressions in test_attribution.py, and the properties pass without them. Switches:
KEFU_BUSINESS_SAFE=0 drops the guard from the two main properties;
KEFU_BUSINESS_UNGUARDED_RUN=1 runs the unguarded one as a plain test, to read its
counterexample; KEFU_BUSINESS_EXAMPLES sets the number of examples (default 80).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, Phase, assume, event, given, note, settings
from hypothesis import strategies as st

from streams.domain.model import ChatEvent, OrderEvent, RatingEvent
from streams.domain.rules import Filters, ShopRules, zone
from streams.tooling.engine import Engine
from tests.domain.business_reference import (
    ALL_WINDOWS,
    FIELDS,
    business_differences,
    business_snapshots,
    engine_windows,
    local_midnight,
    split_events,
)
from tests.domain.strategies import AD_PATTERNS, MINUTE, SECOND, batches, chance

HOUR = 60 * MINUTE
Event = ChatEvent | OrderEvent | RatingEvent

SETTINGS = settings(
    derandomize=True,
    database=None,
    max_examples=int(os.environ.get("KEFU_BUSINESS_EXAMPLES", "80")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
    ],
)

SH = zone("Asia/Shanghai")
# Local Shanghai instants to start at: an ordinary noon, just before midnight, and just before
# the month changes (2024-03-31 24:00 +08:00 = 2024-03-31 16:00 UTC).
ANCHORS = (
    datetime(2024, 3, 15, 12, 0, tzinfo=SH),
    datetime(2024, 3, 15, 23, 40, tzinfo=SH),
    datetime(2024, 3, 31, 23, 30, tzinfo=SH),
    datetime(2024, 3, 31, 23, 58, tzinfo=SH),
)
AMOUNTS = ("0.1", "0.2", "0.3", "19.90", "199.99", "100", "0.0001", "1234.5678", "7")
WINDOWS_MS = (10 * MINUTE, 30 * MINUTE, 24 * HOUR, 24 * HOUR)


@dataclass
class BizScenario:
    events: list[Event]  # in event-time order
    rules: dict[str, ShopRules] = field(default_factory=dict)
    filters: Filters = field(default_factory=Filters)

    def rules_for(self, shop: str) -> ShopRules:
        return self.rules[shop]

    @property
    def chat(self) -> list[ChatEvent]:
        return [e for e in self.events if isinstance(e, ChatEvent)]

    @property
    def last_ts(self) -> int:
        return max(e.ts for e in self.events)

    @property
    def first_ts(self) -> int:
        return min(e.ts for e in self.events)


def describe(events: Sequence[Event], base: int) -> str:
    out = []
    for e in events:
        t = f"t={(e.ts - base) / 1000:+.3f}s"
        if isinstance(e, ChatEvent):
            kind = "" if e.event == "message" else f" {e.event}"
            text = f" text={e.text!r}" if e.text else ""
            out.append(f"  chat {e.message_id} {e.buyer_id} {t} {e.sender}{kind} "
                       f"agent={e.agent_id}{text}")
        elif isinstance(e, OrderEvent):
            out.append(f"  order {e.order_id} {e.buyer_id} {t} {e.status} {e.amount}")
        else:
            out.append(f"  rating {e.buyer_id} {t} agent={e.agent_id} score={e.score}")
    return "\n".join(out)


_GAPS = ("tie", "short", "short", "short", "mid", "mid", "mid", "long", "huge")


@st.composite
def gap(draw: st.DrawFn) -> int:
    kind = draw(st.sampled_from(_GAPS))
    if kind == "tie":
        return 0
    if kind == "short":
        return draw(st.integers(1, 5 * SECOND))
    if kind == "mid":
        return draw(st.integers(5 * SECOND, 2 * MINUTE))
    if kind == "long":
        return draw(st.integers(2 * MINUTE, 20 * MINUTE))
    return draw(st.integers(20 * MINUTE, 3 * HOUR))


_ACTIONS = (
    "exchange", "exchange", "reply", "reply", "reply", "buyer", "order", "buy", "buy", "pay",
    "refund", "cancel", "rating", "edge", "transfer", "close", "handoff",
)  # fmt: skip


@st.composite
def business_scenarios(draw: st.DrawFn, max_steps: int = 35) -> BizScenario:
    """A shop's day: buyers chat with agents, order, pay, get refunds, cancel and rate."""
    tz = draw(st.sampled_from(("Asia/Shanghai", "Asia/Shanghai", "UTC")))
    window = draw(st.sampled_from(WINDOWS_MS))
    rules = {
        "s1": ShopRules(
            timezone=tz, session_idle_ms=60 * SECOND, unanswered_after_ms=30 * SECOND,
            attribution_window_ms=window, reorder_window_ms=2 * SECOND,
        )
    }
    agents = [f"a{i}" for i in range(1, draw(st.sampled_from((1, 2, 3, 3))) + 1)]
    buyers = [f"b{i}" for i in range(1, draw(st.integers(1, 3)) + 1)]
    blocked = frozenset({"b3"}) if chance(draw, 4) else frozenset()
    filters = Filters(ad_patterns=AD_PATTERNS, block_list=blocked)

    t = int(draw(st.sampled_from(ANCHORS)).timestamp() * 1000) + draw(st.integers(0, MINUTE - 1))
    events: list[Event] = []
    replies: dict[str, list[int]] = {b: [] for b in buyers}
    open_orders: dict[str, list[str]] = {b: [] for b in buyers}
    paid_at: dict[str, int] = {}
    n_msg = 0
    n_order = 0
    buyer = buyers[0]

    def chat(
        sender: str, agent: str | None, kind: str = "message", text: str | None = None,
        resolved: bool | None = None,
    ) -> None:
        nonlocal n_msg
        n_msg += 1
        events.append(ChatEvent(f"m{n_msg:03d}", "s1", buyer, sender, agent, t, kind, text,  # type: ignore[arg-type]
                                resolved))
        if sender == "agent" and kind == "message":
            replies[buyer].append(t)

    def order_event(order_id: str, status: str, amount: str) -> None:
        events.append(OrderEvent(order_id, "s1", buyer, status, Decimal(amount), t))  # type: ignore[arg-type]

    def new_order() -> None:
        nonlocal n_order
        n_order += 1
        order_id = f"o{n_order}"
        open_orders[buyer].append(order_id)
        if chance(draw, 6):  # no `created` event: T is its earliest event
            status = draw(st.sampled_from(("paid", "cancelled", "refunded")))
            order_event(order_id, status, draw(st.sampled_from(AMOUNTS)))
            if status == "paid":
                paid_at[order_id] = t
        else:
            order_event(order_id, "created", draw(st.sampled_from(AMOUNTS)))

    for _ in range(draw(st.integers(1, max_steps))):
        t += draw(gap())
        if chance(draw, 3):
            buyer = draw(st.sampled_from(buyers))
        action = draw(st.sampled_from(_ACTIONS))
        if action in ("buyer", "exchange"):
            ad = chance(draw, 25)
            chat("buyer", draw(st.sampled_from([*agents, None])),
                 text="加微信 x1" if ad else draw(st.sampled_from((None, "在吗"))))
            if action == "exchange":
                t += draw(st.integers(0, 20 * SECOND))
                chat("agent", draw(st.sampled_from(agents)))
        elif action == "reply":
            chat("agent", draw(st.sampled_from(agents)))
        elif action == "order":
            new_order()
        elif action in ("buy", "handoff"):  # an order and, a little later, its payment
            if action == "handoff":  # two agents helped the buyer before the order
                chat("agent", draw(st.sampled_from(agents)))
                t += draw(st.sampled_from((0, draw(st.integers(0, 5 * MINUTE)))))  # ties too
                chat("agent", draw(st.sampled_from(agents)))
                t += draw(st.integers(0, 5 * MINUTE))
            new_order()
            t += draw(st.integers(0, 3 * MINUTE))
            order_id = open_orders[buyer][-1]
            if paid_at.get(order_id) != t:
                paid_at.setdefault(order_id, t)
                order_event(order_id, "paid", draw(st.sampled_from(AMOUNTS)))
        elif action == "edge":
            # an order exactly at (or 1 ms past) the window's reach from an earlier reply
            if replies[buyer]:
                target = draw(st.sampled_from(replies[buyer])) + window + draw(
                    st.sampled_from((0, 0, 1))
                )
                if target >= t:
                    t = target
            new_order()
        elif action in ("pay", "refund", "cancel") and open_orders[buyer]:
            order_id = draw(st.sampled_from(open_orders[buyer]))
            if action == "pay":
                if order_id in paid_at and paid_at[order_id] == t:
                    continue  # equal-ts paid events with other amounts: first arrival wins
                paid_at.setdefault(order_id, t)
                order_event(order_id, "paid", draw(st.sampled_from(AMOUNTS)))
            elif action == "refund":
                order_event(order_id, "refunded", draw(st.sampled_from(AMOUNTS[:4])))
            else:
                order_event(order_id, "cancelled", "0")
        elif action == "rating":
            events.append(RatingEvent("s1", buyer, draw(st.sampled_from(agents)),
                                      draw(st.integers(1, 5)), t,
                                      draw(st.sampled_from((None, True, False)))))
        elif action == "transfer":
            chat("system", draw(st.sampled_from(agents)), "transfer")
        elif action == "close":
            chat("system", None, "close", resolved=draw(st.sampled_from((None, True, False))))
    assume(any(not isinstance(e, ChatEvent) for e in events))
    return BizScenario(events=events, rules=rules, filters=filters)


# ---------------------------------------------------------------------------------------------
# the known-bug guard (B4, see test_attribution.py and UNGUARDED below)

SAFE = os.environ.get("KEFU_BUSINESS_SAFE", "1") != "0"


def _order_times(events: Sequence[Event]) -> dict[tuple[str, str], int]:
    """(buyer, order id) -> attribution time T."""
    created: dict[tuple[str, str], int] = {}
    first: dict[tuple[str, str], int] = {}
    for e in events:
        if isinstance(e, OrderEvent):
            k = (e.buyer_id, e.order_id)
            first[k] = min(first.get(k, e.ts), e.ts)
            if e.status == "created":
                created[k] = min(created.get(k, e.ts), e.ts)
    return {k: created.get(k, v) for k, v in first.items()}


def triggers_known_bug(scn: BizScenario) -> bool:
    """Would the scenario hit B4: a reply in some order's attribution span that a later reply
    (more than two attribution windows on) prunes, so that an order event arriving after it is
    credited from the replies left?"""
    window = scn.rules["s1"].attribution_window_ms
    replies: dict[str, list[int]] = {}
    for e in scn.chat:
        if e.sender == "agent" and e.event == "message" and e.agent_id:
            replies.setdefault(e.buyer_id, []).append(e.ts)
    for (buyer, _order_id), t in _order_times(scn.events).items():
        span = [r for r in replies.get(buyer, []) if t - window <= r <= t]
        if span and max(replies[buyer]) > min(span) + 2 * window:
            return True
    return False


# ---------------------------------------------------------------------------------------------
# delivery


@st.composite
def deliveries(draw: st.DrawFn, scn: BizScenario) -> list[Event]:
    """One arrival order: chat jittered by less than the reorder window, orders and ratings
    anywhere, before or after the chat around them (a lagging order system, or a lagging chat
    pipeline), an order's own events in any order too; then duplicates."""
    chat = scn.chat
    jitter = draw(st.lists(st.integers(0, 2 * SECOND - 1), min_size=len(chat),
                           max_size=len(chat)))
    order = sorted(range(len(chat)), key=lambda i: (chat[i].ts + jitter[i], i))
    arrival: list[Event] = [chat[i] for i in order]
    for e in (e for e in scn.events if not isinstance(e, ChatEvent)):
        arrival.insert(draw(st.integers(0, len(arrival))), e)
    # duplicates: copies of some events anywhere after their original
    for i in draw(st.lists(st.integers(0, len(arrival) - 1), max_size=6)):
        original = arrival[i]
        pos = arrival.index(original)
        arrival.insert(draw(st.integers(pos + 1, len(arrival))), original)
    return arrival


@st.composite
def instants(draw: st.DrawFn, scn: BizScenario) -> list[int]:
    """Snapshot instants >= the last event: at it, and some (up to a day and more) later."""
    later = draw(st.sampled_from((0, 1, 30 * SECOND, 61 * SECOND, 30 * MINUTE, 61 * MINUTE,
                                  5 * HOUR, 25 * HOUR)))
    return sorted({scn.last_ts, scn.last_ts + later + draw(st.integers(0, 999))})


# ---------------------------------------------------------------------------------------------
# checks


def feed(engine: Engine, parts: Sequence[Sequence[Event]]) -> None:
    for part in parts:
        engine.feed(part)


def check(engine: Engine, scn: BizScenario, arrival: Sequence[Event], nows: list[int]) -> None:
    note("arrival:\n" + describe(arrival, scn.first_ts))
    note(f"rules: {scn.rules}\nblock_list: {sorted(scn.filters.block_list)}")
    chat, orders, ratings = split_events(arrival)
    if _ahead(arrival, scn):
        event("an order event arrived before the reply that credits it")
    for i, now in enumerate(nows):
        expected = business_snapshots(chat, orders, ratings, scn.rules_for, scn.filters, now,
                                      nows[: i + 1])
        actual = engine.snapshots(now)
        _coverage(expected, scn, now)
        diffs = business_differences(actual, expected)
        assert not diffs, f"now=t{(now - scn.first_ts) / 1000:+.3f}s: " + "; ".join(diffs[:8])


def _coverage(expected: dict, scn: BizScenario, now: int) -> None:
    """Label what an example exercised (pytest --hypothesis-show-statistics)."""
    tz = scn.rules["s1"].timezone
    if scn.first_ts < local_midnight(now, tz):
        event("spans local midnight")
    if any(k[1] == "" for k in expected):
        event("silent orders")
    month = [s.windows["month"] for s in expected.values()]
    for name in ("assists", "refunded_orders", "converted", "paid_orders", "ratings",
                 "marked_sessions", "resolved_sessions"):
        if any(getattr(w, name) for w in month):
            event(f"has {name}")
    if any(w.ordered_buyers > w.paid_buyers for w in month):
        event("unpaid orders")


def _ahead(arrival: Sequence[Event], scn: BizScenario) -> bool:
    """Did some order event arrive before a reply that precedes it in event time?"""
    times = _order_times(scn.events)
    for i, e in enumerate(arrival):
        if isinstance(e, OrderEvent):
            t = times[(e.buyer_id, e.order_id)]
            if any(isinstance(c, ChatEvent) and c.buyer_id == e.buyer_id and c.sender == "agent"
                   and c.ts <= t for c in arrival[i + 1:]):
                return True
    return False


def _scenario(data: st.DataObject, safe: bool) -> BizScenario:
    scn = data.draw(business_scenarios())
    if safe:
        assume(not triggers_known_bug(scn))
    return scn


def _random_delivery(data: st.DataObject, safe: bool) -> None:
    scn = _scenario(data, safe)
    arrival = data.draw(deliveries(scn))
    parts = data.draw(batches(arrival))
    nows = data.draw(instants(scn))
    engine = Engine(scn.rules_for, scn.filters)
    feed(engine, parts)
    check(engine, scn, arrival, nows)


def _crash_and_redelivery(data: st.DataObject, safe: bool) -> None:
    scn = _scenario(data, safe)
    arrival = data.draw(deliveries(scn))
    parts = data.draw(batches(arrival))
    nows = data.draw(instants(scn))
    j = data.draw(st.integers(0, len(parts)), label="checkpoint after batch")
    k = data.draw(st.integers(j, len(parts)), label="crash after batch")
    committed = sum(len(p) for p in parts[:j])
    offset = data.draw(st.integers(0, committed), label="redelivery offset")
    engine = Engine(scn.rules_for, scn.filters)
    feed(engine, parts[:j])
    blob = engine.checkpoint()
    feed(engine, parts[j:k])  # lost in the crash
    restored = Engine.restore(blob, scn.rules_for, scn.filters)
    feed(restored, data.draw(batches(arrival[offset:]), label="redelivered batches"))
    check(restored, scn, arrival, nows)


@SETTINGS
@given(data=st.data())
def test_business_figures_equal_the_oracle(data: st.DataObject) -> None:
    _random_delivery(data, SAFE)


@SETTINGS
@given(data=st.data())
def test_crash_restore_and_redelivery_give_the_same_figures(data: st.DataObject) -> None:
    _crash_and_redelivery(data, SAFE)


# Without the guard B4 still fails: replies older than two attribution windows before the
# buyer's newest reply are pruned, so an order that arrives (or whose time moves) after that is
# credited from the replies left. Counterexample (window 10 min): reply a2 +677.682s, reply a2
# +12528.917s, then order o1 created +677.803s arrives -> engine: a silent order (shop queue),
# oracle: credited a2. `triggers_known_bug` is the guard that keeps it out.
UNGUARDED = pytest.mark.xfail(
    os.environ.get("KEFU_BUSINESS_UNGUARDED_RUN") is None,
    strict=True,
    reason="engine bug B4 (replies pruned from under a late order): without the guard the "
    "properties fail",
)


@UNGUARDED
@settings(SETTINGS, phases=[Phase.generate])  # fails fast: no shrinking of a known failure
@given(data=st.data())
def test_business_figures_without_the_known_bug_guard(data: st.DataObject) -> None:
    _random_delivery(data, False)


def test_the_oracle_reads_missing_engine_entries_as_zeros() -> None:
    """A sanity check of the comparison itself: zeros everywhere for an absent entry."""
    windows = engine_windows(None)
    assert set(windows) == set(ALL_WINDOWS)
    assert all(getattr(w, f) == 0 for w in windows.values() for f in FIELDS)
