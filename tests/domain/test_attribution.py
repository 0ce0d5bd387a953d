"""Attribution and the business figures, example by example: hand-computed numbers, the oracle
(tests/domain/business_reference.py) and the engine.

Each test states the numbers by hand, checks that the oracle gives them, and that the engine
gives the oracle's. Times are T0 = 2024-03-15 12:00 Asia/Shanghai (04:00 UTC) plus offsets.

The tests at the end are regressions of engine bugs found while writing these (B1..B10, all
fixed); each one names the definition it once violated.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from streams.domain.model import AgentSnapshot, ChatEvent, OrderEvent, RatingEvent
from streams.domain.rules import Filters, ShopRules, zone
from streams.tooling.engine import Engine
from tests.domain.business_reference import (
    BizKpis,
    BizSnapshot,
    assert_same_business,
    business_snapshots,
    business_walk,
    split_events,
)

SH = zone("Asia/Shanghai")
SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
T0 = int(datetime(2024, 3, 15, 12, 0, tzinfo=SH).timestamp() * 1000)
RULES = ShopRules()  # attribution_window 24 h, Asia/Shanghai
ADS = Filters(ad_patterns=(re.compile("加微信"), re.compile(r"(?i)https?://")))
Event = ChatEvent | OrderEvent | RatingEvent

_ids = itertools.count(1)


def local(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, ms: int = 0,
          tz: str = "Asia/Shanghai") -> int:
    return int(datetime(y, mo, d, h, mi, s, tzinfo=zone(tz)).timestamp() * 1000) + ms


def buyer_msg(ts: int, agent: str | None = "a1", buyer: str = "b1", text: str | None = None,
              shop: str = "s1") -> ChatEvent:
    return ChatEvent(f"m{next(_ids):05d}", shop, buyer, "buyer", agent, ts, "message", text)


def reply(ts: int, agent: str = "a1", buyer: str = "b1", shop: str = "s1") -> ChatEvent:
    return ChatEvent(f"m{next(_ids):05d}", shop, buyer, "agent", agent, ts, "message", None)


def order(ts: int, order_id: str, status: str, amount: str = "0", buyer: str = "b1",
          shop: str = "s1") -> OrderEvent:
    return OrderEvent(order_id, shop, buyer, status, Decimal(amount), ts)  # type: ignore[arg-type]


def rating(ts: int, agent: str, score: int, buyer: str = "b1", shop: str = "s1") -> RatingEvent:
    return RatingEvent(shop, buyer, agent, score, ts)


def run(
    arrival: Sequence[Event],
    now: int,
    *,
    rules: ShopRules = RULES,
    filters: Filters = ADS,
    expiries: Sequence[int] = (),
    batch: int = 1,
) -> tuple[dict[tuple[str, str], AgentSnapshot], dict[tuple[str, str], BizSnapshot]]:
    """Feed the engine in arrival order (batches of `batch`), expire at `expiries`, snapshot at
    now; and the oracle's answer for the same arrival."""
    engine = Engine(lambda _shop: rules, filters)
    for i in range(0, len(arrival), batch):
        engine.feed(arrival[i : i + batch])
    for t in expiries:
        engine.snapshots(t)
    actual = engine.snapshots(now)
    expected = business_snapshots(
        *split_events(arrival), lambda _shop: rules, filters, now, [*expiries, now]
    )
    return actual, expected


def kpis(expected: dict[tuple[str, str], BizSnapshot], agent: str, window: str = "today",
         shop: str = "s1") -> BizKpis:
    snap = expected.get((shop, agent))
    return snap.windows[window] if snap else BizKpis()


def has(expected: dict[tuple[str, str], BizSnapshot], agent: str, window: str = "today",
        **figures: object) -> None:
    """The oracle's figures for (agent, window) are the hand-computed ones."""
    w = kpis(expected, agent, window)
    got = {name: getattr(w, name) for name in figures}
    assert got == figures, f"{agent}/{window}: oracle {got}, by hand {figures}"


def agrees(actual: dict[tuple[str, str], AgentSnapshot],
           expected: dict[tuple[str, str], BizSnapshot]) -> None:
    assert_same_business(actual, expected)


# ---------------------------------------------------------------------------------------------
# credited, assists, silent


def test_latest_reply_is_credited_and_every_other_replier_assists() -> None:
    events = [
        buyer_msg(T0 - 3 * HOUR), reply(T0 - 3 * HOUR + 20 * SECOND, "a1"),
        buyer_msg(T0 - 2 * HOUR, "a2"), reply(T0 - 2 * HOUR + 10 * SECOND, "a2"),
        reply(T0 - 90 * MINUTE, "a1"),  # a1 again: still one assist, not two
        buyer_msg(T0 - HOUR, "a3"), reply(T0 - HOUR + 5 * SECOND, "a3"),
        order(T0, "o1", "created", "199.99"), order(T0 + MINUTE, "o1", "paid", "199.99"),
    ]
    now = T0 + 2 * MINUTE
    actual, expected = run(events, now)
    has(expected, "a3", ordered_buyers=1, paid_orders=1, paid_buyers=1,
        sales=Decimal("199.99"), assists=0, inquiries=1, converted=1)
    has(expected, "a1", ordered_buyers=0, paid_orders=0, assists=1, inquiries=1, converted=0)
    has(expected, "a2", ordered_buyers=0, assists=1)
    has(expected, "a3", "5m", ordered_buyers=1, paid_orders=1, assists=0)
    has(expected, "a1", "5m", assists=1, inquiries=0)
    has(expected, "a1", "1h", assists=1, inquiries=0)
    assert ("s1", "") not in expected
    assert kpis(expected, "a3").sales_units == 1_999_900
    agrees(actual, expected)


