"""A partition handed to a worker whose event clock is ahead (scale-out, a worker stopped)."""

from __future__ import annotations

from typing import Any

import orjson

from streams.config import Settings, default_config
from streams.domain.rules import MINUTE_MS
from streams.pipeline.runtime import Runtime
from tests.pipeline.test_runtime import T0, RecordingSink, answer_one_round, tick_caught_up


def runtime() -> Runtime:
    return Runtime(Settings(clock="event"), default_config(), partitions=4)


async def test_rounds_restored_uncounted_are_counted_by_a_worker_already_past_them() -> None:
    # Worker A answers a round, but stops before a tick moves its *now* past the reorder
    # window: its changelog holds the round as applied and not yet counted.
    a = runtime()
    changelog = await answer_one_round(a)
    assert a.aggs.snapshot("s", "a1", T0 + 9_000).rounds_total == 0  # type: ignore[union-attr]
    # Worker B's own partitions are further on; it takes A's partitions over and recovers
    # them, and then the stream ends: its *now* never moves again.
    b = runtime()
    now = T0 + 10 * MINUTE_MS
    b.clock.observe(now)
    await b.tick(RecordingSink())
    b.on_assigned({0, 1, 2, 3})
    store: dict[str, Any] = {}
    for topic, key, value, _, _ in changelog.sent:
        if topic == b.names.agg_changelog and key is not None:
            store[key.decode()] = None if value is None else orjson.loads(value)
    assert b.load_aggregates(store) > 0
    await tick_caught_up(b)
    snap = b.snapshots[("s", "a1")]
    assert snap.windows["today"].rounds == 1
    assert snap.rounds_total == 1 and snap.histogram[20.0] == 1
    # ...and the counted totals are written back with the next batch: a later recovery
    # finds the round counted, not pending (and does not count it twice)
    dirty = b.aggs.take_dirty()
    assert dirty["s\x1fa1\x1et"][0] == 1 and dirty["s\x1fa1\x1et"][4] == []
