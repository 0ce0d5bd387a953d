"""The worker's read-only state as the exporters see it: `Clock`, `Health` and `State`.

Why a module of its own: the runtime (in `pipeline`) writes this state and the pages (in
`export`) read it. Kept here, below both, the pages depend on what they read rather than on
the runtime and its Faust wiring, and neither package imports the other.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from streams.config import Config
from streams.domain.model import AgentSnapshot
from streams.domain.waiting import WaitingBuyer
from streams.ports import Sink

HEARTBEAT_GRACE_S = 10.0
# Not ready once the broker has acked no heartbeat for this long (a broker away for 20 s must
# show): a few missed heartbeats are a busy broker, not an outage.
BROKER_READY_GRACE_S = 15.0


class Clock:
    """*now* for windows and waiting times: the wall clock, or in replay mode the largest event ts.

    Also the worker's watermark: the largest event `ts` it has processed.
    """

    def __init__(self, mode: Literal["wall", "event"] = "wall") -> None:
        self.mode = mode
        self.watermark_ms = 0

    def observe(self, ts_ms: int) -> None:
        if ts_ms > self.watermark_ms:
            self.watermark_ms = ts_ms

    def now_ms(self) -> int:
        if self.mode == "event":
            return self.watermark_ms
        return int(time.time() * 1000)


@dataclass
class Health:
    """What /healthz, /readyz and the freshness gauges report."""

    started_at: float = field(default_factory=time.time)
    ready: bool = False
    last_batch_at: float = 0.0
    backlog: dict[int, int] = field(default_factory=dict)  # chat partition -> unread messages
    facts_backlog: dict[int, int] = field(default_factory=dict)  # facts partition -> unread
    rekey_backlog: dict[int, int] = field(default_factory=dict)  # rekey partition -> unread
    broker_ok_at: float = field(default_factory=time.time)  # last heartbeat the broker acked

    def broker_reachable(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return now - self.broker_ok_at <= BROKER_READY_GRACE_S

    def is_ready(self, now: float | None = None) -> bool:
        """Recovered, and the broker acked a heartbeat within the grace: what /readyz says."""
        return self.ready and self.broker_reachable(now)

    def lag_seconds(self, watermark_s: float, now: float | None = None) -> float:
        """How stale the numbers are: behind the input, or cut off from the broker.

        A worker that cannot reach the broker sees no backlog and would report 0 — a quiet
        room. Silence from the broker longer than a few heartbeats counts as lag instead.
        """
        now = time.time() if now is None else now
        lag = max(0.0, now - watermark_s) if sum(self.backlog.values()) and watermark_s else 0.0
        silent = now - self.broker_ok_at
        return max(lag, silent) if silent > HEARTBEAT_GRACE_S else lag


class State(Protocol):
    """What the exporters read (the worker's `Runtime` provides it)."""

    config: Config
    snapshots: dict[tuple[str, str], AgentSnapshot]
    ad_buyers: dict[str, dict[str, int]]
    events_total: Counter[tuple[str, str]]
    rejected_reasons: Counter[tuple[str, str]]
    owned: set[int]
    health: Health
    clock: Clock
    snapshot_at_ms: int
    snapshot_queue: int
    snapshot_seconds: float
    snapshots_refreshed: int


class KnownAgents(Protocol):
    """The (shop, agent) pairs a worker holds aggregates for."""

    @property
    def agents(self) -> Mapping[tuple[str, str], object]: ...


class Console(State, Protocol):
    """`State` plus the one write the pages offer: supervisor execution points."""

    @property
    def aggs(self) -> KnownAgents: ...

    def submit_execution(
        self, shop: str, agent: str, period: str, points: float, sink: Sink
    ) -> Awaitable[dict[str, Any]]: ...

    def waiting(self, now_ms: int, shop: str | None, agent: str | None) -> list[WaitingBuyer]:
        """Who is waiting now among this worker's agents, longest first (buyer ids)."""
        ...
