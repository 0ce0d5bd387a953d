"""How far every chat partition has been read: the clock that settles the SLO counters.

Why: `kefu_rounds_total`, `..._within_target_total` and the response-time histogram are
Prometheus counters, so a round may be counted once and never taken back. Stage 2 counts a
round once *now* is `reorder_window` past its reply: by then its conversation can no longer
re-sort it. But stage 2's *now* is its own — the largest event time it has seen, or the wall
clock — while the conversation lives on a chat partition that stage 1 (of this worker or
another) may read seconds or minutes behind: catching up after a crash, taking over a killed
worker's partitions, one partition fetched ahead of another. A reorder read there later still
changed the round (a delete, then a put): counted twice. The hand-over test with a SIGKILL saw
ten rounds of one agent counted twice.

So the counters settle on the slowest input instead: each worker's stage 1 tells every facts
partition how far each chat partition it owns has been read (a *progress report*, sent only
after the facts of what it covers are acknowledged, so on each facts partition a report comes
after those facts), and stage 2 counts up to the smallest report it has heard for any chat
partition — a watermark across inputs. A caught-up partition (nothing left to read on its chat
or rekey partition) reports *now*, so an idle partition holds nothing back; a dead worker's
partitions hold the counters until their new owner has read them again; facts partitions a
worker takes over hold its counting back until their reports are heard (`Runtime.on_assigned`).

During a rolling upgrade from 0.4 (which sends no reports) the counters of 0.5 workers pause
until every worker runs 0.5; they then catch up, nothing is lost.

What this does not cover (a strict xfail in `tests/pipeline/test_crash_property.py`): a reorder
within one conversation's window that arrives after its partition moved more than the window on
(a conversation quiet while others talk). The contract sorts it into that conversation, so it
can still change a round the counters settled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

PROGRESS_KEY = b"\x00progress"  # facts-topic key of a report; agent keys never hold a NUL
RESEND_S = 2.0  # an unchanged report is sent again this often (a restarted stage 2 hears it)
MIN_INTERVAL_S = 0.4  # at most one report a tick (0.5 s; wall clock: *now* changes each tick)
NOTHING_READ = -1  # a caught-up partition of a worker that has seen no event at all
FUTURE_LIMIT_MS = 86_400_000  # a report further ahead of the wall clock is refused


class Progress:
    """Stage 1's side (what to report) and stage 2's side (what was heard) of the settle clock."""

    def __init__(self, partitions: int, min_interval_s: float = MIN_INTERVAL_S) -> None:
        self.partitions = partitions
        self.min_interval_s = min_interval_s
        # A stage-1 batch raised: the backlog the timer sampled while it ran may count records
        # it never finished, so nothing is reported any more (the worker is going down).
        self.failed = False
        # Stage 1: chat partition -> largest chat ts whose facts are acknowledged.
        self.durable: dict[int, int] = {}
        self._sent: dict[int, int] = {}
        self._sent_at = float("-inf")
        # Stage 2: facts partition -> chat partition -> largest ts reported there.
        self.heard: dict[int, dict[int, int]] = {}

    # -- stage 1 -----------------------------------------------------------------------------

    def facts_durable(self, read: Mapping[int, int]) -> None:
        """The facts of chat events up to `read[partition]` are acknowledged."""
        for part, ts in read.items():
            if ts > self.durable.get(part, 0):
                self.durable[part] = ts

    def report(self, owned: Iterable[int], backlog: Mapping[int, int], now_ms: int,
               monotonic_s: float, rekey_backlog: Mapping[int, int] | None = None,
               ) -> dict[int, int] | None:
        """What to tell every facts partition now, or None (nothing new, sent recently).

        Call it with no stage-1 batch in flight (the runtime holds `stage1_lock`): a handled
        record's facts are then acknowledged, and `backlog` counts what is still unread.
        A partition is caught up (reports *now*) only when neither its chat partition nor its
        rekey partition has anything unread: a mis-keyed chat event waiting on the rekey topic
        is as unread as one on the chat topic. A partition whose backlog is unknown (not
        fetched yet) reports only what it has read. `NOTHING_READ`: caught up, and this worker
        has no *now* yet (no event at all) — stage 2 does not wait for it.
        """
        if self.failed:
            return None
        rekey = rekey_backlog or {}
        values: dict[int, int] = {}
        for part in owned:
            read = self.durable.get(part)
            if backlog.get(part) == 0 and not rekey.get(part):
                values[part] = max(now_ms, read or 0) or NOTHING_READ
            elif read is not None:
                values[part] = read
        if not values:
            return None
        since = monotonic_s - self._sent_at
        changed = any(self._sent.get(part) != ts for part, ts in values.items())
        if since < self.min_interval_s or (not changed and since < RESEND_S):
            return None
        self._sent = values
        self._sent_at = monotonic_s
        return values

    @staticmethod
    def encode(values: Mapping[int, int]) -> bytes:
        return orjson.dumps({str(part): ts for part, ts in values.items()})

    def forget_unowned(self, owned: set[int]) -> None:
        """After a rebalance: report only partitions this worker reads, hear only its own."""
        for part in [p for p in self.durable if p not in owned]:
            del self.durable[part]
        for part in [p for p in self.heard if p not in owned]:
            del self.heard[part]
        self._sent = {}

    # -- stage 2 -----------------------------------------------------------------------------

    def hear(self, facts_partition: int, body: Any, wall_ms: int) -> None:
        """A report read from a facts partition. A malformed one raises ValueError or TypeError
        and changes nothing; a time more than a day past `wall_ms` is malformed (it would hold
        nothing back until a restart)."""
        if not isinstance(body, dict):
            raise TypeError("a progress report is an object")
        entries: list[tuple[int, int]] = []
        for key, ts in body.items():
            part = int(key)
            if (not 0 <= part < self.partitions or type(ts) is not int
                    or not NOTHING_READ <= ts <= wall_ms + FUTURE_LIMIT_MS):
                raise ValueError(f"bad progress entry {key!r}: {ts!r}")
            entries.append((part, ts))
        heard = self.heard.setdefault(facts_partition, {})
        for part, ts in entries:  # the largest wins; any mark beats none (NOTHING_READ is -1)
            if ts > heard.get(part, NOTHING_READ - 1):
                heard[part] = ts

    def settle_ms(self, owned: Iterable[int], now_ms: int) -> int:
        """The time every chat partition has been read to, as heard on every owned facts
        partition (at most `now_ms`): rounds up to it minus the reorder window are final.
        0 until every partition has reported; one with nothing read does not hold it back."""
        low = now_ms
        for facts_part in owned:
            heard = self.heard.get(facts_part, {})
            for part in range(self.partitions):
                ts = heard.get(part, 0)
                if ts != NOTHING_READ and ts < low:
                    low = ts
        return max(low, 0)