def test_equal_reply_times_credit_the_larger_agent_id() -> None:
    events = [
        reply(T0 - MINUTE, "a2"), reply(T0 - MINUTE, "a10"), reply(T0 - MINUTE, "a1"),
        order(T0, "o1", "created", "5"),
    ]
    trace = business_walk(*split_events(events), lambda _s: RULES, ADS)
    assert [(o.credited, o.assists) for o in trace.orders] == [("a2", ("a1", "a10"))]
    actual, expected = run(events, T0 + SECOND)
    has(expected, "a2", ordered_buyers=1)
    has(expected, "a10", assists=1)
    has(expected, "a1", assists=1)
    agrees(actual, expected)


def test_an_order_without_replies_is_a_silent_shop_order() -> None:
    events = [
        order(T0, "o1", "created", "30", buyer="b9"), order(T0 + 5 * SECOND, "o1", "paid", "30",
                                                            buyer="b9"),
        # replied to only after the order: still silent
        reply(T0 + MINUTE, "a1", buyer="b8"), order(T0 + 30 * SECOND, "o2", "created", "12",
                                                    buyer="b8"),
    ]
    actual, expected = run(events, T0 + 2 * MINUTE)
    has(expected, "", ordered_buyers=2, paid_orders=1, paid_buyers=1, sales=Decimal(30))
    has(expected, "a1", ordered_buyers=0, inquiries=1, assists=0)
    agrees(actual, expected)


def test_order_arriving_after_later_chat_is_credited_by_event_time() -> None:
    """A lagging order system: the order reaches us after the buyer chatted with a2 later on."""
    chat = [
        buyer_msg(T0 - 10 * MINUTE), reply(T0 - 9 * MINUTE, "a1"),
        buyer_msg(T0 + 5 * MINUTE, "a2"), reply(T0 + 6 * MINUTE, "a2"),
    ]
    orders = [order(T0, "o1", "created", "88"), order(T0 + 2 * MINUTE, "o1", "paid", "88")]
    now = T0 + 10 * MINUTE
    for arrival in (chat + orders, orders[:1] + chat + orders[1:]):
        actual, expected = run(arrival, now)
        has(expected, "a1", ordered_buyers=1, paid_orders=1, sales=Decimal(88), converted=1)
        has(expected, "a2", ordered_buyers=0, assists=0, inquiries=1, converted=0)
        agrees(actual, expected)


def test_reply_arriving_after_the_order_reattributes_it() -> None:
    """The chat lags: the order first looks silent, then the reply before it arrives."""
    arrival = [
        order(T0, "o1", "created", "50"),
        reply(T0 - 5 * MINUTE, "a1"),  # re-attribution: silent -> a1
        reply(T0 + MINUTE, "a2"),  # after T: changes nothing
        order(T0 + MINUTE, "o1", "paid", "50"),
    ]
    actual, expected = run(arrival, T0 + 2 * MINUTE)
    has(expected, "a1", ordered_buyers=1, paid_orders=1, sales=Decimal(50), converted=1)
    has(expected, "a2", ordered_buyers=0, assists=0, inquiries=1)
    assert ("s1", "") not in expected
    agrees(actual, expected)


@pytest.mark.parametrize(
    ("reply_at", "credited"),
    [
        (T0 - DAY, "a1"),  # exactly T - 24 h: inside
        (T0 - DAY - 1, ""),  # 1 ms before: outside, silent
        (T0, "a1"),  # at T itself: inside
        (T0 + 1, ""),  # 1 ms after: outside
    ],
)
def test_attribution_window_edges(reply_at: int, credited: str) -> None:
    events = [buyer_msg(reply_at - SECOND), reply(reply_at, "a1"),
              order(T0, "o1", "created", "9")]
    now = max(T0, reply_at) + SECOND
    actual, expected = run(events, now)
    trace = business_walk(*split_events(events), lambda _s: RULES, ADS)
    assert trace.orders[0].credited == credited
    has(expected, credited, ordered_buyers=1)
    agrees(actual, expected)


