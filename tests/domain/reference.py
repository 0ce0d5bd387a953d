"""Reference implementation (test oracle) of the response KPIs.

Written straight from the definitions in the most obvious way, with no incremental state:
de-duplicate in arrival order, sort every conversation by (ts, message_id), walk it once, keep
every round, message and unanswered crossing as a plain record, and answer each window query by
filtering those records. Slow, but easy to check against the definitions by reading.

The definitions (docs/kpis.md, with the decisions where the contract is open):

1. Conversation = (shop_id, buyer_id). A later event with the same (shop_id, message_id) as an
   earlier-arrived one is ignored entirely. Each conversation is processed in (ts, message_id).
2. A buyer message starts a new session if none is open, the previous one was closed, or
   ts - ts(previous event of any kind) > session_idle_ms. The first round of a session is its
   first response.
3. A buyer message sets the current agent to its agent_id (None = queued); if that changes the
   agent, assigned_at = its ts. A transfer sets current agent = agent_id, assigned_at = ts
   (also when the agent does not change). A close ends the session and the pending round, and
   clears the current agent.
4. A round starts at a buyer message when none is pending; it ends at the next agent message
   (the reply), or unanswered at close or when a buyer message starts a new session.
   Response time = (reply.ts - max(start, assigned_at if replier == current agent else start))
   / 1000, clamped at >= 0, credited to the replying agent in the window holding reply.ts.
5. A round is excluded from every response KPI, reply rate and waiting if its start is outside
   service hours or the buyer is an ad buyer at its start.
6. within[level] = response time <= line (inclusive).
7. Q/A: agent_messages = agent messages by the agent; buyer_messages = buyer messages whose
   agent_id is the agent (queued ones count for nobody), ts in the window, buyer not ad at ts.
8. Reply rate: replied = buyers with a counted round answered by the agent with reply ts in W.
   Unanswered: each period during which a counted round is pending and assigned to agent A
   (from a = max(start, assigned_at)) that lasts past a + unanswered_after (ending event ts >
   a + U, or still pending and now >= a + U) makes the buyer received by A at a + U.
   received = replied | unanswered. The queue gets no reply-rate entries.
9. Waiting now: a counted pending round whose conversation's last event is no more than
   session_idle_ms before now waits for the current agent ("" when queued).
10. Ad buyers: a buyer message whose text matches an ad pattern, or any event of a blocked buyer,
    makes the buyer an ad buyer from that event (in (ts, message_id) order) to the end of that
    local day.
11. Windows: 5m / 1h = [floor_to_minute(now) - 4 / 59 min, now]; today = [day_start(now), now].
12. Quantiles: nearest rank on the exact values, v[ceil(q * n) - 1], with q taken as a decimal.
13. An (shop, agent) appears when any window has a round, a message or a received buyer, or it
    has waiting buyers, or it has counters (rounds_total > 0).
14. Counters (rounds_total, within_total, histogram, response_seconds_sum) count every counted
    answered round ever whose reply ts <= now - reorder_window_ms (monotone: never retracted).

Where a point was open or the engine chose differently from the letter of the brief, the module
flags below name the choice; flipping one gives the other reading.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from streams.domain.model import (
    LEVELS,
    QUANTILES,
    WINDOWS,
    AgentSnapshot,
    ChatEvent,
    WindowKpis,
)
from streams.domain.rules import MINUTE_MS, Filters, ShopRules

QUEUE = ""
# Q/A is "buyer messages assigned to the agent" (docs/kpis.md): a queued buyer's message is assigned
# to no agent, so the shop queue gets no Q/A counts (definition 7 read with §1).
QUEUE_COUNTS_BUYER_MESSAGES = False
# Definition 10 says "from that event's ts": an event with the same ts that sorts before the ad
# message (smaller message_id) is already ad. True = only from the ad message's position on.
AD_TIES_BY_POSITION = True
# Definition 13 lists only windowed data; True also keeps an entry that has counters
# (rounds_total > 0) but nothing in any window, so exported counters never vanish.
KEEP_ENTRIES_WITH_TOTALS = True
# Counters (rounds_total, within_total, histogram, sum) are monotone: the engine counts a round
# only once its reply is older than the shop's reorder window at `now`, when no late event can
# retract or change it any more. True models that lag; False counts every round at once.
TOTALS_LAG_REORDER_WINDOW = True
# Definition 10: a blocked buyer is ad "from their first event", whoever sent it.
BLOCKED_FROM_ANY_EVENT = True
# Definition 3: a transfer sets assigned_at even when the agent does not change.
TRANSFER_TO_SAME_AGENT_RESETS = True

BUCKETS: tuple[float, ...] = (
    1.0,
    5.0,
    10.0,
    20.0,
    30.0,
    40.0,
    60.0,
    120.0,
    180.0,
    300.0,
    600.0,
    math.inf,
)

RulesFor = Callable[[str], ShopRules]
TeamOf = Callable[[str], str]


def _unassigned(_agent: str) -> str:
    return "unassigned"


# ---------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class Answer:
    """A counted round answered by `agent` at `reply_ts`."""

    shop: str
    agent: str
    buyer: str
    start: int
    reply_ts: int
    ms: int
    first: bool

    @property
    def seconds(self) -> float:
        return self.ms / 1000.0


@dataclass(frozen=True)
class Crossing:
    """A counted round that waited `unanswered_after` while assigned to `agent`."""

    shop: str
    agent: str
    buyer: str
    at_ms: int


@dataclass(frozen=True)
class Message:
    """A non-ad human message, counted for Q/A. kind is "agent" or "buyer"."""

    shop: str
    agent: str
    buyer: str
    ts: int
    kind: str


@dataclass(frozen=True)
class Waiting:
    shop: str
    agent: str
    buyer: str
    since_ms: int


@dataclass
class Segment:
    """A stretch of a pending round during which it was assigned to one agent."""

    agent: str | None
    a: int
    end: int | None = None


@dataclass
class Round:
    shop: str
    buyer: str
    start: int
    first: bool
    counted: bool
    segments: list[Segment] = field(default_factory=list)
    end: int | None = None
    reply_agent: str | None = None
    seconds: float | None = None


@dataclass
class Trace:
    """Everything the walk found; the snapshots are computed from these lists only."""

    rounds: list[Round] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    crossings: list[Crossing] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# helpers


def dedup(events: Iterable[ChatEvent]) -> list[ChatEvent]:
    """Keep the first-arrived event of every (shop_id, message_id)."""
    seen: set[tuple[str, str]] = set()
    out: list[ChatEvent] = []
    for e in events:
        key = (e.shop_id, e.message_id)
        if key in seen:
            continue
        seen.add(key)
        out.append(e)
    return out


def window_bounds(rules: ShopRules, now_ms: int) -> dict[str, tuple[int, int]]:
    """Inclusive [lo, hi] of every window at `now_ms`."""
    minute = (now_ms // MINUTE_MS) * MINUTE_MS
    return {
        "5m": (minute - 4 * MINUTE_MS, now_ms),
        "1h": (minute - 59 * MINUTE_MS, now_ms),
        "today": (rules.day_start_ms(now_ms), now_ms),
    }


def nearest_rank(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile on exact values: sorted(v)[ceil(q * n) - 1], q read as a decimal."""
    v = sorted(values)
    rank = math.ceil(Fraction(str(q)) * len(v))
    return v[max(rank, 1) - 1]


