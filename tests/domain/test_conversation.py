"""`streams.domain.conversation` on its own: the state machine's transitions, the
de-duplication and reorder tail, retention, and the changelog codec's round trip."""

from __future__ import annotations

import re
from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain import conversation_codec
from streams.domain.conversation import (
    ACCEPTED,
    DUPLICATE,
    LATE,
    NO_AD_DAYS,
    NO_ORDERS,
    NO_RATINGS,
    ORDER_RETENTION_MS,
    SEEN_SMALL,
    Conversation,
    Core,
    Ctx,
    expires_at,
)
from streams.domain.facts import (
    AGENT_MSG,
    BUYER_MSG,
    DEL,
    FIRST,
    INTERNAL_KINDS,
    ORDER,
    PENDING,
    PUT,
    RATING,
    ROUND,
    SESSION_STARTED,
    UNANSWERED,
    Fact,
)
from streams.domain.model import WORDS, ChatEvent, OrderEvent, RatingEvent
from streams.domain.resolution import NO_CLOSES, NO_SENT, NO_VOTES
from streams.domain.rules import Filters, ShopRules
from tests.domain.strategies import PROPERTY_SETTINGS

T0 = 1_731_290_000_000  # 2024-11-11 09:53 Asia/Shanghai
S = 1000
RULES = ShopRules()
CTX = Ctx("shop", "buyer", RULES, Filters())


def chat(mid: str, sender: str, ts: int, agent: str | None = "a1",
         event: str = "message") -> ChatEvent:
    return ChatEvent(mid, "shop", "buyer", sender, agent, ts, event, "hi")  # type: ignore[arg-type]


def feed(conv: Conversation, *events: ChatEvent) -> tuple[list[str], list[Fact]]:
    out: list[Fact] = []
    outcomes = [conv.process(ev, CTX, out) for ev in events]
    conv.pending_changes(CTX, out)
    return outcomes, out


def kinds(facts: list[Fact], op: int = PUT) -> list[str]:
    return [f.kind for f in facts if f.op == op]


# -- the state machine (Core) ----------------------------------------------------------------


def test_a_buyer_message_opens_a_session_and_a_round() -> None:
    core = Core()
    out: list[Fact] = []
    core.apply(chat("m1", "buyer", T0), CTX, out)
    assert core.session_open and core.agent == "a1"
    assert (core.p_start, core.p_msg, core.p_first, core.p_counted) == (T0, "m1", True, True)
    assert core.session_start == T0
    # the internal session mark stays inside the conversation (`Conversation.process` drops it)
    assert kinds(out) == [SESSION_STARTED, BUYER_MSG] and SESSION_STARTED in INTERNAL_KINDS
    pending = core.pending_fact(CTX)
    assert pending is not None and pending.kind == PENDING
    assert (pending.waiting_since, pending.last_event_ts) == (T0, T0)


def test_the_agents_reply_answers_the_first_round_with_its_response_time() -> None:
    core = Core()
    out: list[Fact] = []
    core.apply(chat("m1", "buyer", T0), CTX, out)
    core.apply(chat("m2", "buyer", T0 + 5 * S), CTX, out)  # same round: the clock keeps going
    core.apply(chat("m3", "agent", T0 + 30 * S), CTX, out)
    answered = [f for f in out if f.kind in (FIRST, ROUND)]
    assert [(f.kind, f.response_ms, f.buyer) for f in answered] == [
        (FIRST, 30 * S, CTX.buyer_hash)]
    assert core.p_start == -1 and core.pending_fact(CTX) is None
    core.apply(chat("m4", "buyer", T0 + 40 * S), CTX, out)
    core.apply(chat("m5", "agent", T0 + 50 * S), CTX, out)
    assert [f.kind for f in out if f.kind in (FIRST, ROUND)] == [FIRST, ROUND]


def test_a_transfer_restarts_the_clock_for_the_new_agent_and_charges_the_old_one() -> None:
    core = Core()
    out: list[Fact] = []
    core.apply(chat("m1", "buyer", T0), CTX, out)
    late = T0 + RULES.unanswered_after_ms + S
    core.apply(chat("t1", "system", late, agent="a2", event="transfer"), CTX, out)
    assert [(f.kind, f.agent) for f in out if f.kind == UNANSWERED] == [(UNANSWERED, "a1")]
    core.apply(chat("m2", "agent", late + 20 * S, agent="a2"), CTX, out)
    first = next(f for f in out if f.kind == FIRST)
    assert (first.agent, first.response_ms) == ("a2", 20 * S)


