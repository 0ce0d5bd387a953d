"""Reference implementation (test oracle) of the business KPIs: attribution, sales, cohort
conversion, ratings, the month and the scorecard.

Written straight from the lead's definitions in the most obvious way, with no incremental state:
de-duplicate in arrival order, collect every human reply, every order event and every rating,
sort, attribute each order once from the full reply history, keep plain records, and answer each
window query by filtering those records. The response half (rounds, reply rate, ad status of
chat messages) comes from the colleague's oracle in tests/domain/reference.py.

The definitions (docs/kpis.md, with the decisions where the contract is open):

1. Orders and ratings belong to the conversation (shop_id, buyer_id), like chat. Order events
   are de-duplicated on (order_id, status, ts, amount) within the conversation, ratings on
   (agent_id, ts); the first to arrive is kept.
2. Human replies = chat events with sender "agent", event "message" and agent_id set (whatever
   the buyer's ad status), de-duplicated by message id. An order's attribution time T = the ts
   of its `created` event (the smallest, if several), else the smallest ts of any of its events.
   Credited agent = the agent of the latest reply with T - attribution_window <= ts <= T (both
   ends inclusive); on equal ts the larger agent id wins. Every other distinct agent with a reply
   in that span gets one assist for the order, placed at T. No reply in the span: a silent order,
   shop level, reported under agent "" (the shop-queue entry).
3. An order whose buyer is an ad buyer at T is left out entirely. Ad status is the response
   oracle's: an ad-marking chat event (reference._marks_ad) makes the buyer an ad buyer from its
   ts to the end of that local day; at an instant t (no message position), ad = some mark with
   mark.ts <= t on the same local day.
4. Per (shop, agent) and window W (5m, 1h, today as in the response oracle; month below):
   ordered_buyers = distinct buyers with a credited order whose T is in W. The paid ts of an order
   = its smallest `paid` ts and its amount that event's amount (on equal ts, the first to arrive);
   paid_orders = credited orders paid in W, paid_buyers = their distinct buyers, sales = the sum
   of their amounts. Every `refunded` event is one refund (ts, amount): refunded_orders = distinct
   credited orders with a refund in W, refund_amount = sum of those refunds' amounts. A cancelled
   order still counts as ordered and changes nothing else. assists by T in W. Ratings: count, sum
   and good (score >= 4) by rating ts in W for the rating's agent_id; an ad buyer's rating (ad at
   the rating ts) is left out.
   Money is summed exactly in Decimal; the engine keeps integers of 1/10000 (half-even), so the
   comparison is sum.quantize(0.0001) against the engine's units. With amounts of at most four
   decimals (every real currency) per-event and per-sum rounding agree.
5. inquiries (询单人数) = distinct buyers who got a human reply (an agent message, non-ad at its
   ts: the response oracle's Message records of kind "agent") from the agent in W.
   converted = inquired buyers in W with a paid order credited to this agent whose paid ts is
   <= now and still retained: paid ts >= min(minute(now) - 59 min, local midnight of now - 1 h)
   (the minute buckets the engine keeps). conversion_rate = converted / inquiries.
6. Month = local month start .. now. Closed days (local days of the month before today) come from
   day summaries made when a day's buckets expire, an hour after the day ends: each is the day's
   window [day start, day end), with `converted` judged at that expiry instant against the paid
   orders retained then. The month figure = the sum of the closed days of the current local
   month + today's window. Distinct counts are summed per day: a buyer who ordered on two days
   counts twice in the month's ordered_buyers (and in inquiries, paid_buyers, converted...).
   Expiry instants: the engine expires when asked for snapshots; the oracle takes the instants
   as `expiries` (default: only `now`). A day D expires at the first instant t with
   min(minute(t) - 59 min, local midnight of t - 1 h) >= end of D; the paid orders retained then
   are those with paid ts >= the same bound at the previous instant (all, if none).
   The oracle assumes every event was fed before the first expiry that would drop its minute.
7. Scorecard: target_completion 30 (today: today's sales / (monthly sales_target / days in the
   month), month: month sales / sales_target), conversion 30 (vs 0.40), payment_success 10 (vs
   0.90), aov 10 (vs 200), reply_rate 10 (vs 1.0), response_time 5 (full at mean <= warning line,
   0 at >= 2 x critical, linear between), execution 5 (supervisor points, default full marks);
   each item = weight x min(1, value / target), 0 without data; total; passed at >= 70.
8. An entry (shop, agent) appears when any business figure of any window, the month included, is
   non-zero (the comparison reads a missing engine entry as all zeros, so a vanished entry that
   still has month figures is a difference).
9. Resolution: walk each conversation's de-duplicated chat in (ts, message_id) order; a buyer
   message opens a session when none is open or the last event is more than session_idle ago
   (its ts is the session's start); its agent_id becomes the holder, a transfer's agent_id too;
   a `close` ends the session and, with `resolved`, marks it for the holder at the close's ts
   (not for an ad buyer, nor without a holder). A rating with `resolved` (not ad at its ts)
   belongs to the latest session started at or before its ts (none: a session of its own) and
   replaces that session's mark with its own (rated agent, ts, value); of several, the largest
   (ts, agent) wins. marked_sessions / resolved_sessions count marks by ts in W.

Where a point was open, the module flags below name the choice.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

from streams.domain.model import (
    WINDOWS,
    AgentSnapshot,
    ChatEvent,
    OrderEvent,
    RatingEvent,
    WindowKpis,
)
from streams.domain.rules import Filters, Lines, ShopRules
from tests.domain.reference import Trace, _marks_ad, walk
from tests.domain.reference import _window as response_window

QUEUE = ""
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
PERIODS: tuple[str, ...] = ("today", "month")
ALL_WINDOWS: tuple[str, ...] = (*WINDOWS, "month")
UNIT = Decimal("0.0001")

# Definition 6 says the month = every closed day of the month + today. Between local midnight and
# 01:00 yesterday's buckets have not expired yet, so it has no day summary: True counts yesterday
# in the month anyway (judging its `converted` at now), the letter of "Σ closed days + today".
# False models a month that leaves yesterday out until its summary exists.
YESTERDAY_IN_MONTH_BEFORE_EXPIRY = True

RulesFor = Callable[[str], ShopRules]


# ---------------------------------------------------------------------------------------------
# time helpers (written here, not borrowed from the engine)


def local_midnight(ts_ms: int, tz: str) -> int:
    local = datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(tz))
    return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


def next_local_midnight(ts_ms: int, tz: str) -> int:
    """Start of the local day after the one holding ts_ms."""
    return local_midnight(local_midnight(ts_ms, tz) + 26 * HOUR_MS, tz)


def local_month_start(ts_ms: int, tz: str) -> int:
    local = datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(tz))
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return int(first.timestamp() * 1000)


def days_in_month(ts_ms: int, tz: str) -> int:
    local = datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(tz))
    return calendar.monthrange(local.year, local.month)[1]


def retained_from(now_ms: int, tz: str) -> int:
    """First ms of the paid orders still retained at now (definition 5)."""
    minute = now_ms // MINUTE_MS * MINUTE_MS
    return min(minute - 59 * MINUTE_MS, local_midnight(now_ms - HOUR_MS, tz))


def windows_at(now_ms: int, tz: str) -> dict[str, tuple[int, int]]:
    """Inclusive [lo, hi] of 5m, 1h and today at now (as the response oracle)."""
    minute = now_ms // MINUTE_MS * MINUTE_MS
    return {
        "5m": (minute - 4 * MINUTE_MS, now_ms),
        "1h": (minute - 59 * MINUTE_MS, now_ms),
        "today": (local_midnight(now_ms, tz), now_ms),
    }


def to_units(amount: Decimal) -> int:
    """An exact Decimal sum as integer 1/10000 units, half-even (the engine's money unit)."""
    return int((amount / UNIT).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


# ---------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class OrderRow:
    """One order after de-duplication, attributed (definition 2)."""

    shop: str
    buyer: str
    order_id: str
    t: int  # attribution time T
    credited: str  # "" = silent
    assists: tuple[str, ...]
    ad: bool  # left out entirely
    paid_ts: int | None
    paid_amount: Decimal
    refunds: tuple[tuple[int, Decimal], ...]
    cancelled: bool


@dataclass(frozen=True)
class Inquiry:
    shop: str
    agent: str
    buyer: str
    ts: int


@dataclass(frozen=True)
class Rating:
    shop: str
    buyer: str
    agent: str
    ts: int
    score: int
    ad: bool


@dataclass(frozen=True)
class ResolutionMark:
    """A session's counted resolution mark (definition 9)."""

    shop: str
    agent: str
    ts: int
    resolved: bool


@dataclass
class BusinessTrace:
    orders: list[OrderRow] = field(default_factory=list)
    inquiries: list[Inquiry] = field(default_factory=list)
    ratings: list[Rating] = field(default_factory=list)
    marks: list[ResolutionMark] = field(default_factory=list)


@dataclass
class BizKpis:
    """The business figures of one window; money exact."""

    inquiries: int = 0
    converted: int = 0
    ordered_buyers: int = 0
    paid_buyers: int = 0
    paid_orders: int = 0
    sales: Decimal = Decimal(0)
    refunded_orders: int = 0
    refund_amount: Decimal = Decimal(0)
    assists: int = 0
    ratings: int = 0
    rating_sum: int = 0
    ratings_good: int = 0
    marked_sessions: int = 0
    resolved_sessions: int = 0

    COUNTS = (
        "inquiries", "converted", "ordered_buyers", "paid_buyers", "paid_orders",
        "refunded_orders", "assists", "ratings", "rating_sum", "ratings_good",
        "marked_sessions", "resolved_sessions",
    )  # fmt: skip

    @property
    def sales_units(self) -> int:
        return to_units(self.sales)

    @property
    def refund_units(self) -> int:
        return to_units(self.refund_amount)

    @property
    def conversion_rate(self) -> float | None:
        return self.converted / self.inquiries if self.inquiries else None

    @property
    def payment_success_rate(self) -> float | None:
        return self.paid_buyers / self.ordered_buyers if self.ordered_buyers else None

    @property
    def average_order_value(self) -> Decimal | None:
        return self.sales / self.paid_buyers if self.paid_buyers else None

    @property
    def refund_rate(self) -> float | None:
        return self.refunded_orders / self.paid_orders if self.paid_orders else None

    @property
    def csat_mean(self) -> float | None:
        return self.rating_sum / self.ratings if self.ratings else None

    @property
    def csat_good_share(self) -> float | None:
        return self.ratings_good / self.ratings if self.ratings else None

    @property
    def resolution_rate(self) -> float | None:
        return self.resolved_sessions / self.marked_sessions if self.marked_sessions else None

    def nonzero(self) -> bool:
        return bool(any(getattr(self, n) for n in self.COUNTS) or self.sales or self.refund_amount)

    def plus(self, other: BizKpis) -> BizKpis:
        out = BizKpis(**{n: getattr(self, n) + getattr(other, n) for n in self.COUNTS})
        out.sales = self.sales + other.sales
        out.refund_amount = self.refund_amount + other.refund_amount
        return out


@dataclass
class BizSnapshot:
    shop: str
    agent: str
    windows: dict[str, BizKpis]  # 5m, 1h, today, month


# ---------------------------------------------------------------------------------------------
# the walk


def _dedup_orders(orders: Iterable[OrderEvent]) -> list[OrderEvent]:
    seen: set[tuple[str, str, str, str, int, Decimal]] = set()
    out: list[OrderEvent] = []
    for o in orders:
        key = (o.shop_id, o.buyer_id, o.order_id, o.status, o.ts, o.amount)
        if key not in seen:
            seen.add(key)
            out.append(o)
    return out


def _dedup_ratings(ratings: Iterable[RatingEvent]) -> list[RatingEvent]:
    seen: set[tuple[str, str, str, int]] = set()
    out: list[RatingEvent] = []
    for r in ratings:
        key = (r.shop_id, r.buyer_id, r.agent_id, r.ts)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _dedup_chat(chat: Iterable[ChatEvent]) -> list[ChatEvent]:
    seen: set[tuple[str, str]] = set()
    out: list[ChatEvent] = []
    for e in chat:
        key = (e.shop_id, e.message_id)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def attribute(
    replies: Sequence[tuple[int, str]], t: int, window_ms: int
) -> tuple[str, tuple[str, ...]]:
    """(credited agent, sorted assisting agents) from every reply (ts, agent) of the buyer."""
    span = [(ts, agent) for ts, agent in replies if t - window_ms <= ts <= t]
    if not span:
        return QUEUE, ()
    credited = max(span)[1]  # latest ts; on equal ts the larger agent id
    return credited, tuple(sorted({a for _, a in span} - {credited}))


def business_walk(
    chat: Iterable[ChatEvent],
    orders: Iterable[OrderEvent],
    ratings: Iterable[RatingEvent],
    rules_for: RulesFor,
    filters: Filters,
) -> BusinessTrace:
    """Every order, inquiry and rating as plain records (arrival order matters only for
    de-duplication and for equal-ts paid events)."""
    chat = _dedup_chat(chat)
    trace = BusinessTrace()

    replies: dict[tuple[str, str], list[tuple[int, str]]] = {}
    marks: dict[tuple[str, str], list[int]] = {}
    for e in chat:
        conv = (e.shop_id, e.buyer_id)
        if e.sender == "agent" and e.event == "message" and e.agent_id is not None:
            replies.setdefault(conv, []).append((e.ts, e.agent_id))
        if _marks_ad(e, filters):
            marks.setdefault(conv, []).append(e.ts)

    def is_ad(conv: tuple[str, str], ts: int) -> bool:
        tz = rules_for(conv[0]).timezone
        day = local_midnight(ts, tz)
        return any(m <= ts and local_midnight(m, tz) == day for m in marks.get(conv, ()))

    # inquiries: the response oracle's non-ad agent messages (same ad status, ties by position)
    trace_r = walk(chat, rules_for, filters, now_ms=max((e.ts for e in chat), default=0))
    for m in trace_r.messages:
        if m.kind == "agent" and m.agent != QUEUE:
            trace.inquiries.append(Inquiry(m.shop, m.agent, m.buyer, m.ts))

    by_order: dict[tuple[str, str, str], list[OrderEvent]] = {}
    for o in _dedup_orders(orders):
        by_order.setdefault((o.shop_id, o.buyer_id, o.order_id), []).append(o)
    for (shop, buyer, order_id), evs in sorted(by_order.items()):
        created = [o.ts for o in evs if o.status == "created"]
        t = min(created) if created else min(o.ts for o in evs)
        window = rules_for(shop).attribution_window_ms
        credited, assists = attribute(sorted(replies.get((shop, buyer), [])), t, window)
        paid = [o for o in evs if o.status == "paid"]
        first_paid = min(paid, key=lambda o: o.ts) if paid else None  # min keeps the first on ties
        trace.orders.append(
            OrderRow(
                shop=shop,
                buyer=buyer,
                order_id=order_id,
                t=t,
                credited=credited,
                assists=assists,
                ad=is_ad((shop, buyer), t),
                paid_ts=first_paid.ts if first_paid else None,
                paid_amount=first_paid.amount if first_paid else Decimal(0),
                refunds=tuple(sorted((o.ts, o.amount) for o in evs if o.status == "refunded")),
                cancelled=any(o.status == "cancelled" for o in evs),
            )
        )

    rated = _dedup_ratings(ratings)
    for r in rated:
        conv = (r.shop_id, r.buyer_id)
        trace.ratings.append(Rating(r.shop_id, r.buyer_id, r.agent_id, r.ts, r.score,
                                    is_ad(conv, r.ts)))
    trace.marks = resolution_marks(chat, rated, rules_for, is_ad)
    return trace


def resolution_marks(
    chat: Sequence[ChatEvent], ratings: Sequence[RatingEvent], rules_for: RulesFor,
    is_ad: Callable[[tuple[str, str], int], bool],
) -> list[ResolutionMark]:
    """Definition 9, over de-duplicated chat and ratings: one mark per session at most."""
    by_conv: dict[tuple[str, str], list[ChatEvent]] = {}
    for e in chat:
        by_conv.setdefault((e.shop_id, e.buyer_id), []).append(e)
    starts: dict[tuple[str, str], list[int]] = {}
    marks: dict[tuple[tuple[str, str], str], tuple[int, str, bool]] = {}
    for conv, evs in by_conv.items():
        idle = rules_for(conv[0]).session_idle_ms
        open_, last, agent, start = False, -1, None, -1
        for e in sorted(evs, key=lambda e: (e.ts, e.message_id)):
            if e.event == "close":
                if e.resolved is not None and open_ and agent is not None \
                        and not is_ad(conv, e.ts):
                    marks[(conv, str(start))] = (e.ts, agent, e.resolved)
                open_, agent = False, None
            elif e.event == "transfer":
                agent = e.agent_id
            elif e.sender == "buyer":
                if not open_ or (last >= 0 and e.ts - last > idle):
                    open_, start = True, e.ts
                    starts.setdefault(conv, []).append(start)
                agent = e.agent_id
            last = e.ts
    votes: dict[tuple[tuple[str, str], str], tuple[int, str, bool]] = {}
    for r in ratings:
        conv = (r.shop_id, r.buyer_id)
        if r.resolved is None or is_ad(conv, r.ts):
            continue
        before = [s for s in starts.get(conv, ()) if s <= r.ts]
        key = str(max(before)) if before else f"r{r.ts}\x1f{r.agent_id}"
        vote = (r.ts, r.agent_id, r.resolved)
        if (conv, key) not in votes or vote > votes[(conv, key)]:
            votes[(conv, key)] = vote
    marks.update(votes)  # the buyer's word counts over the agent's
    return [ResolutionMark(conv[0], agent, ts, resolved)
            for (conv, _), (ts, agent, resolved) in marks.items()]


# ---------------------------------------------------------------------------------------------
# windows


def _paid_retained(
    trace: BusinessTrace, shop: str, agent: str, lo: int | None, hi: int
) -> set[str]:
    return {
        o.buyer
        for o in trace.orders
        if o.shop == shop and o.credited == agent and not o.ad and o.paid_ts is not None
        and (lo is None or o.paid_ts >= lo) and o.paid_ts <= hi
    }


def window_kpis(
    trace: BusinessTrace, shop: str, agent: str, lo: int, hi: int, paid_buyers: set[str]
) -> BizKpis:
    """The business figures of (shop, agent) over the inclusive [lo, hi]."""
    w = BizKpis()
    inquired = {
        q.buyer for q in trace.inquiries if q.shop == shop and q.agent == agent and lo <= q.ts <= hi
    }
    w.inquiries = len(inquired)
    w.converted = len(inquired & paid_buyers)
    mine = [o for o in trace.orders if o.shop == shop and not o.ad]
    credited = [o for o in mine if o.credited == agent]
    w.ordered_buyers = len({o.buyer for o in credited if lo <= o.t <= hi})
    paid = [o for o in credited if o.paid_ts is not None and lo <= o.paid_ts <= hi]
    w.paid_orders = len(paid)
    w.paid_buyers = len({o.buyer for o in paid})
    w.sales = sum((o.paid_amount for o in paid), Decimal(0))
    refunded: set[str] = set()
    for o in credited:
        for ts, amount in o.refunds:
            if lo <= ts <= hi:
                refunded.add(o.order_id)
                w.refund_amount += amount
    w.refunded_orders = len(refunded)
    w.assists = sum(1 for o in mine if agent in o.assists and lo <= o.t <= hi)
    rated = [
        r for r in trace.ratings
        if r.shop == shop and r.agent == agent and not r.ad and lo <= r.ts <= hi
    ]
    w.ratings = len(rated)
    w.rating_sum = sum(r.score for r in rated)
    w.ratings_good = sum(1 for r in rated if r.score >= 4)
    marked = [m for m in trace.marks if m.shop == shop and m.agent == agent and lo <= m.ts <= hi]
    w.marked_sessions = len(marked)
    w.resolved_sessions = sum(1 for m in marked if m.resolved)
    return w


def _keys(trace: BusinessTrace) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    keys.update((q.shop, q.agent) for q in trace.inquiries)
    for o in trace.orders:
        if not o.ad:
            keys.add((o.shop, o.credited))
            keys.update((o.shop, a) for a in o.assists)
    keys.update((r.shop, r.agent) for r in trace.ratings if not r.ad)
    keys.update((m.shop, m.agent) for m in trace.marks)
    return keys


def closed_days(now_ms: int, tz: str) -> list[tuple[int, int]]:
    """[start, end) of every local day of the current month before today."""
    out = []
    day = local_month_start(now_ms, tz)
    today = local_midnight(now_ms, tz)
    while day < today:
        end = next_local_midnight(day, tz)
        out.append((day, end))
        day = end
    return out


def day_expiry(
    day_end: int, expiries: Sequence[int], tz: str
) -> tuple[int, int | None] | None:
    """(instant the day's summary is made, first paid ts still retained then) or None."""
    before: int | None = None
    for t in expiries:
        bound = retained_from(t, tz)
        if bound >= day_end:
            return t, before
        before = bound
    return None


def snapshots_from_trace(
    trace: BusinessTrace,
    rules_for: RulesFor,
    now_ms: int,
    expiries: Sequence[int] | None = None,
) -> dict[tuple[str, str], BizSnapshot]:
    expiries = sorted(expiries) if expiries else [now_ms]
    out: dict[tuple[str, str], BizSnapshot] = {}
    for shop, agent in sorted(_keys(trace)):
        tz = rules_for(shop).timezone
        paid_now = _paid_retained(trace, shop, agent, retained_from(now_ms, tz), now_ms)
        windows = {
            name: window_kpis(trace, shop, agent, lo, hi, paid_now)
            for name, (lo, hi) in windows_at(now_ms, tz).items()
        }
        month = windows["today"]
        for start, end in closed_days(now_ms, tz):
            when = day_expiry(end, expiries, tz)
            if when is None:
                if not YESTERDAY_IN_MONTH_BEFORE_EXPIRY:
                    continue
                as_of, lo = now_ms, retained_from(now_ms, tz)
            else:
                as_of, lo = when
            paid = _paid_retained(trace, shop, agent, lo, as_of)
            month = month.plus(window_kpis(trace, shop, agent, start, end - 1, paid))
        windows["month"] = month
        if any(w.nonzero() for w in windows.values()):
            out[(shop, agent)] = BizSnapshot(shop, agent, windows)
    return out


def business_snapshots(
    chat: Iterable[ChatEvent],
    orders: Iterable[OrderEvent],
    ratings: Iterable[RatingEvent],
    rules_for: RulesFor,
    filters: Filters,
    now_ms: int,
    expiries: Sequence[int] | None = None,
) -> dict[tuple[str, str], BizSnapshot]:
    """The business figures the engine must show after being fed these events, at now.

    Assumes now >= every event ts; `expiries` are the instants the engine expired buckets
    (its `snapshots` calls), `now` included; default: only now.
    """
    trace = business_walk(chat, orders, ratings, rules_for, filters)
    return snapshots_from_trace(trace, rules_for, now_ms, expiries)


def split_events(
    events: Iterable[ChatEvent | OrderEvent | RatingEvent],
) -> tuple[list[ChatEvent], list[OrderEvent], list[RatingEvent]]:
    """Split one arrival sequence into its chat, order and rating events (order kept)."""
    chat: list[ChatEvent] = []
    orders: list[OrderEvent] = []
    ratings: list[RatingEvent] = []
    for e in events:
        if isinstance(e, ChatEvent):
            chat.append(e)
        elif isinstance(e, OrderEvent):
            orders.append(e)
        else:
            ratings.append(e)
    return chat, orders, ratings


# ---------------------------------------------------------------------------------------------
# scorecard (definition 7), written independently of streams.domain.scorecard

WEIGHTS: dict[str, float] = {
    "target_completion": 30, "conversion": 30, "payment_success": 10, "aov": 10,
    "reply_rate": 10, "response_time": 5, "execution": 5,
}  # fmt: skip


@dataclass(frozen=True)
class Card:
    items: dict[str, float]
    total: float
    passed: bool
    # what the exported table (GET /api/v1/scorecard) shows beside the points
    actual: dict[str, float | None] = field(default_factory=dict)
    target: dict[str, float] = field(default_factory=dict)


def reach(value: float | Decimal | None, target: float) -> float:
    if value is None or target <= 0:
        return 0.0
    return min(1.0, float(value) / target)


def response_points(mean_s: float | None, lines: Lines, weight: float) -> float:
    if mean_s is None:
        return 0.0
    if mean_s <= lines.warning:
        return weight
    zero = 2 * lines.critical
    if mean_s >= zero:
        return 0.0
    return weight * (zero - mean_s) / (zero - lines.warning)


def scorecard(
    kpis: BizKpis,
    reply_rate: float | None,
    rt_mean_s: float | None,
    completion: float | None,
    lines: Lines,
    *,
    weights: Mapping[str, float] = WEIGHTS,
    conversion_target: float = 0.40,
    payment_success_target: float = 0.90,
    aov_target: float = 200.0,
    reply_rate_target: float = 1.0,
    pass_score: float = 70.0,
    execution: float | None = None,
    entered: float | None = None,
) -> Card:
    """`execution`: the points used when no supervisor entered any (None = full marks);
    `entered`: what a supervisor entered (it wins, capped to 0..weight)."""
    if entered is not None:
        execution = min(weights["execution"], max(0.0, entered))
    aov = kpis.average_order_value
    actual: dict[str, float | None] = {
        "target_completion": completion,
        "conversion": kpis.conversion_rate,
        "payment_success": kpis.payment_success_rate,
        "aov": None if aov is None else float(aov),
        "reply_rate": reply_rate,
        "response_time": rt_mean_s,
        "execution": entered,
    }
    target = {
        "target_completion": 1.0, "conversion": conversion_target,
        "payment_success": payment_success_target, "aov": aov_target,
        "reply_rate": reply_rate_target, "response_time": lines.warning,
        "execution": weights["execution"],
    }
    items = {
        "target_completion": weights["target_completion"] * reach(completion, 1.0),
        "conversion": weights["conversion"] * reach(kpis.conversion_rate, conversion_target),
        "payment_success": weights["payment_success"]
        * reach(kpis.payment_success_rate, payment_success_target),
        "aov": weights["aov"] * reach(kpis.average_order_value, aov_target),
        "reply_rate": weights["reply_rate"] * reach(reply_rate, reply_rate_target),
        "response_time": response_points(rt_mean_s, lines, weights["response_time"]),
        "execution": weights["execution"] if execution is None else execution,
    }
    total = sum(items.values())
    return Card(items, total, total >= pass_score, actual, target)


def response_for_score(
    trace: Trace, shop: str, agent: str, rules: ShopRules, now_ms: int
) -> dict[str, tuple[float | None, float | None]]:
    """period -> (reply rate, mean response seconds) from the response oracle's records: today's
    window, and for the month the sums of replied, received, rounds and response time over the
    closed days of the month and today (as the month's business figures)."""
    tz = rules.timezone
    today = response_window(trace, shop, agent, rules, local_midnight(now_ms, tz), now_ms)
    replied, received = today.replied, today.received
    rounds = today.rounds
    rt_sum = (today.rt_mean or 0.0) * today.rounds
    for start, end in closed_days(now_ms, tz):
        day = response_window(trace, shop, agent, rules, start, end - 1)
        replied += day.replied
        received += day.received
        rounds += day.rounds
        rt_sum += (day.rt_mean or 0.0) * day.rounds
    return {
        "today": (today.reply_rate, today.rt_mean),
        "month": (replied / received if received else None, rt_sum / rounds if rounds else None),
    }


def completion(
    kpis: BizKpis, period: str, sales_target: float | None, now_ms: int, tz: str
) -> float | None:
    """指标完成率: today against a daily share of the monthly target, the month against it all."""
    if not sales_target:
        return None
    if period == "today":
        return float(kpis.sales) / (sales_target / days_in_month(now_ms, tz))
    return float(kpis.sales) / sales_target


# ---------------------------------------------------------------------------------------------
# comparison

FIELDS: tuple[str, ...] = (
    "inquiries", "converted", "ordered_buyers", "paid_buyers", "paid_orders", "sales_units",
    "refunded_orders", "refund_units", "assists", "ratings", "rating_sum", "ratings_good",
    "marked_sessions", "resolved_sessions",
)  # fmt: skip


def engine_windows(snap: AgentSnapshot | None) -> dict[str, WindowKpis]:
    """An engine snapshot's windows with the month; a missing entry reads as all zeros."""
    if snap is None:
        return {w: WindowKpis() for w in ALL_WINDOWS}
    out = {w: snap.windows.get(w, WindowKpis()) for w in WINDOWS}
    out["month"] = snap.month if snap.month is not None else WindowKpis()
    return out


def business_differences(
    actual: Mapping[tuple[str, str], AgentSnapshot],
    expected: Mapping[tuple[str, str], BizSnapshot],
) -> list[str]:
    """Every differing business figure, as 'key.window.field: engine=X oracle=Y'."""
    diffs: list[str] = []
    for key in sorted(set(actual) | set(expected)):
        got = engine_windows(actual.get(key))
        want_snap = expected.get(key)
        for w in ALL_WINDOWS:
            want = want_snap.windows[w] if want_snap else BizKpis()
            for name in FIELDS:
                a, e = getattr(got[w], name), getattr(want, name)
                if a != e:
                    diffs.append(f"{key}.{w}.{name}: engine={a!r} oracle={e!r}")
    return diffs


def assert_same_business(
    actual: Mapping[tuple[str, str], AgentSnapshot],
    expected: Mapping[tuple[str, str], BizSnapshot],
    context: str = "",
) -> None:
    diffs = business_differences(actual, expected)
    if diffs:
        more = f" (+{len(diffs) - 1} more: " + "; ".join(diffs[1:8]) + ")" if len(diffs) > 1 else ""
        raise AssertionError(f"{context}first difference: {diffs[0]}{more}")