def quantiles(values: Sequence[float]) -> dict[float, float]:
    return {q: nearest_rank(values, q) for q in QUANTILES} if values else {}


def _marks_ad(e: ChatEvent, filters: Filters) -> bool:
    if e.buyer_id in filters.block_list and (BLOCKED_FROM_ANY_EVENT or e.sender == "buyer"):
        return True
    return e.sender == "buyer" and filters.is_ad(e.buyer_id, e.text)


# ---------------------------------------------------------------------------------------------
# the walk


def _walk_conversation(
    evs: list[ChatEvent], rules: ShopRules, filters: Filters, now_ms: int, trace: Trace
) -> None:
    shop, buyer = evs[0].shop_id, evs[0].buyer_id
    marks = [(e.ts, i) for i, e in enumerate(evs) if _marks_ad(e, filters)]

    def is_ad(ts: int, position: int) -> bool:
        day = rules.day_start_ms(ts)
        return any(
            m <= ts and rules.day_start_ms(m) == day and (i <= position or not AD_TIES_BY_POSITION)
            for m, i in marks
        )

    session_open = False
    last_ts: int | None = None
    cur: str | None = None
    assigned_at: int | None = None
    rnd: Round | None = None
    rounds: list[Round] = []

    def open_segment() -> None:
        assert rnd is not None
        a = rnd.start if assigned_at is None else max(rnd.start, assigned_at)
        rnd.segments.append(Segment(cur, a))

    def end_round(ts: int) -> None:
        nonlocal rnd
        assert rnd is not None
        rnd.segments[-1].end = ts
        rnd.end = ts
        rnd = None

    def reassign(agent: str | None, ts: int) -> None:
        nonlocal cur, assigned_at
        cur, assigned_at = agent, ts
        if rnd is not None:
            rnd.segments[-1].end = ts
            open_segment()

    for position, e in enumerate(evs):
        ad = is_ad(e.ts, position)
        if e.event == "message" and e.sender == "buyer":
            idle = last_ts is not None and e.ts - last_ts > rules.session_idle_ms
            new_session = not session_open or idle
            if new_session:
                if rnd is not None:
                    end_round(e.ts)
                session_open = True
            if e.agent_id != cur:
                reassign(e.agent_id, e.ts)
            if rnd is None:
                rnd = Round(
                    shop=shop,
                    buyer=buyer,
                    start=e.ts,
                    first=new_session,
                    counted=rules.in_service(e.ts) and not ad,
                )
                rounds.append(rnd)
                open_segment()
            if not ad and (cur is not None or QUEUE_COUNTS_BUYER_MESSAGES):
                trace.messages.append(Message(shop, cur or QUEUE, buyer, e.ts, "buyer"))
        elif e.event == "message" and e.sender == "agent":
            agent = e.agent_id or QUEUE
            if not ad:
                trace.messages.append(Message(shop, agent, buyer, e.ts, "agent"))
            if rnd is not None:
                base = rnd.start
                if agent == cur and assigned_at is not None:
                    base = max(rnd.start, assigned_at)
                ms = max(0, e.ts - base)
                rnd.reply_agent, rnd.seconds = agent, ms / 1000.0
                if rnd.counted:
                    trace.answers.append(Answer(shop, agent, buyer, rnd.start, e.ts, ms, rnd.first))
                end_round(e.ts)
        elif e.event == "transfer":
            if e.agent_id != cur or TRANSFER_TO_SAME_AGENT_RESETS:
                reassign(e.agent_id, e.ts)
        elif e.event == "close":
            if rnd is not None:
                end_round(e.ts)
            session_open = False
            cur = None
        # bot and system messages change nothing but last_ts
        last_ts = e.ts

    # unanswered crossings
    u = rules.unanswered_after_ms
    trace.rounds.extend(rounds)
    for r in rounds:
        if not r.counted:
            continue
        for s in r.segments:
            if s.agent is None:
                continue
            crossed = s.end > s.a + u if s.end is not None else now_ms >= s.a + u
            if crossed:
                trace.crossings.append(Crossing(shop, s.agent, buyer, s.a + u))

    # waiting now
    if (
        rnd is not None
        and rnd.counted
        and last_ts is not None
        and now_ms - last_ts <= rules.session_idle_ms
    ):
        trace.waiting.append(Waiting(shop, cur or QUEUE, buyer, rnd.start))


