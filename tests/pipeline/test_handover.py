"""A partition handed to a worker whose event clock is ahead (scale-out, a worker stopped)."""

from __future__ import annotations

from typing import Any

import orjson

from streams.config import Settings, default_config
from streams.domain.facts import DEL, PUT, ROUND, Fact
from streams.domain.keys import agent_key
from streams.domain.rules import MINUTE_MS
from streams.pipeline.progress import PROGRESS_KEY
from streams.pipeline.runtime import Runtime
from streams.ports import Record
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


async def test_partitions_taken_over_are_not_settled_by_what_the_old_ones_heard() -> None:
    """Found in review. B's stage 2 had heard every chat partition read to `now` on its own
    facts partition; it then takes over the agent's facts partition, whose old owner lagged:
    a round arrives, is re-decided by a reorder (delete, put) and must count once. Without
    holding *now* back to what the new partitions have reported, the round counted on arrival
    and again on its re-put."""
    b = runtime()
    home = b._pair_partition("s", "a1")
    other = next(p for p in range(4) if p != home)
    sink = RecordingSink()
    now = T0 + 10 * MINUTE_MS
    b.clock.observe(now)
    b.on_assigned({other})
    report = orjson.dumps({str(p): now for p in range(4)})
    await b.on_facts_batch([Record(b.names.facts, other, 0, PROGRESS_KEY, report)], sink)
    await b.tick(sink)
    assert b.aggs.now_ms == now
    b.on_assigned({other, home})

    def facts(offset: int, *made: Fact) -> Record:
        rows = {agent_key("s", "a1"): [f.to_wire() for f in made]}
        return Record(b.names.facts, home, offset, None, orjson.dumps(rows))

    first = Fact(PUT, ROUND, "s", "a1", 7, T0 + 9_000, 9_000, 1)
    await b.on_facts_batch([facts(0, first)], sink)
    await b.on_facts_batch([facts(1, first._replace(op=DEL), first._replace(a=8_000))], sink)
    # The other worker's partitions, heard on the new facts partition too; then B's own.
    await b.on_facts_batch([Record(b.names.facts, home, 2, PROGRESS_KEY, report)], sink)
    await tick_caught_up(b, sink)
    snap = b.snapshots[("s", "a1")]
    assert snap.rounds_total == 1 and snap.response_seconds_sum == 8.0
