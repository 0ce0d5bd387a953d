"""Cardinality bound: at most `max_agents` (shop, agent) pairs and `max_shops` shops per worker.

Why: every pair costs ~170 series on `/metrics`, memory for its windows and a wall-board tile.
20,000 agents (a misconfigured producer, or an attacker minting agent ids) made `/metrics`
300 MB and the worker 1.3 GiB; a Prometheus with `sample_limit` then dropped the whole target,
and `KefuWorkerDown` silenced every KPI alert. So pairs past the cap get no series of their
own, but nothing they do is lost from their shop:

- Their facts go to one *over-limit* aggregate per (shop, partition): exported with
  `team="over_limit"`, `agent="over_limit/p<partition>"`, so `sum by (shop)` stays exact. Record
  ids and buyer/order hashes are re-hashed with the original agent, so the over-limit aggregate
  counts exactly what the agents would have counted apart (distinct buyers stay distinct per
  agent, payments still meet their own orders).
- Their waiting buyers are waiting on the over-limit series, so `KefuBuyerWaiting` still pages
  (not in the shop queue: that aggregate lives in another partition, maybe on another worker).
- Shops past `max_shops` fold the same way into the shop `""` (no real shop id is empty), and
  so do over-limit aggregates past `max_agents // 10`: a worker holds at most 1.1 × max_agents
  series sets (plus the shop queues), which is what `sample_limit` in `deploy/` is sized for.
- The over-limit aggregate lives in the partition its facts came from, so a rebalance moves it
  with them (one per partition keeps the changelog record where its facts are).

`over` remembers the pairs sent past the cap (reported as `kefu_agents_over_limit`), so one
pair's facts never split between its own series and the over-limit one while it stays past
the cap. Plain Python: the caller says which partition a pair lives in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from streams.domain.facts import (
    ASSIST,
    EXECUTION,
    FIRST,
    ORDER,
    PAID,
    REFUND,
    ROUND,
    UNANSWERED,
    Fact,
    stable_hash,
)

__all__ = [
    "OVER_LIMIT_TEAM",
    "AgentLimits",
    "is_overflow",
    "label",
    "overflow_agent",
    "overflow_partition",
]

OVER_LIMIT_TEAM = "over_limit"
_PREFIX = "\x00over_limit/p"  # a control character: no real agent id can look like this
# Kinds whose `b` is a buyer or order hash (re-hashed per agent); elsewhere `b` is a time.
HASHED_B = frozenset({ROUND, FIRST, UNANSWERED, ORDER, PAID, REFUND, ASSIST})
MAX_REMEMBERED = 100_000  # pairs remembered as over the limit (memory stays bounded)


def overflow_agent(partition: int) -> str:
    return f"{_PREFIX}{partition}"


def is_overflow(agent: str) -> bool:
    return agent.startswith(_PREFIX)


def overflow_partition(agent: str) -> int | None:
    """The partition an over-limit aggregate belongs to; None for a real agent."""
    if not agent.startswith(_PREFIX):
        return None
    return int(agent[len(_PREFIX):])


def label(agent: str) -> str:
    """The agent as exporters show it (`over_limit/p3` for an over-limit aggregate)."""
    return agent[1:] if agent.startswith(_PREFIX) else agent


class AgentLimits:
    """Routes facts of pairs past the caps to the over-limit aggregates (see module doc)."""

    def __init__(self, max_agents: int, max_shops: int) -> None:
        self.max_agents = max_agents
        self.max_shops = max_shops
        # Over-limit aggregates (one per shop and partition) are capped too, so a worker never
        # holds more than 1.1 × max_agents series sets: beyond, they fold into shop "".
        self.max_spill = max(16, max_agents // 10)
        self.over: set[tuple[str, str]] = set()
        self.over_shops: set[str] = set()

    def route(
        self,
        facts: Iterable[Fact],
        held: Mapping[tuple[str, str], Any],
        partition_of: Callable[[str, str], int],
    ) -> list[Fact]:
        """The facts as the aggregates should apply them; `held` is the live aggregates."""
        out: list[Fact] = []
        counts: tuple[set[tuple[str, str]], set[str], set[tuple[str, str]]] | None = None
        over = self.over
        for f in facts:
            ident = (f.shop, f.agent)
            if ident in held and ident not in over:
                out.append(f)
                continue
            if counts is None:  # only when a pair is new: count what is held
                pairs = {k for k in held if k[1] and not is_overflow(k[1])}
                shops = {k[0] for k in held if k[0]}
                spill = {k for k in held if is_overflow(k[1])}
                counts = (pairs, shops, spill)
            pairs, shops, spill = counts
            if ident not in over and self._admit(f.shop, f.agent, pairs, shops):
                out.append(f)
                continue
            rerouted = self._reroute(f, shops, spill, partition_of)
            if rerouted is not None:
                out.append(rerouted)
        return out

    def _admit(self, shop: str, agent: str, pairs: set[tuple[str, str]], shops: set[str]) -> bool:
        if shop not in shops:
            if shop in self.over_shops or len(shops) >= self.max_shops:
                self._remember_shop(shop)
                return False
            shops.add(shop)
        if not agent or (shop, agent) in pairs:
            return True
        if len(pairs) >= self.max_agents:
            self._remember((shop, agent))
            return False
        pairs.add((shop, agent))
        return True

    def _reroute(
        self, f: Fact, shops: set[str], spill: set[tuple[str, str]],
        partition_of: Callable[[str, str], int],
    ) -> Fact | None:
        shop_ok = f.shop in shops and f.shop not in self.over_shops
        if f.agent:
            self._remember((f.shop, f.agent))
        if f.kind == EXECUTION:
            return None  # points for an agent without a scorecard of its own
        tag = f"{f.shop}\x00{f.agent}"
        fid = stable_hash("over", tag, str(f.fid))
        agent = overflow_agent(partition_of(f.shop, f.agent))
        shop = f.shop if shop_ok else ""
        if shop and (shop, agent) not in spill:
            if len(spill) >= self.max_spill:
                shop = ""  # over-limit series are bounded too: the rest fold into shop ""
            spill.add((shop, agent))
        b = stable_hash("over", tag, str(f.b)) if f.b and f.kind in HASHED_B else f.b
        return f._replace(shop=shop, agent=agent, fid=fid, b=b)

    def _remember(self, ident: tuple[str, str]) -> None:
        if ident not in self.over and len(self.over) < MAX_REMEMBERED:
            self.over.add(ident)

    def _remember_shop(self, shop: str) -> None:
        if shop not in self.over_shops and len(self.over_shops) < MAX_REMEMBERED:
            self.over_shops.add(shop)
