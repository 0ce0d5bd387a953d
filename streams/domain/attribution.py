"""Order attribution (docs/kpis.md): which agent sold it, who assisted, or a silent order.

By event time: an order created at T goes to the agent who last sent the buyer a human reply in
[T − attribution_window, T]; every other agent who replied in that span gets an assist. The
reply history and the order lifecycle live with the conversation (same partition), and the
facts are recomputed whenever either changes, so an order that arrives before or after the
chat around it ends up credited the same way.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from streams.domain.facts import ASSIST, MONEY_SCALE, ORDER, PAID, PUT, REFUND, Fact, stable_hash
from streams.domain.model import OrderEvent

Reply = tuple[int, str]  # (ts, agent)


def to_units(amount: Decimal) -> int:
    """Money as an exact integer of 1/10000 units (no binary-float drift in sums)."""
    return int((amount * MONEY_SCALE).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def attribute(replies: list[Reply], t: int, window_ms: int) -> tuple[str, tuple[str, ...]]:
    """(credited agent, assisting agents) for an order at `t`; ("", ()) is a silent order.

    `replies` is sorted by (ts, agent). The latest reply at or before `t` wins; on equal ts the
    larger agent id, so the choice never depends on arrival order.
    """
    lo = bisect.bisect_left(replies, (t - window_ms, ""))
    hi = bisect.bisect_right(replies, (t, "\U0010ffff"))
    if lo >= hi:
        return "", ()
    credited = replies[hi - 1][1]
    assists = tuple(sorted({a for _, a in replies[lo:hi]} - {credited}))
    return credited, assists


@dataclass(slots=True)
class OrderRec:
    """What is known of one order's lifecycle."""

    created: int = -1
    first: int = -1  # earliest event ts: the attribution time when `created` never arrives
    paid_ts: int = -1
    paid_units: int = 0
    refunds: list[tuple[int, int]] = field(default_factory=list)
    cancelled: int = -1
    emitted: dict[tuple[str, str, int], Fact] = field(default_factory=dict)

    @property
    def at(self) -> int:
        return self.created if self.created >= 0 else self.first

    @property
    def last(self) -> int:
        return max([self.first, self.paid_ts, self.cancelled, *(ts for ts, _ in self.refunds)])

    def apply(self, ev: OrderEvent) -> None:
        ts = ev.ts
        if self.first < 0 or ts < self.first:
            self.first = ts
        if ev.status == "created":
            if self.created < 0 or ts < self.created:
                self.created = ts
        elif ev.status == "paid":
            if self.paid_ts < 0 or ts < self.paid_ts:
                self.paid_ts, self.paid_units = ts, to_units(ev.amount)
        elif ev.status == "refunded":
            self.refunds.append((ts, to_units(ev.amount)))
        elif ev.status == "cancelled":
            self.cancelled = ts

    def credit(self) -> tuple[str, tuple[str, ...]] | None:
        """(credited agent, assisting agents) of the records last emitted for the current
        attribution time; None if there are none (not emitted yet, left out as an ad buyer's,
        or the time has moved since: a late `created` event)."""
        credited: str | None = None
        assists: list[str] = []
        for (agent, kind, _), f in self.emitted.items():
            if kind == ORDER:
                if f.ts != self.at:
                    return None
                credited = agent
            elif kind == ASSIST:
                assists.append(agent)
        return None if credited is None else (credited, tuple(sorted(assists)))

    def facts(
        self, shop: str, buyer_hash: int, order_id: str, credited: str, assists: tuple[str, ...]
    ) -> dict[tuple[str, str, int], Fact]:
        """The records this order implies for the aggregates, by (agent, kind, fid): an order's
        ORDER and PAID records share the order's id."""
        out: dict[tuple[str, str, int], Fact] = {}
        t = self.at
        ohash = stable_hash("order", shop, order_id)

        def add(f: Fact) -> None:
            out[(f.agent, f.kind, f.fid)] = f

        add(Fact(PUT, ORDER, shop, credited, ohash, t, 0, buyer_hash))
        if self.paid_ts >= 0:
            add(Fact(PUT, PAID, shop, credited, ohash, self.paid_ts, self.paid_units, buyer_hash))
        for ts, units in self.refunds:
            fid = stable_hash("refund", shop, order_id, str(ts), str(units))
            add(Fact(PUT, REFUND, shop, credited, fid, ts, units, ohash))
        for agent in assists:
            add(Fact(PUT, ASSIST, shop, agent, ohash, t, 0, ohash))
        return out

    def to_list(self) -> list[Any]:
        return [
            self.created, self.first, self.paid_ts, self.paid_units,
            [list(r) for r in self.refunds], self.cancelled,
            [[*f.to_wire(), f.agent] for f in self.emitted.values()],
        ]

    @staticmethod
    def from_list(v: list[Any], shop: str) -> OrderRec:
        rec = OrderRec(int(v[0]), int(v[1]), int(v[2]), int(v[3]),
                       [(int(a), int(b)) for a, b in v[4]], int(v[5]))
        for row in v[6]:
            f = Fact.from_wire(shop, str(row[6]), row[:6])
            rec.emitted[(f.agent, f.kind, f.fid)] = f
        return rec
