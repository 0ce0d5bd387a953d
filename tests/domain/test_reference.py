"""The oracle itself, pinned to hand-computed numbers.

Times are seconds after T0 = 2024-03-15 12:00:00 Asia/Shanghai (a whole UTC minute). Rules are
small on purpose: session_idle 60 s, unanswered_after 30 s, lines 5 / 10 / 20 s.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from streams.domain.model import AgentSnapshot, ChatEvent, WindowKpis
from streams.domain.rules import Filters, Lines, ShopRules
from tests.domain.reference import (
    BUCKETS,
    assert_same_snapshots,
    nearest_rank,
    reference_snapshots,
    snapshot_differences,
    walk,
    window_bounds,
)

T0 = int(datetime(2024, 3, 15, 4, 0, tzinfo=UTC).timestamp() * 1000)  # 12:00 in Shanghai
RULES = ShopRules(lines=Lines(5, 10, 20), session_idle_ms=60_000, unanswered_after_ms=30_000)
ADS = Filters(ad_patterns=(re.compile("加微信"), re.compile(r"(?i)https?://")))

_ids = itertools.count(1)


def ms(seconds: float) -> int:
    return T0 + round(seconds * 1000)


class Conv:
    """Builds one conversation's events; times in seconds after T0."""

    def __init__(self, buyer: str = "b1", shop: str = "s1") -> None:
        self.buyer, self.shop = buyer, shop
        self.events: list[ChatEvent] = []

    def _add(self, t: float, sender: str, agent: str | None, **kw: object) -> Conv:
        mid = kw.pop("mid", None) or f"m{next(_ids):05d}"
        self.events.append(
            ChatEvent(str(mid), self.shop, self.buyer, sender, agent, ms(t), **kw)  # type: ignore[arg-type]
        )
        return self

    def buyer_msg(self, t: float, agent: str | None = "a1", text: str | None = None) -> Conv:
        return self._add(t, "buyer", agent, text=text)

    def reply(self, t: float, agent: str = "a1") -> Conv:
        return self._add(t, "agent", agent)

    def bot(self, t: float) -> Conv:
        return self._add(t, "bot", None)

    def transfer(self, t: float, agent: str) -> Conv:
        return self._add(t, "system", agent, event="transfer")

    def close(self, t: float) -> Conv:
        return self._add(t, "system", None, event="close")


def snap(
    events: list[ChatEvent],
    now_s: float,
    rules: ShopRules = RULES,
    filters: Filters = ADS,
    team_of: Callable[[str], str] = lambda a: "unassigned",
) -> dict[tuple[str, str], AgentSnapshot]:
    return reference_snapshots(events, lambda shop: rules, filters, ms(now_s), team_of)


def kpis(
    events: list[ChatEvent], now_s: float, agent: str = "a1", window: str = "5m", **kw: Any
) -> WindowKpis:
    return snap(events, now_s, **kw)[("s1", agent)].windows[window]


# --------------------------------------------------------------------------------------------
# rounds and response time


def test_burst_is_one_round() -> None:
    c = Conv().buyer_msg(0).buyer_msg(2).buyer_msg(4).reply(7)
    s = snap(c.events, 10)
    assert list(s) == [("s1", "a1")]
    a = s[("s1", "a1")]
    w = a.windows["5m"]
    assert (w.rounds, w.rt_mean, w.first_rounds, w.frt_mean) == (1, 7.0, 1, 7.0)
    assert w.rt_sum_ms == 7000
    assert w.rt_quantiles == {0.5: 7.0, 0.9: 7.0, 0.95: 7.0, 0.99: 7.0}
    assert w.frt_quantiles == w.rt_quantiles
    assert w.within == {"warning": 0, "critical": 1, "slow": 1}
    assert (w.buyer_messages, w.agent_messages, w.received, w.replied) == (3, 1, 1, 1)
    assert a.windows["1h"] == w and a.windows["today"] == w
    assert (a.rounds_total, a.response_seconds_sum, a.waiting) == (1, 7.0, 0)
    assert a.within_total == {"warning": 0, "critical": 1, "slow": 1}
    assert a.histogram == {le: (1 if le >= 10 else 0) for le in BUCKETS}
    assert a.team == "unassigned" and a.oldest_wait_since_ms is None


