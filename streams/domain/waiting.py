"""Who is waiting now: the buyers behind a tile's "waiting" count (GET /api/v1/waiting).

*Waiting now* (docs/kpis.md): per agent, the buyers with a pending counted round assigned to that
agent (unassigned ones: the shop queue), each waiting `now − round start`. The count on the
wall-board comes from the same records (`AgentState.pending`, fed by PENDING facts), so the
list answers exactly the tile it drills into.

Where the list comes from, and why there. Buyer ids exist only in stage 1's conversations,
which are partitioned by buyer; the waiting records live in stage 2, partitioned by agent. A
worker's conversations are therefore not its agents' buyers: answered from stage 1, a list for
one agent would need every worker. So the PENDING fact carries the buyer id to the agent's
worker (`Fact.buyer_id`, a seventh value on PENDING rows only), stage 2 keeps it beside the record
(`AgentState.buyers`, persisted in the agent's `…p` record), and the worker that shows a tile
holds the complete list for it. The cost: buyer ids also travel on the internal facts topic
and sit in the aggregates changelog (the conversations changelog held them already), and a
PENDING row is a few bytes longer.

This module computes the waits (exporters compute no KPIs) and applies the same rule as the
tile's count: a record whose conversation has been silent longer than `session_idle` no
longer counts as waiting.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.domain.aggregates import Aggregates
from streams.domain.limits import label

__all__ = ["WaitingBuyer", "waiting_now"]


@dataclass(frozen=True, slots=True)
class WaitingBuyer:
    """One buyer waiting now, as the drill-down shows them."""

    shop: str
    agent: str  # as exporters show it (`limits.label`); "" = the shop's unassigned queue
    buyer: str | None  # None: recorded before PENDING facts carried the buyer id
    since_ms: int  # the pending round's start (the buyer's first unanswered message)
    wait_ms: int  # now − since_ms, never negative


def waiting_now(
    aggs: Aggregates,
    now_ms: int,
    shop: str | None = None,
    agent: str | None = None,
) -> list[WaitingBuyer]:
    """The buyers waiting now among the worker's aggregates, longest wait first.

    `shop` / `agent` filter (None = any; `agent=""` is the shop queue, matched against the
    label exporters show, so an over-limit tile's `over_limit/p3` works too). Ties keep a
    stable order (shop, agent, buyer): two calls at the same *now* list the same rows.
    """
    out: list[WaitingBuyer] = []
    for (s, a), st in aggs.agents.items():
        if shop is not None and s != shop:
            continue
        shown = label(a)
        if agent is not None and shown != agent:
            continue
        if not st.pending:
            continue
        idle = aggs.rules_for(s).session_idle_ms
        for conv, (start, _since, last) in st.pending.items():
            if now_ms - last > idle:  # the tile's rule (`Aggregates.snapshot`)
                continue
            out.append(WaitingBuyer(s, shown, st.buyers.get(conv), start, max(0, now_ms - start)))
    out.sort(key=lambda w: (-w.wait_ms, w.since_ms, w.shop, w.agent, w.buyer or ""))
    return out
