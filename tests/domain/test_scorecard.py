"""绩效考核表: the 100-point scorecard (streams/domain/scorecard.py) against hand-computed points
and the oracle's scorecard (tests/domain/business_reference.py, definition 7).

Items: target_completion 30, conversion 30 (target 0.40), payment_success 10 (0.90), aov 10
(200), reply_rate 10 (1.0), response_time 5 (full at mean <= warning, 0 at >= 2 x critical,
linear between), execution 5 (supervisor points, default full marks); each item = weight x
min(1, value / target), 0 without data; pass at >= 70. The engine rounds each item and the
total to 4 decimals, so totals compare with abs 1e-3.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

import pytest

from streams.config import ConfigError, parse_config
from streams.domain import scorecard
from streams.domain.model import AgentSnapshot, ChatEvent, OrderEvent, WindowKpis
from streams.domain.rules import Filters, Lines, ShopRules, zone
from streams.domain.scorecard import ScorecardRules, response_reach, score
from streams.tooling.engine import Engine
from tests.domain import business_reference as ref
from tests.domain.reference import walk

LINES = Lines(warning=30, critical=40, slow=180)
RULES = ScorecardRules()
SH = zone("Asia/Shanghai")


def kpis(**kw: int) -> WindowKpis:
    return WindowKpis(**kw)


def biz(w: WindowKpis) -> ref.BizKpis:
    """The oracle's view of the same figures."""
    out = ref.BizKpis(**{n: getattr(w, n) for n in ref.BizKpis.COUNTS})
    out.sales = Decimal(w.sales_units) / 10_000
    out.refund_amount = Decimal(w.refund_units) / 10_000
    return out


def both(w: WindowKpis, rt: float | None, completion: float | None,
         execution: float | None = None, lines: Lines = LINES,
         rules: ScorecardRules = RULES) -> tuple[scorecard.ScoreCard, ref.Card]:
    got = score(w, rt, completion, execution, lines, rules)
    want = ref.scorecard(
        biz(w), w.reply_rate, rt, completion, lines, weights=rules.weights,
        conversion_target=rules.conversion_target,
        payment_success_target=rules.payment_success_target, aov_target=rules.aov_target,
        reply_rate_target=rules.reply_rate_target, pass_score=rules.pass_score,
        execution=rules.execution_default, entered=execution,
    )
    for item, points in want.items.items():
        assert got.items[item] == pytest.approx(points, abs=1e-4), item
        if want.actual[item] is None:
            assert got.actual[item] is None, item
        else:
            assert got.actual[item] == pytest.approx(want.actual[item], rel=1e-12), item
        assert got.target[item] == want.target[item], item
        assert got.weights[item] == rules.weights[item], item
    assert got.pass_score == rules.pass_score
    assert got.total == pytest.approx(want.total, abs=1e-3)
    assert got.passed == want.passed
    return got, want


def test_every_item_by_hand() -> None:
    w = kpis(inquiries=10, converted=3, ordered_buyers=4, paid_buyers=3, paid_orders=3,
             sales_units=9_000_000, received=10, replied=9)
    card, _ = both(w, rt=35.0, completion=0.5)
    assert card.items == {
        "target_completion": 15.0,  # 30 x 0.5
        "conversion": 22.5,  # 30 x 0.30 / 0.40
        "payment_success": 8.3333,  # 10 x 0.75 / 0.90
        "aov": 10.0,  # 900 / 3 = 300 >= 200: capped
        "reply_rate": 9.0,  # 10 x 0.9
        "response_time": 4.5,  # 5 x (80 - 35) / (80 - 30)
        "execution": 5.0,  # no supervisor entry: full marks
    }
    assert card.total == 74.3333
    assert card.passed


def test_items_are_capped_at_their_weight() -> None:
    w = kpis(inquiries=2, converted=2, ordered_buyers=1, paid_buyers=1, paid_orders=1,
             sales_units=50_000_000, received=3, replied=3)
    card, _ = both(w, rt=1.0, completion=7.5)
    assert card.items == {
        "target_completion": 30.0, "conversion": 30.0, "payment_success": 10.0, "aov": 10.0,
        "reply_rate": 10.0, "response_time": 5.0, "execution": 5.0,
    }
    assert card.total == 100.0


@pytest.mark.parametrize(
    ("mean", "reach"),
    [
        (None, 0.0),
        (0.0, 1.0),
        (30.0, 1.0),  # at the warning line: full marks
        (30.001, (80 - 30.001) / 50),
        (55.0, 0.5),
        (70.0, 0.2),
        (79.999, (80 - 79.999) / 50),
        (80.0, 0.0),  # at twice the critical line: none
        (500.0, 0.0),
    ],
)
def test_response_time_full_linear_and_none(mean: float | None, reach: float) -> None:
    assert response_reach(mean, LINES) == pytest.approx(reach, abs=1e-12)
    assert ref.response_points(mean, LINES, 5) == pytest.approx(5 * reach, abs=1e-12)
    card, _ = both(kpis(), mean, None)
    assert card.items["response_time"] == round(5 * reach, 4)


