"""Window arithmetic and exact statistics shared by the aggregates and the tests.

Windows (docs/kpis.md): `5m` and `1h` are the current UTC minute plus the preceding 4 or 59 whole
minutes; `today` starts at local midnight in the shop's time zone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from streams.domain.rules import MINUTE_MS, ShopRules, zone

HISTOGRAM_BUCKETS: tuple[float, ...] = (1, 5, 10, 20, 30, 40, 60, 120, 180, 300, 600, math.inf)


def window_starts(now_ms: int, rules: ShopRules) -> dict[str, int]:
    """First epoch ms of each window at `now_ms`."""
    minute_start = (now_ms // MINUTE_MS) * MINUTE_MS
    return {
        "5m": minute_start - 4 * MINUTE_MS,
        "1h": minute_start - 59 * MINUTE_MS,
        "today": rules.day_start_ms(now_ms),
    }


def retention_start(now_ms: int, rules: ShopRules) -> int:
    """Oldest ms the minute buckets must keep.

    The earlier of the 1h window and the start of the local day an hour ago: yesterday stays
    whole until 01:00, so it can be summed into its day summary in one piece.
    """
    minute_start = (now_ms // MINUTE_MS) * MINUTE_MS
    return min(minute_start - 59 * MINUTE_MS, rules.day_start_ms(now_ms - 3_600_000))


def period_start_ms(period: str, now_ms: int, rules: ShopRules) -> int:
    """Start of a scorecard period: "today", "month", "YYYY-MM-DD" or "YYYY-MM" (shop time)."""
    if period == "today":
        return rules.day_start_ms(now_ms)
    if period == "month":
        return month_start_ms(now_ms, rules)
    tz = zone(rules.timezone)
    try:
        if len(period) == 7:
            local = datetime.strptime(period, "%Y-%m").replace(tzinfo=tz)
        else:
            local = datetime.strptime(period, "%Y-%m-%d").replace(tzinfo=tz)
    except ValueError:
        raise ValueError(
            f"period must be today, month, YYYY-MM or YYYY-MM-DD, got {period!r}"
        ) from None
    return int(local.timestamp() * 1000)


def month_start_ms(now_ms: int, rules: ShopRules) -> int:
    """Local midnight of the first day of the month holding `now_ms` (shop time zone)."""
    return _month_start_ms(rules.timezone, now_ms // MINUTE_MS)


@lru_cache(maxsize=4096)
def _month_start_ms(tz: str, minute: int) -> int:
    # Midnights fall on whole minutes, so the minute decides (and caches well: every agent of a
    # snapshot round asks for the same one).
    local = datetime.fromtimestamp(minute * 60, zone(tz))
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return int(first.timestamp() * 1000)


def nearest_rank(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile of already sorted values: v[ceil(q·n) − 1].

    The rank is computed in integers (q in thousandths) so 0.9 × 10 is 9, not 9.000000000000002.
    """
    n = len(sorted_values)
    milli = round(q * 1000)
    rank = max(1, -(-milli * n // 1000))
    return sorted_values[min(rank, n) - 1]


def histogram_index(seconds: float) -> int:
    """Index of the first histogram bucket whose upper bound holds `seconds`."""
    for i, le in enumerate(HISTOGRAM_BUCKETS):
        if seconds <= le:
            return i
    return len(HISTOGRAM_BUCKETS) - 1
