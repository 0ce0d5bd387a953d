"""`streams.pipeline.conversation_table`: quiet conversations kept as their record's bytes.

Each test runs the same events through a conversation kept live and one compacted (and woken)
in between, and asks for the same facts and the same record: compaction must be invisible.
"""

from __future__ import annotations

import tracemalloc
from decimal import Decimal
from typing import Any

import orjson

from streams.domain import conversation_codec
from streams.domain.conversation import Conversation, expires_at
from streams.domain.facts import Fact
from streams.domain.model import ChatEvent, OrderEvent
from streams.domain.rules import Filters, ShopRules
from streams.domain.stage1 import ConversationStage, InputEvent
from streams.pipeline import outbox
from streams.pipeline.conversation_table import ConversationTable, Quiet

T0 = 1_731_290_000_000
S = 1000
RULES = ShopRules()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def chat(mid: str, buyer: str, sender: str, ts: int) -> ChatEvent:
    return ChatEvent(mid, "shop", buyer, sender, "a1", ts, "message", "hi")  # type: ignore[arg-type]


def table() -> tuple[ConversationTable, ConversationStage, Clock, dict[str, Any]]:
    stage = ConversationStage(lambda _shop: RULES, Filters())
    store: dict[str, Any] = {}
    clock = Clock()
    convs = ConversationTable(store, stage)
    stage.conversations = convs  # type: ignore[assignment]
    stage.clock = clock  # type: ignore[attr-defined]  # read by `run`, as the runtime does
    return convs, stage, clock, store


def run(stage: ConversationStage, *events: InputEvent) -> list[Fact]:
    """A batch, and (on a table) its writes marked at the clock's *now*, as the runtime does."""
    facts, touched = stage.process_batch(events)
    if isinstance(stage.conversations, ConversationTable):
        stage.conversations.mark_written(touched, stage.clock())  # type: ignore[attr-defined]
    return facts


def record(conv: Conversation) -> Any:
    return orjson.loads(orjson.dumps(conversation_codec.encode(conv)))


def test_a_quiet_conversation_is_kept_as_its_record_and_wakes_up_unchanged() -> None:
    convs, stage, clock, store = table()
    twin = ConversationStage(lambda _shop: RULES, Filters())
    first = (chat("m1", "b1", "buyer", T0), chat("m2", "b1", "agent", T0 + 20 * S),
             chat("m3", "b1", "buyer", T0 + 21 * S))  # m3 still waits: a tail and a pending
    assert run(stage, *first) == run(twin, *first)
    key = first[0].state_key
    clock.now = T0 + 400 * S
    assert convs.compact(clock.now - 300 * S, deadline=float("inf")) == 1
    quiet = store[key]
    assert isinstance(quiet, Quiet)
    assert orjson.loads(quiet.raw) == record(twin.conversations[key])
    assert (quiet.shop, quiet.seen_ms, quiet.orders_last_ms) == ("shop", T0 + 21 * S, None)
    later = (chat("m3", "b1", "buyer", T0 + 21 * S),  # a redelivery: still known
             chat("m4", "b1", "agent", T0 + 500 * S),
             OrderEvent("o1", "shop", "b1", "created", Decimal(10), T0 + 600 * S))
    assert run(stage, *later) == run(twin, *later)
    assert stage.outcomes == twin.outcomes and stage.outcomes["duplicate"] == 1
    assert isinstance(store[key], Conversation) and key in convs.written
    assert record(store[key]) == record(twin.conversations[key])