def test_bot_does_not_end_a_round() -> None:
    c = Conv().buyer_msg(0).bot(1).reply(12).reply(13)
    w = kpis(c.events, 20)
    assert (w.rounds, w.rt_mean, w.agent_messages) == (1, 12.0, 2)
    assert w.within == {"warning": 0, "critical": 0, "slow": 1}


def test_transfer_response_time_counts_from_assignment() -> None:
    c = Conv().buyer_msg(0).transfer(10, "a2").reply(13, "a2")
    s = snap(c.events, 20)
    a2 = s[("s1", "a2")].windows["5m"]
    assert (a2.rounds, a2.rt_mean, a2.frt_mean, a2.replied, a2.received) == (1, 3.0, 3.0, 1, 1)
    assert (a2.buyer_messages, a2.agent_messages) == (0, 1)
    a1 = s[("s1", "a1")].windows["5m"]
    assert (a1.rounds, a1.received, a1.buyer_messages) == (0, 0, 1)


def test_reply_by_an_agent_not_assigned_counts_from_round_start() -> None:
    c = Conv().buyer_msg(0).transfer(10, "a2").reply(15, "a1")
    s = snap(c.events, 20)
    a1 = s[("s1", "a1")].windows["5m"]
    assert (a1.rounds, a1.rt_mean, a1.replied, a1.received) == (1, 15.0, 1, 1)
    assert ("s1", "a2") not in s  # no message, no round, its pending period never crossed


def test_buyer_message_reassignment_sets_assigned_at() -> None:
    c = Conv().buyer_msg(0, "a1").buyer_msg(4, "a2").reply(6, "a2")
    s = snap(c.events, 20)
    assert s[("s1", "a2")].windows["5m"].rt_mean == 2.0
    assert s[("s1", "a1")].windows["5m"].buyer_messages == 1
    assert s[("s1", "a2")].windows["5m"].buyer_messages == 1


def test_assignment_before_the_round_counts_from_round_start() -> None:
    c = Conv().buyer_msg(0).reply(2).buyer_msg(20).reply(23)
    w = kpis(c.events, 30)
    assert (w.rounds, w.rt_mean, w.first_rounds, w.frt_mean) == (2, 2.5, 1, 2.0)
    assert w.rt_quantiles == {0.5: 2.0, 0.9: 3.0, 0.95: 3.0, 0.99: 3.0}


def test_transfer_to_the_same_agent_restarts_its_clock() -> None:
    c = Conv().buyer_msg(0).transfer(10, "a1").reply(12)
    assert kpis(c.events, 20).rt_mean == 2.0


def test_ties_are_ordered_by_message_id() -> None:
    # reply "m-a" sorts before buyer "m-b" at the same ts: the buyer message opens a new round
    c = Conv()
    c._add(0, "buyer", "a1", mid="m-0")._add(5, "buyer", "a1", mid="m-b")
    c._add(5, "agent", "a1", mid="m-a")
    a = snap(c.events, 10)[("s1", "a1")]
    assert (a.windows["5m"].rounds, a.windows["5m"].rt_mean) == (1, 5.0)
    assert (a.waiting, a.oldest_wait_since_ms) == (1, ms(5))
    # buyer "m-y" sorts before reply "m-z": the reply answers both buyer messages
    c2 = Conv()
    c2._add(0, "buyer", "a1", mid="m-0")._add(5, "agent", "a1", mid="m-z")
    c2._add(5, "buyer", "a1", mid="m-y")
    a = snap(c2.events, 10)[("s1", "a1")]
    assert (a.windows["5m"].rounds, a.windows["5m"].rt_mean, a.waiting) == (1, 5.0, 0)