def test_close_ends_the_session_and_idle_gap_starts_a_new_one() -> None:
    core = Core()
    out: list[Fact] = []
    core.apply(chat("m1", "buyer", T0), CTX, out)
    core.apply(chat("c1", "system", T0 + S, event="close"), CTX, out)
    assert not core.session_open and core.agent is None and core.p_start == -1
    core.apply(chat("m2", "buyer", T0 + 2 * S), CTX, out)
    core.apply(chat("m3", "agent", T0 + 3 * S), CTX, out)
    core.apply(chat("m4", "buyer", T0 + 3 * S + RULES.session_idle_ms + S), CTX, out)
    assert core.p_first, "a buyer message after the idle gap is a new session's first round"


def test_agent_messages_count_but_bot_messages_do_not_end_a_round() -> None:
    core = Core()
    out: list[Fact] = []
    core.apply(chat("m1", "buyer", T0), CTX, out)
    core.apply(chat("b1", "bot", T0 + S), CTX, out)
    assert core.p_start == T0
    core.apply(chat("m2", "agent", T0 + 2 * S), CTX, out)
    assert kinds(out).count(AGENT_MSG) == 1 and core.p_start == -1


# -- de-duplication and reordering (Conversation) ---------------------------------------------


def test_a_repeated_message_id_is_a_duplicate_and_changes_nothing() -> None:
    conv = Conversation("shop", "buyer")
    feed(conv, chat("m1", "buyer", T0))
    outcomes, out = feed(conv, chat("m1", "buyer", T0))
    assert outcomes == [DUPLICATE] and out == []


@settings(PROPERTY_SETTINGS, max_examples=200)
@given(st.lists(st.integers(0, 14), max_size=40))
def test_a_repeated_id_is_a_duplicate_however_many_ids_are_kept(ids: list[int]) -> None:
    """Ids are kept in a tuple while there are few and in a set past SEEN_SMALL (memory); the
    outcome is the reference's either way, and after a round trip through the codec."""
    conv, taken = Conversation("shop", "buyer"), set()
    for i, n in enumerate(ids):
        if i == len(ids) // 2:
            record = orjson.loads(orjson.dumps(conversation_codec.encode(conv)))
            conv = conversation_codec.decode(record, CTX)
        outcome = conv.process(chat(f"m{n}", "buyer", T0 + i * S), CTX, [])
        assert (outcome == DUPLICATE) == (n in taken)
        taken.add(n)
        assert set(conv.seen) == {f"m{k}" for k in taken}
        assert isinstance(conv.seen, tuple) == (len(taken) <= SEEN_SMALL)


def test_reordered_arrival_gives_the_facts_of_in_order_arrival() -> None:
    events = [chat("m1", "buyer", T0), chat("m2", "agent", T0 + 1500),
              chat("m3", "buyer", T0 + 1800)]
    in_order, reordered = Conversation("shop", "buyer"), Conversation("shop", "buyer")
    _, a = feed(in_order, *events)
    _, b = feed(reordered, events[0], events[2], events[1])

    def net(facts: list[Fact]) -> set[Fact]:
        live: dict[tuple[str, str, int], Fact] = {}
        for f in facts:
            if f.op == DEL:
                live.pop((f.agent, f.kind, f.fid), None)
            else:
                live[(f.agent, f.kind, f.fid)] = f
        return set(live.values())

    assert net(a) == net(b)
    assert conversation_codec.encode(in_order)["b"] == conversation_codec.encode(reordered)["b"]


def test_an_event_older_than_the_reorder_window_is_late_but_applied() -> None:
    conv = Conversation("shop", "buyer")
    feed(conv, chat("m1", "buyer", T0 + 60 * S))
    outcomes, _ = feed(conv, chat("m0", "agent", T0))
    assert outcomes == [LATE]
    assert conv.max_ts == T0 + 60 * S