def walk(
    events_in_arrival_order: Iterable[ChatEvent],
    rules_for: RulesFor,
    filters: Filters,
    now_ms: int,
) -> Trace:
    events = dedup(events_in_arrival_order)
    conversations: dict[tuple[str, str], list[ChatEvent]] = {}
    for e in events:
        conversations.setdefault((e.shop_id, e.buyer_id), []).append(e)
    trace = Trace()
    for key in sorted(conversations):
        evs = sorted(conversations[key], key=lambda e: (e.ts, e.message_id))
        _walk_conversation(evs, rules_for(key[0]), filters, now_ms, trace)
    return trace


# ---------------------------------------------------------------------------------------------
# snapshots


def _window(trace: Trace, shop: str, agent: str, rules: ShopRules, lo: int, hi: int) -> WindowKpis:
    answers = [
        a for a in trace.answers if a.shop == shop and a.agent == agent and lo <= a.reply_ts <= hi
    ]
    rts = [a.seconds for a in answers]
    frts = [a.seconds for a in answers if a.first]
    lines = rules.lines.as_levels()
    replied = {a.buyer for a in answers}
    unanswered = {
        c.buyer
        for c in trace.crossings
        if c.shop == shop and c.agent == agent and lo <= c.at_ms <= hi
    }
    msgs = [m for m in trace.messages if m.shop == shop and m.agent == agent and lo <= m.ts <= hi]
    return WindowKpis(
        rounds=len(rts),
        rt_sum_ms=sum(a.ms for a in answers),
        rt_mean=sum(rts) / len(rts) if rts else None,
        rt_quantiles=quantiles(rts),
        first_rounds=len(frts),
        frt_mean=sum(frts) / len(frts) if frts else None,
        frt_quantiles=quantiles(frts),
        within={lvl: sum(1 for x in rts if x <= lines[lvl]) for lvl in LEVELS},
        received=len(replied | unanswered) if agent != QUEUE else 0,
        replied=len(replied) if agent != QUEUE else 0,
        missed=len(unanswered - replied) if agent != QUEUE else 0,
        agent_messages=sum(1 for m in msgs if m.kind == "agent"),
        buyer_messages=sum(1 for m in msgs if m.kind == "buyer"),
    )