# --------------------------------------------------------------------------------------------
# sessions


def test_first_response_per_session_after_close() -> None:
    c = Conv().buyer_msg(0).reply(3).close(5).buyer_msg(10).reply(14)
    w = kpis(c.events, 20)
    assert (w.rounds, w.first_rounds, w.frt_mean) == (2, 2, 3.5)


def test_close_ends_the_pending_round_unanswered() -> None:
    c = Conv().buyer_msg(0).close(40).reply(45)
    s = snap(c.events, 50)
    a1 = s[("s1", "a1")]
    w = a1.windows["5m"]
    assert (w.rounds, w.received, w.replied, w.agent_messages, a1.waiting) == (0, 1, 0, 1, 0)


@pytest.mark.parametrize(("second", "firsts"), [(62.0, 1), (62.001, 2)])
def test_idle_gap_starts_a_new_session(second: float, firsts: int) -> None:
    c = Conv().buyer_msg(0).reply(2).buyer_msg(second).reply(65)
    w = kpis(c.events, 70)
    assert (w.rounds, w.first_rounds) == (2, firsts)


def test_idle_ends_the_pending_round_unanswered() -> None:
    c = Conv().buyer_msg(0).buyer_msg(61).reply(64)
    trace = walk(c.events, lambda s: RULES, ADS, ms(70))
    assert [(r.start, r.end, r.first) for r in trace.rounds] == [
        (ms(0), ms(61), True),
        (ms(61), ms(64), True),
    ]
    assert [x.at_ms for x in trace.crossings] == [ms(30)]
    w = kpis(c.events, 70)
    assert (w.rounds, w.rt_mean, w.frt_mean, w.received, w.replied) == (1, 3.0, 3.0, 1, 1)


def test_idle_before_unanswered_after() -> None:
    rules = ShopRules(lines=Lines(5, 10, 20), session_idle_ms=20_000, unanswered_after_ms=30_000)
    c = Conv().buyer_msg(0).buyer_msg(25)
    # first round ended at 25 < 30: no crossing; second pending from 25 crosses at 55
    assert kpis(c.events, 54.999, rules=rules).received == 0
    a1 = snap(c.events, 55, rules=rules)[("s1", "a1")]
    # idle since 25 (> 20 s): no longer waiting, but the crossing still counts
    assert (a1.windows["5m"].received, a1.waiting) == (1, 0)
    c.reply(27)
    w = kpis(c.events, 60, rules=rules)
    assert (w.rt_mean, w.received, w.replied) == (2.0, 1, 1)


# --------------------------------------------------------------------------------------------
# reply rate and waiting


def test_unanswered_crossing() -> None:
    c = Conv().buyer_msg(0)
    a = snap(c.events, 29.999)[("s1", "a1")]
    assert (a.windows["5m"].received, a.waiting, a.oldest_wait_since_ms) == (0, 1, ms(0))
    a = snap(c.events, 30)[("s1", "a1")]
    w = a.windows["5m"]
    assert (w.received, w.replied, w.reply_rate, a.waiting) == (1, 0, 0.0, 1)


@pytest.mark.parametrize(("reply_at", "crossings"), [(30.0, []), (30.001, [30.0])])
def test_reply_exactly_at_the_line_is_not_a_crossing(reply_at: float, crossings: list) -> None:
    c = Conv().buyer_msg(0).reply(reply_at)
    trace = walk(c.events, lambda s: RULES, ADS, ms(40))
    assert [x.at_ms for x in trace.crossings] == [ms(t) for t in crossings]
    w = kpis(c.events, 40)
    assert (w.received, w.replied) == (1, 1)


