"""`streams.domain.aggregates` on its own: applying facts (idempotent upserts and deletes),
the KPIs of a window, retention of buckets and days, and the changelog codec's round trip."""

from __future__ import annotations

import orjson

from streams.domain import aggregates_codec
from streams.domain.aggregates import SEP, Aggregates
from streams.domain.buckets import record_key
from streams.domain.facts import (
    AGENT_MSG,
    BUYER_MSG,
    DEL,
    EXECUTION,
    FIRST,
    PENDING,
    PUT,
    ROUND,
    UNANSWERED,
    Fact,
    agent_key,
)
from streams.domain.rules import DAY_MS, MINUTE_MS, ShopRules

T0 = 1_731_290_000_000 // MINUTE_MS * MINUTE_MS
S = 1000
RULES = ShopRules()
AKEY = agent_key("shop", "a1")


def aggregates() -> Aggregates:
    return Aggregates(lambda _shop: RULES, lambda _shop, _agent: RULES.lines,
                      lambda _agent: "team")


def round_(fid: int, ts: int, rt_ms: int, buyer: int, kind: str = ROUND, op: int = PUT) -> Fact:
    return Fact(op, kind, "shop", "a1", fid, ts, rt_ms, buyer)


def snapshot(aggs: Aggregates, now: int) -> dict[str, object]:
    aggs.advance(now)
    snap = aggs.snapshot("shop", "a1", now)
    assert snap is not None
    w = snap.windows["today"]
    return {"rounds": w.rounds, "first": w.first_rounds, "replied": w.replied,
            "rt_mean": w.rt_mean, "total": snap.rounds_total, "waiting": snap.waiting}


def test_facts_make_the_window_kpis() -> None:
    aggs = aggregates()
    aggs.apply([round_(1, T0, 20 * S, buyer=7, kind=FIRST), round_(2, T0 + S, 40 * S, buyer=8),
                Fact(PUT, AGENT_MSG, "shop", "a1", 3, T0, 0, 7),
                Fact(PUT, BUYER_MSG, "shop", "a1", 4, T0)])
    assert snapshot(aggs, T0 + 10 * S) == {"rounds": 2, "first": 1, "replied": 2,
                                           "rt_mean": 30.0, "total": 2, "waiting": 0}


def test_a_fact_applied_twice_counts_once_and_a_delete_retracts_it() -> None:
    aggs = aggregates()
    fact = round_(1, T0, 20 * S, buyer=7)
    aggs.apply([fact, fact])
    assert snapshot(aggs, T0 + 10 * S)["rounds"] == 1
    aggs.apply([fact.deleted()])
    kpis = snapshot(aggs, T0 + 10 * S)
    assert (kpis["rounds"], kpis["total"]) == (0, 1)  # the window forgets; the counter cannot


def test_rounds_total_counts_only_settled_rounds_and_never_goes_down() -> None:
    aggs = aggregates()
    aggs.advance(T0)
    aggs.apply([round_(1, T0, 20 * S, buyer=7)])
    assert aggs.agents[("shop", "a1")].totals.rounds == 0  # a late event may still retract it
    aggs.advance(T0 + RULES.reorder_window_ms)
    assert aggs.agents[("shop", "a1")].totals.rounds == 1
    aggs.apply([round_(1, T0, 20 * S, buyer=7, op=DEL)])
    assert aggs.agents[("shop", "a1")].totals.rounds == 1  # a counter: monotone


def test_waiting_buyers_come_from_pending_facts() -> None:
    aggs = aggregates()
    aggs.apply([Fact(PUT, PENDING, "shop", "a1", 99, T0, T0, T0)])
    assert snapshot(aggs, T0 + S)["waiting"] == 1
    assert aggs.next_change("shop", "a1", T0 + S) == T0 + RULES.unanswered_after_ms
    aggs.apply([Fact(DEL, PENDING, "shop", "a1", 99, T0, T0, T0)])
    assert aggs.snapshot("shop", "a1", T0 + S) is None


def test_take_dirty_names_the_records_a_batch_changed() -> None:
    aggs = aggregates()
    aggs.apply([round_(1, T0, 20 * S, buyer=7), Fact(PUT, PENDING, "shop", "a1", 9, T0, T0, T0),
                Fact(PUT, EXECUTION, "shop", "a1", 5, T0, 850)])
    minute = T0 // MINUTE_MS
    assert set(aggs.take_dirty()) == {f"{AKEY}{SEP}{minute}", f"{AKEY}{SEP}p", f"{AKEY}{SEP}t",
                                      f"{AKEY}{SEP}e"}
    assert aggs.take_dirty() == {}


# -- retention --------------------------------------------------------------------------------


