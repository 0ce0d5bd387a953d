"""The settle clock of the SLO counters: what stage 1 reports and what stage 2 makes of it."""

from __future__ import annotations

import orjson
import pytest

from streams.pipeline.progress import FUTURE_LIMIT_MS, NOTHING_READ, RESEND_S, Progress

WALL = 1_800_000_000_000


def test_a_partition_reports_what_its_acknowledged_facts_cover_or_now_once_caught_up() -> None:
    progress = Progress(3, min_interval_s=0)
    progress.facts_durable({0: 1_000, 1: 5_000})
    progress.facts_durable({0: 900})  # an older event decided later: the mark stays
    # 0 has input left: what it read; 1 is caught up: now; 2 was never fetched: nothing.
    assert progress.report({0, 1, 2}, {0: 4, 1: 0}, now_ms=9_000, monotonic_s=0.0) == {
        0: 1_000, 1: 9_000}


def test_reports_are_spaced_and_an_unchanged_one_is_sent_again_after_a_while() -> None:
    progress = Progress(1, min_interval_s=1.0)
    assert progress.report({0}, {0: 0}, 10, 0.0) == {0: 10}
    assert progress.report({0}, {0: 0}, 11, 0.5) is None  # changed, but too soon
    assert progress.report({0}, {0: 0}, 11, 1.0) == {0: 11}
    assert progress.report({0}, {0: 0}, 11, 1.0 + RESEND_S / 2) is None  # unchanged
    assert progress.report({0}, {0: 0}, 11, 1.0 + RESEND_S) == {0: 11}


def test_a_partition_with_mis_keyed_chat_waiting_on_the_rekey_topic_is_not_caught_up() -> None:
    progress = Progress(2, min_interval_s=0)
    progress.facts_durable({0: 1_000, 1: 1_000})
    assert progress.report({0, 1}, {0: 0, 1: 0}, 9_000, 0.0, rekey_backlog={1: 3}) == {
        0: 9_000, 1: 1_000}


def test_a_worker_that_saw_no_event_holds_no_one_back_and_one_that_failed_says_nothing() -> None:
    progress = Progress(2, min_interval_s=0)
    assert progress.report({0, 1}, {0: 0, 1: 0}, 0, 0.0) == {0: NOTHING_READ, 1: NOTHING_READ}
    progress.hear(0, {"0": NOTHING_READ, "1": 4_000}, WALL)
    assert progress.settle_ms({0}, 9_000) == 4_000
    progress.hear(0, {"0": 3_000, "1": NOTHING_READ}, WALL)  # a read mark is never undone
    assert progress.settle_ms({0}, 9_000) == 3_000
    progress.failed = True  # a stage-1 batch raised: its records only look read
    assert progress.report({0, 1}, {0: 0, 1: 0}, 5, 10.0) is None


def test_nothing_to_report_without_a_read_or_a_known_backlog() -> None:
    assert Progress(2).report({0, 1}, {}, 10, 0.0) is None
    assert Progress(2).report({0, 1}, {0: 5, 1: 0}, 10, 0.0, rekey_backlog={1: 1}) is None


def test_stage_2_settles_on_the_slowest_partition_heard_on_every_owned_facts_partition() -> None:
    progress = Progress(3)
    assert progress.settle_ms({0}, 9_000) == 0  # nothing heard: nothing settles
    body = orjson.loads(Progress.encode({0: 7_000, 1: 8_000}))
    progress.hear(0, body, WALL)
    assert progress.settle_ms({0}, 9_000) == 0  # chat partition 2 not heard yet
    progress.hear(0, {"2": 6_000}, WALL)
    assert progress.settle_ms({0}, 9_000) == 6_000
    assert progress.settle_ms({0}, 5_000) == 5_000  # never past the worker's own *now*
    progress.hear(0, {"2": 5_000}, WALL)  # a new owner that read less: what was heard stays
    assert progress.settle_ms({0}, 9_000) == 6_000
    progress.hear(1, {"0": 9_000, "1": 9_000, "2": 9_000}, WALL)
    assert progress.settle_ms({0, 1}, 9_000) == 6_000  # the facts partition heard least holds it
    assert progress.settle_ms({1}, 9_000) == 9_000
    assert progress.settle_ms(set(), 9_000) == 9_000  # no aggregates here: nothing to hold


def test_a_rebalance_forgets_what_other_workers_own() -> None:
    progress = Progress(2)
    progress.facts_durable({0: 5, 1: 6})
    progress.hear(0, {"0": 5, "1": 6}, WALL)
    progress.hear(1, {"0": 5, "1": 6}, WALL)
    progress.forget_unowned({1})
    assert progress.report({1}, {}, 0, 0.0) == {1: 6}
    assert progress.settle_ms({1}, 9) == 5
    assert progress.heard.keys() == {1}


@pytest.mark.parametrize("body", [
    [1, 2], {"x": 1}, {"7": 1}, {"0": "soon"}, {"0": True}, {"0": -2},
    {"0": 5, "1": WALL + FUTURE_LIMIT_MS + 1},  # would hold nothing back until a restart
])
def test_a_malformed_report_raises_and_changes_nothing(body: object) -> None:
    progress = Progress(2)
    with pytest.raises((TypeError, ValueError)):
        progress.hear(0, body, WALL)
    assert progress.heard.get(0, {}) == {}
