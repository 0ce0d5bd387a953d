"""Hypothesis strategies: plausible customer-service conversations and ways to deliver them.

Rules are small on purpose (session_idle 60 s or 20 s, unanswered_after 30 s, reorder_window
2 s, lines 5 / 10 / 20 s or 2 / 4 / 8 s) so that a few dozen events cross every edge: bursts,
bot replies, transfers, closes, idle gaps, queued buyers, ad texts, blocked buyers, ties in ts,
windows and local midnight, service-hour boundaries.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from streams.domain.model import ChatEvent
from streams.domain.rules import Filters, Lines, ShopRules, zone

# The engine and status properties' search: KEFU_PROPERTY_EXAMPLES=2000 runs a deeper one.
PROPERTY_SETTINGS = settings(
    derandomize=True,
    database=None,
    max_examples=int(os.environ.get("KEFU_PROPERTY_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SECOND = 1_000
MINUTE = 60 * SECOND

AD_PATTERNS = (re.compile("加微信"), re.compile(r"(?i)https?://"))
TEAMS = {"a1": "pre-sales", "a2": "after-sales", "a3": "pre-sales"}

TIMEZONES = ("Asia/Shanghai", "UTC")
LINES = (Lines(5, 10, 20), Lines(2, 4, 8))
TIMINGS = ((60, 30), (60, 30), (20, 30))  # (session_idle, unanswered_after) in seconds
SERVICE_HOURS: tuple[tuple[tuple[int, int], ...], ...] = (
    (),
    ((9 * 60, 23 * 60),),
    ((23 * 60, 9 * 60),),  # over midnight
    ((0, 60), (8 * 60, 16 * 60)),  # around UTC midnight / 08:00 Shanghai
)
# Local Shanghai times to start at: plain noon, just before midnight, around 09:00, 23:00,
# 01:00 and 08:00 (= UTC midnight), so windows, "today" and service hours get crossed.
ANCHORS = ((12, 0), (23, 57), (8, 58), (22, 58), (0, 58), (7, 58), (15, 59))
DAY = datetime(2024, 3, 15, tzinfo=zone("Asia/Shanghai"))


def chance(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in `one_in` draws (False is the simple value hypothesis shrinks to)."""
    return draw(st.sampled_from((False,) * (one_in - 1) + (True,)))


def team_of(agent: str) -> str:
    return TEAMS.get(agent, "unassigned")


@dataclass(frozen=True)
class Scenario:
    events: tuple[ChatEvent, ...]  # in generation order: ts never decreases
    rules: dict[str, ShopRules] = field(default_factory=dict)
    filters: Filters = field(default_factory=Filters)

    def rules_for(self, shop: str) -> ShopRules:
        return self.rules[shop]

    @property
    def reorder_window_ms(self) -> int:
        return min(r.reorder_window_ms for r in self.rules.values())

    @property
    def first_ts(self) -> int:
        return min(e.ts for e in self.events)

    @property
    def last_ts(self) -> int:
        return max(e.ts for e in self.events)


def describe(events: Sequence[ChatEvent], base: int | None = None) -> str:
    """One line per event, times in seconds after `base`, for failure reports."""
    if not events:
        return "(no events)"
    base = min(e.ts for e in events) if base is None else base
    lines = []
    for e in events:
        kind = "" if e.event == "message" else f" {e.event}"
        text = f" text={e.text!r}" if e.text else ""
        lines.append(
            f"  {e.message_id} {e.shop_id}/{e.buyer_id} t={(e.ts - base) / 1000:+.3f}s "
            f"{e.sender}{kind} agent={e.agent_id}{text}"
        )
    return "\n".join(lines)


_GAP_KINDS = ("tie",) + ("short",) * 6 + ("mid",) * 5 + ("long", "idle") * 2 + ("huge", "edge")
# exactly the reorder window, session_idle (20 s / 60 s) and unanswered_after
_EDGE_GAPS = (2 * SECOND, 20 * SECOND, 30 * SECOND, 60 * SECOND)