def test_attribution_time_is_created_else_the_earliest_event() -> None:
    events = [
        reply(T0 - 2 * MINUTE, "a1"), reply(T0 + 2 * MINUTE, "a2"),
        # o1: `created` at T0 (its paid event is later): a1
        order(T0, "o1", "created", "10"), order(T0 + 3 * MINUTE, "o1", "paid", "10"),
        # o2: no `created`; cancelled at T0+3m, then a paid at T0+2m30 arrives: T = T0+2m30 -> a2
        order(T0 + 3 * MINUTE, "o2", "cancelled", "0"),
        order(T0 + 150 * SECOND, "o2", "paid", "20"),
    ]
    trace = business_walk(*split_events(events), lambda _s: RULES, ADS)
    assert {o.order_id: (o.t, o.credited) for o in trace.orders} == {
        "o1": (T0, "a1"), "o2": (T0 + 150 * SECOND, "a2"),
    }
    now = T0 + 4 * MINUTE
    _, expected = run(events, now)
    has(expected, "a1", ordered_buyers=1, paid_orders=1, sales=Decimal(10), assists=1)
    has(expected, "a2", ordered_buyers=1, paid_orders=1, sales=Decimal(20), assists=0)
    # the engine's side of o2 is B1 (its paid event carries no order record): see below


# ---------------------------------------------------------------------------------------------
# lifecycle: refunds, cancellations, duplicates, money


def test_partial_and_several_refunds() -> None:
    events = [
        reply(T0 - MINUTE, "a1"),
        order(T0, "o1", "created", "100"), order(T0 + 10 * SECOND, "o1", "paid", "100"),
        order(T0 + 20 * MINUTE, "o1", "refunded", "30"),
        order(T0 + 40 * MINUTE, "o1", "refunded", "20.5"),
        order(T0 + 40 * MINUTE, "o1", "refunded", "20.5"),  # a duplicate: once
        order(T0 + 41 * MINUTE, "o1", "refunded", "20.5"),  # same amount, later: a new refund
    ]
    now = T0 + 42 * MINUTE
    actual, expected = run(events, now)
    has(expected, "a1", paid_orders=1, refunded_orders=1, refund_amount=Decimal("71.0"))
    assert kpis(expected, "a1").refund_rate == 1.0
    assert kpis(expected, "a1").refund_units == 710_000
    # the 5m window holds only the last two refunds; the 1h window all three
    has(expected, "a1", "5m", paid_orders=0, refunded_orders=1, refund_amount=Decimal("41.0"))
    has(expected, "a1", "1h", paid_orders=1, refunded_orders=1, refund_amount=Decimal("71.0"))
    agrees(actual, expected)


def test_a_cancelled_order_counts_as_ordered_only() -> None:
    events = [
        reply(T0 - MINUTE, "a1", buyer="b1"), reply(T0 - MINUTE, "a1", buyer="b2"),
        order(T0, "o1", "created", "60", buyer="b1"),
        order(T0 + 5 * MINUTE, "o1", "cancelled", "60", buyer="b1"),
        order(T0, "o2", "created", "40", buyer="b2"),
        order(T0 + MINUTE, "o2", "paid", "40", buyer="b2"),
    ]
    actual, expected = run(events, T0 + 6 * MINUTE)
    has(expected, "a1", ordered_buyers=2, paid_buyers=1, paid_orders=1, sales=Decimal(40),
        inquiries=2, converted=1, refunded_orders=0)
    assert kpis(expected, "a1").payment_success_rate == 0.5
    assert kpis(expected, "a1").conversion_rate == 0.5
    agrees(actual, expected)


def test_redelivered_order_and_rating_events_change_nothing() -> None:
    events = [
        reply(T0 - MINUTE, "a1"),
        order(T0, "o1", "created", "25"), order(T0 + SECOND, "o1", "paid", "25"),
        order(T0 + 2 * SECOND, "o1", "refunded", "5"), rating(T0 + 3 * SECOND, "a1", 5),
    ]
    arrival = events + events[1:] + events[1:][::-1]
    engine = Engine(lambda _s: RULES, ADS)
    for e in arrival:
        engine.feed([e])
    assert engine.stage1.order_outcomes["duplicate"] == 6
    assert engine.stage1.rating_outcomes["duplicate"] == 2
    now = T0 + MINUTE
    actual, expected = run(arrival, now)
    has(expected, "a1", paid_orders=1, sales=Decimal(25), refunded_orders=1,
        refund_amount=Decimal(5), ratings=1, rating_sum=5, ratings_good=1)
    agrees(actual, expected)


def test_money_adds_up_exactly() -> None:
    """0.1 + 0.2 is 0.3 here, not 0.30000000000000004."""
    events = [reply(T0 - MINUTE, "a1", buyer=b) for b in ("b1", "b2", "b3")]
    events += [
        order(T0, "o1", "paid", "0.1", buyer="b1"), order(T0, "o2", "paid", "0.2", buyer="b2"),
        order(T0, "o3", "created", "1234.5678", buyer="b3"),
        order(T0 + SECOND, "o3", "paid", "1234.5678", buyer="b3"),
        order(T0 + 2 * SECOND, "o3", "refunded", "0.0001", buyer="b3"),
    ]
    actual, expected = run(events, T0 + MINUTE)
    has(expected, "a1", paid_orders=3, paid_buyers=3, sales=Decimal("1234.8678"),
        refund_amount=Decimal("0.0001"))
    snap = actual[("s1", "a1")].windows["today"]
    assert snap.sales_units == 12_348_678
    assert snap.refund_units == 1
    # two paid-only orders: the ordered figure is B1's business, compare the money here
    assert snap.sales == 1234.8678
    assert snap.average_order_value == pytest.approx(1234.8678 / 3, rel=1e-12)
    assert kpis(expected, "a1").average_order_value == Decimal("1234.8678") / 3