def test_crossing_is_windowed_by_its_instant() -> None:
    c = Conv().buyer_msg(0)  # crosses at 30 s
    now = 5 * 60 + 31  # 5m window starts at T0 + 1 min
    a = snap(c.events, now)[("s1", "a1")]
    assert a.windows["5m"].received == 0
    assert a.windows["1h"].received == 1 and a.windows["today"].received == 1
    assert a.waiting == 0  # idle


def test_transfer_away_before_crossing() -> None:
    c = Conv().buyer_msg(0).transfer(20, "a2")
    s = snap(c.events, 49.999)
    assert s[("s1", "a1")].windows["5m"].received == 0
    a2 = s[("s1", "a2")]
    assert (a2.windows["5m"].received, a2.waiting, a2.oldest_wait_since_ms) == (0, 1, ms(0))
    s = snap(c.events, 55)
    assert s[("s1", "a1")].windows["5m"].received == 0
    assert s[("s1", "a1")].waiting == 0
    assert s[("s1", "a2")].windows["5m"].received == 1


def test_queued_buyer_waits_in_the_shop_queue() -> None:
    c = Conv().buyer_msg(0, None)
    q = snap(c.events, 10)[("s1", "")]
    assert (q.waiting, q.oldest_wait_since_ms, q.team) == (1, ms(0), "unassigned")
    assert (q.windows["5m"].buyer_messages, q.windows["5m"].received) == (0, 0)
    c.buyer_msg(15, "a1")  # assigned: a1's period starts at 15, crosses at 45
    s = snap(c.events, 50, team_of=lambda a: "pre-sales")
    assert ("s1", "") not in s  # nothing waits in the queue any more, and it has no Q/A
    a1 = s[("s1", "a1")]
    assert (a1.waiting, a1.oldest_wait_since_ms, a1.team) == (1, ms(0), "pre-sales")
    assert (a1.windows["5m"].received, a1.windows["5m"].buyer_messages) == (1, 1)
    assert snap(c.events, 44.999)[("s1", "a1")].windows["5m"].received == 0


@pytest.mark.parametrize(("now", "waiting"), [(60.0, 1), (60.001, 0)])
def test_waiting_ends_after_session_idle(now: float, waiting: int) -> None:
    c = Conv().buyer_msg(0)
    assert snap(c.events, now)[("s1", "a1")].waiting == waiting


def test_waiting_oldest_is_the_min_round_start() -> None:
    events = Conv("b1").buyer_msg(5).events + Conv("b2").buyer_msg(2).buyer_msg(8).events
    a1 = snap(events, 10)[("s1", "a1")]
    assert (a1.waiting, a1.oldest_wait_since_ms) == (2, ms(2))


# --------------------------------------------------------------------------------------------
# ad buyers and service hours


def test_ad_buyer_is_left_out_of_everything() -> None:
    c = Conv().buyer_msg(0, text="加微信 abc").reply(3).buyer_msg(3600).reply(3605)
    assert snap(c.events, 3610) == {}
    blocked = Conv("spammer").buyer_msg(0).reply(3)
    assert snap(blocked.events, 10, filters=Filters(block_list=frozenset({"spammer"}))) == {}


def test_ad_status_ends_at_local_midnight() -> None:
    midnight = 12 * 3600  # T0 is noon in Shanghai
    c = Conv().buyer_msg(0, text="see HTTP://x").reply(3)
    c.buyer_msg(midnight - 10).reply(midnight - 8)  # still ad
    c.buyer_msg(midnight + 60).reply(midnight + 65)  # a new day, a new buyer
    a = snap(c.events, midnight + 70)[("s1", "a1")]
    assert (a.rounds_total, a.windows["today"].rt_mean, a.windows["today"].buyer_messages) == (
        1,
        5.0,
        1,
    )


