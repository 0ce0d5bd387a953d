"""The worker's collector policy (streams.gc_policy): rare young collections, frozen state."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from streams import gc_policy


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    old = gc.get_threshold()
    yield
    gc.set_threshold(*old)
    gc.unfreeze()


def test_tune_sets_the_young_threshold_and_returns_the_old_one() -> None:
    gc.set_threshold(700, 10, 10)
    assert gc_policy.tune(12_345) == (700, 10, 10)
    assert gc.get_threshold()[0] == 12_345


def test_zero_keeps_pythons_thresholds() -> None:
    gc.set_threshold(700, 10, 10)
    gc_policy.tune(0)
    assert gc.get_threshold() == (700, 10, 10)


def test_frozen_state_is_not_scanned_but_garbage_is_not_frozen() -> None:
    class Node:
        other: object = None

    live = [Node() for _ in range(1000)]
    garbage = Node()
    garbage.other = garbage  # a cycle, unreachable once the name goes
    gone = weakref.ref(garbage)
    del garbage
    before = gc.get_freeze_count()
    frozen = gc_policy.freeze_state()
    assert gone() is None  # collected first, not kept forever in the permanent generation
    assert frozen >= before + 1000
    # Frozen objects are out of every generation the collector walks.
    walked = {id(o) for o in gc.get_objects()}
    assert not any(id(n) in walked for n in live)
