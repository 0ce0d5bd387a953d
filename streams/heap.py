"""Give freed heap back to the operating system after a burst: glibc's `malloc_trim`.

Why: a worker's live state is flat once the windows roll over, but its RSS was not. Measured by
`kefu-pulse bench --phases day` with a probe of `sys.getallocatedblocks()` in the worker: after
the next half day the live Python blocks were 3,236,325 against 3,237,856 after the full day
(−0.05 %), while RSS was 454 MiB against 409 MiB (+11 %). The difference is memory freed
inside the process and never returned: while yesterday is summed into its day summary and its
conversations close, both days' state is alive at once (+13 % blocks at the peak), and what is
freed afterwards stays with the allocator. `malloc_trim(0)` returns glibc's free pages (large
objects: dict tables, lists, fetch buffers) — docs/optimisations.md has the runs.

When: once the input has been quiet for `IDLE_S` and everything it started has settled (a
catch-up, a burst or a recovery just ended: nothing to slow down), and every `interval_s` under
steady load. The call runs in a thread: ctypes releases the GIL, and a trim of a ~400 MiB heap
took 6–11 ms here, which the event loop then does not wait for. Not glibc (musl, macOS):
nothing to call, nothing done. What it cannot return: Python's small-object pools that one
surviving object keeps (a 16 KiB pool, a 1 MiB arena) — that part of a peak stays.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

IDLE_S = 1.0  # no batch for this long after one: the burst is over


def libc_trim() -> Callable[[], int] | None:
    """glibc's `malloc_trim(0)` as a callable returning 1 if memory was released, or None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: int(fn(0))


class Trimmer:
    """Decides when to trim: after a burst ends, else every `interval_s` (0 = never)."""

    def __init__(self, interval_s: float, trim: Callable[[], int] | None, now: float) -> None:
        self.interval_s = interval_s
        self.trim = trim if interval_s > 0 else None
        self.trimmed_at = now  # wall time of the last trim started (or of the start)

    def due(self, now: float, worked_at: float, settled: bool) -> bool:
        """Whether to trim at wall time `now`, given the wall time of the last work (an input
        batch, or the end of a recovery) and whether everything it started has settled (facts
        read back, snapshots refreshed).

        Only after work since the last trim: an idle worker frees nothing new.
        """
        if self.trim is None or worked_at <= self.trimmed_at:
            return False
        if settled and now - worked_at >= IDLE_S:
            return True
        return now - self.trimmed_at >= self.interval_s

    def started(self, now: float) -> Callable[[], int]:
        """Mark a trim as started at `now` (before it runs, so the next tick does not start
        another); the call to make, in a thread."""
        assert self.trim is not None
        self.trimmed_at = now
        return self.trim