def test_money_of_created_then_paid_orders_through_the_engine() -> None:
    events = [reply(T0 - MINUTE, "a1", buyer=b) for b in ("b1", "b2")]
    events += [
        order(T0, "o1", "created", "0.1", buyer="b1"), order(T0 + 1, "o1", "paid", "0.1",
                                                             buyer="b1"),
        order(T0, "o2", "created", "0.2", buyer="b2"), order(T0 + 1, "o2", "paid", "0.2",
                                                             buyer="b2"),
    ]
    actual, expected = run(events, T0 + MINUTE)
    has(expected, "a1", sales=Decimal("0.3"), paid_buyers=2)
    assert actual[("s1", "a1")].windows["today"].sales_units == 3000
    assert actual[("s1", "a1")].windows["today"].sales == 0.3
    agrees(actual, expected)


# ---------------------------------------------------------------------------------------------
# ad buyers, ratings, conversion


def test_an_ad_buyers_order_and_rating_are_left_out_for_that_day() -> None:
    day2 = local(2024, 3, 16, 10)
    events = [
        buyer_msg(T0 - 10 * MINUTE, text="加微信 abc"), reply(T0 - 9 * MINUTE, "a1"),
        order(T0, "o1", "created", "70"), order(T0 + MINUTE, "o1", "paid", "70"),
        rating(T0 + 2 * MINUTE, "a1", 1),
        # the next local day the buyer is no ad buyer any more
        buyer_msg(day2 - MINUTE), reply(day2 - 30 * SECOND, "a1"),
        order(day2, "o2", "created", "30"), order(day2 + MINUTE, "o2", "paid", "30"),
        rating(day2 + 2 * MINUTE, "a1", 4),
    ]
    now = day2 + 3 * MINUTE
    actual, expected = run(events, now)
    has(expected, "a1", ordered_buyers=1, paid_orders=1, sales=Decimal(30), ratings=1,
        rating_sum=4, inquiries=1, converted=1)
    has(expected, "a1", "month", ordered_buyers=1, paid_orders=1, sales=Decimal(30), ratings=1,
        inquiries=1)
    assert ("s1", "") not in expected
    agrees(actual, expected)


def test_ratings_count_sum_and_good_share() -> None:
    events = [
        rating(T0, "a1", 5), rating(T0 + SECOND, "a1", 4), rating(T0 + 2 * SECOND, "a1", 3),
        rating(T0 + 2 * SECOND, "a1", 1),  # same (agent, ts) within the conversation: a duplicate
        rating(T0 + 2 * SECOND, "a1", 1, buyer="b2"),  # another buyer: counted
        rating(T0 + 3 * SECOND, "a2", 2),
    ]
    actual, expected = run(events, T0 + MINUTE)
    has(expected, "a1", ratings=4, rating_sum=13, ratings_good=2)
    has(expected, "a2", ratings=1, rating_sum=2, ratings_good=0)
    assert kpis(expected, "a1").csat_mean == 3.25
    assert kpis(expected, "a1").csat_good_share == 0.5
    agrees(actual, expected)


def test_conversion_is_a_cohort_of_inquired_buyers() -> None:
    events = [
        # b1: inquired by a1, pays an order credited to a1 -> converted
        buyer_msg(T0 - 10 * MINUTE, buyer="b1"), reply(T0 - 9 * MINUTE, "a1", buyer="b1"),
        order(T0, "o1", "created", "10", buyer="b1"),
        order(T0 + MINUTE, "o1", "paid", "10", buyer="b1"),
        # b2: inquired by a1, later by a2 who gets the credit -> converted for a2 only
        reply(T0 - 8 * MINUTE, "a1", buyer="b2"), reply(T0 - 7 * MINUTE, "a2", buyer="b2"),
        order(T0, "o2", "created", "10", buyer="b2"),
        order(T0 + MINUTE, "o2", "paid", "10", buyer="b2"),
        # b3: inquired by a1, ordered but not paid -> not converted
        reply(T0 - 6 * MINUTE, "a1", buyer="b3"), order(T0, "o3", "created", "10", buyer="b3"),
        # b4: inquired, nothing
        reply(T0 - 5 * MINUTE, "a1", buyer="b4"),
    ]
    actual, expected = run(events, T0 + 2 * MINUTE)
    has(expected, "a1", inquiries=4, converted=1, ordered_buyers=2, paid_buyers=1, assists=1)
    has(expected, "a2", inquiries=1, converted=1, ordered_buyers=1, paid_buyers=1)
    assert kpis(expected, "a1").conversion_rate == 0.25
    # cohort: the 5m window's inquired buyers (replies since T0-3m: none) -> 0 of 0
    has(expected, "a1", "5m", inquiries=0, converted=0, paid_orders=1)
    agrees(actual, expected)


# ---------------------------------------------------------------------------------------------
# day and month boundaries (Asia/Shanghai)


