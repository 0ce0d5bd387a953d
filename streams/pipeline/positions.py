"""Where each batch-delivered partition's handler stands, across seeks and dropped rounds.

Pure bookkeeping for `faust_adapter.BatchConsumer`, apart so it can be tested without a broker.

Why it is needed: after a rebalance Faust seeks every partition back to its committed offset,
and the fetcher keeps fetching while that seek is under way. Records can then reach the
consumer in three wrong ways, and each must end with the handler reading the partition from
exactly where it needs it, once and in order:

- *during the seek*: the round is dropped, and the fetcher has moved past the dropped records.
  On an idle partition nothing later would arrive to reveal the hole, so the partition is
  sought back explicitly (`take_resync`) to the offset its handler needs next.
- *after the seek, from the old position* (prefetched before it): the first record after a seek
  must be the sought offset; a later one is stale (`early`), and the partition is read again.
  After `max_reseeks` re-reads a later first offset is taken as real (the log starts later,
  after retention).
- *collected across a seek*: a round whose collection began before a seek started or ended is
  dropped like one collected during it (`can_run` compares epochs).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Generic, TypeVar

MAX_RESEEKS = 3
K = TypeVar("K", bound=Hashable)  # a topic partition


class Positions(Generic[K]):
    """Per partition: the next offset its handler needs, seek targets, rounds to re-read."""

    def __init__(self, max_reseeks: int = MAX_RESEEKS) -> None:
        self.max_reseeks = max_reseeks
        self.seeking = 0
        self.epoch = 0  # bumped when a seek starts and when it ends
        self.targets: dict[K, int] = {}  # the offset the first record after a seek must have
        self.reseeks: dict[K, int] = {}
        self.next: dict[K, int] = {}  # the offset each partition's handler needs next
        self.resync: dict[K, int] = {}  # dropped partitions → their first dropped offset

    # -- seeks -----------------------------------------------------------------------------------

    def seek_started(self) -> None:
        self.seeking += 1
        self.epoch += 1

    def seek_ended(self, committed: Mapping[K, int | None] | None) -> None:
        """The seek is over; `committed` the offsets it went to (None: it failed)."""
        self.seeking -= 1
        self.epoch += 1
        if committed is None:
            return
        self.targets = {tp: off for tp, off in committed.items() if off is not None}
        self.reseeks = {}
        self.next = dict(self.targets)  # the committed offsets are the authority now

    def early(self, tp: K, offset: int) -> bool:
        """Whether a record came ahead of the offset its partition was last sought to."""
        target = self.targets.get(tp)
        if target is None or offset < target:
            return False  # not sought, or already read (the read-offset check drops it)
        if offset == target or self.reseeks.get(tp, 0) >= self.max_reseeks:
            del self.targets[tp]
            return False
        return True

    def reseek(self, tp: K) -> int:
        """Count a re-read of a partition whose records came early; the offset to read from."""
        self.reseeks[tp] = self.reseeks.get(tp, 0) + 1
        return self.targets[tp]

    # -- rounds ----------------------------------------------------------------------------------

    def can_run(self, epoch: int, flow_active: bool) -> bool:
        """Whether a round collected since `epoch` may reach the handlers."""
        return flow_active and not self.seeking and epoch == self.epoch

    def dropped(self, spans: Mapping[K, tuple[int, int]]) -> None:
        """A round was dropped: its partitions are read again from where the handlers are."""
        for tp, (first, _) in spans.items():
            self.resync.setdefault(tp, first)

    def handled(self, spans: Mapping[K, tuple[int, int]]) -> None:
        next_ = self.next
        for tp, (_, last) in spans.items():
            next_[tp] = last + 1

    def resync_due(self, flow_active: bool) -> bool:
        return bool(self.resync) and flow_active and not self.seeking

    def take_resync(self, assigned: Iterable[K]) -> dict[K, int]:
        """Partitions to seek, and where: the offset the handler needs next, else the first
        dropped one. Revoked partitions are left to their next owner's committed offset."""
        owned = set(assigned)
        resync, self.resync = self.resync, {}
        out: dict[K, int] = {}
        for tp, first in resync.items():
            if tp in owned:
                out[tp] = target = self.next.get(tp, first)
                self.targets[tp] = target
                self.reseeks.pop(tp, None)
        return out
