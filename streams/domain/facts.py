"""Facts: what a conversation tells the per-agent aggregates.

Conversations are partitioned by buyer, aggregates by agent, so facts cross a repartition topic.
Kafka delivers them at least once and reordering corrections retract earlier ones, so every fact
is an idempotent *upsert* or *delete* of a record with a stable id: applying a fact twice, or a
put then its delete then the put again (a replay), always ends in the same state.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from streams.domain.keys import AGENT_ESC, AGENT_SEP, agent_key, join, split_agent_key

__all__ = ["Fact", "agent_key", "split_agent_key", "stable_hash"]

# Fact kinds
ROUND = "r"  # an answered round: ts = reply ts, a = response ms, b = buyer hash
FIRST = "f"  # an answered first round of a session (also a round)
UNANSWERED = "u"  # a buyer crossed `unanswered_after` while assigned: ts = crossing, b = buyer
AGENT_MSG = "m"  # a human message from the agent (Q/A numerator): ts
BUYER_MSG = "b"  # a buyer message assigned to the agent (Q/A denominator): ts
PENDING = "p"  # a round waiting now: fid = conversation, ts = round start, a = assigned, b = last;
# the only kind that carries `buyer` (the buyer id, for GET /api/v1/waiting: see `waiting`)
AD_BUYER = "x"  # a buyer became an ad buyer (shop level, agent ""): ts
ORDER = "o"  # an order credited to the agent ("" = silent order): ts = created, b = buyer
PAID = "$"  # a credited order was paid: ts = paid, a = amount in 1/10000 units, b = buyer
REFUND = "R"  # a refund of a credited order: ts, a = amount units, b = order
ASSIST = "A"  # the agent helped on an order credited to another agent: ts = created, b = order
RATING = "*"  # a buyer rated the agent: ts, a = score 1..5
EXECUTION = "E"  # supervisor-entered points: fid = period, ts = period start, a = points×100
MARK = "M"  # a session's resolution mark: fid = session, ts, a = 1 resolved / 0 not, b = buyer
# Stage 1's own bookkeeping: made by the state machine, read by the conversation, never sent
# (words, not letters: they share no namespace with the kinds on the wire).
SESSION_STARTED = "started"  # a session started: fid = its start, ts = its start
CLOSE_MARK = "closed"  # a `close` with `resolved`: agent = holder, ts, a = resolved, b = start
INTERNAL_KINDS = frozenset({SESSION_STARTED, CLOSE_MARK})
STATUS = "S"  # an agent status event: ts, a = status code (model.STATUSES), b = max_concurrent
SESSION = "s"  # an open session assigned to the agent: fid = conversation, ts = last activity

MONEY_SCALE = 10_000  # amounts travel as integers of 1/10000 of the shop's currency

PUT = 1
DEL = 0

ROUND_KINDS = frozenset({ROUND, FIRST})


class Fact(NamedTuple):
    """One idempotent record operation, routed to the (shop, agent) aggregate."""

    op: int  # PUT or DEL
    kind: str
    shop: str
    agent: str  # "" = the shop's unassigned queue / shop-level records
    fid: int  # stable 64-bit id of the record within (shop, agent, kind)
    ts: int  # epoch ms that places the record in a minute bucket
    a: int = 0
    b: int = 0
    # The buyer id, on PENDING facts only (see `streams.domain.waiting`): stage 2 holds the
    # agent's waiting list, but buyer ids live only in stage 1's conversations. Empty on
    # every other kind, whose wire row stays the six values it always was.
    buyer_id: str = ""

    # What `a` and `b` mean depends on the kind (the wire keeps two plain ints). These name
    # them; each is only meaningful for the kinds listed (others hold 0 there).

    @property
    def response_ms(self) -> int:
        """ROUND, FIRST: the response time in ms."""
        return self.a

    @property
    def buyer(self) -> int:
        """ROUND, FIRST, UNANSWERED, AGENT_MSG, ORDER, PAID: the buyer's hash."""
        return self.b

    @property
    def order(self) -> int:
        """REFUND, ASSIST: the order's hash."""
        return self.b

    @property
    def amount_units(self) -> int:
        """PAID, REFUND: the amount in 1/MONEY_SCALE of the shop's currency."""
        return self.a

    @property
    def score(self) -> int:
        """RATING: the score, 1..5."""
        return self.a

    @property
    def waiting_since(self) -> int:
        """PENDING: when the agent's wait started (the round start, or a later assignment)."""
        return self.a

    @property
    def last_event_ts(self) -> int:
        """PENDING: the conversation's last event ts (idle conversations stop waiting)."""
        return self.b

    @property
    def points(self) -> float:
        """EXECUTION: the supervisor's points (a holds them ×100)."""
        return self.a / 100

    def deleted(self) -> Fact:
        return self._replace(op=DEL)

    def to_wire(self) -> list[object]:
        row: list[object] = [self.op, self.kind, self.fid, self.ts, self.a, self.b]
        if self.buyer_id:
            row.append(self.buyer_id)  # a seventh value, on PENDING rows only
        return row

    @staticmethod
    def from_wire(shop: str, agent: str, row: list[object]) -> Fact:
        op, kind, fid, ts, a, b = row[:6]
        buyer = str(row[6]) if len(row) > 6 else ""
        return Fact(int(op), str(kind), shop, agent, int(fid), int(ts), int(a), int(b),  # type: ignore[call-overload]
                    buyer)


def replace_record(want: Fact | None, have: Fact | None, out: list[Fact]) -> Fact | None:
    """Move a one-per-conversation record (waiting now, open session) from `have` to `want`.

    The record's id is the conversation, so a put under the same agent overwrites it; under
    another agent (or when it goes) the old one is deleted first. Returns what is held now.
    """
    if want == have:
        return have
    if have is not None and (want is None or want.agent != have.agent):
        out.append(have._replace(op=DEL))
    if want is not None:
        out.append(want)
    return want


def stable_hash(*parts: str) -> int:
    """A 63-bit id that is the same in every process (Python's `hash` is salted per process).

    The parts are joined unambiguously (`keys.join`), so ("a", "b:c") and ("a:b", "c") differ.
    """
    h = hashlib.blake2b(join(parts, AGENT_SEP, AGENT_ESC).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") >> 1