def test_paid_just_before_and_at_local_midnight() -> None:
    last_ms = local(2024, 3, 15, 23, 59, 59, 999)
    midnight = local(2024, 3, 16)
    events = [
        reply(last_ms - HOUR, "a1", buyer="b1"), reply(last_ms - HOUR, "a1", buyer="b2"),
        order(last_ms - MINUTE, "o1", "created", "11", buyer="b1"),
        order(last_ms, "o1", "paid", "11", buyer="b1"),
        order(last_ms - MINUTE, "o2", "created", "22", buyer="b2"),
        order(midnight, "o2", "paid", "22", buyer="b2"),
    ]
    # 00:00:30: today holds only the 00:00 payment; 5m and 1h hold both
    now = midnight + 30 * SECOND
    actual, expected = run(events, now)
    has(expected, "a1", "today", paid_orders=1, sales=Decimal(22), ordered_buyers=0)
    has(expected, "a1", "5m", paid_orders=2, sales=Decimal(33), ordered_buyers=2)
    for window in ("5m", "1h", "today"):
        assert actual[("s1", "a1")].windows[window].sales_units == kpis(
            expected, "a1", window).sales_units
    # 01:30: yesterday is a closed day: the month (March) holds both payments
    now = midnight + 90 * MINUTE
    actual, expected = run(events, now)
    has(expected, "a1", "today", paid_orders=1, sales=Decimal(22))
    has(expected, "a1", "month", paid_orders=2, sales=Decimal(33), ordered_buyers=2,
        inquiries=2, converted=2)
    agrees(actual, expected)


def test_month_changes_at_local_midnight_on_the_first() -> None:
    """2024-04-01 00:00 +08:00 is 2024-03-31 16:00 UTC: in Shanghai it opens April."""
    march_last = local(2024, 3, 31, 23, 59, 59, 999)
    april_first = local(2024, 4, 1)
    assert april_first == int(datetime(2024, 3, 31, 16, 0, tzinfo=UTC).timestamp() * 1000)
    events = [
        reply(march_last - HOUR, "a1", buyer="b1"), reply(march_last - HOUR, "a1", buyer="b2"),
        order(march_last - MINUTE, "o1", "created", "5", buyer="b1"),
        order(march_last, "o1", "paid", "5", buyer="b1"),
        order(march_last - MINUTE, "o2", "created", "7", buyer="b2"),
        order(april_first, "o2", "paid", "7", buyer="b2"),
    ]
    now = local(2024, 4, 1, 2)
    expiries = [local(2024, 4, 1, 1)]  # March 31 closes at 01:00
    actual, expected = run(events, now, expiries=expiries)
    has(expected, "a1", "month", paid_orders=1, sales=Decimal(7), ordered_buyers=0, inquiries=0)
    has(expected, "a1", "today", paid_orders=1, sales=Decimal(7))
    agrees(actual, expected)
    # the same instants in a UTC shop: both payments fall on March 31 UTC, a closed day of March
    utc = ShopRules(timezone="UTC")
    now_utc = local(2024, 4, 1, 2, tz="UTC")
    actual, expected = run(events, now_utc, rules=utc)
    has(expected, "a1", "month", paid_orders=0, sales=Decimal(0))
    has(expected, "a1", "today", paid_orders=0)
    agrees(actual, expected)


def test_month_sums_closed_days_and_counts_a_buyer_once_per_day() -> None:
    """Distinct counts are summed per day: a buyer who orders on two days counts twice."""
    d1, d2 = local(2024, 3, 14, 15), local(2024, 3, 15, 15)
    events = [
        buyer_msg(d1 - 2 * MINUTE), reply(d1 - MINUTE, "a1"),
        order(d1, "o1", "created", "10"), order(d1 + MINUTE, "o1", "paid", "10"),
        buyer_msg(d2 - 2 * MINUTE), reply(d2 - MINUTE, "a1"),
        order(d2, "o2", "created", "15"), order(d2 + MINUTE, "o2", "paid", "15"),
    ]
    now = d2 + 10 * MINUTE
    actual, expected = run(events, now)
    has(expected, "a1", "today", ordered_buyers=1, paid_buyers=1, inquiries=1, converted=1)
    has(expected, "a1", "month", ordered_buyers=2, paid_buyers=2, paid_orders=2,
        sales=Decimal(25), inquiries=2)
    agrees(actual, expected)


def test_a_closed_day_converts_what_was_paid_by_its_expiry() -> None:
    """A day summary is made an hour after the day ends, judging conversion then: a buyer who
    inquired at 23:00 and paid at 00:30 converted on that day; one who paid at 02:00 did not."""
    d_end = local(2024, 3, 16)
    chat = [
        reply(d_end - HOUR, "a1", buyer="b1"), reply(d_end - HOUR, "a1", buyer="b2"),
    ]
    first = [
        order(d_end - 50 * MINUTE, "o1", "created", "10", buyer="b1"),
        order(d_end + 30 * MINUTE, "o1", "paid", "10", buyer="b1"),
        order(d_end - 50 * MINUTE, "o2", "created", "10", buyer="b2"),
    ]
    later = [order(d_end + 2 * HOUR, "o2", "paid", "10", buyer="b2")]
    expiry = d_end + HOUR  # the worker's minute tick at 01:00
    now = d_end + 3 * HOUR
    engine = Engine(lambda _s: RULES, ADS)
    engine.feed(chat + first)
    engine.snapshots(expiry)
    engine.feed(later)
    actual = engine.snapshots(now)
    expected = business_snapshots(*split_events(chat + first + later), lambda _s: RULES, ADS,
                                  now, [expiry, now])
    has(expected, "a1", "month", inquiries=2, converted=1, ordered_buyers=2, paid_orders=2)
    has(expected, "a1", "today", inquiries=0, converted=0, paid_orders=2)
    agrees(actual, expected)


