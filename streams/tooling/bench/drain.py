"""Waiting for a worker to work through a known amount of input, timed from its `/metrics`."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from streams.tooling.bench.common import SCRAPE_SHARE, log
from streams.tooling.bench.metrics_text import accounted, progress_signature, watermark_ms
from streams.tooling.worker import WorkerProcess


@dataclass
class Drain:
    """How a worker worked through a known amount of input, from its /metrics."""

    first_at: float = math.nan  # monotonic time of the first scrape showing progress
    first_count: int = 0
    accounted_at: float = math.nan  # every input event accounted (interpolated between scrapes)
    settled_at: float = math.nan  # aggregates stopped changing (first scrape with final values)
    polls: int = 0
    scrape_s: list[float] = field(default_factory=list)
    body: bytes = b""

    def rate(self, total: int) -> float:
        span = self.settled_at - self.first_at
        return (total - self.first_count) / span if span > 0 else math.nan

    def stage1_rate(self, total: int) -> float:
        span = self.accounted_at - self.first_at
        return (total - self.first_count) / span if span > 0 else math.nan


class DrainTimeout(RuntimeError):
    """The worker did not finish in time; `drain` holds what was seen until then."""

    def __init__(self, msg: str, drain: Drain, last: tuple[float, int] | None) -> None:
        super().__init__(msg)
        self.drain = drain
        self.last_at, self.last_count = last if last is not None else (math.nan, 0)

    def lower_bound(self) -> float:
        """Events/s from the first processed event to the last scrape (stage 1 only)."""
        d = self.drain
        span = self.last_at - d.first_at
        return (self.last_count - d.first_count) / span if span > 0 else math.nan


def drain(
    w: WorkerProcess,
    topics: Sequence[str],
    total: int,
    timeout: float,
    *,
    interval: float = 0.5,
    first_interval: float = 0.1,
    settle_s: float = 2.0,
    min_watermark_ms: int = 0,
) -> Drain:
    """Poll /metrics until `total` input events are accounted and the aggregates are stable.

    A restarted worker counts from zero (and may count a few re-delivered events again): give
    it the count since its start and `min_watermark_ms`, the largest event ts it must reach.
    """
    d = Drain()
    deadline = time.monotonic() + timeout
    prev: tuple[float, int] | None = None
    sig: tuple[float, ...] | None = None
    sig_since = 0.0
    next_note = time.monotonic() + 10
    while True:
        now = time.monotonic()
        if now > deadline:
            raise DrainTimeout(
                f"{w.name}: {total} events not processed and settled in {timeout:g}s "
                f"(last count {prev[1] if prev else 0})", d, prev)
        w.check()
        t0 = time.monotonic()
        status, body = w.get("/metrics", 30)
        t1 = time.monotonic()
        if status != 200:
            time.sleep(first_interval)
            continue
        d.polls += 1
        d.scrape_s.append(t1 - t0)
        n = accounted(body, topics)
        if min_watermark_ms and watermark_ms(body) < min_watermark_ms:
            n = min(n, total - 1)
        if n > 0 and math.isnan(d.first_at):
            d.first_at, d.first_count = t1, n
        if n >= total and math.isnan(d.accounted_at):
            if prev is not None and prev[1] < total and n > prev[1]:
                d.accounted_at = prev[0] + (total - prev[1]) / (n - prev[1]) * (t1 - prev[0])
            else:
                d.accounted_at = t1
        prev = (t1, n)
        if t1 >= next_note:
            next_note = t1 + 10
            log(f"  {w.name}: {n}/{total} events accounted")
        if n >= total:
            s = progress_signature(body)
            if s != sig:
                sig, sig_since = s, t1
            elif t1 - sig_since >= settle_s:
                d.settled_at = max(sig_since, d.accounted_at)
                d.body = body
                return d
            time.sleep(max(0.25, _pause(t1 - t0)))
        else:
            time.sleep(first_interval if math.isnan(d.first_at) else max(interval, _pause(t1 - t0)))


def _pause(scrape_s: float) -> float:
    """Pause after a scrape so that scraping takes at most SCRAPE_SHARE of the worker's time."""
    return scrape_s * (1 / SCRAPE_SHARE - 1)
