"""Returning freed heap to the OS (streams.heap): when the worker trims, and that the call is
real glibc `malloc_trim` here."""

from __future__ import annotations

import ctypes
import platform

import pytest

from streams import heap


def _trimmer(interval_s: float = 60.0, now: float = 0.0) -> tuple[heap.Trimmer, list[int]]:
    calls: list[int] = []

    def trim() -> int:
        calls.append(1)
        return 1

    return heap.Trimmer(interval_s, trim, now), calls


def test_an_idle_worker_that_did_nothing_never_trims() -> None:
    trimmer, _ = _trimmer()
    assert not trimmer.due(now=1000.0, worked_at=0.0, settled=True)
    # Work before the start (a batch stamped earlier) is not work since it.
    assert not heap.Trimmer(60.0, lambda: 1, now=500.0).due(1000.0, 400.0, True)


def test_a_burst_is_trimmed_once_it_has_ended_and_settled() -> None:
    trimmer, calls = _trimmer(now=90.0)  # started at 90: the interval is not what triggers
    assert not trimmer.due(100.5, worked_at=100.0, settled=True)  # input quiet < IDLE_S
    assert not trimmer.due(102.0, worked_at=100.0, settled=False)  # stage 2 catching up
    assert trimmer.due(102.0, worked_at=100.0, settled=True)
    trimmer.started(102.0)()
    assert calls == [1]
    # Nothing new since: no second trim, however long it stays idle.
    assert not trimmer.due(10_000.0, worked_at=100.0, settled=True)
    # A new burst after it: trimmed again once it ends.
    assert trimmer.due(10_002.0, worked_at=10_000.0, settled=True)


def test_under_steady_load_it_trims_every_interval() -> None:
    trimmer, _ = _trimmer(interval_s=60.0)
    trimmer.started(1000.0)
    # A batch every tick: never quiet for IDLE_S, so only the interval triggers.
    assert not trimmer.due(1059.5, worked_at=1059.4, settled=False)
    assert trimmer.due(1060.0, worked_at=1059.9, settled=False)
    # The trim counts as started at once: the next tick does not start another.
    trimmer.started(1060.0)
    assert not trimmer.due(1060.5, worked_at=1060.4, settled=False)


def test_zero_interval_turns_it_off() -> None:
    trimmer, _ = _trimmer(interval_s=0)
    assert trimmer.trim is None
    assert not trimmer.due(1000.0, worked_at=10.0, settled=True)


def test_no_libc_trim_means_no_trimming() -> None:
    trimmer = heap.Trimmer(60.0, None, now=0.0)
    assert not trimmer.due(1000.0, worked_at=10.0, settled=True)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_libc_trim_releases_freed_heap_on_glibc() -> None:
    trim = heap.libc_trim()
    assert trim is not None
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    # Blocks below the mmap threshold grow the heap. Every other one freed leaves 64 KiB
    # holes between live blocks: free() cannot hand those back by shrinking the top of the
    # heap, only a trim can (it returns 1 when it released pages).
    blocks = [libc.malloc(64 * 1024) for _ in range(2_000)]
    for b in blocks[::2]:
        libc.free(b)
    try:
        assert trim() == 1
    finally:
        for b in blocks[1::2]:
            libc.free(b)