def test_ad_text_mid_session() -> None:
    c = Conv().buyer_msg(0).reply(2).buyer_msg(10, text="加微信").reply(12)
    c.buyer_msg(20).reply(23)
    w = kpis(c.events, 30)
    assert (w.rounds, w.rt_mean, w.buyer_messages, w.agent_messages) == (1, 2.0, 1, 1)
    # a round that started before the ad message still counts (ad status at its start)
    c2 = Conv().buyer_msg(0).buyer_msg(1, text="加微信").reply(3)
    w = kpis(c2.events, 10)
    assert (w.rounds, w.rt_mean, w.buyer_messages, w.agent_messages) == (1, 3.0, 1, 0)


def test_service_hours_exclude_rounds_not_messages() -> None:
    rules = ShopRules(
        lines=Lines(5, 10, 20),
        session_idle_ms=60_000,
        unanswered_after_ms=30_000,
        service_hours=((9 * 60, 18 * 60),),
    )
    nine = -3 * 3600  # 09:00 local
    c = Conv().buyer_msg(nine - 10)
    a = snap(c.events, nine + 50, rules=rules)[("s1", "a1")]
    assert (a.waiting, a.windows["5m"].received, a.windows["5m"].buyer_messages) == (0, 0, 1)
    c.reply(nine + 10).buyer_msg(nine + 20).reply(nine + 25)
    w = kpis(c.events, nine + 30, rules=rules)
    # the session's first round is excluded, so no first response at all
    assert (w.rounds, w.rt_mean, w.first_rounds, w.frt_mean) == (1, 5.0, 0, None)
    assert (w.buyer_messages, w.agent_messages, w.received, w.replied) == (2, 2, 1, 1)


def test_service_hours_over_midnight() -> None:
    rules = ShopRules(service_hours=((22 * 60, 2 * 60),))
    assert rules.in_service(ms(11 * 3600))  # 23:00
    assert rules.in_service(ms(13 * 3600 + 59 * 60))  # 01:59
    assert not rules.in_service(ms(14 * 3600))  # 02:00


# --------------------------------------------------------------------------------------------
# windows and quantiles


def test_window_bounds() -> None:
    now = ms(10 * 60 + 30.5)
    b = window_bounds(RULES, now)
    assert b["5m"] == (ms(6 * 60), now)
    assert b["1h"] == (ms(-49 * 60), now)
    assert b["today"] == (ms(-12 * 3600), now)


def test_window_boundaries_inclusive() -> None:
    def answered(buyer: str, reply_at: float, agent: str = "a1") -> list[ChatEvent]:
        return Conv(buyer).buyer_msg(reply_at - 1, agent).reply(reply_at, agent).events

    events = (
        answered("b1", 6 * 60 - 0.001)  # 1h only
        + answered("b2", 6 * 60)  # 5m
        + answered("b3", -49 * 60 - 0.001)  # today only
        + answered("b4", -49 * 60)  # 1h
        + answered("b5", -12 * 3600 - 0.001)  # yesterday: totals only
        + answered("b6", -12 * 3600)  # today
        + answered("b7", -13 * 3600, "a2")  # a2 only yesterday: no entry
    )
    s = snap(events, 10 * 60 + 30)
    a = s[("s1", "a1")]
    assert [a.windows[w].rounds for w in ("5m", "1h", "today")] == [1, 3, 5]
    # buyer messages are 1 s before the replies
    assert [a.windows[w].buyer_messages for w in ("5m", "1h", "today")] == [0, 2, 4]
    assert a.rounds_total == 6
    # a2 has only yesterday's round: nothing in any window, but its counters keep the entry
    a2 = s[("s1", "a2")]
    assert [a2.windows[w].rounds for w in ("5m", "1h", "today")] == [0, 0, 0]
    assert a2.rounds_total == 1


def test_entries_without_counters_or_window_data_disappear() -> None:
    c = Conv().buyer_msg(0).close(1).buyer_msg(100, None)  # a1 only got a buyer message
    s = snap(c.events, 3 * 86400)
    assert s == {}
    assert ("s1", "a1") in snap(c.events, 3600)


