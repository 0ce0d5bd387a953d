"""The settle clock of the SLO counters: what stage 1 reports and what stage 2 makes of it."""

from __future__ import annotations

import orjson
import pytest

from streams.pipeline.progress import RESEND_S, Progress


def test_a_partition_reports_what_its_acknowledged_facts_cover_or_now_once_caught_up() -> None:
    progress = Progress(3)
    progress.facts_durable({0: 1_000, 1: 5_000})
    progress.facts_durable({0: 900})  # an older event decided later: the mark stays
    # 0 has input left: what it read; 1 is caught up: now; 2 was never fetched: nothing.
    assert progress.report({0, 1, 2}, {0: 4, 1: 0}, now_ms=9_000, monotonic_s=0.0) == {
        0: 1_000, 1: 9_000}


def test_an_unchanged_report_is_sent_again_only_after_a_while() -> None:
    progress = Progress(1)
    assert progress.report({0}, {0: 0}, 10, 0.0) == {0: 10}
    assert progress.report({0}, {0: 0}, 10, RESEND_S / 2) is None
    assert progress.report({0}, {0: 0}, 10, RESEND_S + 0.1) == {0: 10}
    assert progress.report({0}, {0: 0}, 11, RESEND_S + 0.2) == {0: 11}  # changed: at once


def test_nothing_to_report_without_a_read_or_a_known_backlog() -> None:
    assert Progress(2).report({0, 1}, {}, 10, 0.0) is None


def test_stage_2_settles_on_the_slowest_partition_heard_on_every_owned_facts_partition() -> None:
    progress = Progress(3)
    assert progress.settle_ms({0}) == 0  # nothing heard: nothing settles
    body = orjson.loads(Progress.encode({0: 7_000, 1: 8_000}))
    progress.hear(0, body)
    assert progress.settle_ms({0}) == 0  # chat partition 2 not heard yet
    progress.hear(0, {"2": 6_000})
    assert progress.settle_ms({0}) == 6_000
    progress.hear(0, {"2": 5_000})  # a new owner that read less: what was heard stays
    assert progress.settle_ms({0}) == 6_000
    progress.hear(1, {"0": 9_000, "1": 9_000, "2": 9_000})
    assert progress.settle_ms({0, 1}) == 6_000  # the facts partition heard least holds it
    assert progress.settle_ms({1}) == 9_000


def test_a_rebalance_forgets_what_other_workers_own() -> None:
    progress = Progress(2)
    progress.facts_durable({0: 5, 1: 6})
    progress.hear(0, {"0": 5, "1": 6})
    progress.hear(1, {"0": 5, "1": 6})
    progress.forget_unowned({1})
    assert progress.report({1}, {}, 0, 0.0) == {1: 6}
    assert progress.settle_ms({1}) == 5
    assert progress.heard.keys() == {1}


@pytest.mark.parametrize("body", [[1, 2], {"x": 1}, {"7": 1}, {"0": "soon"}])
def test_a_malformed_report_raises_for_the_facts_handler_to_skip(body: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        Progress(2).hear(0, body)
