"""Minute summaries (streams.domain.buckets): merging is a union, and sealing a kept summary
shares its empty containers without changing what it holds."""

from __future__ import annotations

from dataclasses import fields

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.buckets import NO_BUYERS, NO_VALUES, Bucket, Summary, record_key
from streams.domain.facts import BUYER_MSG, ROUND
from streams.domain.window_kpis import Prefix
from tests.domain.strategies import PROPERTY_SETTINGS
from tests.domain.test_window_kpis import summaries

CONTAINERS = ("rts", "frts", "replied", "unanswered", "inquired", "ordered", "paid", "refunded",
              "ads")


def contents(s: Summary) -> dict[str, object]:
    """What a summary holds, independent of the container types (sorted values, sets)."""
    out: dict[str, object] = {}
    for f in fields(Summary):
        value = getattr(s, f.name)
        if f.name in ("rts", "frts"):
            out[f.name] = sorted(value)
        elif f.name in CONTAINERS:
            out[f.name] = set(value)
        else:
            out[f.name] = value
    return out


def union(parts: list[Summary]) -> dict[str, object]:
    """The reference merge: every count summed, every set united, every list concatenated."""
    out: dict[str, object] = {}
    for f in fields(Summary):
        values = [getattr(p, f.name) for p in parts]
        if f.name in ("rts", "frts"):
            out[f.name] = sorted(v for vs in values for v in vs)
        elif f.name in CONTAINERS:
            out[f.name] = set().union(*values)
        else:
            out[f.name] = sum(values)
    return out


@settings(PROPERTY_SETTINGS, max_examples=300)
@given(st.lists(summaries(), min_size=1, max_size=4), st.lists(st.booleans(), min_size=4,
                                                              max_size=4))
def test_merging_sealed_and_fresh_summaries_is_their_union(
    parts: list[Summary], sealed: list[bool],
) -> None:
    expected = union(parts)
    for part, seal in zip(parts, sealed, strict=False):
        if seal:
            part.seal()
    target = parts[0]
    kept = [contents(p) for p in parts[1:]]
    for other in parts[1:]:
        target.merge(other)
    assert contents(target) == expected
    assert [contents(p) for p in parts[1:]] == kept  # merged from, never changed


@settings(PROPERTY_SETTINGS, max_examples=200)
@given(summaries())
def test_sealing_keeps_the_contents_and_shares_every_empty_container(s: Summary) -> None:
    before = contents(s)
    s.seal()
    assert contents(s) == before
    for name in CONTAINERS:
        value = getattr(s, name)
        assert value or value is NO_BUYERS or value is NO_VALUES, name


def test_a_chat_only_minute_keeps_only_the_containers_it_fills() -> None:
    """Why sealing exists: a kept minute summary used to hold nine containers, most empty."""
    bucket = Bucket()
    bucket.recs[record_key(ROUND, 1)] = (ROUND, 12_000, 7)
    bucket.recs[record_key(BUYER_MSG, 2)] = (BUYER_MSG, 0, 7)
    s = bucket.summarize()
    assert {name for name in CONTAINERS if getattr(s, name)} == {"rts", "replied"}
    for name in CONTAINERS:
        value = getattr(s, name)
        assert value or value is NO_BUYERS or value is NO_VALUES, name
    assert len({id(getattr(s, name)) for name in CONTAINERS}) == 4  # two own, two shared


def test_a_prefix_of_nothing_grows_by_a_sealed_minute_into_lists_of_its_own() -> None:
    """`Prefix.extend` merges into a sealed summary: its empties must be replaced, not grown."""
    prefix = Prefix(Summary())
    assert prefix.summary.rts is NO_VALUES and prefix.summary.replied is NO_BUYERS
    minute = Summary(rts=[9_000, 3_000], frts=[3_000], replied={7}).seal()
    prefix.extend(minute)
    assert prefix.summary.rts == [3_000, 9_000] and prefix.summary.frts == [3_000]
    assert prefix.summary.replied == {7} and prefix.received == {7}
    assert prefix.summary.rts is not minute.rts and prefix.summary.replied is not minute.replied
    assert minute.rts == [9_000, 3_000]  # the minute's own summary is left as it was
