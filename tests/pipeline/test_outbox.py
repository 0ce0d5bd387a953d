"""The outbox's record layout: markers before states, facts found again after a restore."""

from __future__ import annotations

import orjson

from streams.domain.facts import PUT, ROUND, Fact
from streams.pipeline import outbox


def _fact(agent: str, fid: int) -> Fact:
    return Fact(PUT, ROUND, "s", agent, fid, 1_000 * fid, 5_000, 7)


def test_each_partition_marker_comes_before_its_states_and_lists_only_conversations_with_facts(
) -> None:
    made = {"s:b1": [_fact("a1", 1), _fact("a2", 2)], "s:b3": [_fact("a1", 3)]}
    parts = {"s:b1": 0, "s:b2": 0, "s:b3": 1}
    records, listed = outbox.state_records(
        ["s:b1", "s:b2", "s:b3"], made, lambda key: {"k": ["s", key[2:]]}, parts.__getitem__)
    assert listed == {0, 1}
    for part in (0, 1):
        keys = [r[0].decode() for r in records if r[2] == part]
        assert keys[0] == outbox.marker_key(part)
        assert orjson.loads(next(r[1] for r in records if r[0] == keys[0].encode())) == [
            k for k in ("s:b1", "s:b3") if parts[k] == part]
    b2 = next(orjson.loads(r[1]) for r in records if r[0] == b"s:b2")
    assert outbox.FIELD not in b2  # no facts, no outbox


def test_the_facts_of_listed_conversations_come_back_after_a_restore_and_markers_go() -> None:
    made = {"s:b1": [_fact("a1", 1)], "s:b2": [_fact("a2", 2)]}
    records, _ = outbox.state_records(
        ["s:b1", "s:b2"], made, lambda key: {"k": ["s", key[2:]]}, lambda key: 0)
    store: dict[str, object] = {r[0].decode(): r[1] for r in records}  # raw, as restored
    store["s:b2"] = object()  # decoded live by this process: its facts were delivered by it
    facts = outbox.take_pending(store, [0, 1], lambda v: orjson.loads(v))
    assert facts == [_fact("a1", 1)]
    assert outbox.marker_key(0) not in store


def test_a_cleared_marker_lists_nothing() -> None:
    store = {outbox.marker_key(0): outbox.cleared_markers([0])[0][1], "s:b1": orjson.dumps(
        {"k": ["s", "b1"], outbox.FIELD: [["a1", *_fact("a1", 1).to_wire()]]})}
    assert outbox.take_pending(store, [0], orjson.loads) == []
