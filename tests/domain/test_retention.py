"""Conversations are forgotten once nothing can change them, without changing any KPI."""

from __future__ import annotations

from decimal import Decimal

from streams.domain.facts import DEL, PENDING, PUT, UNANSWERED
from streams.domain.model import ChatEvent, OrderEvent
from streams.domain.rules import Filters, ShopRules
from streams.tooling.engine import Engine

T0 = 1_731_290_000_000
HOUR = 3_600_000
RULES = ShopRules()


def engine() -> Engine:
    return Engine(lambda _shop: RULES, Filters())


def test_an_abandoned_question_is_closed_out_as_unanswered_then_forgotten() -> None:
    eng = engine()
    eng.feed([ChatEvent("m1", "s", "b", "buyer", "a1", T0)])
    assert eng.stage1.expire(T0 + 47 * HOUR) == ([], [])  # two attribution windows not over
    facts, gone = eng.stage1.expire(T0 + 49 * HOUR)
    assert gone == ["s:b"]
    kinds = {(f.kind, f.op) for f in facts}
    assert kinds == {(UNANSWERED, PUT), (PENDING, DEL)}
    (unanswered,) = [f for f in facts if f.kind == UNANSWERED]
    assert unanswered.agent == "a1" and unanswered.ts == T0 + RULES.unanswered_after_ms
    eng.stage2.apply(facts)
    state = eng.stage2.agents[("s", "a1")]
    assert state.pending == {}
    assert "s:b" not in eng.stage1.conversations


def test_conversations_with_recent_orders_are_kept_for_refunds() -> None:
    eng = engine()
    eng.feed([
        ChatEvent("m1", "s", "b", "buyer", "a1", T0),
        ChatEvent("m2", "s", "b", "agent", "a1", T0 + 5_000),
        OrderEvent("o1", "s", "b", "paid", Decimal("10"), T0 + HOUR),
    ])
    assert eng.stage1.expire(T0 + 30 * 24 * HOUR) == ([], [])
    facts, gone = eng.stage1.expire(T0 + 36 * 24 * HOUR)
    assert gone == ["s:b"] and facts == []  # answered, nothing pending: nothing to close out


def test_a_redelivered_event_after_expiry_is_a_new_conversation_not_a_crash() -> None:
    eng = engine()
    eng.feed([ChatEvent("m1", "s", "b", "buyer", "a1", T0),
              ChatEvent("m2", "s", "b", "agent", "a1", T0 + 5_000)])
    eng.stage1.expire(T0 + 49 * HOUR)
    eng.feed([ChatEvent("m3", "s", "b", "buyer", "a1", T0 + 50 * HOUR)])
    snap = eng.snapshots(T0 + 50 * HOUR + 1_000)[("s", "a1")]
    assert snap.waiting == 1