def _has_data(w: WindowKpis) -> bool:
    return bool(w.rounds or w.agent_messages or w.buyer_messages or w.received or w.replied)


def snapshots_from_trace(
    trace: Trace, rules_for: RulesFor, now_ms: int, team_of: TeamOf = _unassigned
) -> dict[tuple[str, str], AgentSnapshot]:
    keys: set[tuple[str, str]] = set()
    keys.update((a.shop, a.agent) for a in trace.answers)
    keys.update((c.shop, c.agent) for c in trace.crossings)
    keys.update((m.shop, m.agent) for m in trace.messages)
    keys.update((w.shop, w.agent) for w in trace.waiting)
    out: dict[tuple[str, str], AgentSnapshot] = {}
    for shop, agent in sorted(keys):
        rules = rules_for(shop)
        windows = {
            name: _window(trace, shop, agent, rules, lo, hi)
            for name, (lo, hi) in window_bounds(rules, now_ms).items()
        }
        assert tuple(windows) == WINDOWS
        waits = [w.since_ms for w in trace.waiting if w.shop == shop and w.agent == agent]
        settled = now_ms - rules.reorder_window_ms if TOTALS_LAG_REORDER_WINDOW else now_ms
        rts = [
            a.seconds
            for a in trace.answers
            if a.shop == shop and a.agent == agent and a.reply_ts <= settled
        ]
        kept = KEEP_ENTRIES_WITH_TOTALS and bool(rts)
        if not waits and not kept and not any(_has_data(w) for w in windows.values()):
            continue
        lines = rules.lines.as_levels()
        out[(shop, agent)] = AgentSnapshot(
            shop=shop,
            agent=agent,
            team="unassigned" if agent == QUEUE else team_of(agent),
            windows=windows,
            waiting=len(waits),
            oldest_wait_since_ms=min(waits) if waits else None,
            rounds_total=len(rts),
            within_total={lvl: sum(1 for x in rts if x <= lines[lvl]) for lvl in LEVELS},
            histogram={le: sum(1 for x in rts if x <= le) for le in BUCKETS},
            response_seconds_sum=sum(rts, 0.0),
        )
    return out


def reference_snapshots(
    events_in_arrival_order: Iterable[ChatEvent],
    rules_for: RulesFor,
    filters: Filters,
    now_ms: int,
    team_of: TeamOf = _unassigned,
) -> dict[tuple[str, str], AgentSnapshot]:
    """The snapshots the engine must produce after being fed these events, at `now_ms`.

    Assumes now_ms >= every event ts (the engine is asked only about the present).
    """
    trace = walk(events_in_arrival_order, rules_for, filters, now_ms)
    return snapshots_from_trace(trace, rules_for, now_ms, team_of)


