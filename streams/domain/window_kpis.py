"""A window's KPIs from a cached, sorted prefix and the current minute, without merging them.

Why: a window is "every finished minute in it" (`prefix`, merged once a minute and cached) plus
"the current minute" (`tail`, where new facts land). Merging the two on every refresh copied
and re-sorted the whole prefix (a busy agent's `today` holds thousands of response times and
buyers), so a snapshot cost grew through the day. Here the prefix is sorted and its derived
counts are computed once; each refresh then costs what the current minute holds:

- quantiles: the k-th smallest of two sorted lists by binary search (`kth`);
- distinct buyers: the prefix's count plus the current minute's buyers not in the prefix;
- lines: `bisect` in both lists.

Exact: every figure equals the one of the merged window (tests/domain/test_window_kpis.py
checks them against the merge, and the oracle tests check the whole engine).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

from streams.domain.buckets import Summary
from streams.domain.model import LEVELS, QUANTILES, WindowKpis
from streams.domain.rules import Lines

EMPTY = Summary().seal()
_SERIALS = itertools.count()


class Prefix:
    """A merged summary with its response times sorted and its derived counts computed once."""

    __slots__ = ("converted", "frt_sum", "missed", "received", "rt_sum", "serial", "summary",
                 "version")

    def __init__(self, summary: Summary) -> None:
        """Take a fresh summary (`Aggregates._merged`): sorted and sealed here, and grown in
        place by `extend`."""
        summary.rts.sort()
        summary.frts.sort()
        self.summary = summary.seal()
        self.rt_sum = sum(summary.rts)
        self.frt_sum = sum(summary.frts)
        self.received = set(summary.unanswered)  # a set of its own: `extend` grows it
        self.received |= summary.replied
        self.missed = len(self.received - summary.replied)
        self.serial = next(_SERIALS)  # names it in caches without a reference (no cycle)
        self.version = 0  # bumped by `extend`: counts cached against this prefix are stale
        # (the paid prefix's serial and version it was counted against, inquired who paid)
        self.converted: tuple[int, int, int] | None = None

    def extend(self, minute: Summary) -> None:
        """Add the minute that just finished, in place: a fixed-start window (`today`, and the
        whole retained span) grows by one minute at each minute's turn, and rebuilding it
        copied the whole day for every agent at once (docs/optimisations.md)."""
        s = self.summary
        received, replied = self.received, s.replied
        # missed = |received − replied|: the minute's replies answer some of the prefix's
        # missed buyers, and its unanswered buyers new to the prefix are missed unless it
        # replied to them too.
        self.missed += sum(1 for b in minute.unanswered
                           if b not in received and b not in minute.replied)
        self.missed -= sum(1 for b in minute.replied if b in received and b not in replied)
        received |= minute.unanswered
        received |= minute.replied
        s.merge(minute)
        if minute.rts:
            s.rts.sort()  # two sorted runs: timsort merges them
            self.rt_sum += sum(minute.rts)
        if minute.frts:
            s.frts.sort()
            self.frt_sum += sum(minute.frts)
        self.converted = None
        self.version += 1

    def converted_against(self, paid: Prefix) -> int:
        """Inquired buyers of this prefix who paid in `paid` (cached until either changes)."""
        hit = self.converted
        if hit is None or hit[0] != paid.serial or hit[1] != paid.version:
            n = len(self.summary.inquired & paid.summary.paid)
            hit = self.converted = (paid.serial, paid.version, n)
        return hit[2]


def kth(a: Sequence[int], b: Sequence[int], k: int) -> int:
    """The k-th smallest (1-based) of the sorted `a` and `b` together, in O(log len(b))."""
    if not b:
        return a[k - 1]
    if not a:
        return b[k - 1]
    lo, hi = max(0, k - len(b)), min(k, len(a))
    while lo < hi:  # the fewest taken from `a` such that a[i] is not below b's last taken
        i = (lo + hi) // 2
        if a[i] < b[k - i - 1]:
            lo = i + 1
        else:
            hi = i
    i, j = lo, k - lo
    if i == 0:
        return b[j - 1]
    if j == 0:
        return a[i - 1]
    return max(a[i - 1], b[j - 1])


_MILLI = tuple((q, round(q * 1000)) for q in QUANTILES)


def _nearest_ranks(a: list[int], b: list[int]) -> dict[float, float]:
    """Nearest-rank quantiles (seconds) of `a` and `b` together (as `windows.nearest_rank`:
    v[ceil(q·n) − 1], the rank in integers)."""
    n = len(a) + len(b)
    if not b:
        return {q: a[min(max(1, -(-milli * n // 1000)), n) - 1] / 1000 for q, milli in _MILLI}
    return {q: kth(a, b, min(max(1, -(-milli * n // 1000)), n)) / 1000 for q, milli in _MILLI}


def _new(tail: set[int], prefix: set[int]) -> int:
    """How many of the current minute's are not already in the prefix."""
    return len(tail - prefix) if tail else 0