def test_orders_and_ratings_are_deduplicated_and_credited() -> None:
    conv = Conversation("shop", "buyer")
    feed(conv, chat("m1", "buyer", T0), chat("m2", "agent", T0 + 10 * S))
    out: list[Fact] = []
    order = OrderEvent("o1", "shop", "buyer", "created", Decimal("9.90"), T0 + 60 * S)
    assert conv.process_order(order, CTX, out) == ACCEPTED
    assert conv.process_order(order, CTX, out) == DUPLICATE
    assert [(f.kind, f.agent) for f in out] == [(ORDER, "a1")]
    rating = RatingEvent("shop", "buyer", "a1", 5, T0 + 120 * S)
    assert conv.process_rating(rating, CTX, out) == ACCEPTED
    assert conv.process_rating(rating, CTX, out) == DUPLICATE
    assert [f.score for f in out if f.kind == RATING] == [5]


def test_orders_ratings_and_ad_days_are_each_conversations_own_once_written() -> None:
    """A conversation starts with shared read-only empties (memory: most never get an order, a
    rating or an ad day); the first write makes its own, and no other conversation sees it."""
    ctx = Ctx("shop", "buyer", RULES, Filters(ad_patterns=(re.compile("加微信"),)))
    quiet, busy = Conversation("shop", "other"), Conversation("shop", "buyer")
    feed(quiet, chat("q1", "buyer", T0))
    out: list[Fact] = []
    busy.process(ChatEvent("m1", "shop", "buyer", "buyer", None, T0, "message", "加微信"), ctx,
                 out)
    busy.process_order(OrderEvent("o1", "shop", "buyer", "created", Decimal(1), T0), ctx, out)
    busy.process_rating(RatingEvent("shop", "buyer", "a1", 5, T0 + S), ctx, out)
    assert list(busy.orders) == ["o1"] and list(busy.ratings) == [("a1", T0 + S)]
    assert len(busy.ad_days) == 1
    marked = Conversation("shop", "buyer")
    feed(marked, chat("m1", "buyer", T0), chat("m2", "agent", T0 + S),
         ChatEvent("m3", "shop", "buyer", "agent", "a1", T0 + 2 * S, "close", None, True))
    marked.process_rating(RatingEvent("shop", "buyer", "a1", 4, T0 + 3 * S, True), CTX, out)
    assert marked.marks.closes and marked.marks.votes and marked.marks.sent
    empties = (NO_ORDERS, NO_RATINGS, NO_AD_DAYS, NO_CLOSES, NO_VOTES, NO_SENT)
    for conv in (quiet, conversation_codec.decode(
            orjson.loads(orjson.dumps(conversation_codec.encode(quiet))), CTX)):
        assert (conv.orders, conv.ratings, conv.ad_days, conv.marks.closes, conv.marks.votes,
                conv.marks.sent) == empties
        assert conv.orders is NO_ORDERS and conv.ratings is NO_RATINGS
        assert conv.ad_days is NO_AD_DAYS and conv.marks.closes is NO_CLOSES
        assert conv.marks.votes is NO_VOTES and conv.marks.sent is NO_SENT


# -- retention --------------------------------------------------------------------------------


def test_expiry_waits_two_attribution_windows_and_order_retention() -> None:
    conv = Conversation("shop", "buyer")
    feed(conv, chat("m1", "buyer", T0))
    window = RULES.attribution_window_ms
    assert not conv.expired(T0 + 2 * window - 1, RULES)
    assert conv.expired(T0 + 2 * window, RULES)
    conv.process_order(OrderEvent("o1", "shop", "buyer", "created", Decimal(1), T0), CTX, [])
    assert not conv.expired(T0 + 2 * window, RULES), "refunds of its orders may still come"
    assert conv.expired(T0 + ORDER_RETENTION_MS, RULES)


def _expired_reference(conv: Conversation, now_ms: int, rules: ShopRules) -> bool:
    """The retention rule as docs/kpis.md states it, written out apart from the code."""
    events = [conv.max_ts, *(ts for _, ts in conv.ratings)]
    if now_ms - max(events) < 2 * rules.attribution_window_ms:
        return False  # a chat or rating in the last two attribution windows
    if not conv.orders:
        return True
    last_order = max([*events, *(rec.last for rec in conv.orders.values())])
    return now_ms - last_order >= ORDER_RETENTION_MS


@settings(PROPERTY_SETTINGS, max_examples=300)
@given(chats=st.lists(st.integers(0, 10 * 86_400), max_size=3),
       orders=st.lists(st.integers(0, 40 * 86_400), max_size=3),
       ratings=st.lists(st.integers(0, 10 * 86_400), max_size=2),
       window_h=st.integers(1, 48), later=st.integers(0, 80 * 86_400))
