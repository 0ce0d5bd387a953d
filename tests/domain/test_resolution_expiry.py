"""A rating read before its session's chat must still override the close's mark.

Found by the end-to-end day (tests/integration/test_business_e2e.py, `one-stream` delivery),
once the day carried `resolved` marks: a worker reads its topics at their own pace, so a rating
can be read hours (of event time) ahead of the chat of the session it rates, and stage 1 expires
conversations in between (pipeline/runtime.py calls `ConversationStage.expire(now)` as the
watermark moves). `Conversation.process_rating` leaves `max_ts` at -1, so a conversation that
holds only ratings counts as idle since the epoch and `Conversation.expired` forgets it at once,
with the rating's vote. The rating's provisional mark ("a session of its own") stays counted,
and when the chat arrives the close's mark counts too: two marks for one session, where the
oracle (tests/domain/business_reference.py, definition 9) and in-order arrival have one.

Fixed: `Conversation.expired` counts ratings as events. This is its regression test.
"""

from __future__ import annotations

import pytest

from streams.domain.model import ChatEvent, RatingEvent
from streams.domain.rules import Filters, ShopRules
from streams.tooling.engine import Engine

T0 = 1_731_290_400_000  # 2024-11-11 10:00 +08:00
RULES = ShopRules()


def _day(resolved_close: bool, resolved_rating: bool) -> tuple[list[ChatEvent], RatingEvent]:
    chat = [
        ChatEvent("m1", "s1", "b1", "buyer", "a1", T0),
        ChatEvent("m2", "s1", "b1", "agent", "a1", T0 + 20_000),
        ChatEvent("m3", "s1", "b1", "agent", "a1", T0 + 80_000, "close",
                  resolved=resolved_close),
    ]
    return chat, RatingEvent("s1", "b1", "a1", 4, T0 + 150_000, resolved_rating)


def _marks(engine: Engine, now: int) -> tuple[int, int]:
    today = engine.snapshots(now)[("s1", "a1")].windows["today"]
    return today.marked_sessions, today.resolved_sessions


def _engine() -> Engine:
    return Engine(lambda _shop: RULES, Filters())


@pytest.mark.parametrize("expire_between", [False, True], ids=["no-expiry", "expiry-between"])
def test_rating_read_before_the_chat_overrides_the_close(expire_between: bool) -> None:
    chat, rating = _day(resolved_close=False, resolved_rating=True)
    now = T0 + 3_600_000  # other conversations moved the watermark on meanwhile
    engine = _engine()
    engine.feed([rating])
    if expire_between:
        engine.stage1.expire(now)
    engine.feed(chat)
    got = _marks(engine, now)
    assert got == (1, 1), "one session, marked resolved by the buyer's rating"


def test_in_order_arrival_counts_one_mark() -> None:
    """The reference case: chat, then the rating (with expiry between), one mark, the buyer's."""
    chat, rating = _day(resolved_close=False, resolved_rating=True)
    engine = _engine()
    engine.feed(chat)
    engine.stage1.expire(T0 + 3_600_000)
    engine.feed([rating])
    assert _marks(engine, T0 + 3_600_000) == (1, 1)