def test_counters_lag_by_the_reorder_window() -> None:
    c = Conv().buyer_msg(0).reply(7)  # reorder window 2 s
    a = snap(c.events, 8.999)[("s1", "a1")]
    assert (a.windows["5m"].rounds, a.rounds_total, a.response_seconds_sum) == (1, 0, 0.0)
    assert a.histogram[math.inf] == 0 and a.within_total["slow"] == 0
    a = snap(c.events, 9)[("s1", "a1")]
    assert (a.rounds_total, a.response_seconds_sum, a.within_total["slow"]) == (1, 7.0, 1)


def test_ad_message_marks_from_its_position_at_equal_ts() -> None:
    # "m-1" sorts before the ad message "m-2" at the same ts: it is not yet ad
    c = Conv()
    c._add(0, "buyer", "a1", mid="m-1")._add(0, "buyer", "a1", mid="m-2", text="加微信")
    a = snap(c.events, 1)[("s1", "a1")]
    assert (a.windows["5m"].buyer_messages, a.waiting) == (1, 1)


def test_nearest_rank() -> None:
    ten = [float(x) for x in range(10, 0, -1)]
    assert [nearest_rank(ten, q) for q in (0.5, 0.9, 0.95, 0.99)] == [5.0, 9.0, 10.0, 10.0]
    hundred = [float(x) for x in range(1, 101)]
    assert [nearest_rank(hundred, q) for q in (0.5, 0.9, 0.95, 0.99)] == [50, 90, 95, 99]
    twenty = [float(x) for x in range(1, 21)]
    assert [nearest_rank(twenty, q) for q in (0.5, 0.9, 0.95, 0.99)] == [10, 18, 19, 20]
    assert nearest_rank([3.5], 0.99) == 3.5
    sixty = [float(x) for x in range(1, 61)]
    assert nearest_rank(sixty, 0.95) == 57.0


def test_quantiles_end_to_end() -> None:
    events: list[ChatEvent] = []
    for i in range(1, 11):
        events += Conv(f"b{i}").buyer_msg(0).reply(i).events
    a = snap(events, 20)[("s1", "a1")]
    w = a.windows["5m"]
    assert w.rt_quantiles == {0.5: 5.0, 0.9: 9.0, 0.95: 10.0, 0.99: 10.0}
    assert (w.rt_mean, w.first_rounds) == (5.5, 10)
    assert w.within == {"warning": 5, "critical": 10, "slow": 10}
    assert a.histogram[1.0] == 1 and a.histogram[5.0] == 5 and a.histogram[math.inf] == 10
    assert a.response_seconds_sum == 55.0


# --------------------------------------------------------------------------------------------
# de-duplication and the comparison helper


def test_duplicates_keep_the_first_arrival() -> None:
    c = Conv().buyer_msg(0).reply(5)
    redelivered = ChatEvent(c.events[1].message_id, "s1", "b1", "agent", "a1", ms(3))
    w = kpis([*c.events, redelivered], 10)
    assert (w.rounds, w.rt_mean, w.agent_messages) == (1, 5.0, 1)
    other_shop = ChatEvent(c.events[1].message_id, "s2", "b1", "buyer", "a1", ms(3))
    s = snap([*c.events, other_shop], 10)
    assert ("s2", "a1") in s


def test_comparison_reports_the_first_difference() -> None:
    c = Conv().buyer_msg(0).reply(7)
    a, b = snap(c.events, 10), snap(c.events, 10)
    assert snapshot_differences(a, b) == []
    b[("s1", "a1")].windows["1h"].rt_mean = 7.5
    with pytest.raises(AssertionError, match=r"windows\['1h'\]\.rt_mean: engine=7\.0 oracle=7\.5"):
        assert_same_snapshots(a, b)
    b = snap(c.events, 10)
    b[("s1", "a1")].histogram = {}
    assert snapshot_differences(b, a) != []
    a[("s1", "a1")].histogram = {le: 0 for le in BUCKETS}
    assert snapshot_differences(b, a) == []  # missing buckets read as zero
