"""The scale phase compares only what does not depend on a worker's own *now*."""

from __future__ import annotations

import argparse
import dataclasses

import orjson

from streams.tooling.bench.data import generate, throughput_simulator
from streams.tooling.bench.options import Options, add_arguments
from streams.tooling.bench.phases.scale import _compare, comparable
from streams.tooling.simulate.profile import DEFAULT

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


def _body(rounds: dict[str, int]) -> bytes:
    return "".join(f'kefu_rounds_total{{shop="s",team="t",agent="{agent}"}} {n}\n'
                   for agent, n in rounds.items()).encode()


def test_two_workers_compare_equal_only_with_the_same_agents_once_each() -> None:
    single = comparable(_body({"a": 1, "b": 2}))
    assert _compare(single, [_body({"a": 1}), _body({"b": 2})])["equal"]
    differ = _compare(single, [_body({"a": 1}), _body({"b": 3})])
    assert not differ["equal"] and differ["different"] == 1
    assert differ["examples"] == [('kefu_rounds_total{shop="s",team="t",agent="b"}', "2", "3")]
    both = _compare(single, [_body({"a": 1, "b": 2}), _body({"b": 2})])
    assert not both["equal"] and both["exported_twice"] == 1
    lost = _compare(single, [_body({"a": 1})])
    assert not lost["equal"] and lost["missing"] == 1


def test_the_keyed_data_is_the_throughput_data_with_every_key_right() -> None:
    """The exactness check runs on the same events: only the mis-keyed records' keys change."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    opts = Options.from_args(parser.parse_args(["--quick"]))
    right = dataclasses.replace(DEFAULT, wrong_key_rate=0.0)
    plain = generate(throughput_simulator(opts), chat_limit=3_000).records
    keyed = generate(throughput_simulator(opts, right), chat_limit=3_000).records
    assert [(k, v) for k, _, v, _ in plain] == [(k, v) for k, _, v, _ in keyed]
    changed = [(a[1], b[1], orjson.loads(b[2])) for a, b in zip(plain, keyed, strict=True)
               if a[1] != b[1]]
    assert changed, "the throughput data has mis-keyed events"
    for wrong, key, event in changed:
        assert key == f"{event['shop_id']}:{event['buyer_id']}".encode()
        assert wrong == str(event["buyer_id"]).encode()
