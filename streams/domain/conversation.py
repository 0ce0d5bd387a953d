"""One buyer's conversation with a shop: sessions, rounds, assignment, ad status (docs/kpis.md).

`Core` is the state machine: it walks events in event-time order and emits facts. `Conversation`
wraps it for the real world, where events arrive twice (at-least-once delivery) and a little out
of order: it drops repeated message ids, keeps the events of the last `reorder_window` in a tail
above a finalized `base`, and when an event lands inside the tail it replays the tail in `ts`
order and emits the difference (deletes of facts that no longer hold, puts of new ones). So
in-order and reordered arrival give the same facts, and the aggregates stay idempotent.
Its changelog record is written and read by `conversation_codec`; `stage1` runs a batch of
events through the conversations it touches.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

from streams.domain.attribution import OrderRec, Reply, attribute
from streams.domain.facts import (
    AD_BUYER,
    AGENT_MSG,
    BUYER_MSG,
    CLOSE_MARK,
    DEL,
    FIRST,
    INTERNAL_KINDS,
    PENDING,
    PUT,
    RATING,
    ROUND,
    SESSION_STARTED,
    UNANSWERED,
    Fact,
    replace_record,
    stable_hash,
)
from streams.domain.model import ChatEvent, OrderEvent, RatingEvent
from streams.domain.resolution import Marks
from streams.domain.rules import Filters, ShopRules

ORDER_RETENTION_MS = 35 * 86_400_000  # refunds of an order still find their agent for 35 days

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
LATE = "late"

SortKey = tuple[int, str]


def expires_at(seen_ms: int, orders_last_ms: int | None, rules: ShopRules) -> int:
    """When a conversation can be forgotten, from its `Conversation.activity`: no chat or rating
    for two attribution windows (de-duplication and late orders need that long), and no order
    event for `ORDER_RETENTION_MS` (refunds come weeks later). Ratings count as events: a
    conversation that holds only a rating (read before its chat) is not idle since the epoch,
    or its vote would be forgotten at once. Nothing new can make it earlier, so a compact
    conversation is decoded for expiry only once this has passed."""
    due = seen_ms + 2 * rules.attribution_window_ms
    if orders_last_ms is None:
        return due
    return max(due, max(seen_ms, orders_last_ms) + ORDER_RETENTION_MS)


@dataclass(slots=True)
class Ctx:
    """What a conversation needs to know about its shop, resolved once per batch."""

    shop: str
    buyer: str
    rules: ShopRules
    filters: Filters
    buyer_hash: int = 0
    conv_hash: int = 0

    def __post_init__(self) -> None:
        self.buyer_hash = stable_hash(self.shop, self.buyer)
        self.conv_hash = self.buyer_hash  # one conversation per (shop, buyer)


@dataclass(slots=True)
class Core:
    """The conversation state after a prefix of its events, in event-time order."""

    session_open: bool = False
    last_ts: int = -1
    agent: str | None = None
    assigned_at: int = 0
    p_start: int = -1  # start of the pending round; -1 = none pending
    p_msg: str = ""
    p_first: bool = False
    p_counted: bool = False  # in service hours and not an ad buyer at the round start
    rounds_in_session: int = 0
    ad_from: int = -1
    ad_until: int = -1
    session_start: int = -1  # ts of the open session's first buyer message

    def copy(self) -> Core:
        return Core(
            self.session_open, self.last_ts, self.agent, self.assigned_at, self.p_start,
            self.p_msg, self.p_first, self.p_counted, self.rounds_in_session, self.ad_from,
            self.ad_until, self.session_start,
        )

    # -- the state machine -------------------------------------------------------------------

    def is_ad(self, ts: int) -> bool:
        return self.ad_from <= ts < self.ad_until

    def apply(self, ev: ChatEvent, ctx: Ctx, out: list[Fact]) -> None:
        """Advance by one event (in `ts` order), appending the facts it makes to `out`."""
        ts = ev.ts
        shop = ctx.shop
        rules = ctx.rules
        filters = ctx.filters
        if not self.is_ad(ts) and (
            ctx.buyer in filters.block_list
            or (ev.sender == "buyer" and filters.is_ad(ctx.buyer, ev.text))
        ):
            day = rules.day_start_ms(ts)
            self.ad_from = ts
            self.ad_until = rules.day_start_ms(day + 26 * 3_600_000)  # next local midnight
            fid = stable_hash("ad", shop, ctx.buyer, str(day))
            out.append(Fact(PUT, AD_BUYER, shop, "", fid, ts))
        ad = self.is_ad(ts)
        kind = ev.event
        if kind == "close":
            if ev.resolved is not None and self.session_open and self.agent is not None and not ad:
                out.append(Fact(PUT, CLOSE_MARK, shop, self.agent, self.session_start, ts,
                                int(ev.resolved), self.session_start))
            self._end_round(ts, ctx, out)
            self.session_open = False
            self.agent = None
        elif kind == "transfer":
            # A transfer restarts the clock even back to the same agent (the contract: "assigned or
            # transferred to the replying agent").
            self._reassign(ev.agent_id, ts, ctx, out)
        elif ev.sender == "buyer":
            idle = self.last_ts >= 0 and ts - self.last_ts > rules.session_idle_ms
            if not self.session_open or idle:
                self._end_round(ts, ctx, out)
                self.session_open = True
                self.rounds_in_session = 0
                self.session_start = ts
                out.append(Fact(PUT, SESSION_STARTED, shop, "", ts, ts))
            if ev.agent_id != self.agent:
                self._reassign(ev.agent_id, ts, ctx, out)
            if ev.agent_id is not None and not ad:
                fid = stable_hash(shop, ev.message_id)
                out.append(Fact(PUT, BUYER_MSG, shop, ev.agent_id, fid, ts))
            if self.p_start < 0:
                self.p_start = ts
                self.p_msg = ev.message_id
                self.p_first = self.rounds_in_session == 0
                self.p_counted = not ad and rules.in_service(ts)
                self.rounds_in_session += 1
        elif ev.sender == "agent" and ev.agent_id is not None:
            if not ad:
                fid = stable_hash(shop, ev.message_id)
                out.append(Fact(PUT, AGENT_MSG, shop, ev.agent_id, fid, ts, 0, ctx.buyer_hash))
            if self.p_start >= 0:
                if self.p_counted:
                    since = self.p_start
                    if ev.agent_id == self.agent:
                        since = max(since, self.assigned_at)
                    fid = stable_hash("round", shop, ctx.buyer, self.p_msg)
                    kind_ = FIRST if self.p_first else ROUND
                    rt = max(0, ts - since)
                    out.append(Fact(PUT, kind_, shop, ev.agent_id, fid, ts, rt, ctx.buyer_hash))
                self._end_round(ts, ctx, out)
        # bot and system messages never end a round; they only keep the session alive
        self.last_ts = ts

    def _end_period(self, end_ts: int, ctx: Ctx, out: list[Fact]) -> None:
        """The current agent stops owning the pending round: did it wait too long on them?"""
        if self.p_start < 0 or not self.p_counted or self.agent is None:
            return
        since = max(self.p_start, self.assigned_at)
        crossed = since + ctx.rules.unanswered_after_ms
        if end_ts > crossed:
            fid = stable_hash("unans", ctx.shop, ctx.buyer, self.p_msg, self.agent)
            out.append(Fact(PUT, UNANSWERED, ctx.shop, self.agent, fid, crossed, 0, ctx.buyer_hash))

    def _end_round(self, end_ts: int, ctx: Ctx, out: list[Fact]) -> None:
        self._end_period(end_ts, ctx, out)
        self.p_start = -1
        self.p_msg = ""

    def _reassign(self, agent: str | None, ts: int, ctx: Ctx, out: list[Fact]) -> None:
        self._end_period(ts, ctx, out)
        self.agent = agent
        self.assigned_at = ts

    def pending_fact(self, ctx: Ctx) -> Fact | None:
        """The 'waiting now' record this state implies, if a counted round is pending."""
        if self.p_start < 0 or not self.p_counted or not self.session_open:
            return None
        agent = self.agent or ""
        since = max(self.p_start, self.assigned_at) if self.agent else self.p_start
        # The buyer id rides along: the agent's worker answers GET /api/v1/waiting (`waiting`).
        return Fact(PUT, PENDING, ctx.shop, agent, ctx.conv_hash, self.p_start, since, self.last_ts,
                    ctx.buyer)


SEEN_SMALL = 8  # ids a conversation keeps in a tuple before a set (`Conversation._remember`)
# Shared read-only empties for a conversation's orders, ratings and ad days until their first
# entry. Why: most conversations never get one, and three empty dicts of their own cost 192
# bytes each (of ~2.5 KB an open conversation; docs/optimisations.md, session 12). Typed as the
# dicts they stand in for; a write to one fails loudly (a mapping proxy is read-only), so each
# writer makes the dict its own first (`if not self.orders: self.orders = {}`).
NO_ORDERS = cast(dict[str, OrderRec], MappingProxyType({}))
NO_RATINGS = cast(dict[tuple[str, int], tuple[int, bool]], MappingProxyType({}))
NO_AD_DAYS = cast(dict[int, int], MappingProxyType({}))


class Conversation:
    """De-duplication and reordering around `Core`; the unit stored per conversation key."""

    __slots__ = (
        "ad_days", "base", "buyer", "frozen_before", "head", "marks", "max_ts", "orders",
        "pending", "ratings", "replies", "seen", "session", "shop", "tail",
    )

    def __init__(self, shop: str, buyer: str) -> None:
        self.shop = shop
        self.buyer = buyer
        self.replies: list[Reply] = []  # human replies (ts, agent), for attribution
        self.frozen_before = -1  # orders before this lost replies to pruning: credit kept
        self.orders = NO_ORDERS  # order id -> its record
        self.ratings = NO_RATINGS  # (agent, ts) -> (score, sent)
        self.ad_days = NO_AD_DAYS  # local day start -> first ad ts that day
        self.marks = Marks()  # resolution marks (see `resolution`)
        self.base = Core()
        self.head = self.base
        self.tail: list[tuple[SortKey, ChatEvent, list[Fact]]] = []
        self.max_ts = -1
        self.seen: tuple[str, ...] | set[str] = ()  # ids taken, see `_remember`
        self.pending: Fact | None = None  # the pending record last emitted
        self.session: Fact | None = None  # the open-session record last emitted (`status`)

    def process(self, ev: ChatEvent, ctx: Ctx, out: list[Fact]) -> str:
        """Apply one arriving event; append the fact changes to `out`; return its outcome."""
        if ev.message_id in self.seen:
            return DUPLICATE
        self._remember(ev.message_id)
        start = len(out)
        outcome = self._process_chat(ev, ctx, out)
        ads_changed = marks_changed = False
        internal = False
        for f in out[start:]:
            if f.kind == AD_BUYER:
                ads_changed |= self._mark_ad_day(f, ctx)
            elif f.kind in INTERNAL_KINDS:
                marks_changed |= self.marks.apply_internal(f)
                internal = True
        if internal:  # the state machine's bookkeeping never leaves the conversation
            out[start:] = [f for f in out[start:] if f.kind not in INTERNAL_KINDS]
        if (marks_changed or ads_changed) and self.marks:  # a session start alone: nothing to mark
            self._emit_marks(ctx, out)
        changed = ads_changed
        if ev.sender == "agent" and ev.event == "message" and ev.agent_id is not None:
            bisect.insort(self.replies, (ev.ts, ev.agent_id))
            self._prune_replies(ctx)
            changed = True
        if changed and (self.orders or self.ratings):
            self.reattribute(ctx, out, ads_changed)
        return outcome

    def _remember(self, ident: str) -> None:
        """Take an id for de-duplication: a tuple while there are few, a set past `SEEN_SMALL`.
        Why: most conversations hold a handful of ids, and a set of one costs 216 bytes where a
        tuple costs 64 (a set of eight 728, a tuple 120); a lookup in eight is still cheap."""
        seen = self.seen
        if isinstance(seen, set):
            seen.add(ident)
        else:
            self.seen = (*seen, ident) if len(seen) < SEEN_SMALL else {*seen, ident}

    def _mark_ad_day(self, f: Fact, ctx: Ctx) -> bool:
        """Track ad days for orders and ratings (the state machine only knows the latest)."""
        day = ctx.rules.day_start_ms(f.ts)
        have = self.ad_days.get(day)
        if f.op == DEL:
            if have == f.ts:
                del self.ad_days[day]
                return True
            return False
        if have is None or f.ts < have:
            if not self.ad_days:
                self.ad_days = {}  # its own, not the shared empty
            self.ad_days[day] = f.ts
            return True
        return False

    def is_ad_at(self, ts: int, rules: ShopRules) -> bool:
        """An ad buyer from the first ad message of a local day to that day's end (docs/kpis.md)."""
        since = self.ad_days.get(rules.day_start_ms(ts))
        return since is not None and since <= ts

    def _process_chat(self, ev: ChatEvent, ctx: Ctx, out: list[Fact]) -> str:
        window = ctx.rules.reorder_window_ms
        outcome = LATE if self.max_ts >= 0 and ev.ts < self.max_ts - window else ACCEPTED
        key = (ev.ts, ev.message_id)
        tail = self.tail
        if not tail:
            self.head = self.base.copy()
            made: list[Fact] = []
            self.head.apply(ev, ctx, made)
            tail.append((key, ev, made))
            out.extend(made)
        elif key > tail[-1][0]:
            made = []
            self.head.apply(ev, ctx, made)
            tail.append((key, ev, made))
            out.extend(made)
        else:
            self._replay_with(key, ev, ctx, out)
        if ev.ts > self.max_ts:
            self.max_ts = ev.ts
        self._finalize(ctx)
        return outcome

    def _replay_with(self, key: SortKey, ev: ChatEvent, ctx: Ctx, out: list[Fact]) -> None:
        old: dict[tuple[str, str, int], Fact] = {}
        for _, _, before in self.tail:
            for f in before:
                old[(f.agent, f.kind, f.fid)] = f
        keys = [k for k, _, _ in self.tail]
        self.tail.insert(bisect.bisect(keys, key), (key, ev, []))
        head = self.base.copy()
        new: dict[tuple[str, str, int], Fact] = {}
        rebuilt: list[tuple[SortKey, ChatEvent, list[Fact]]] = []
        for k, e, _ in self.tail:
            made: list[Fact] = []
            head.apply(e, ctx, made)
            rebuilt.append((k, e, made))
            for f in made:
                new[(f.agent, f.kind, f.fid)] = f
        self.tail = rebuilt
        self.head = head
        for ident, f in old.items():
            if new.get(ident) != f:
                out.append(f._replace(op=DEL))
        for ident, f in new.items():
            if old.get(ident) != f:
                out.append(f)

    def _finalize(self, ctx: Ctx) -> None:
        """Fold tail events older than the reorder window into `base`: they can no longer move."""
        horizon = self.max_ts - ctx.rules.reorder_window_ms
        tail = self.tail
        n = 0
        while n < len(tail) and tail[n][0][0] < horizon:
            n += 1
        if n == 0:
            return
        if n == len(tail):
            self.base = self.head  # head is copied before it is next mutated
            self.tail = []
            return
        base = self.base.copy()
        scratch: list[Fact] = []
        for _, e, _ in tail[:n]:
            base.apply(e, ctx, scratch)
        self.base = base
        del tail[:n]

    # -- orders and ratings ------------------------------------------------------------------

    def process_order(self, ev: OrderEvent, ctx: Ctx, out: list[Fact]) -> str:
        ident = f"\x00o{ev.order_id}\x1f{ev.status}\x1f{ev.ts}\x1f{ev.amount}"
        if ident in self.seen:
            return DUPLICATE
        self._remember(ident)
        rec = self.orders.get(ev.order_id)
        if rec is None:
            if not self.orders:
                self.orders = {}  # its own, not the shared empty
            rec = self.orders[ev.order_id] = OrderRec()
        rec.apply(ev)
        self._emit_order(ev.order_id, rec, ctx, out)
        return ACCEPTED

    def process_rating(self, ev: RatingEvent, ctx: Ctx, out: list[Fact]) -> str:
        key = (ev.agent_id, ev.ts)
        if key in self.ratings:
            return DUPLICATE
        if not self.ratings:
            self.ratings = {}  # its own, not the shared empty
        self.ratings[key] = (ev.score, False)
        self._emit_rating(key, ctx, out)
        if ev.resolved is not None:
            self.marks.vote(ev.agent_id, ev.ts, ev.resolved)
            self._emit_marks(ctx, out)
        return ACCEPTED

    def _emit_marks(self, ctx: Ctx, out: list[Fact]) -> None:
        rules = ctx.rules
        self.marks.emit(ctx.shop, ctx.buyer, ctx.buyer_hash,
                        lambda ts: self.is_ad_at(ts, rules), out)

    def _emit_rating(self, key: tuple[str, int], ctx: Ctx, out: list[Fact]) -> None:
        agent, ts = key
        score, sent = self.ratings[key]
        want = not self.is_ad_at(ts, ctx.rules)
        if want == sent:
            return
        fid = stable_hash("rating", ctx.shop, ctx.buyer, agent, str(ts))
        out.append(Fact(PUT if want else DEL, RATING, ctx.shop, agent, fid, ts, score))
        self.ratings[key] = (score, want)

    def reattribute(self, ctx: Ctx, out: list[Fact], ads_changed: bool = True) -> None:
        """Replies or ad days changed: re-credit known orders and re-check ratings."""
        # Only replies changed: an order whose credit is frozen (its replies pruned) has nothing
        # to redo.
        frozen = -1 if ads_changed else self.frozen_before
        for order_id, rec in self.orders.items():
            if rec.at < frozen and rec.credit() is not None:
                continue
            self._emit_order(order_id, rec, ctx, out)
        for key in self.ratings:
            self._emit_rating(key, ctx, out)

    def _emit_order(self, order_id: str, rec: OrderRec, ctx: Ctx, out: list[Fact]) -> None:
        if self.is_ad_at(rec.at, ctx.rules):
            want: dict[tuple[str, str, int], Fact] = {}  # ad buyers are left out of every KPI
        else:
            credit = rec.credit() if rec.at < self.frozen_before else None
            if credit is None:
                credit = attribute(self.replies, rec.at, ctx.rules.attribution_window_ms)
            # else: replies in its span may have been pruned, so the credit it got stands;
            # its later events (a payment, a refund weeks later) still follow it
            want = rec.facts(ctx.shop, ctx.buyer_hash, order_id, *credit)
        have = rec.emitted
        if want == have:
            return
        for ident, f in have.items():
            g = want.get(ident)
            if g is None or g.ts != f.ts:
                # gone, or moved to another time (an earlier `created` or `paid` arrived late):
                # the record lives in the bucket of its ts, so the old one must be deleted there
                out.append(f._replace(op=DEL))
        for ident, f in want.items():
            if have.get(ident) != f:
                out.append(f)
        rec.emitted = want

    def _prune_replies(self, ctx: Ctx) -> None:
        """Keep two attribution windows of replies: enough for orders that lag a day."""
        replies = self.replies
        window = ctx.rules.attribution_window_ms
        horizon = replies[-1][0] - 2 * window
        if replies[0][0] < horizon:
            del replies[: bisect.bisect_left(replies, (horizon, ""))]
            self.frozen_before = max(self.frozen_before, horizon + window)

    # -- retention -------------------------------------------------------------------------------

    def expired(self, now_ms: int, rules: ShopRules) -> bool:
        """Nothing can change any more (see `expires_at`)."""
        return now_ms >= expires_at(*self.activity(), rules)

    def activity(self) -> tuple[int, int | None]:
        """(newest chat or rating ts, newest order event ts or None without orders): all that
        retention looks at, so a conversation kept in compact form keeps just these two."""
        seen = max([self.max_ts, *(ts for _, ts in self.ratings)])
        if not self.orders:
            return seen, None
        return seen, max(rec.last for rec in self.orders.values())

    def close_out(self, ctx: Ctx, now_ms: int, out: list[Fact]) -> None:
        """Before forgetting the conversation: a round still pending has waited too long on its
        agent (materialize the crossing), and stops waiting."""
        head = self.head
        if head.p_start >= 0 and head.p_counted and head.agent is not None:
            since = max(head.p_start, head.assigned_at)
            crossed = since + ctx.rules.unanswered_after_ms
            if crossed <= now_ms:
                fid = stable_hash("unans", ctx.shop, ctx.buyer, head.p_msg, head.agent)
                out.append(Fact(PUT, UNANSWERED, ctx.shop, head.agent, fid, crossed, 0,
                                ctx.buyer_hash))
        if self.pending is not None:
            out.append(self.pending._replace(op=DEL))
            self.pending = None

    def pending_changes(self, ctx: Ctx, out: list[Fact]) -> None:
        """Emit the change of the 'waiting now' record since the last call (once per batch)."""
        self.pending = replace_record(self.head.pending_fact(ctx), self.pending, out)

    @property
    def last_ts(self) -> int:
        return self.head.last_ts
