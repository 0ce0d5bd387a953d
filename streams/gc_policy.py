"""The worker's garbage-collector policy: collect cycles rarely, and never scan recovered state.

Why: the worker holds hundreds of thousands of long-lived container objects (minute buckets,
summaries, conversations) and allocates a few tuples and dicts per event. With CPython's default
threshold (700 allocations) the cyclic collector ran ~3,300 times over 200,000 events, and its
full collections scanned the whole state each time: 3.4 s of a 7.6 s in-process run, and
100+ ms pauses that showed up as latency spikes on `/metrics` (docs/optimisations.md).

Nothing in the event path builds reference cycles on purpose; state is freed by reference
counting. The collector stays on (asyncio and aiohttp do make cycles), only less often:
`KEFU_GC_THRESHOLD` allocations between young collections. After recovery the restored state is
moved out of the collector's sight with `gc.freeze()`; frozen objects are still freed by
reference counting when dropped, only cycles among them would be kept.
"""

from __future__ import annotations

import gc

DEFAULT_THRESHOLD = 50_000
# Older generations: collected after this many younger collections (CPython's default is 10
# for both; the full collection also waits for 25 % new long-lived objects).
_OLDER = (20, 10)


def tune(threshold: int = DEFAULT_THRESHOLD) -> tuple[int, int, int]:
    """Set the young-generation threshold (0 keeps Python's defaults); return the old ones."""
    old = gc.get_threshold()
    if threshold > 0:
        gc.set_threshold(threshold, *_OLDER)
    return old


def freeze_state() -> int:
    """Hide every object alive now (the recovered state) from future collections; return how
    many objects the collector no longer scans."""
    gc.collect()  # what is garbage already should not be frozen
    gc.freeze()
    return gc.get_freeze_count()