def test_windows_with_several_shops_and_agents_in_one_batch() -> None:
    events = [
        reply(T0 - MINUTE, "a1", shop="s1"), reply(T0 - MINUTE, "a1", shop="s2"),
        order(T0, "o1", "created", "3", shop="s1"), order(T0, "o1", "created", "4", shop="s2"),
        order(T0 + 1, "o1", "paid", "3", shop="s1"), order(T0 + 1, "o1", "paid", "4", shop="s2"),
    ]
    actual, expected = run(events, T0 + MINUTE, batch=len(events))
    assert kpis(expected, "a1", shop="s1").sales == 3
    assert kpis(expected, "a1", shop="s2").sales == 4
    agrees(actual, expected)


# ---------------------------------------------------------------------------------------------
# regressions of engine bugs B1..B10 (fixed; B4 only for orders credited before the pruning)


def BUG(test):  # marks where each regression came from
    return test


@BUG
def test_B1_paid_arriving_before_created_keeps_the_order() -> None:
    """Definition 4 (ordered_buyers counts every credited order). OrderRec.facts keys records by
    (agent, fid) and ORDER, PAID and ASSIST all use fid = hash(order): the PAID record replaces
    the ORDER record, so an order whose first emission already has its payment never gets its
    ORDER record. Minimal: reply a1 at T-30s; order o1 `paid` (T+1s) arrives before `created`
    (T) -> engine ordered_buyers 0, definition 1."""
    arrival = [reply(T0 - 30 * SECOND, "a1"), order(T0 + SECOND, "o1", "paid", "10"),
               order(T0, "o1", "created", "10")]
    actual, expected = run(arrival, T0 + 10 * SECOND)
    has(expected, "a1", ordered_buyers=1, paid_orders=1)
    agrees(actual, expected)


@BUG
def test_B1_reattribution_after_payment_moves_the_whole_order() -> None:
    """Definition 2 (credited = latest reply in the span, whatever the arrival order). Same
    collision: after `paid`, the order's emitted map holds PAID under (a1, hash(order)); a late
    reply by a2 at T-20s makes a2 credited and a1 an assistant, whose ASSIST record has the same
    key, so a1's ORDER and PAID records are never deleted and a2 gets no ORDER record.
    Engine: a1 ordered 1 / paid 1 / sales 10, a2 ordered 0; definition: a1 assists 1, a2
    ordered 1 / paid 1 / sales 10."""
    arrival = [reply(T0 - 30 * SECOND, "a1"), order(T0, "o1", "created", "10"),
               order(T0 + SECOND, "o1", "paid", "10"), reply(T0 - 20 * SECOND, "a2")]
    actual, expected = run(arrival, T0 + 10 * SECOND)
    has(expected, "a2", ordered_buyers=1, paid_orders=1, sales=Decimal(10))
    has(expected, "a1", ordered_buyers=0, paid_orders=0, assists=1)
    agrees(actual, expected)


@BUG
def test_B1_reattribution_making_the_credited_agent_an_assistant() -> None:
    """Definition 2, the same collision without any payment: ORDER (credited a1) and a1's
    ASSIST share the key (a1, hash(order)), so when a late reply by a2 takes the credit, a1's
    ORDER record is never deleted (and is kept with the assist). Minimal: order created T arrives,
    then reply a1 at T-5m, then reply a2 at T-4m -> engine a1 ordered 1 (and a2 ordered 1)."""
    arrival = [order(T0, "o1", "created", "50"), reply(T0 - 5 * MINUTE, "a1"),
               reply(T0 - 4 * MINUTE, "a2")]
    actual, expected = run(arrival, T0 + MINUTE)
    has(expected, "a1", ordered_buyers=0, assists=1)
    has(expected, "a2", ordered_buyers=1)
    agrees(actual, expected)


@BUG
def test_B2_an_ad_message_arriving_after_the_order_leaves_it_out() -> None:
    """Definition 3. Conversation._emit_order reads the ad status when an order event or a reply
    arrives; an ad message that arrives later (here: chat lagging the order system) never
    re-evaluates the order. Minimal: order o1 created at T arrives first, then reply a1 at T-30s,
    then the buyer's ad message at T-60s -> engine counts the order for a1."""
    arrival = [order(T0, "o1", "created", "10"), reply(T0 - 30 * SECOND, "a1"),
               buyer_msg(T0 - MINUTE, text="加微信 abc")]
    actual, expected = run(arrival, T0 + 10 * SECOND)
    has(expected, "a1", ordered_buyers=0)
    agrees(actual, expected)


