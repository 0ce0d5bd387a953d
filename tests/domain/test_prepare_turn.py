"""`Aggregates.prepare_turn`: window prefixes built ahead of a minute's turn give the same
snapshots as prefixes built at the turn, whatever facts arrive after the preparation (late
ones into the prepared range included), and the turn then extends them instead of merging."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.aggregates import Aggregates
from streams.domain.facts import AGENT_MSG, DEL, FIRST, PAID, PUT, ROUND, UNANSWERED, Fact
from streams.domain.rules import MINUTE_MS, ShopRules
from tests.domain.strategies import PROPERTY_SETTINGS

T0 = 1_731_290_000_000 // MINUTE_MS * MINUTE_MS  # a minute's start (09:53 in Shanghai)
BEFORE_MIDNIGHT = 1_710_517_800_000  # 2024-03-15 23:50 in Shanghai: a new day, folded at 01:00
RULES = ShopRules()
MINUTES = 70  # past an hour: the 1h window drops minutes as it slides
PREPARE_S = 45  # into each minute, as the runtime does after PREPARE_AFTER_MS

KINDS = (ROUND, ROUND, FIRST, UNANSWERED, AGENT_MSG, PAID)


def aggregates() -> Aggregates:
    return Aggregates(lambda _shop: RULES, lambda _shop, _agent: RULES.lines,
                      lambda _agent: "team")


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[int, list[tuple[int, Fact]]]:
    """A start, and (arrival ms, fact) from it: most facts arrive in their own minute, some
    minutes late (into a prepared range), some are deletes of earlier ones."""
    t0 = draw(st.sampled_from((T0, BEFORE_MIDNIGHT)))
    out: list[tuple[int, Fact]] = []
    for fid in range(draw(st.integers(1, 120))):
        ts = t0 + draw(st.integers(0, MINUTES * MINUTE_MS - 1))
        late = draw(st.sampled_from((0, 0, 0, 0, 1_000, 20_000, 61_000, 300_000)))
        kind = draw(st.sampled_from(KINDS))
        fact = Fact(PUT, kind, "shop", draw(st.sampled_from(("a1", "a2"))), fid, ts,
                    draw(st.integers(0, 90_000)), draw(st.integers(1, 12)))
        out.append((ts + late, fact))
        if draw(st.integers(0, 9)) == 0:  # retracted later
            out.append((ts + late + draw(st.integers(0, 200_000)), fact._replace(op=DEL)))
    return t0, sorted(out, key=lambda pair: pair[0])


def _snapshots(aggs: Aggregates, now: int) -> dict[str, object]:
    aggs.advance(now)
    return {agent: aggs.snapshot("shop", agent, now) for agent in ("a1", "a2")}


@settings(PROPERTY_SETTINGS, max_examples=60)
@given(arrivals())
def test_prepared_prefixes_give_the_same_snapshots(
    arrived: tuple[int, list[tuple[int, Fact]]],
) -> None:
    t0, facts = arrived
    plain, prepared = aggregates(), aggregates()
    pending = list(facts)

    def arrive(until: int) -> None:
        while pending and pending[0][0] < until:
            _, fact = pending.pop(0)
            plain.apply([fact])
            prepared.apply([fact])

    for minute in range(MINUTES + 6):
        start = t0 + minute * MINUTE_MS
        plain.expire(start)  # the tick at the minute's turn
        prepared.expire(start)
        arrive(start + 1_000)
        assert _snapshots(prepared, start + 1_000) == _snapshots(plain, start + 1_000)
        arrive(start + PREPARE_S * 1_000)
        for agent in ("a1", "a2"):
            prepared.prepare_turn("shop", agent, start + PREPARE_S * 1_000)
        arrive(start + MINUTE_MS)  # late facts may land in what was prepared


def test_the_turn_extends_the_prepared_prefix_instead_of_merging_again() -> None:
    aggs = aggregates()
    facts = [Fact(PUT, ROUND, "shop", "a1", fid, T0 + fid * 20_000, 1_000 + fid, fid % 7)
             for fid in range(3 * 60)]  # an hour, three rounds a minute
    aggs.apply(facts)
    turn = T0 + 61 * MINUTE_MS
    aggs.snapshot("shop", "a1", turn - 15_000)
    aggs.prepare_turn("shop", "a1", turn - 15_000)
    st = aggs.agents[("shop", "a1")]
    prepared = {key: id(prefix) for key, prefix in st.prefix.items()}
    one_hour = (turn // MINUTE_MS - 59, turn // MINUTE_MS - 2)  # the next 1h window, unfinished
    assert one_hour in prepared
    aggs.snapshot("shop", "a1", turn + 500)
    # The same object, grown by the minute that ended: no merge of the hour at the turn.
    extended = st.prefix[(one_hour[0], one_hour[1] + 1)]
    assert id(extended) == prepared[one_hour]