def test_response_time_follows_the_teams_lines() -> None:
    pdd = Lines(warning=50, critical=60, slow=180)
    assert response_reach(50, pdd) == 1.0
    assert response_reach(85, pdd) == pytest.approx((120 - 85) / 70)
    assert response_reach(120, pdd) == 0.0


def test_no_data_earns_nothing_but_execution() -> None:
    card, _ = both(kpis(), rt=None, completion=None)
    assert card.items == {
        "target_completion": 0.0, "conversion": 0.0, "payment_success": 0.0, "aov": 0.0,
        "reply_rate": 0.0, "response_time": 0.0, "execution": 5.0,
    }
    assert card.total == 5.0
    assert not card.passed
    # zero values with a denominator are data: still 0 points
    card, _ = both(kpis(inquiries=5, ordered_buyers=2, received=4), rt=None, completion=0.0)
    assert card.total == 5.0


def test_pass_mark_is_inclusive_at_70() -> None:
    # 30 (target) + 30 (conversion) + 5 (response) + execution
    w = kpis(inquiries=5, converted=2)
    card, _ = both(w, rt=10.0, completion=1.0, execution=5.0)
    assert card.total == 70.0
    assert card.passed
    card, _ = both(w, rt=10.0, completion=1.0, execution=4.9999)
    assert card.total == 69.9999
    assert not card.passed


def test_supervisor_execution_points_are_capped_and_default_configurable() -> None:
    card, _ = both(kpis(), None, None, execution=2.5)
    assert card.items["execution"] == 2.5
    assert score(kpis(), None, None, 9.0, LINES, RULES).items["execution"] == 5.0
    assert score(kpis(), None, None, -1.0, LINES, RULES).items["execution"] == 0.0
    zero_default = parse_config({"scorecard": {"execution_default": 0}}).scorecard("any")
    assert score(kpis(), None, None, None, LINES, zero_default).items["execution"] == 0.0


def test_team_overrides_from_config() -> None:
    config = parse_config({
        "scorecard": {
            "conversion_target": 0.5,
            "pass_score": 60,
            "teams": {
                "after-sales": {
                    "weights": {"target_completion": 0, "conversion": 20, "reply_rate": 40,
                                "response_time": 15},
                    "aov_target": 100,
                },
            },
        },
    })
    base = config.scorecard("pre-sales")  # no team table: the [scorecard] defaults
    after = config.scorecard("after-sales")
    assert base.conversion_target == 0.5 and base.pass_score == 60
    assert base.weights == ref.WEIGHTS
    assert after.conversion_target == 0.5  # inherited from [scorecard]
    assert after.aov_target == 100
    assert after.weights == {
        "target_completion": 0, "conversion": 20, "payment_success": 10, "aov": 10,
        "reply_rate": 40, "response_time": 15, "execution": 5,
    }
    w = kpis(inquiries=10, converted=4, ordered_buyers=2, paid_buyers=2, paid_orders=2,
             sales_units=3_000_000, received=10, replied=8)
    # after-sales by hand: conversion 20 x 0.4/0.5 = 16; payment 10 x min(1, 1/0.9) = 10;
    # aov 10 x min(1, 150/100) = 10; reply 40 x 0.8 = 32; response 15 (20 s); execution 5
    card, _ = both(w, rt=20.0, completion=0.9, rules=after)
    assert card.items["target_completion"] == 0.0
    assert card.total == 16 + 10 + 10 + 32 + 15 + 5
    assert card.passed
    # pre-sales by hand: 27 + 30 x 0.8 + 10 + 10 x 0.75 + 8 + 5 + 5 = 86.5
    card, _ = both(w, rt=20.0, completion=0.9, rules=base)
    assert card.total == 86.5


@pytest.mark.parametrize(
    "table",
    [
        {"weights": {"conversion": 40}},  # 110
        {"weights": {"execution": 0}},  # 95
        {"teams": {"t": {"weights": {"aov": 0}}}},  # 90 for a team
        {"weights": {"conversion": 20}, "teams": {"t": {"weights": {"aov": 20}}}},
    ],
)
def test_weights_must_add_up_to_100(table: dict) -> None:
    with pytest.raises(ConfigError, match="add up to 100"):
        parse_config({"scorecard": table})


def test_weights_that_add_up_are_accepted() -> None:
    config = parse_config({"scorecard": {"weights": {"conversion": 20, "aov": 20}}})
    assert sum(config.scorecard("x").weights.values()) == 100


