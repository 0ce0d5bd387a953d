"""`GET /api/v1/waiting?shop=&agent=&limit=`: who is waiting now, longest first.

The endpoint is described in docs/interfaces.md.

The drill-down behind a red tile. It is the only surface that shows buyer ids, which is why it
always needs a token (`auth.Tokens.buyer_readers`) and why nothing here feeds `/metrics`, the
agents API or the board's pushed state. The waits come computed from the domain
(`streams.domain.waiting`); this module only parses the query and shapes the JSON.

One worker answers for the agents it owns, with every buyer waiting on them (the PENDING
records reach the agent's worker with the buyer id, whichever worker holds the conversation).
The whole room is every worker's answer put together, as for the scorecard report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streams.domain.waiting import WaitingBuyer

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "WaitingError", "WaitingQuery", "document", "parse_query"]

DEFAULT_LIMIT = 1_000
MAX_LIMIT = 10_000  # a shop queue in an outage can hold thousands; the answer stays bounded
MAX_ID_CHARS = 256  # longer than any id the input accepts


class WaitingError(ValueError):
    """A bad query parameter: a 400 naming it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    def body(self) -> dict[str, str]:
        return {"error": str(self), "field": self.field}


@dataclass(frozen=True, slots=True)
class WaitingQuery:
    shop: str | None  # None = every shop
    agent: str | None  # None = every agent and queue; "" = the shop's unassigned queue
    limit: int


def parse_query(query: Mapping[str, str]) -> WaitingQuery:
    """`shop` and `agent` as given (an empty `agent=` is the queue, an absent one is "all")."""
    shop = query.get("shop")
    agent = query.get("agent")
    for name, value in (("shop", shop), ("agent", agent)):
        if value is not None and len(value) > MAX_ID_CHARS:
            raise WaitingError(name, f"{name}: longer than {MAX_ID_CHARS} characters")
    if shop == "":
        shop = None  # `?shop=` from a form left empty: no filter (a shop id is never empty)
    raw = query.get("limit")
    limit = DEFAULT_LIMIT
    if raw is not None:
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise WaitingError("limit", f"limit: a whole number from 1 to {MAX_LIMIT}")
        limit = int(raw)
    return WaitingQuery(shop, agent, limit)


def document(rows: list[WaitingBuyer], q: WaitingQuery, now_ms: int, clock: str) -> dict[str, Any]:
    """The JSON answer: *now* (the worker's clock, which the waits are measured against), the
    filter, how many wait in all, and the longest `limit` of them."""
    shown = rows[: q.limit]
    return {
        "now": now_ms / 1000,
        "clock": clock,
        "filter": {"shop": q.shop, "agent": q.agent},
        "total": len(rows),
        "truncated": len(rows) > len(shown),
        "waiting": [
            {
                "shop": w.shop,
                "agent": w.agent,
                "queue": w.agent == "",
                "buyer": w.buyer,
                "since": w.since_ms / 1000,
                "wait_seconds": w.wait_ms / 1000,
            }
            for w in shown
        ],
    }