@BUG
def test_B2_an_ad_message_arriving_after_the_rating_leaves_it_out() -> None:
    """Definition 4 (ratings of ad buyers excluded if ad at the rating ts). process_rating
    judges the ad status once, on arrival. Minimal: rating a1=5 at T arrives before the buyer's
    ad message at T-10s -> engine counts the rating."""
    arrival = [buyer_msg(T0 - MINUTE), reply(T0 - 30 * SECOND, "a1"), rating(T0, "a1", 5),
               buyer_msg(T0 - 10 * SECOND, text="加微信 abc")]
    actual, expected = run(arrival, T0 + 10 * SECOND)
    has(expected, "a1", ratings=0)
    agrees(actual, expected)


@BUG
def test_B3_an_ad_buyer_on_two_days_keeps_the_first_days_order_out() -> None:
    """Definition 3. Core keeps one ad period (ad_from, ad_until), the latest; once the buyer is
    an ad buyer again the next day, a reply re-emits the first day's order with is_ad(T) false.
    Minimal: ad message day 1 T-60s, reply a1 T-30s, order created T + paid T+1s (left out);
    day 2: ad message, reply a1 -> engine now counts o1's payment for a1."""
    events = [
        buyer_msg(T0 - MINUTE, text="加微信 abc"), reply(T0 - 30 * SECOND, "a1"),
        order(T0, "o1", "created", "10"), order(T0 + SECOND, "o1", "paid", "10"),
        buyer_msg(T0 + DAY, text="加微信 abc"), reply(T0 + DAY + SECOND, "a1"),
    ]
    actual, expected = run(events, T0 + DAY + MINUTE)
    has(expected, "a1", "month", paid_orders=0, sales=Decimal(0))
    agrees(actual, expected)


@BUG
def test_B4_later_chat_does_not_prune_the_replies_an_order_was_credited_from() -> None:
    """Definition 2 (no pruning exemption). _prune_replies keeps replies within two attribution
    windows of the newest reply, and every new reply re-attributes all of the buyer's orders:
    two days later, the replies before o1 are gone and o1 turns silent, moving its refund (and,
    before expiry, its sale) from a1 to the shop queue. Minimal: reply a1 T-50m, order o1
    created T, paid T+1m (100), refunded T+40h (30); buyer chats with a2 at T+49h."""
    events = [
        buyer_msg(T0 - HOUR), reply(T0 - 50 * MINUTE, "a1"),
        order(T0, "o1", "created", "100"), order(T0 + MINUTE, "o1", "paid", "100"),
        order(T0 + 40 * HOUR, "o1", "refunded", "30"),
        buyer_msg(T0 + 49 * HOUR, "a2"), reply(T0 + 49 * HOUR + 5 * SECOND, "a2"),
    ]
    now = T0 + 49 * HOUR + MINUTE
    actual, expected = run(events, now, expiries=[T0 + 40 * HOUR])
    has(expected, "a1", "today", refunded_orders=1, refund_amount=Decimal(30))
    has(expected, "", "today", refunded_orders=0)
    agrees(actual, expected)


@BUG
def test_B5_the_month_keeps_yesterday_between_midnight_and_one() -> None:
    """Definition 6 (month = Σ closed days of the month + today). Yesterday's buckets expire only
    at 01:00, so until then it has no day summary and the month leaves it out: at 00:30 the
    month is today's window only. Minimal: reply a1 12:00, order created 12:00:30 + paid (10);
    at 00:30 the next day the engine's month shows sales 0."""
    events = [reply(T0, "a1"), order(T0 + 30 * SECOND, "o1", "created", "10"),
              order(T0 + MINUTE, "o1", "paid", "10")]
    now = local(2024, 3, 16, 0, 30)
    actual, expected = run(events, now)
    has(expected, "a1", "month", paid_orders=1, sales=Decimal(10), ordered_buyers=1)
    agrees(actual, expected)


@BUG
def test_B6_an_agent_with_only_closed_day_figures_is_still_exported() -> None:
    """Month figures must not vanish. Aggregates.snapshot drops an entry unless a 5m/1h/today
    figure, waiting, counters, month rounds or month sales is non-zero: an agent whose only
    figures this month are yesterday's inquiry and (unpaid) order, or a silent unpaid order,
    disappears with its month. Minimal: reply a1 at T (no buyer round), order created T+30s;
    next day 10:00 -> no ('s1','a1') entry (month inquiries 1, ordered 1 expected)."""
    events = [reply(T0, "a1"), order(T0 + 30 * SECOND, "o1", "created", "10")]
    actual, expected = run(events, local(2024, 3, 16, 10))
    has(expected, "a1", "month", inquiries=1, ordered_buyers=1)
    assert ("s1", "a1") in actual
    agrees(actual, expected)


@BUG
def test_B7_checkpoint_keeps_the_day_summaries() -> None:
    """Crash simulation (Engine.checkpoint, streams/tooling/engine.py) saves minute buckets,
    pending and totals but not the day summaries ("d" records) nor execution points ("e"): a
    restore after a day closed loses that day from the month. (The worker persists "d" records
    through take_dirty, so this is the test double's gap, not the worker's.) Minimal: a paid
    order at T, snapshots at 01:00 next day, checkpoint, restore -> month sales 0."""
    events = [reply(T0, "a1"), order(T0 + 30 * SECOND, "o1", "created", "10"),
              order(T0 + MINUTE, "o1", "paid", "10")]
    expiry, now = local(2024, 3, 16, 1), local(2024, 3, 16, 2)
    engine = Engine(lambda _s: RULES, ADS)
    engine.feed(events)
    engine.snapshots(expiry)
    restored = Engine.restore(engine.checkpoint(), lambda _s: RULES, ADS)
    expected = business_snapshots(*split_events(events), lambda _s: RULES, ADS, now,
                                  [expiry, now])
    has(expected, "a1", "month", sales=Decimal(10))
    agrees(restored.snapshots(now), expected)


