"""The whole KPI computation in one process, without Kafka: conversations -> facts -> aggregates.

The Faust pipeline runs the same two stages on two sides of a repartition topic; `Engine` is
what the unit and property tests drive, and what `bench` uses to measure the domain cost alone.
`checkpoint`/`restore` stand in for the changelog-backed tables of a crashed worker. Tooling,
not product: no worker imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from streams.domain import conversation_codec
from streams.domain.aggregates import SEP, Aggregates
from streams.domain.facts import Fact, agent_key
from streams.domain.model import AgentSnapshot
from streams.domain.rules import Filters, Lines
from streams.domain.stage1 import ConversationStage, InputEvent, RulesFor

TeamOf = Callable[[str], str]


class Engine:
    """Both stages wired directly, with facts passed through their wire encoding."""

    def __init__(
        self,
        rules_for: RulesFor,
        filters: Filters,
        team_of: TeamOf = lambda _agent: "unassigned",
        lines_for: Callable[[str, str], Lines] | None = None,
        roster_limit: Callable[[str], int | None] | None = None,
    ) -> None:
        self.rules_for = rules_for
        self.filters = filters
        self.team_of = team_of
        self.lines_for = lines_for or (lambda shop, _agent: rules_for(shop).lines)
        self.stage1 = ConversationStage(rules_for, filters)
        self.stage2 = Aggregates(rules_for, self.lines_for, team_of)
        if roster_limit is not None:
            self.stage2.roster_limit = roster_limit
        self.now_ms = 0

    @property
    def outcomes(self) -> dict[str, int]:
        return self.stage1.outcomes

    def feed(self, events: Sequence[InputEvent]) -> list[Fact]:
        facts, _ = self.stage1.process_batch(events)
        wire = [Fact.from_wire(f.shop, f.agent, f.to_wire()) for f in facts]
        self.stage2.apply(wire)
        for ev in events:
            self.now_ms = max(self.now_ms, ev.ts)
        return facts

    def snapshots(self, now_ms: int) -> dict[tuple[str, str], AgentSnapshot]:
        self.stage2.advance(now_ms)
        self.stage2.expire(now_ms)
        return self.stage2.snapshots(now_ms)

    # -- crash simulation ------------------------------------------------------------------------

    def checkpoint(self) -> bytes:
        convs = {k: conversation_codec.encode(c) for k, c in self.stage1.conversations.items()}
        records: dict[str, Any] = {}
        for (shop, agent), st in self.stage2.agents.items():
            akey = agent_key(shop, agent)
            for m in st.buckets:
                records[f"{akey}{SEP}{m}"] = self.stage2.record(f"{akey}{SEP}{m}")
            for day in st.days:
                records[f"{akey}{SEP}d{day}"] = self.stage2.record(f"{akey}{SEP}d{day}")
            for part in ("p", "t", "e", "S", "c"):
                records[f"{akey}{SEP}{part}"] = self.stage2.record(f"{akey}{SEP}{part}")
        return orjson.dumps({"c": convs, "a": records, "o": self.stage1.outcomes},
                            option=orjson.OPT_NON_STR_KEYS)

    @classmethod
    def restore(
        cls,
        blob: bytes,
        rules_for: RulesFor,
        filters: Filters,
        team_of: TeamOf = lambda _agent: "unassigned",
    ) -> Engine:
        eng = cls(rules_for, filters, team_of)
        d = orjson.loads(blob)
        for key, value in d["c"].items():
            ctx = eng.stage1.ctx(*conversation_codec.identity(value))
            eng.stage1.conversations[key] = conversation_codec.decode(value, ctx)
        for key, value in d["a"].items():
            eng.stage2.load(key, value)
        eng.stage1.outcomes.update(d["o"])
        return eng

