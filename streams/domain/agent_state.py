"""What the aggregates keep per (shop, agent): minute buckets, caches, totals, day summaries.

Apart from `aggregates` (which applies facts to it and computes KPIs from it) so that the
changelog codec (`aggregates_codec`) can build it without importing the KPI maths.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.domain import status
from streams.domain.buckets import Bucket, Summary
from streams.domain.model import WindowKpis
from streams.domain.window_kpis import Prefix
from streams.domain.windows import HISTOGRAM_BUCKETS


@dataclass(slots=True)
class Totals:
    """Counters for SLO burn rates: exact, and monotone so `rate()` never sees a fake reset.

    A round is counted once its reply is older than the reorder window: until then a late
    event may still retract or change it, and a counter must never go down.
    """

    rounds: int = 0
    within: list[int] = field(default_factory=lambda: [0, 0, 0])
    hist: list[int] = field(default_factory=lambda: [0] * len(HISTOGRAM_BUCKETS))
    sum_ms: int = 0
    uncounted: dict[int, tuple[int, int]] = field(default_factory=dict)  # fid -> (ts, ms)


class AgentState:
    __slots__ = ("buckets", "buyers", "days", "execution", "hours", "load", "pending", "prefix",
                 "totals")

    def __init__(self) -> None:
        self.buckets: dict[int, Bucket] = {}
        self.hours: dict[int, Summary] = {}  # cache: finished hour (minute // 60) -> merged
        # cache: (first, last) minute range -> merged and sorted; windows are "prefix + current
        # minute" (streams.domain.window_kpis)
        self.prefix: dict[tuple[int, int], Prefix] = {}
        self.pending: dict[int, tuple[int, int, int]] = {}  # conversation -> (start, since, last)
        # conversation -> buyer id, for the waiting list only (`streams.domain.waiting`); a key
        # of `pending` missing here was recorded before PENDING facts carried the buyer id.
        self.buyers: dict[int, str] = {}
        self.totals = Totals()
        self.days: dict[int, WindowKpis] = {}  # closed local days (start ms) -> summed KPIs
        self.execution: dict[int, float] = {}  # period start ms -> supervisor points
        self.load = status.AgentLoad()  # status timeline and open sessions (records "S", "c")
