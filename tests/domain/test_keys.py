"""Ids holding `:` `/` `"`, spaces, emoji (or even separators) never share a key (defect 2)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain import keys
from streams.domain.model import ChatEvent
from streams.domain.rules import Filters, ShopRules
from streams.tooling.engine import Engine

T0 = 1_731_300_000_000
RULES = ShopRules()

ids = st.text(min_size=0, max_size=12)


@settings(max_examples=300, derandomize=True, database=None)
@given(st.lists(ids, min_size=1, max_size=4), st.sampled_from([(":", "\\"), ("/", "\\"),
                                                                ("\x1f", "\x1b")]))
def test_join_split_round_trip(parts: list[str], sep_esc: tuple[str, str]) -> None:
    sep, esc = sep_esc
    assert keys.split(keys.join(parts, sep, esc), sep, esc) == parts


def test_ordinary_ids_keep_their_plain_keys() -> None:
    assert keys.conversation_key("s", "b") == "s:b"
    assert keys.agent_key("s", "a1") == "s\x1fa1"
    assert keys.tile_id("s1", "a1") == "s1/a1"
    assert keys.conversation_key("s3", "x:y") != keys.conversation_key("s3:x", "y")
    assert keys.tile_id("w/1", "d") != keys.tile_id("w", "1/d")


@settings(max_examples=300, derandomize=True, database=None)
@given(ids, ids, ids, ids)
def test_different_pairs_never_share_a_key(a: str, b: str, c: str, d: str) -> None:
    if (a, b) == (c, d):
        return
    assert keys.conversation_key(a, b) != keys.conversation_key(c, d)
    assert keys.agent_key(a, b) != keys.agent_key(c, d)
    assert keys.tile_id(a, b) != keys.tile_id(c, d)
    assert keys.split_agent_key(keys.agent_key(a, b)) == (a, b)
    # The routing key is the producers' `shop:buyer`: partitioning only, may coincide.
    assert keys.routing_key_of(keys.conversation_key(a, b)) == f"{a}:{b}".encode()


def _chat(mid: str, shop: str, buyer: str, sender: str, agent: str | None, ts: int) -> ChatEvent:
    return ChatEvent(mid, shop, buyer, sender, agent, ts)  # type: ignore[arg-type]


def test_colon_in_ids_keeps_conversations_apart() -> None:
    """shop `s3` + buyer `x:y` and shop `s3:x` + buyer `y`: two conversations, two shops."""
    eng = Engine(lambda _shop: RULES, Filters())
    eng.feed([
        _chat("m1", "s3", "x:y", "buyer", "a1", T0),
        _chat("m2", "s3:x", "y", "buyer", "b1", T0 + 1_000),
        _chat("m3", "s3:x", "y", "agent", "b1", T0 + 11_000),
        _chat("m4", "s3", "x:y", "agent", "a1", T0 + 21_000),
    ])
    assert len(eng.stage1.conversations) == 2
    snaps = eng.snapshots(T0 + 30_000)
    a1 = snaps[("s3", "a1")].windows["5m"]
    b1 = snaps[("s3:x", "b1")].windows["5m"]
    assert (a1.rounds, a1.rt_sum_ms) == (1, 21_000)
    assert (b1.rounds, b1.rt_sum_ms) == (1, 10_000)
