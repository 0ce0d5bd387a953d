"""Figures read off a worker's `/metrics` text with a few regular expressions.

The bench polls `/metrics` many times a second while measuring: it reads only a handful of
samples, so a regex over the bytes costs far less of the worker's measured time than a full
parse (the tests parse fully, with prometheus-client's parser).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

QUEUE_GAUGES = ("kefu_consumer_lag_messages", "kefu_facts_lag_messages",
                "kefu_snapshot_queue_agents", "kefu_snapshot_refreshes_total",
                "kefu_snapshot_refresh_seconds_total")


def gauge_sum(body: bytes, name: str) -> float:
    """Sum of a gauge's samples (all label sets) in a /metrics body; 0 when absent."""
    pattern = re.compile(rb"^" + name.encode() + rb"(?:\{[^}]*\})? (\S+)$", re.M)
    return sum(float(v) for v in pattern.findall(body))


_EVENTS_RE = re.compile(rb'^kefu_events_total\{topic="([^"]*)",outcome="([^"]*)"\} (\S+)$', re.M)
_SUMS = {
    name: re.compile(rb"^" + name + rb"\{[^}]*\} (\S+)$", re.M)
    for name in (b"kefu_rounds_total", b"kefu_agent_messages", b"kefu_buyer_messages")
}
_TODAY_ROUNDS_RE = re.compile(rb'^kefu_rounds\{[^}]*window="today"\} (\S+)$', re.M)


def accounted(body: bytes, topics: Iterable[str]) -> int:
    """Input events the worker has finished with: every outcome but `rekeyed` (those come back
    through the rekey topic and are counted again under their final outcome)."""
    wanted = {t.encode() for t in topics}
    n = 0.0
    for topic, outcome, value in _EVENTS_RE.findall(body):
        if topic in wanted and outcome != b"rekeyed":
            n += float(value)
    return int(n)


_WATERMARK_RE = re.compile(rb"^kefu_watermark_timestamp_seconds (\S+)$", re.M)


def watermark_ms(body: bytes) -> int:
    m = _WATERMARK_RE.search(body)
    return round(float(m.group(1)) * 1000) if m else 0


def outcomes(body: bytes) -> dict[str, int]:
    out: Counter[str] = Counter()
    for _topic, outcome, value in _EVENTS_RE.findall(body):
        out[outcome.decode()] += int(float(value))
    return dict(out)


def progress_signature(body: bytes) -> tuple[float, ...]:
    """Sums that move while the per-agent aggregates are still catching up."""
    sig = [sum(float(v) for v in rx.findall(body)) for rx in _SUMS.values()]
    sig.append(sum(float(v) for v in _TODAY_ROUNDS_RE.findall(body)))
    return tuple(sig)


def agent_samples(body: bytes, shops: set[str] | None = None) -> dict[str, str]:
    """KPI sample lines with an agent label (series -> value), optionally of some shops only."""
    out: dict[str, str] = {}
    for line in body.decode("utf-8", "replace").splitlines():
        if not line or line[0] == "#" or 'agent="' not in line:
            continue
        series, _, value = line.rpartition(" ")
        if shops is not None:
            m = re.search(r'shop="([^"]*)"', series)
            if m is None or m.group(1) not in shops:
                continue
        out[series] = value
    return out