def test_fill_target_completion_today_and_month() -> None:
    """today = today's sales / (monthly target / days in month); month = month sales / target."""
    now = int(datetime(2024, 2, 10, 15, tzinfo=SH).timestamp() * 1000)  # February 2024: 29 days
    snap = AgentSnapshot(shop="s1", agent="a1", team="pre-sales")
    snap.windows = {
        "5m": kpis(), "1h": kpis(),
        "today": kpis(sales_units=5_000_000, inquiries=4, converted=1, received=4, replied=4,
                      rounds=4, paid_buyers=1, ordered_buyers=1),
    }
    snap.windows["today"].rt_mean = 12.0
    snap.month = kpis(sales_units=145_000_000, inquiries=40, converted=20, received=40,
                      replied=30, paid_buyers=20, ordered_buyers=25)
    snap.month_rt_mean = 60.0
    shop = ShopRules()
    scorecard.fill(snap, {}, now, shop=shop, lines=LINES, rules=RULES, sales_target=29_000.0,
                   day_start=0, month_start=0)
    assert snap.target_completion == {"today": 0.5, "month": 0.5}  # 500 / 1000, 14500 / 29000
    # each card names the local period it scores (day_start 0 = 1970-01-01 08:00 Shanghai)
    assert (snap.score["today"].period, snap.score["month"].period) == ("1970-01-01", "1970-01")
    today = snap.score["today"]
    assert today.items["target_completion"] == 15.0
    assert today.items["response_time"] == 5.0
    month = snap.score["month"]
    assert month.items["target_completion"] == 15.0
    assert month.items["conversion"] == 30.0  # 0.5 >= 0.4
    assert month.items["reply_rate"] == 7.5
    assert month.items["response_time"] == 2.0  # (80 - 60) / 50 x 5
    assert month.items["payment_success"] == pytest.approx(10 * 0.8 / 0.9, abs=1e-4)
    # supervisor points for the day (keyed by the period start)
    scorecard.fill(snap, {0: 1.5}, now, shop=shop, lines=LINES, rules=RULES,
                   sales_target=None, day_start=0, month_start=-1)
    assert snap.score["today"].items["execution"] == 1.5
    assert snap.score["month"].items["execution"] == 5.0
    assert snap.score["today"].items["target_completion"] == 0.0  # no target: no data


def test_engine_scorecards_equal_the_oracles() -> None:
    """Two days of traffic through the engine with the worker's scoring hook; today's and the
    month's scorecards equal the oracle's, computed from the oracle's own numbers."""
    rules = ShopRules()
    filters = Filters(ad_patterns=(re.compile("加微信"),))
    day1 = int(datetime(2024, 3, 14, 10, tzinfo=SH).timestamp() * 1000)
    day2 = day1 + 24 * 3_600_000
    events: list[ChatEvent | OrderEvent] = []
    n = 0
    for base, buyers in ((day1, ("b1", "b2", "b3")), (day2, ("b4", "b5"))):
        for i, buyer in enumerate(buyers):
            t = base + i * 600_000
            for sender, dt in (("buyer", 0), ("agent", 12_000 + 20_000 * i), ("buyer", 60_000),
                               ("agent", 110_000)):
                n += 1
                events.append(ChatEvent(f"m{n}", "s1", buyer, sender, "a1", t + dt))  # type: ignore[arg-type]
            if i % 2 == 0:
                events.append(OrderEvent(f"o{buyer}", "s1", buyer, "created", Decimal("150"),
                                         t + 200_000))
                events.append(OrderEvent(f"o{buyer}", "s1", buyer, "paid", Decimal("150.5"),
                                         t + 260_000))
    # b6 asked on day 2 and nobody answered: received, not replied
    events.append(ChatEvent("m999", "s1", "b6", "buyer", "a1", day2 + 3_000_000))
    now = day2 + 4 * 3_600_000
    sales_target = 31_000.0

    engine = Engine(lambda _s: rules, filters)
    month_start = ref.local_month_start(now, rules.timezone)
    day_start = ref.local_midnight(now, rules.timezone)

    def scoring(snap: AgentSnapshot, execution: dict[int, float], at: int) -> None:
        scorecard.fill(snap, execution, at, shop=rules, lines=rules.lines, rules=RULES,
                       sales_target=sales_target, day_start=day_start, month_start=month_start)

    engine.stage2.scoring = scoring
    engine.feed(events)
    snaps = engine.snapshots(now)
    chat = [e for e in events if isinstance(e, ChatEvent)]
    orders = [e for e in events if isinstance(e, OrderEvent)]
    expected = ref.business_snapshots(chat, orders, [], lambda _s: rules, filters, now)
    response = ref.response_for_score(walk(chat, lambda _s: rules, filters, now), "s1", "a1",
                                      rules, now)
    for period in ref.PERIODS:
        k = expected[("s1", "a1")].windows[period]
        done = ref.completion(k, period, sales_target, now, rules.timezone)
        reply_rate, rt_mean = response[period]
        want = ref.scorecard(k, reply_rate, rt_mean, done, rules.lines)
        got = snaps[("s1", "a1")].score[period]
        for item, points in want.items.items():
            assert got.items[item] == pytest.approx(points, abs=1e-4), (period, item)
        assert got.total == pytest.approx(want.total, abs=1e-3)
        assert got.passed == want.passed
        assert snaps[("s1", "a1")].target_completion[period] == pytest.approx(done, rel=1e-12)
    # by hand: today's sales 150.5 of a daily 1000 (March: 31 days); month 3 x 150.5 of 31000
    assert snaps[("s1", "a1")].target_completion["today"] == pytest.approx(0.1505)
    assert snaps[("s1", "a1")].target_completion["month"] == pytest.approx(451.5 / 31_000)
