"""The scale phase compares only what does not depend on a worker's own *now*."""

from __future__ import annotations

from streams.tooling.bench.phases.scale import comparable

BODY = b"""# HELP kefu_rounds x
kefu_rounds{shop="s",team="t",agent="a",window="5m"} 3
kefu_rounds{shop="s",team="t",agent="a",window="today"} 7
kefu_status_seconds{shop="s",team="t",agent="a",status="online",window="today"} 12.5
kefu_rounds_total{shop="s",team="t",agent="a"} 6
kefu_response_time_histogram_seconds_bucket{shop="s",team="t",agent="a",le="1.0"} 2
kefu_oldest_wait_seconds{shop="s",team="t",agent="a"} 4.0
kefu_events_total{topic="c",outcome="accepted"} 99
"""


def test_today_windows_and_counters_are_compared_the_rest_not() -> None:
    assert comparable(BODY) == {
        'kefu_rounds{shop="s",team="t",agent="a",window="today"}': "7",
        'kefu_rounds_total{shop="s",team="t",agent="a"}': "6",
        'kefu_response_time_histogram_seconds_bucket{shop="s",team="t",agent="a",le="1.0"}': "2",
    }
