"""A conversation's changelog record: `encode` to a JSON-able dict, `decode` back.

Why apart from `conversation`: the state machine changes for KPI reasons, the record format
must not — every record already in a changelog is read back by it. Keys are one letter to keep
the record small (one per conversation, rewritten on every batch that touches it):

  k  [shop, buyer]                 identity (keys alone are ambiguous if ids hold ':')
  b  Core fields, in order         the finalized state (`base`)
  t  [event fields...] per event   the reorder tail, replayed on decode
  m  max ts                        s  sorted message ids seen (de-duplication)
  p  [agent, ts, a, b] | null      the 'waiting now' fact last emitted
  r  [[ts, agent]...]              human replies kept for attribution
  o  {order id: OrderRec list}     g  [[agent, ts, score, sent]...] ratings
  ad [[day, since]...]             ad days        fz  frozen_before
  mk resolution marks (only when any)               ss  the open-session record (`status`)
"""

from __future__ import annotations

from typing import Any

from streams.domain import status
from streams.domain.attribution import OrderRec
from streams.domain.conversation import SEEN_SMALL, Conversation, Core, Ctx
from streams.domain.facts import PENDING, PUT, Fact
from streams.domain.model import WORDS, ChatEvent
from streams.domain.resolution import Marks


def encode(c: Conversation) -> dict[str, Any]:
    p = c.pending
    return {
        "k": [c.shop, c.buyer],
        "b": _core_to_list(c.base),
        "t": [_event_to_list(e) for _, e, _ in c.tail],
        "m": c.max_ts,
        "s": sorted(c.seen),
        "p": None if p is None else [p.agent, p.ts, p.a, p.b],
        "r": [list(r) for r in c.replies],
        "o": {k: rec.to_list() for k, rec in c.orders.items()},
        "g": [[a, ts, score, sent] for (a, ts), (score, sent) in c.ratings.items()],
        "ad": [[day, since] for day, since in c.ad_days.items()],
        "fz": c.frozen_before,
        **({"mk": c.marks.to_list()} if c.marks or c.marks.starts else {}),
        "ss": status.session_to_list(c.session),
    }


def identity(d: dict[str, Any]) -> tuple[str, str]:
    """(shop, buyer) of a stored conversation: keys alone are ambiguous if ids hold ':'."""
    return str(d["k"][0]), str(d["k"][1])


def activity(d: dict[str, Any]) -> tuple[int, int | None]:
    """`Conversation.activity` of a record without decoding it: expiry and compaction read
    this of every record restored after a start (a full decode replays the tail too)."""
    seen = max([int(d["m"]), *(int(row[1]) for row in d.get("g", ()))])
    orders = d.get("o")
    if not orders:
        return seen, None
    # OrderRec.last of each, from its `to_list` row: first, paid, cancelled, refunds.
    return seen, max(max([int(v[1]), int(v[2]), int(v[5]), *(int(r[0]) for r in v[4])])
                     for v in orders.values())


def decode(d: dict[str, Any], ctx: Ctx) -> Conversation:
    """The conversation `encode` wrote; the tail is replayed to rebuild `head`."""
    c = Conversation(ctx.shop, ctx.buyer)
    c.base = Core(*d["b"])
    c.max_ts = int(d["m"])
    ids = d["s"]
    c.seen = tuple(ids) if len(ids) <= SEEN_SMALL else set(ids)  # as `Conversation` keeps them
    head = c.base.copy()
    for row in d["t"]:
        e = _event_from_list(row)
        made: list[Fact] = []
        head.apply(e, ctx, made)
        c.tail.append(((e.ts, e.message_id), e, made))
    c.head = head if c.tail else c.base
    c.replies = [(int(ts), str(a)) for ts, a in d.get("r", ())]
    # Empty ones stay the shared empties `Conversation` starts with (its writers copy first).
    if d.get("o"):
        c.orders = {k: OrderRec.from_list(v, ctx.shop) for k, v in d["o"].items()}
    if d.get("g"):
        c.ratings = {(str(a), int(ts)): (int(sc), bool(se)) for a, ts, sc, se in d["g"]}
    if d.get("ad"):
        c.ad_days = {int(day): int(since) for day, since in d["ad"]}
    c.frozen_before = int(d.get("fz", -1))
    p = d.get("p")
    if p is not None:
        c.pending = Fact(PUT, PENDING, ctx.shop, p[0], ctx.conv_hash, p[1], p[2], p[3],
                         ctx.buyer)
    if "mk" in d:
        c.marks = Marks.from_list(d["mk"])
    c.session = status.session_from_list(d.get("ss"), ctx)
    return c


def _core_to_list(core: Core) -> list[Any]:
    return [
        core.session_open, core.last_ts, core.agent, core.assigned_at, core.p_start,
        core.p_msg, core.p_first, core.p_counted, core.rounds_in_session, core.ad_from,
        core.ad_until, core.session_start,
    ]


def _event_to_list(e: ChatEvent) -> list[Any]:
    row = [e.message_id, e.shop_id, e.buyer_id, e.sender, e.agent_id, e.ts, e.event, e.text]
    if e.resolved is not None:
        row.append(e.resolved)
    return row


def _event_from_list(v: list[Any]) -> ChatEvent:
    resolved = v[8] if len(v) > 8 else None
    # sender and kind as the shared strings a freshly decoded event holds (model.WORDS)
    return ChatEvent(v[0], v[1], v[2], WORDS.get(v[3], v[3]), v[4], int(v[5]),
                     WORDS.get(v[6], v[6]), v[7], resolved)