def window_kpis(
    pre: Prefix,
    tail: Summary | None,
    crossing: set[int],
    paid: tuple[Prefix, Summary | None],
    lines: Lines,
) -> WindowKpis:
    """Every KPI of one window: `pre` + `tail`, plus `crossing` (waiting buyers who became
    "received" inside the window); `paid` is the agent's whole retained span, for conversion.
    """
    s = pre.summary
    t = tail or EMPTY
    w = WindowKpis()
    tail_rts = sorted(t.rts) if t.rts else t.rts
    tail_frts = sorted(t.frts) if t.frts else t.frts
    w.rounds = len(s.rts) + len(tail_rts)
    w.rt_sum_ms = pre.rt_sum + sum(tail_rts)
    w.first_rounds = len(s.frts) + len(tail_frts)
    w.replied = len(s.replied) + _new(t.replied, s.replied)
    # received = unanswered ∪ replied ∪ crossing; missed = received − replied
    received, replied = pre.received, s.replied
    extra = {b for b in (*t.unanswered, *t.replied, *crossing) if b not in received}
    w.received = len(received) + len(extra)
    missed = pre.missed - sum(1 for b in t.replied if b in received and b not in replied)
    w.missed = missed + sum(1 for b in extra if b not in replied and b not in t.replied)
    w.agent_messages = s.agent_messages + t.agent_messages
    w.buyer_messages = s.buyer_messages + t.buyer_messages
    w.inquiries = len(s.inquired) + _new(t.inquired, s.inquired)
    w.ordered_buyers = len(s.ordered) + _new(t.ordered, s.ordered)
    w.paid_buyers = len(s.paid) + _new(t.paid, s.paid)
    w.paid_orders = s.paid_orders + t.paid_orders
    w.sales_units = s.sales_units + t.sales_units
    w.refunded_orders = len(s.refunded) + _new(t.refunded, s.refunded)
    w.refund_units = s.refund_units + t.refund_units
    w.assists = s.assists + t.assists
    w.ratings = s.ratings + t.ratings
    w.rating_sum = s.rating_sum + t.rating_sum
    w.ratings_good = s.ratings_good + t.ratings_good
    w.marked_sessions = s.marked + t.marked
    w.resolved_sessions = s.resolved + t.resolved
    w.converted = _converted(pre, t, paid)
    if w.rounds:
        w.rt_mean = w.rt_sum_ms / w.rounds / 1000
        w.rt_quantiles = _nearest_ranks(s.rts, tail_rts)
        levels = (lines.warning, lines.critical, lines.slow)
        for level, line in zip(LEVELS, levels, strict=True):
            ms = line * 1000
            w.within[level] = bisect.bisect_right(s.rts, ms) + bisect.bisect_right(tail_rts, ms)
    else:
        w.within = dict.fromkeys(LEVELS, 0)
    if w.first_rounds:
        w.frt_mean = (pre.frt_sum + sum(tail_frts)) / w.first_rounds / 1000
        w.frt_quantiles = _nearest_ranks(s.frts, tail_frts)
    return w


def _converted(pre: Prefix, t: Summary, paid: tuple[Prefix, Summary | None]) -> int:
    """|inquired ∩ paid| with inquired = pre ∪ tail and paid = the agent's whole span."""
    paid_pre, paid_tail = paid[0].summary.paid, (paid[1] or EMPTY).paid
    inquired = pre.summary.inquired
    n = pre.converted_against(paid[0])
    n += sum(1 for b in paid_tail if b not in paid_pre and b in inquired)
    n += sum(1 for b in t.inquired
             if b not in inquired and (b in paid_pre or b in paid_tail))
    return n