def test_only_conversations_no_batch_wrote_since_the_line_are_compacted_oldest_first() -> None:
    convs, stage, clock, store = table()
    for i, buyer in enumerate(("b1", "b2", "b3")):
        clock.now = T0 + i * S
        run(stage, chat(f"m{i}", buyer, "buyer", T0 + i * S))
    clock.now = T0 + 3 * S
    run(stage, chat("m9", "b1", "agent", T0 + 3 * S))  # b1 written again: the newest now
    assert convs.compact(T0 + 2 * S, deadline=float("inf")) == 2
    kinds = {key.rpartition(":")[2]: type(value).__name__ for key, value in store.items()}
    assert kinds == {"b1": "Conversation", "b2": "Quiet", "b3": "Quiet"}
    assert list(convs.written) == [next(k for k in store if k.endswith("b1"))]
    assert convs.compact(T0 + 2 * S, deadline=float("inf")) == 0
    b3 = next(k for k in store if k.endswith("b3"))
    assert isinstance(convs[b3], Conversation)  # decoded by a reader, not a batch: still
    assert list(convs.written) == [store_key for store_key in store if store_key.endswith(
        ("b1", "b3"))] and convs.written[b3] == T0 + 3 * S  # known, at the newest time
    assert convs.compact(T0 + 3 * S, deadline=float("inf")) == 2


def test_expiry_decodes_a_quiet_conversation_only_once_it_is_due() -> None:
    convs, stage, _clock, store = table()
    twin = ConversationStage(lambda _shop: RULES, Filters())
    events = (chat("m1", "b1", "buyer", T0),)  # never answered: expiry closes it out
    run(stage, *events)
    run(twin, *events)
    convs.compact(T0, deadline=float("inf"))
    quiet = store[events[0].state_key]
    assert isinstance(quiet, Quiet)
    due = expires_at(quiet.seen_ms, quiet.orders_last_ms, RULES)
    assert convs.expiry_candidates(due - 1, due - 1, lambda _shop: RULES) == []
    assert store[events[0].state_key] is quiet, "not decoded before it is due"
    candidates = convs.expiry_candidates(due, due, lambda _shop: RULES)
    assert [key for key, _ in candidates] == [events[0].state_key]
    assert stage.expire(due, candidates) == twin.expire(due)
    assert store == {} and convs.written == {}


def test_restored_records_stay_compact_when_quiet_and_come_alive_when_not() -> None:
    convs, _stage, _clock, store = table()
    twin = ConversationStage(lambda _shop: RULES, Filters())
    run(twin, chat("m1", "b1", "buyer", T0), chat("m2", "b2", "buyer", T0 + 60 * S))
    for key, conv in twin.conversations.items():  # as a bulk restore leaves them: raw bytes,
        row = ["a1", 1, "b", 7, T0, 0, 0]  # with an outbox (re-sent at recovery, not kept)
        store[key] = orjson.dumps({**conversation_codec.encode(conv), outbox.FIELD: [row]})
    candidates = convs.expiry_candidates(T0 + 90 * S, T0 + 30 * S, lambda _shop: RULES)
    by_buyer = {key.rpartition(":")[2]: key for key in store}
    quiet = store[by_buyer["b1"]]
    assert isinstance(quiet, Quiet)  # quiet since T0, before the line
    assert orjson.loads(quiet.raw) == record(twin.conversations[by_buyer["b1"]])  # no outbox
    assert [key for key, _ in candidates] == [by_buyer["b2"]]
    assert isinstance(store[by_buyer["b2"]], Conversation) and by_buyer["b2"] in convs.written
    for buyer, key in by_buyer.items():
        assert record(convs[key]) == record(twin.conversations[key]), buyer


def test_kept_bytes_hold_only_their_length() -> None:
    """orjson's output buffer is ~8 KB whatever the length (see `right_sized`): a kept copy
    must not be, or 100,000 quiet conversations would hold ~800 MB instead of ~60 MB."""
    convs, stage, clock, store = table()
    n = 300
    run(stage, *(chat(f"m{i}", f"b{i}", "buyer", T0 + i) for i in range(n)))
    clock.now = T0 + 600 * S
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        assert convs.compact(clock.now, deadline=float("inf")) == n
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    sizes = [len(value.raw) for value in store.values()]
    assert all(isinstance(value, Quiet) for value in store.values())
    # Each Quiet adds its bytes (+33 header) and a 4-tuple (~72); the live ones are still held.
    assert grown < n * (max(sizes) + 33 + 72 + 64), (grown / n, max(sizes))
