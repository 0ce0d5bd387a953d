"""The status timeline's walk is kept between calls (`AgentLoad._memo`); it must always equal a
walk from the floor, whatever arrives late, is deleted or folded in between."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.facts import DEL, PUT, STATUS, Fact
from streams.domain.status import AgentLoad
from tests.domain.strategies import PROPERTY_SETTINGS

GAP = 5_000
T0 = 1_700_000_000_000
ts_s = st.integers(T0, T0 + 60_000)  # a minute: gaps of 5 s both happen and do not
reply = st.tuples(st.just("reply"), st.sampled_from((PUT, PUT, PUT, DEL)), st.integers(0, 40),
                  ts_s)
status = st.tuples(st.just("status"), st.sampled_from((PUT, PUT, DEL)), st.integers(0, 10),
                   ts_s, st.integers(0, 3))
ask = st.tuples(st.just("ask"), ts_s)
fold = st.tuples(st.just("fold"), st.integers(T0, T0 + 20_000))  # rarely, and early
ops = st.one_of(reply, reply, reply, status, status, ask, ask, ask, fold)


def fresh(load: AgentLoad, upto: int) -> tuple[list[tuple[int, int]], int, int]:
    load._memo = None
    return load.timeline(upto, GAP)


@settings(PROPERTY_SETTINGS, max_examples=1000)  # cheap: ~1 ms an example
@given(st.lists(ops, min_size=5, max_size=60))
def test_the_kept_walk_equals_a_walk_from_the_floor(steps: list[tuple]) -> None:
    load = AgentLoad()
    reference = AgentLoad()
    reply_ts: dict[int, int] = {}
    status_ts: dict[int, tuple[int, int]] = {}
    for step in steps:
        kind = step[0]
        for target in (load, reference):
            if kind == "reply":
                _, op, key, ts = step
                ts = reply_ts.setdefault(key, ts)  # a record keeps its ts
                target.apply_reply(op, key, ts)
            elif kind == "status":
                _, op, fid, ts, code = step
                ts, code = status_ts.setdefault(fid, (ts, code))
                target.apply_status(Fact(op, STATUS, "s", "a", fid, ts, code, 0))
            elif kind == "fold":
                target.fold(step[1], GAP, step[1], 60_000)
        if kind == "ask":
            assert load.timeline(step[1], GAP) == fresh(reference, step[1])
    for upto in (T0 - 1, T0 + 300_000, T0 + 10**9):
        assert load.timeline(upto, GAP) == fresh(reference, upto)


def test_a_late_reply_before_the_walked_part_is_seen() -> None:
    load = AgentLoad()
    load.apply_status(Fact(PUT, STATUS, "s", "a", 1, T0, 2, 0))  # away
    load.apply_reply(PUT, 10, T0 + 10_000)
    assert load.timeline(T0 + 11_000, GAP)[0] == [(T0, 2), (T0 + 5_000, 3), (T0 + 10_000, 0)]
    load.apply_reply(PUT, 11, T0 + 1_000)  # arrives late: online from here, not from 10 s
    assert load.timeline(T0 + 11_000, GAP)[0] == [(T0, 2), (T0 + 1_000, 0), (T0 + 6_000, 3),
                                                   (T0 + 10_000, 0)]


def test_a_status_record_moved_to_another_ts_drops_the_walk_from_its_old_ts() -> None:
    load = AgentLoad()
    load.apply_status(Fact(PUT, STATUS, "s", "a", 1, T0, 3, 0))  # offline
    load.apply_status(Fact(PUT, STATUS, "s", "a", 2, T0 + 1_000, 0, 0))  # online
    load.timeline(T0 + 2_000, GAP)
    load.apply_status(Fact(PUT, STATUS, "s", "a", 2, T0 + 3_000, 0, 0))  # the same id, later
    assert load.timeline(T0 + 4_000, GAP) == fresh(load, T0 + 4_000)
    assert load.timeline(T0 + 4_000, GAP)[0] == [(T0, 3), (T0 + 3_000, 0)]
