"""A window from its cached prefix and its current minute (streams.domain.window_kpis) equals
the window of the two merged, computed the straightforward way (the reference below)."""

from __future__ import annotations

import bisect

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.buckets import Summary
from streams.domain.model import LEVELS, QUANTILES, WindowKpis
from streams.domain.rules import Lines
from streams.domain.window_kpis import Prefix, kth, window_kpis
from streams.domain.windows import nearest_rank
from tests.domain.strategies import PROPERTY_SETTINGS

LINES = Lines(30.0, 40.0, 60.0)
buyers = st.sets(st.integers(0, 12), max_size=8)  # small ids: prefix and minute overlap
times = st.lists(st.integers(0, 90_000), max_size=12)


@st.composite
def summaries(draw: st.DrawFn) -> Summary:
    s = Summary()
    s.rts = draw(times)
    s.frts = draw(st.lists(st.sampled_from(s.rts), max_size=len(s.rts))) if s.rts else []
    for name in ("replied", "unanswered", "inquired", "ordered", "paid", "refunded", "ads"):
        setattr(s, name, draw(buyers))
    for name in ("agent_messages", "buyer_messages", "paid_orders", "sales_units", "refund_units",
                 "assists", "ratings", "rating_sum", "ratings_good", "marked", "resolved"):
        setattr(s, name, draw(st.integers(0, 50)))
    return s


def merged(*parts: Summary | None) -> Summary:
    total = Summary()
    for p in parts:
        if p is not None:
            total.merge(p)
    return total


def reference(s: Summary, crossing: set[int], paid: set[int]) -> WindowKpis:
    """The window of one merged summary, as aggregates computed it before 0.6."""
    w = WindowKpis()
    received = s.unanswered | s.replied | crossing
    rts, frts = sorted(s.rts), sorted(s.frts)
    w.rounds, w.rt_sum_ms, w.first_rounds = len(rts), sum(rts), len(frts)
    w.replied, w.received = len(s.replied), len(received)
    w.missed = len(received - s.replied)
    w.agent_messages, w.buyer_messages = s.agent_messages, s.buyer_messages
    w.inquiries, w.ordered_buyers, w.paid_buyers = len(s.inquired), len(s.ordered), len(s.paid)
    w.paid_orders, w.sales_units = s.paid_orders, s.sales_units
    w.refunded_orders, w.refund_units = len(s.refunded), s.refund_units
    w.assists, w.ratings, w.rating_sum = s.assists, s.ratings, s.rating_sum
    w.ratings_good, w.marked_sessions, w.resolved_sessions = s.ratings_good, s.marked, s.resolved
    w.converted = len(s.inquired & paid)
    w.within = dict.fromkeys(LEVELS, 0)
    if rts:
        w.rt_mean = w.rt_sum_ms / len(rts) / 1000
        w.rt_quantiles = {q: nearest_rank(rts, q) / 1000 for q in QUANTILES}
        for level, line in zip(LEVELS, (LINES.warning, LINES.critical, LINES.slow), strict=True):
            w.within[level] = bisect.bisect_right(rts, line * 1000)
    if frts:
        w.frt_mean = sum(frts) / len(frts) / 1000
        w.frt_quantiles = {q: nearest_rank(frts, q) / 1000 for q in QUANTILES}
    return w


@settings(PROPERTY_SETTINGS, max_examples=500)
@given(summaries(), st.one_of(st.none(), summaries()), buyers, summaries(),
       st.one_of(st.none(), summaries()), st.booleans(), st.booleans())
def test_prefix_and_minute_equal_the_merged_window(
    pre: Summary, tail: Summary | None, crossing: set[int], paid_pre: Summary,
    paid_tail: Summary | None, paid_is_window: bool, sealed: bool,
) -> None:
    if paid_is_window:  # the 'today' window is usually the whole retained span
        paid_pre, paid_tail = pre, tail
    whole = merged(pre, tail)
    paid = merged(paid_pre, paid_tail).paid
    if sealed:  # as the worker keeps a minute's summary (buckets.Bucket.summarize)
        for minute in (tail, paid_tail):
            if minute is not None:
                minute.seal()
    prefix = Prefix(merged(pre))
    paid_prefix = prefix if paid_is_window else Prefix(merged(paid_pre))
    got = window_kpis(prefix, tail, crossing, (paid_prefix, paid_tail), LINES)
    assert got == reference(whole, crossing, paid)
    # Asked again (cached conversion count), the same; the minute's summary is not changed.
    assert window_kpis(prefix, tail, crossing, (paid_prefix, paid_tail), LINES) == got
    if tail is not None:
        assert derived_summary(merged(pre, tail)) == derived_summary(whole)


@settings(PROPERTY_SETTINGS, max_examples=1000)
@given(st.lists(st.integers(-5, 5)), st.lists(st.integers(-5, 5)), st.data())
def test_kth_of_two_sorted_lists(a: list[int], b: list[int], data: st.DataObject) -> None:
    a.sort()
    b.sort()
    both = sorted(a + b)
    if both:
        k = data.draw(st.integers(1, len(both)))
        assert kth(a, b, k) == both[k - 1]


def derived_summary(s: Summary) -> tuple[object, ...]:
    """A summary's contents whatever its containers (a sealed one shares its empty ones)."""
    return (*(sorted(s.rts), sorted(s.frts)), *(set(getattr(s, name)) for name in (
        "replied", "unanswered", "inquired", "ordered", "paid", "refunded", "ads")),
        s.agent_messages, s.buyer_messages, s.paid_orders, s.sales_units, s.refund_units,
        s.assists, s.ratings, s.rating_sum, s.ratings_good, s.marked, s.resolved)


def derived(p: Prefix) -> tuple[object, ...]:
    return (derived_summary(p.summary), p.rt_sum, p.frt_sum, p.received, p.missed)


@settings(PROPERTY_SETTINGS, max_examples=500)
@given(summaries(), st.lists(summaries(), min_size=1, max_size=3), st.booleans())
def test_a_prefix_extended_minute_by_minute_equals_one_built_whole(
    first: Summary, minutes: list[Summary], sealed: bool,
) -> None:
    whole = Prefix(merged(first, *minutes))
    grown = Prefix(merged(first))
    for minute in minutes:
        if sealed:  # the minute that just ended comes sealed from its bucket
            minute.seal()
        before = derived_summary(minute)
        grown.extend(minute)
        assert derived_summary(minute) == before  # the minute's own summary is left as it was
    assert derived_summary(grown.summary) == derived_summary(whole.summary)
    assert derived(grown) == derived(whole)


def test_a_count_cached_against_a_prefix_that_grew_is_counted_again() -> None:
    window = Prefix(Summary(inquired={1, 2, 3}))
    paid = Prefix(Summary(paid={1}))
    assert window.converted_against(paid) == 1
    paid.extend(Summary(paid={2, 3}))  # the same object, one minute longer
    assert window.converted_against(paid) == 3


def test_a_prefix_names_its_paid_span_without_holding_it() -> None:
    """No reference cycle when the window is its own paid span (`today` after 01:00): the
    collector runs rarely (streams.gc_policy), so a day-sized cycle would linger."""
    window = Prefix(Summary(inquired={1}, paid={1}))
    assert window.converted_against(window) == 1
    assert window.converted is not None
    assert all(type(part) is int for part in window.converted)