@st.composite
def gaps(draw: st.DrawFn) -> int:
    kind = draw(st.sampled_from(_GAP_KINDS))
    if kind == "tie":
        return 0
    if kind == "short":
        return draw(st.integers(1, 3 * SECOND))
    if kind == "mid":
        return draw(st.integers(3 * SECOND, 12 * SECOND))
    if kind == "long":
        return draw(st.integers(20 * SECOND, 45 * SECOND))
    if kind == "edge":
        return draw(st.sampled_from(_EDGE_GAPS))
    if kind == "idle":
        return draw(st.integers(60 * SECOND + 1, 200 * SECOND))
    return draw(st.integers(5 * MINUTE, 70 * MINUTE))


_ACTIONS = (
    "exchange",
    "exchange",
    "exchange",
    "buyer",
    "buyer",
    "buyer",
    "burst",
    "burst",
    "reply",
    "reply",
    "reply",
    "reply",
    "bot",
    "transfer",
    "close",
    "give_up",
)
_TEXTS = (None, None, None, None, "hi", "在吗")
_AD_TEXTS = ("加微信 a1b2", "see https://spam.example")


@st.composite
def scenarios(draw: st.DrawFn, max_steps: int = 40) -> Scenario:
    shops = ["s1", "s2"][: draw(st.integers(1, 2))]
    hours = SERVICE_HOURS if chance(draw, 3) else ((),)
    rules = {}
    for shop in shops:
        idle_s, unanswered_s = draw(st.sampled_from(TIMINGS))
        rules[shop] = ShopRules(
            timezone=draw(st.sampled_from(TIMEZONES)),
            lines=draw(st.sampled_from(LINES)),
            session_idle_ms=idle_s * SECOND,
            unanswered_after_ms=unanswered_s * SECOND,
            reorder_window_ms=2 * SECOND,
            service_hours=draw(st.sampled_from(hours)),
        )
    agents = [f"a{i}" for i in range(1, draw(st.integers(1, 4)) + 1)]
    buyers = [f"b{i}" for i in range(1, draw(st.integers(1, 6)) + 1)]
    blocked = frozenset({"b2"}) if chance(draw, 3) else frozenset()
    filters = Filters(ad_patterns=AD_PATTERNS, block_list=blocked)

    hour, minute = draw(st.sampled_from(ANCHORS))
    t = int(DAY.replace(hour=hour, minute=minute).timestamp() * 1000)
    t += draw(st.integers(0, MINUTE - 1))

    convs = [(shop, buyer) for shop in shops for buyer in buyers]
    assigned: dict[tuple[str, str], str | None] = {
        c: draw(st.sampled_from([*agents, None])) for c in convs
    }
    raw: list[tuple[str, str, str, str | None, int, str, str | None]] = []

    def emit(conv: tuple[str, str], sender: str, agent: str | None, kind: str = "message") -> None:
        text = None
        if sender == "buyer":
            ad = chance(draw, 40)
            text = draw(st.sampled_from(_AD_TEXTS if ad else _TEXTS))
        raw.append((conv[0], conv[1], sender, agent, t, kind, text))

    def buyer_agent(conv: tuple[str, str]) -> str | None:
        choice = draw(st.sampled_from(("same", "same", "same", "same", "queued", "other")))
        if choice == "queued":
            assigned[conv] = None
        elif choice == "other":
            assigned[conv] = draw(st.sampled_from(agents))
        return assigned[conv]

    conv = convs[0]
    for _ in range(draw(st.integers(1, max_steps))):
        t += draw(gaps())
        if chance(draw, 3):  # mostly go on with the same conversation
            conv = draw(st.sampled_from(convs))
        action = draw(st.sampled_from(_ACTIONS))
        if action == "buyer":
            emit(conv, "buyer", buyer_agent(conv))
        elif action == "burst":
            for i in range(draw(st.integers(2, 4))):
                if i:
                    t += draw(st.integers(0, 4 * SECOND))
                emit(conv, "buyer", buyer_agent(conv))
        elif action == "exchange":  # a question and, a little later, its answer
            emit(conv, "buyer", buyer_agent(conv))
            t += draw(st.one_of(st.integers(0, 12 * SECOND), st.sampled_from(_EDGE_GAPS)))
            emit(conv, "agent", assigned[conv] or draw(st.sampled_from(agents)))
        elif action == "give_up":  # a question, then a transfer or close on an exact edge
            emit(conv, "buyer", buyer_agent(conv))
            t += draw(st.sampled_from(_EDGE_GAPS))
            if chance(draw, 2):
                emit(conv, "system", None, "close")
            else:
                assigned[conv] = draw(st.sampled_from(agents))
                emit(conv, "system", assigned[conv], "transfer")
        elif action == "reply":
            current = assigned[conv]
            if current is None or chance(draw, 6):
                current = draw(st.sampled_from(agents))
            emit(conv, "agent", current)
        elif action == "bot":
            emit(conv, "bot", None)
        elif action == "transfer":
            assigned[conv] = draw(st.sampled_from(agents))
            emit(conv, "system", assigned[conv], "transfer")
        else:
            emit(conv, "system", None, "close")

    # message ids: unique within a shop, shared across shops, in an order unrelated to ts
    ids: dict[int, str] = {}
    for shop in shops:
        idx = [i for i, r in enumerate(raw) if r[0] == shop]
        perm = draw(st.permutations(range(len(idx))))
        ids.update({i: f"m{p:03d}" for i, p in zip(idx, perm, strict=True)})
    events = tuple(
        ChatEvent(ids[i], shop, buyer, sender, agent, ts, kind, text)  # type: ignore[arg-type]
        for i, (shop, buyer, sender, agent, ts, kind, text) in enumerate(raw)
    )
    return Scenario(events=events, rules=rules, filters=filters)