def test_expire_folds_old_minutes_into_a_day_summary_and_drops_them() -> None:
    aggs = aggregates()
    aggs.apply([round_(1, T0, 20 * S, buyer=7), Fact(PUT, UNANSWERED, "shop", "a1", 2, T0, 0, 8)])
    later = T0 + 3 * DAY_MS
    gone = aggs.expire(later)
    st = aggs.agents[("shop", "a1")]
    assert gone == [f"{AKEY}{SEP}{T0 // MINUTE_MS}"]
    assert not st.buckets
    [(day, summary)] = st.days.items()
    assert day == RULES.day_start_ms(T0)
    assert (summary.rounds, summary.replied, summary.received) == (1, 1, 2)
    # A fact for a minute already dropped is late: it is counted and ignored.
    aggs.apply([round_(3, T0, 5 * S, buyer=9)])
    assert aggs.late_facts == 1 and not st.buckets


def test_day_summaries_are_dropped_after_the_month() -> None:
    aggs = aggregates()
    aggs.apply([round_(1, T0, 20 * S, buyer=7)])
    aggs.expire(T0 + 3 * DAY_MS)
    gone = aggs.expire(T0 + 70 * DAY_MS)
    assert gone == [f"{AKEY}{SEP}d{RULES.day_start_ms(T0)}"]
    assert not aggs.agents[("shop", "a1")].days


# -- the changelog codec ----------------------------------------------------------------------


def _records(aggs: Aggregates) -> dict[str, object]:
    out = {}
    for (shop, agent), st in aggs.agents.items():
        akey = agent_key(shop, agent)
        parts = [str(m) for m in st.buckets] + [f"d{d}" for d in st.days] + ["p", "t", "e"]
        for part in parts:
            key = f"{akey}{SEP}{part}"
            out[key] = aggs.record(key)
    return out


def test_codec_round_trip_gives_equal_records_and_equal_snapshots() -> None:
    aggs = aggregates()
    aggs.advance(T0)
    aggs.apply([round_(1, T0, 20 * S, buyer=7, kind=FIRST), round_(2, T0 + 2 * MINUTE_MS, 9 * S,
                buyer=8), Fact(PUT, PENDING, "shop", "a1", 9, T0, T0, T0 + S),
                Fact(PUT, EXECUTION, "shop", "a1", 5, T0, 850)])
    aggs.expire(T0 + 2 * DAY_MS)  # one day summary
    aggs.apply([round_(3, T0 + 2 * DAY_MS, 3 * S, buyer=9)])
    records = _records(aggs)
    restored = aggregates()
    for key, value in records.items():
        wire = orjson.loads(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
        restored.load(key, wire)
    def wire(v: object) -> object:
        return orjson.loads(orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS))

    assert wire(_records(restored)) == wire(records)
    now = T0 + 2 * DAY_MS + MINUTE_MS
    assert restored.snapshot("shop", "a1", now) == aggs.snapshot("shop", "a1", now)


def test_codec_record_format() -> None:
    """The values are what changelogs already hold: changing one loses every stored state."""
    aggs = aggregates()
    aggs.advance(T0)
    aggs.apply([round_(1, T0, 20 * S, buyer=7), Fact(PUT, PENDING, "shop", "a1", 9, T0, T0, T0),
                Fact(PUT, EXECUTION, "shop", "a1", 5, T0, 850)])
    st = aggs.agents[("shop", "a1")]
    assert aggregates_codec.encode(st, "p") == [[9, T0, T0, T0]]
    assert aggregates_codec.encode(st, "e") == [[T0, 8.5]]
    totals = aggregates_codec.encode(st, "t")
    assert totals[0] == 0 and totals[3] == 0 and totals[4] == [[1, T0, 20 * S]]
    [(key, row)] = aggregates_codec.encode(st, str(T0 // MINUTE_MS)).items()
    assert (key, row) == (record_key(ROUND, 1), (ROUND, 20 * S, 7))
    assert aggregates_codec.encode(st, "d0") is None


def test_a_tombstone_deletes_a_bucket() -> None:
    aggs = aggregates()
    aggs.apply([round_(1, T0, 20 * S, buyer=7)])
    key = f"{AKEY}{SEP}{T0 // MINUTE_MS}"
    aggs.load(key, None)
    assert aggs.record(key) is None


def test_a_buyer_received_yesterday_stays_in_the_month_with_no_bucket_of_yesterday() -> None:
    """Waiting since 23:40, received at 23:50 (unanswered_after 10 min), and the agent's only
    bucket is today's: the month still counts yesterday's received, missed buyer (review of
    0.6.0: skipping yesterday's empty window lost it)."""
    rules = ShopRules()
    aggs = Aggregates(lambda _s: rules, lambda _s, _a: rules.lines, lambda _a: "t")
    today = rules.day_start_ms(1_700_000_000_000 + 86_400_000)
    since = today - 20 * MINUTE_MS
    aggs.apply([Fact(PUT, PENDING, "s", "a", 7, since, since, today + 5 * MINUTE_MS),
                Fact(PUT, BUYER_MSG, "s", "a", 8, today + 10 * MINUTE_MS)])
    for now in (today + 30 * MINUTE_MS, today + 15 * 60 * MINUTE_MS):
        aggs.expire(now)
        snap = aggs.snapshot("s", "a", now)
        assert snap is not None and snap.month is not None
        assert (snap.month.received, snap.month.missed) == (1, 1)
