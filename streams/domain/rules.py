"""Business rules the KPIs are graded by: response lines, session timing, service hours, ad filters.

Resolved per shop (and per team for the lines) by `streams.config`; here they are plain values
so the domain logic never reads files or the environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

MINUTE_MS = 60_000
DAY_MS = 86_400_000


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class Lines:
    """Response-time lines in seconds (docs/kpis.md): warning "skilled", critical "normal"."""

    warning: float = 30.0
    critical: float = 40.0
    slow: float = 180.0
    page_wait: float = 180.0

    def as_levels(self) -> dict[str, float]:
        return {"warning": self.warning, "critical": self.critical, "slow": self.slow}


@dataclass(frozen=True, slots=True)
class ShopRules:
    """How one shop is graded. Durations are milliseconds; service hours are local minutes."""

    profile: str = "taobao"
    timezone: str = "Asia/Shanghai"
    lines: Lines = field(default_factory=Lines)
    session_idle_ms: int = 10 * MINUTE_MS
    unanswered_after_ms: int = 10 * MINUTE_MS
    attribution_window_ms: int = 24 * 60 * MINUTE_MS
    reorder_window_ms: int = 2_000
    # Events dated further ahead of the wall clock are rejected: one bad clock must not move
    # *now* (event clock) or the watermark, which would hide lag.
    max_future_skew_ms: int = 5 * MINUTE_MS
    # (start_minute, end_minute) of the local day; end may be < start for ranges over midnight.
    service_hours: tuple[tuple[int, int], ...] = ()

    def in_service(self, ts_ms: int) -> bool:
        """True when `ts_ms` falls inside the shop's service hours (always, when none are set)."""
        if not self.service_hours:
            return True
        local = datetime.fromtimestamp(ts_ms / 1000, zone(self.timezone))
        minute = local.hour * 60 + local.minute
        for start, end in self.service_hours:
            if start <= end:
                if start <= minute < end:
                    return True
            elif minute >= start or minute < end:
                return True
        return False

    def day_start_ms(self, ts_ms: int) -> int:
        """Local midnight (in the shop's time zone) of the day holding `ts_ms`, as epoch ms."""
        return _day_start_ms(self.timezone, ts_ms // MINUTE_MS) if ts_ms >= 0 else 0


@lru_cache(maxsize=8192)
def _day_start_ms(tz: str, minute: int) -> int:
    local = datetime.fromtimestamp(minute * 60, zone(tz))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return int(midnight.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Filters:
    """Ad/spam (广告/骚扰) detection: a regex on message text or a blocked buyer id."""

    ad_patterns: tuple[re.Pattern[str], ...] = ()
    block_list: frozenset[str] = frozenset()

    def is_ad(self, buyer_id: str, text: str | None) -> bool:
        if buyer_id in self.block_list:
            return True
        if text:
            return any(p.search(text) for p in self.ad_patterns)
        return False


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """A roster entry (docs/interfaces.md `[[agents]]`)."""

    id: str
    name: str = ""
    team: str = "unassigned"
    sales_target: float | None = None
    max_concurrent: int | None = None  # buyers at once, for 饱和度 (None = the default, 10)