# ---------------------------------------------------------------------------------------------
# delivery


@st.composite
def jittered(draw: st.DrawFn, events: Sequence[ChatEvent], window_ms: int) -> list[ChatEvent]:
    """Arrival order by ts + uniform[0, window) jitter: nothing arrives >= window out of order."""
    jitter = draw(
        st.lists(st.integers(0, window_ms - 1), min_size=len(events), max_size=len(events))
    )
    order = sorted(range(len(events)), key=lambda i: (events[i].ts + jitter[i], i))
    return [events[i] for i in order]


@st.composite
def batches(draw: st.DrawFn, events: Sequence[ChatEvent]) -> list[list[ChatEvent]]:
    """Cut the arrival sequence into consecutive batches of 1..8 events."""
    out: list[list[ChatEvent]] = []
    i = 0
    while i < len(events):
        n = draw(st.integers(1, 8))
        out.append(list(events[i : i + n]))
        i += n
    return out


@st.composite
def with_duplicates(draw: st.DrawFn, events: Sequence[ChatEvent]) -> tuple[list[ChatEvent], int]:
    """Insert copies of a subset of events anywhere after their original. Returns (arrival, n)."""
    arrival = list(events)
    picked = draw(st.lists(st.integers(0, len(events) - 1), max_size=len(events)))
    for i in picked:
        original = events[i]
        pos = arrival.index(original)
        at = draw(st.integers(pos + 1, len(arrival)))
        arrival.insert(at, original)
    return arrival, len(picked)


@st.composite
def nows(draw: st.DrawFn, scn: Scenario) -> list[int]:
    """Increasing snapshot instants: at the last event, and later ones, some exactly on an edge
    (an event's ts + session_idle or + unanswered_after, or a whole minute)."""
    last = scn.last_ts
    later = draw(
        st.sampled_from(
            (1, 15 * SECOND, 30 * SECOND, 45 * SECOND, 61 * SECOND, 5 * MINUTE, 61 * MINUTE)
        )
    )
    out = {last, last + later + draw(st.sampled_from((0, 1, 999)))}
    e = draw(st.sampled_from(scn.events))
    rules = scn.rules_for(e.shop_id)
    edge = e.ts + draw(st.sampled_from((rules.session_idle_ms, rules.unanswered_after_ms)))
    if edge >= last:
        out.add(edge)
    if chance(draw, 3):
        out.add(max(last, (last // MINUTE + 1) * MINUTE))  # first ms of the next minute
    return sorted(out)
