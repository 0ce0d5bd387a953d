"""The simulator on Kafka: `run_simulate` paces a live day on the wall clock, `run_replay`
produces a JSONL file. Kafka clients are imported only when a command runs.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.config import Settings

from streams.tooling.simulate.jsonl import read_jsonl
from streams.tooling.simulate.model import CST, TopicKind
from streams.tooling.simulate.profile import DEFAULT, PROFILES, Profile
from streams.tooling.simulate.simulator import Simulator


def _topics(settings: Settings) -> dict[TopicKind, str]:
    return {
        "chat": settings.topic_chat,
        "orders": settings.topic_orders,
        "ratings": settings.topic_ratings,
        "agents": settings.topic_agents,
    }


def _ensure(settings: Settings, names: list[str]) -> None:
    from streams.topics import ensure_topics

    ensure_topics(settings.bootstrap, {t: settings.partitions for t in names}, settings=settings)


def _producer(settings: Settings, with_agents: bool = False) -> Any:
    """A producer, after creating the input topics (the status topic only when it is used:
    a worker that does not consume it yet should not find an unexplained topic)."""
    from kafka import KafkaProducer

    from streams.topics import kafka_client_kwargs

    topics = _topics(settings)
    _ensure(settings, [t for k, t in topics.items() if with_agents or k != "agents"])
    return KafkaProducer(**kafka_client_kwargs(settings), linger_ms=5, acks="all", retries=5)


class _Progress:
    """Prints a one-line status to stderr every few seconds, with the rate since the last one."""

    def __init__(self, label: str, enabled: bool, every_s: float = 5.0) -> None:
        self.label = label
        self.enabled = enabled
        self.every_s = every_s
        self.last_t = time.monotonic()
        self.last_total = 0
        self.next = self.last_t + every_s
        self.by_topic: Counter[str] = Counter()

    def tick(self, topic: str, extra: Callable[[], str] | None = None) -> None:
        self.by_topic[topic] += 1
        if self.enabled and time.monotonic() >= self.next:
            self.report(extra() if extra else "")

    def report(self, extra: str = "") -> None:
        now = time.monotonic()
        total = sum(self.by_topic.values())
        rate = (total - self.last_total) / max(now - self.last_t, 1e-9)
        self.last_t, self.last_total, self.next = now, total, now + self.every_s
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.by_topic.items()))
        print(
            f"{self.label}: {total} events ({parts}; {rate:.0f}/s){extra}",
            file=sys.stderr,
            flush=True,
        )


class _Errors:
    def __init__(self) -> None:
        self.count = 0
        self.first: BaseException | None = None

    def __call__(self, exc: BaseException) -> None:
        self.count += 1
        if self.first is None:
            self.first = exc

    def check(self) -> None:
        if self.count:
            raise RuntimeError(f"{self.count} events could not be produced: {self.first!r}")


@lru_cache(maxsize=16)
def _events_per_buyer_minute(seed: int, profile: str = "default") -> float:
    """Records per minute per unit of buyers_per_minute, measured on an hour of this seed."""
    sim = Simulator(seed=seed, buyers_per_minute=10.0, profile=PROFILES[profile])
    count = sum(1 for _ in sim.messages(3600.0))
    return count / 60.0 / 10.0


def run_simulate(
    settings: Settings,
    *,
    rate: float | None,
    seed: int,
    duration: float | None,
    speedup: float = 1.0,
    progress: bool = True,
    warmup: float = 300.0,
    agents_per_shop: int = 6,
    profile: Profile = DEFAULT,
) -> int:
    """Produce live traffic paced on the wall clock until `duration` (wall seconds) or Ctrl-C.

    Event time is the wall clock; with `speedup` > 1 simulated time runs that much faster (event
    timestamps then run ahead of it: use `KEFU_CLOCK=event`). A support room is never empty
    when the monitor starts, and sessions take minutes to ramp up, so the last `warmup`
    simulated seconds before now are sent at once first: KPIs have data from the first scrape
    and `rate` (approximate events/s) holds from the start. Without a `rate`, a profile that
    names its load (`buyers_per_agent_minute`) gets it, others 30 buyers a minute. A profile's
    scripted incident is timed from the end of the warm-up. Returns the number of records sent.
    """
    if speedup <= 0 or not math.isfinite(speedup):
        raise ValueError("speedup must be a positive number")
    if warmup < 0:
        raise ValueError("warmup must be >= 0")
    bpm = 30.0
    if profile.buyers_per_agent_minute is not None:
        agents = len(Simulator(agents_per_shop=agents_per_shop).agents)
        bpm = profile.buyers_per_agent_minute * agents
    if rate is not None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        bpm = rate * 60.0 / _events_per_buyer_minute(seed, profile.name) / speedup
    now_ms = time.time_ns() // 1_000_000
    start_ms = now_ms - int(warmup * 1000)
    sim = Simulator(
        seed=seed, start_ms=start_ms, buyers_per_minute=bpm, agents_per_shop=agents_per_shop,
        profile=profile, live_start_ms=now_ms,
    )
    topics = _topics(settings)
    producer = _producer(settings, with_agents=profile.status_events)
    errors = _Errors()
    report = _Progress("simulate", progress)
    t0 = time.monotonic()
    sim_seconds = math.inf if duration is None else warmup + duration * speedup
    sent = 0
    sim_now_ms = start_ms

    def sim_clock() -> str:
        when = datetime.fromtimestamp(sim_now_ms / 1000, CST).strftime("%H:%M:%S")
        return f", simulated {when} +08:00"

    try:
        for msg in sim.messages(sim_seconds):
            delay = t0 + (msg.ts - now_ms) / 1000.0 / speedup - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            producer.send(
                topics[msg.topic], value=msg.value, key=msg.key, timestamp_ms=msg.ts
            ).add_errback(errors)
            sent += 1
            sim_now_ms = msg.ts
            report.tick(msg.topic, sim_clock)
    except KeyboardInterrupt:
        pass
    finally:
        producer.flush(timeout=30)
        producer.close(timeout=5)
    if progress:
        report.report(" - done")
    errors.check()
    return sent


def run_replay(
    settings: Settings, path: str | Path, *, rate: float | None = None, progress: bool = True
) -> int:
    """Produce a JSONL file (`-` = stdin) into the topics, keeping event times as they are.

    Lines are envelopes as `write_jsonl` writes them or bare events (topic inferred, key
    `{shop_id}:{buyer_id}`); bad lines are produced too, for the worker to dead-letter. `rate`
    caps events/s (None = as fast as possible). Raises if any record could not be produced.
    """
    if rate is not None and rate <= 0:
        raise ValueError("rate must be positive")
    topics = _topics(settings)
    producer = _producer(settings)
    errors = _Errors()
    report = _Progress("replay", progress)
    t0 = time.monotonic()
    sent = 0
    agents_ready = False
    try:
        for topic, key, value in read_jsonl(path):
            if topic == "agents" and not agents_ready:  # a file with status events
                _ensure(settings, [topics["agents"]])
                agents_ready = True
            if rate is not None:
                delay = t0 + sent / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            producer.send(topics[topic], value=value, key=key).add_errback(errors)
            sent += 1
            report.tick(topic)
    finally:
        producer.flush(timeout=60)
        producer.close(timeout=5)
    if progress:
        report.report(" - done")
    errors.check()
    return sent
