"""Stage 1 of the event path: a batch of chat, order, rating and status events → facts.

decode (`streams.events`) → **stage 1** (here: per-conversation state, `conversation`) → facts
(`facts`, across the facts topic) → stage 2 (`aggregates`) → snapshots → exporters.
The runtime keeps the conversations in a Faust table's store; this module does not know that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from streams.domain import status
from streams.domain.conversation import ACCEPTED, DUPLICATE, LATE, Conversation, Ctx
from streams.domain.facts import Fact
from streams.domain.model import (
    AgentStatusEvent,
    ChatEvent,
    OrderEvent,
    RatingEvent,
)
from streams.domain.rules import Filters, ShopRules

RulesFor = Callable[[str], ShopRules]
# Events (message ids, orders, ratings) one conversation may remember. Its state is one
# changelog record: with 128-character ids this keeps it (~800 KB, plus an outbox of at most
# ~25 KB, see `streams.pipeline.outbox`) well under the producer's ~1 MB request limit (a record
# it cannot write would crash the worker at every restart). A producer that puts every message
# on one buyer gets its excess dead-lettered (`limit:conversation`) instead.
MAX_CONVERSATION_RECORDS = 3_600
InputEvent = ChatEvent | OrderEvent | RatingEvent | AgentStatusEvent


class ConversationStage:
    """Stage 1: per-conversation state; turns a batch of chat events into facts."""

    def __init__(self, rules_for: RulesFor, filters: Filters) -> None:
        self.rules_for = rules_for
        self.filters = filters
        self.conversations: dict[str, Conversation] = {}
        self.outcomes: dict[str, int] = {ACCEPTED: 0, DUPLICATE: 0, LATE: 0}  # chat
        self.order_outcomes: dict[str, int] = {ACCEPTED: 0, DUPLICATE: 0}
        self.rating_outcomes: dict[str, int] = {ACCEPTED: 0, DUPLICATE: 0}
        # Status events keep no stage-1 state, so a redelivered one is not told apart here: it
        # counts as accepted and makes the same idempotent fact again.
        self.status_outcomes: dict[str, int] = {ACCEPTED: 0}
        # (index in the batch, reason) of events whose processing raised; the caller
        # dead-letters them and clears the list. Their facts are dropped; the conversation
        # keeps whatever the event changed before it raised (the next events still apply).
        self.failed: list[tuple[int, str]] = []

    def outcome_counters(self) -> list[tuple[str, dict[str, int]]]:
        """(input kind, outcome counts) for every input topic."""
        return [
            ("chat", self.outcomes), ("orders", self.order_outcomes),
            ("ratings", self.rating_outcomes), ("agents", self.status_outcomes),
        ]

    def expire(
        self, now_ms: int, candidates: Iterable[tuple[str, Conversation]] | None = None,
    ) -> tuple[list[Fact], list[str]]:
        """Close out and forget conversations nothing can change any more.

        `candidates`: the (key, conversation) pairs to look at, when the store knows that the
        others cannot have expired yet (conversations kept in compact form are not decoded for
        this); by default every conversation. Returns the closing facts and the keys to delete
        (send the facts first).
        """
        facts: list[Fact] = []
        gone: list[str] = []
        pairs = self.conversations.items() if candidates is None else candidates
        for key, conv in list(pairs):
            ctx = self.ctx(conv.shop, conv.buyer)
            if conv.expired(now_ms, ctx.rules):
                conv.close_out(ctx, now_ms, facts)
                # No DEL of its open-session record: it went idle two attribution windows ago,
                # and stage 2 forgets idle sessions by itself (`status.AgentLoad.fold`).
                gone.append(key)
        for key in gone:
            del self.conversations[key]
        return facts, gone

    def ctx(self, shop: str, buyer: str) -> Ctx:
        return Ctx(shop, buyer, self.rules_for(shop), self.filters)

    def process_batch(
        self,
        events: Sequence[InputEvent],
        load: Callable[[str, Ctx], Conversation | None] | None = None,
        emitted_by: dict[str, list[Fact]] | None = None,
    ) -> tuple[list[Fact], set[str]]:
        """Apply chat, order and rating events in arrival order.

        Returns the facts and the keys of the conversations whose state changed. With
        `emitted_by`, each touched conversation's own facts are also filed under its key: the
        runtime writes them into that conversation's state record (its outbox), so the state
        and the facts it made become durable in one write.
        """
        facts: list[Fact] = []
        touched: dict[str, tuple[Conversation, Ctx]] = {}
        convs = self.conversations
        outcomes = self.outcomes
        order_outcomes = self.order_outcomes
        rating_outcomes = self.rating_outcomes
        failed = self.failed
        for index, ev in enumerate(events):
            if isinstance(ev, AgentStatusEvent):  # the agent's, not a conversation's
                facts.append(status.status_fact(ev))
                self.status_outcomes[ACCEPTED] += 1
                continue
            key = ev.state_key
            entry = touched.get(key)
            if entry is None:
                ctx = self.ctx(ev.shop_id, ev.buyer_id)
                conv = convs.get(key)
                if conv is None and load is not None:
                    conv = load(key, ctx)
                if conv is None:
                    conv = Conversation(ev.shop_id, ev.buyer_id)
                convs[key] = conv
                entry = touched[key] = (conv, ctx)
            conv, ctx = entry
            if len(conv.seen) + len(conv.orders) + len(conv.ratings) >= MAX_CONVERSATION_RECORDS:
                failed.append((index, "limit:conversation"))
                continue
            emitted = len(facts)
            try:
                if isinstance(ev, ChatEvent):
                    outcomes[conv.process(ev, ctx, facts)] += 1
                elif isinstance(ev, OrderEvent):
                    order_outcomes[conv.process_order(ev, ctx, facts)] += 1
                else:
                    rating_outcomes[conv.process_rating(ev, ctx, facts)] += 1
            except Exception as exc:  # an input the state machine cannot take: that event only
                del facts[emitted:]
                failed.append((index, f"error:{type(exc).__name__}"))
            if emitted_by is not None and len(facts) > emitted:
                emitted_by.setdefault(key, []).extend(facts[emitted:])
        for key, (conv, ctx) in touched.items():
            emitted = len(facts)
            conv.pending_changes(ctx, facts)
            status.session_changes(conv, ctx, facts)
            if emitted_by is not None and len(facts) > emitted:
                emitted_by.setdefault(key, []).extend(facts[emitted:])
        return facts, set(touched)