# ---------------------------------------------------------------------------------------------
# comparison


def _count_dict(d: dict[object, int], keys: Iterable[object]) -> dict[object, int]:
    """Count dicts compare with missing keys read as 0 (an empty histogram is all zeros)."""
    full = {k: 0 for k in keys}
    full.update(d)
    return full


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _only_totals(s: AgentSnapshot) -> bool:
    return not s.waiting and not any(_has_data(w) for w in s.windows.values())


def _month_only(s: AgentSnapshot) -> bool:
    """An entry with nothing in 5m/1h/today, no waiting and no counters: month data only."""
    return not s.waiting and not s.rounds_total and all(
        not _has_data(w) for w in s.windows.values()
    )


def snapshot_differences(
    actual: dict[tuple[str, str], AgentSnapshot],
    expected: dict[tuple[str, str], AgentSnapshot],
    totals: bool = True,
) -> list[str]:
    """Every differing field, as 'path: engine=X oracle=Y', in a stable order.

    totals=False leaves out the counters (rounds_total, within_total, histogram, sum) and
    entries that hold nothing else.
    """
    diffs: list[str] = []
    if not totals:
        actual = {k: v for k, v in actual.items() if k in expected or not _only_totals(v)}
        expected = {k: v for k, v in expected.items() if k in actual or not _only_totals(v)}
    for key in sorted(set(actual) | set(expected)):
        if key not in actual:
            diffs.append(f"{key}: missing from engine; oracle has {expected[key]}")
            continue
        if key not in expected and _month_only(actual[key]):
            continue  # kept for its month figures (closed days): the business oracle checks it
        if key not in expected:
            diffs.append(f"{key}: engine has an entry the oracle has not: {actual[key]}")
            continue
        a, e = actual[key], expected[key]

        def diff(path: str, got: object, want: object, key: object = key) -> None:
            diffs.append(f"{key}.{path}: engine={got!r} oracle={want!r}")

        for name in ("shop", "agent", "team", "waiting", "oldest_wait_since_ms"):
            if getattr(a, name) != getattr(e, name):
                diff(name, getattr(a, name), getattr(e, name))
        if totals:
            if a.rounds_total != e.rounds_total:
                diff("rounds_total", a.rounds_total, e.rounds_total)
            if _count_dict(a.within_total, LEVELS) != _count_dict(e.within_total, LEVELS):
                diff("within_total", a.within_total, e.within_total)
            if _count_dict(a.histogram, BUCKETS) != _count_dict(e.histogram, BUCKETS):
                diff("histogram", a.histogram, e.histogram)
            if not _close(a.response_seconds_sum, e.response_seconds_sum):
                diff("response_seconds_sum", a.response_seconds_sum, e.response_seconds_sum)
        for w in WINDOWS:
            if w not in a.windows:
                diff(f"windows[{w!r}]", None, e.windows[w])
                continue
            aw, ew = a.windows[w], e.windows[w]
            for name in (
                "rounds",
                "rt_sum_ms",
                "first_rounds",
                "received",
                "replied",
                "missed",
                "agent_messages",
                "buyer_messages",
                "rt_quantiles",
                "frt_quantiles",
            ):
                if getattr(aw, name) != getattr(ew, name):
                    diff(f"windows[{w!r}].{name}", getattr(aw, name), getattr(ew, name))
            for name in ("rt_mean", "frt_mean"):
                if not _close(getattr(aw, name), getattr(ew, name)):
                    diff(f"windows[{w!r}].{name}", getattr(aw, name), getattr(ew, name))
            if _count_dict(aw.within, LEVELS) != _count_dict(ew.within, LEVELS):
                diff(f"windows[{w!r}].within", aw.within, ew.within)
    return diffs


def assert_same_snapshots(
    actual: dict[tuple[str, str], AgentSnapshot],
    expected: dict[tuple[str, str], AgentSnapshot],
    context: str = "",
    totals: bool = True,
) -> None:
    diffs = snapshot_differences(actual, expected, totals)
    if diffs:
        more = f" (+{len(diffs) - 1} more: " + "; ".join(diffs[1:6]) + ")" if len(diffs) > 1 else ""
        raise AssertionError(f"{context}first difference: {diffs[0]}{more}")