def test_expires_at_is_the_first_instant_the_retention_rule_lets_go(
    chats: list[int], orders: list[int], ratings: list[int], window_h: int, later: int
) -> None:
    """`expires_at` (what a conversation kept in compact form is decoded for) against the rule
    itself: expired exactly from that instant on, never a millisecond before."""
    rules = ShopRules(attribution_window_ms=window_h * 3_600_000)
    ctx = Ctx("shop", "buyer", rules, Filters())
    conv = Conversation("shop", "buyer")
    for i, seconds in enumerate(chats):
        conv.process(chat(f"m{i}", "buyer", T0 + seconds * S), ctx, [])
    for i, seconds in enumerate(orders):
        conv.process_order(OrderEvent(f"o{i}", "shop", "buyer", "created", Decimal(1),
                                      T0 + seconds * S), ctx, [])
    for seconds in ratings:
        conv.process_rating(RatingEvent("shop", "buyer", "a1", 4, T0 + seconds * S, False),
                            ctx, [])
    stored = orjson.loads(orjson.dumps(conversation_codec.encode(conv)))
    assert conversation_codec.activity(stored) == conv.activity()  # read without decoding
    due = expires_at(*conv.activity(), rules)
    assert _expired_reference(conv, due, rules)
    assert not _expired_reference(conv, due - 1, rules)
    now = T0 + later * S
    assert conv.expired(now, rules) == _expired_reference(conv, now, rules)


def test_close_out_materializes_the_unanswered_crossing_and_retracts_waiting() -> None:
    conv = Conversation("shop", "buyer")
    feed(conv, chat("m1", "buyer", T0))
    assert conv.pending is not None
    out: list[Fact] = []
    conv.close_out(CTX, T0 + 2 * RULES.attribution_window_ms, out)
    assert [(f.op, f.kind) for f in out] == [(PUT, UNANSWERED), (DEL, PENDING)]
    assert conv.pending is None


# -- the changelog codec ----------------------------------------------------------------------


def _busy_conversation() -> Conversation:
    conv = Conversation("shop", "buyer")
    feed(conv, chat("m1", "buyer", T0), chat("m2", "agent", T0 + 10 * S),
         chat("m3", "buyer", T0 + 20 * S))
    conv.process_order(OrderEvent("o1", "shop", "buyer", "created", Decimal("5"), T0 + 30 * S),
                       CTX, [])
    conv.process_rating(RatingEvent("shop", "buyer", "a1", 4, T0 + 40 * S), CTX, [])
    return conv


def test_codec_round_trip_is_equal_through_json() -> None:
    conv = _busy_conversation()
    record = orjson.loads(orjson.dumps(conversation_codec.encode(conv)))
    assert conversation_codec.identity(record) == ("shop", "buyer")
    back = conversation_codec.decode(record, CTX)
    assert conversation_codec.encode(back) == conversation_codec.encode(conv)
    assert back.head == conv.head and back.base == conv.base and back.pending == conv.pending
    # and it behaves the same afterwards
    _, a = feed(conv, chat("m4", "agent", T0 + 50 * S))
    _, b = feed(back, chat("m4", "agent", T0 + 50 * S))
    assert a == b


def test_codec_decodes_a_tails_words_as_the_shared_strings() -> None:
    """Recovered tail events hold `model.WORDS`' strings, as freshly decoded ones do."""
    conv = Conversation("shop", "buyer")
    feed(conv, chat("m1", "buyer", T0))
    back = conversation_codec.decode(orjson.loads(orjson.dumps(conversation_codec.encode(conv))),
                                     CTX)
    (_, event, _), = back.tail
    assert event.sender is WORDS["buyer"] and event.event is WORDS["message"]


def test_codec_keeps_the_record_format() -> None:
    """The keys are what changelogs already hold: changing one loses every stored state."""
    record = conversation_codec.encode(_busy_conversation())
    assert list(record) == ["k", "b", "t", "m", "s", "p", "r", "o", "g", "ad", "fz", "mk", "ss"]
    assert record["k"] == ["shop", "buyer"]
    assert len(record["b"]) == 12 and record["m"] == T0 + 20 * S
    assert record["t"][-1] == ["m3", "shop", "buyer", "buyer", "a1", T0 + 20 * S, "message", "hi"]
    assert record["g"] == [["a1", T0 + 40 * S, 4, True]]