# A silent order at T; the reply 1 ms later is too late to credit it. Two attribution windows
# later a reply prunes that reply, which freezes every order before T + 1 day + 2 ms; then o1 is
# refunded. (Shrunk from test_crash_restore_and_redelivery_give_the_same_figures.)
_B8_EVENTS = [
    order(T0, "o1", "created", "10"), reply(T0 + 1, "a1"), order(T0 + 2, "o1", "paid", "10"),
    reply(T0 + 2 * DAY + 2, "a1"), order(T0 + 2 * DAY + 3, "o1", "refunded", "10"),
]


@BUG
def test_B8_an_order_frozen_by_reply_pruning_still_takes_its_refund() -> None:
    """Definition 4 (every `refunded` event is one refund). The B4 fix made
    Conversation._emit_order return early for an order older than `frozen_before`, which froze
    the whole order, not only its credit: a refund (or payment) arriving after the pruning was
    never emitted. Minimal: silent order o1 created T, reply a1 T+1ms, paid T+2ms; reply a1
    T+2d+2ms; refund T+2d+3ms -> engine: no refund for the shop queue."""
    actual, expected = run(_B8_EVENTS, T0 + 2 * DAY + MINUTE)
    has(expected, "", "today", refunded_orders=1, refund_amount=Decimal(10))
    has(expected, "", "month", ordered_buyers=1, paid_orders=1, refunded_orders=1)
    agrees(actual, expected)


@BUG
def test_B8_the_same_after_a_crash_and_redelivery() -> None:
    """The form the crash property found it in: checkpoint after the payment, the rest lost in
    the crash, restore, redelivery from offset 1. conversation_codec.encode/decode keep
    `frozen_before`, so the restored engine drops the redelivered refund the same way."""
    rules, now = lambda _s: RULES, T0 + 2 * DAY + MINUTE
    engine = Engine(rules, ADS)
    engine.feed(_B8_EVENTS[:3])
    blob = engine.checkpoint()
    engine.feed(_B8_EVENTS[3:])  # lost in the crash
    restored = Engine.restore(blob, rules, ADS)
    for e in _B8_EVENTS[1:]:
        restored.feed([e])
    expected = business_snapshots(*split_events(_B8_EVENTS), rules, ADS, now)
    has(expected, "", "today", refunded_orders=1, refund_amount=Decimal(10))
    agrees(restored.snapshots(now), expected)


@BUG
def test_B9_an_order_record_that_moves_to_an_earlier_time_leaves_no_copy_behind() -> None:
    """Definitions 2 and 4 (T = the `created` ts, the paid ts = the smallest `paid` ts). An
    order's records are keyed by (agent, kind, order) in `emitted`, but live in the minute
    bucket of their ts: when a late `created` (or an earlier `paid`) moves a record, only the
    new one was put, and the old one stayed in its old minute. Minimal: reply a1 T-30s; o1
    `cancelled` T+10m and `paid` T+10m arrive first, then `paid` T+1m and `created` T -> at
    T+11m the engine's 5m window still holds o1's order and payment."""
    arrival = [reply(T0 - 30 * SECOND, "a1"), order(T0 + 10 * MINUTE, "o1", "cancelled"),
               order(T0 + 10 * MINUTE, "o1", "paid", "10"), order(T0 + MINUTE, "o1", "paid", "10"),
               order(T0, "o1", "created", "10")]
    actual, expected = run(arrival, T0 + 11 * MINUTE)
    has(expected, "a1", "5m", ordered_buyers=0, paid_orders=0)
    has(expected, "a1", "today", ordered_buyers=1, paid_orders=1, sales=Decimal(10))
    agrees(actual, expected)


@BUG
def test_B10_a_frozen_credit_does_not_outlive_a_late_created_event() -> None:
    """Definition 2. An order's frozen credit (B4) holds for the time it was computed at: o1's
    first event, a refund at T+1h, credits a1 (reply at T); a reply two days later prunes that
    reply; then `created` at T-1h arrives, so T-1h is o1's time, with no reply in its span ->
    a silent order. The engine kept o1 (and its refund) with a1."""
    arrival = [reply(T0, "a1"), order(T0 + HOUR, "o1", "refunded", "30"),
               reply(T0 + 2 * DAY + 2 * HOUR, "a1"), order(T0 - HOUR, "o1", "created", "30")]
    actual, expected = run(arrival, T0 + 2 * DAY + 2 * HOUR + MINUTE)
    has(expected, "", "month", ordered_buyers=1, refunded_orders=1)
    has(expected, "a1", "month", ordered_buyers=0, refunded_orders=0)
    agrees(actual, expected)
