"""Per-agent aggregates: idempotent records in UTC-minute buckets, and the KPI snapshots.

State is keyed by (shop, agent) and split into records (one per minute bucket, one for the
'waiting now' map, one for the monotone counters) so that a batch rewrites only what it touched.
Every fact is an upsert or delete by id, so redelivered facts change nothing. Buckets older than
the longest window are expired here, not by the wall clock of a framework.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.domain.facts import (
    AD_BUYER,
    AGENT_MSG,
    BUYER_MSG,
    DEL,
    FIRST,
    PENDING,
    ROUND_KINDS,
    UNANSWERED,
    Fact,
    agent_key,
)
from streams.domain.model import LEVELS, QUANTILES, AgentSnapshot, WindowKpis
from streams.domain.rules import MINUTE_MS, Lines, ShopRules
from streams.domain.windows import (
    HISTOGRAM_BUCKETS,
    histogram_index,
    nearest_rank,
    retention_start,
    window_starts,
)

RulesFor = Callable[[str], ShopRules]
LinesFor = Callable[[str, str], Lines]  # (shop, agent) -> lines
TeamOf = Callable[[str], str]

SEP = "\x1e"


class Bucket:
    """The records of one agent in one UTC minute."""

    __slots__ = ("ads", "amsg", "bmsg", "rounds", "unans")

    def __init__(self) -> None:
        self.rounds: dict[int, tuple[int, int, bool]] = {}  # fid -> (response ms, buyer, first)
        self.unans: dict[int, int] = {}  # fid -> buyer
        self.amsg: set[int] = set()
        self.bmsg: set[int] = set()
        self.ads: set[int] = set()

    def empty(self) -> bool:
        return not (self.rounds or self.unans or self.amsg or self.bmsg or self.ads)

    def to_json(self) -> dict[str, Any]:
        return {
            "r": [[k, *v] for k, v in self.rounds.items()],
            "u": [[k, v] for k, v in self.unans.items()],
            "m": list(self.amsg),
            "b": list(self.bmsg),
            "x": list(self.ads),
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> Bucket:
        b = Bucket()
        b.rounds = {int(r[0]): (int(r[1]), int(r[2]), bool(r[3])) for r in d.get("r", ())}
        b.unans = {int(k): int(v) for k, v in d.get("u", ())}
        b.amsg = {int(x) for x in d.get("m", ())}
        b.bmsg = {int(x) for x in d.get("b", ())}
        b.ads = {int(x) for x in d.get("x", ())}
        return b


@dataclass(slots=True)
class Totals:
    """Counters for SLO burn rates: exact, and monotone so `rate()` never sees a fake reset.

    A round is counted once its reply is older than the reorder window: until then a late
    event may still retract or change it, and a counter must never go down.
    """

    rounds: int = 0
    within: list[int] = field(default_factory=lambda: [0, 0, 0])
    hist: list[int] = field(default_factory=lambda: [0] * len(HISTOGRAM_BUCKETS))
    sum_ms: int = 0
    uncounted: dict[int, tuple[int, int]] = field(default_factory=dict)  # fid -> (ts, ms)

    def to_json(self) -> list[Any]:
        pending = [[k, ts, ms] for k, (ts, ms) in self.uncounted.items()]
        return [self.rounds, self.within, self.hist, self.sum_ms, pending]

    @staticmethod
    def from_json(v: list[Any]) -> Totals:
        hist = list(v[2]) + [0] * (len(HISTOGRAM_BUCKETS) - len(v[2]))
        pending = {int(r[0]): (int(r[1]), int(r[2])) for r in (v[4] if len(v) > 4 else ())}
        return Totals(int(v[0]), list(v[1]), hist, int(v[3]), pending)


class AgentState:
    __slots__ = ("buckets", "pending", "totals")

    def __init__(self) -> None:
        self.buckets: dict[int, Bucket] = {}
        self.pending: dict[int, tuple[int, int, int]] = {}  # conversation -> (start, since, last)
        self.totals = Totals()


class Aggregates:
    """All (shop, agent) aggregates one worker owns; pure and persistence-agnostic.

    `apply` returns nothing; the caller reads `take_dirty()` to persist changed records and
    `expire()` to learn which records to delete.
    """

    def __init__(self, rules_for: RulesFor, lines_for: LinesFor, team_of: TeamOf) -> None:
        self.rules_for = rules_for
        self.lines_for = lines_for
        self.team_of = team_of
        self.agents: dict[tuple[str, str], AgentState] = {}
        self._dirty: set[str] = set()
        self.dirty_agents: set[tuple[str, str]] = set()
        self._floor: dict[str, int] = {}  # shop -> first minute still kept
        self.late_facts = 0
        self.now_ms = 0  # advanced by `advance`; rounds older than now − reorder are counted

    # -- applying facts ------------------------------------------------------------------------

    def apply(self, facts: Iterable[Fact]) -> None:
        for f in facts:
            self._apply(f)

    def _state(self, shop: str, agent: str) -> AgentState:
        st = self.agents.get((shop, agent))
        if st is None:
            st = self.agents[(shop, agent)] = AgentState()
        return st

    def _apply(self, f: Fact) -> None:
        ident = (f.shop, f.agent)
        st = self._state(f.shop, f.agent)
        akey = agent_key(f.shop, f.agent)
        self.dirty_agents.add(ident)
        if f.kind == PENDING:
            if f.op == DEL:
                st.pending.pop(f.fid, None)
            else:
                st.pending[f.fid] = (f.ts, f.a, f.b)
            self._dirty.add(akey + SEP + "p")
            return
        minute = f.ts // MINUTE_MS
        if minute < self._floor.get(f.shop, -1):
            self.late_facts += 1
            return
        bucket = st.buckets.get(minute)
        if bucket is None:
            if f.op == DEL:
                return
            bucket = st.buckets[minute] = Bucket()
        self._dirty.add(f"{akey}{SEP}{minute}")
        kind = f.kind
        if kind in ROUND_KINDS:
            uncounted = st.totals.uncounted
            if f.op == DEL:
                bucket.rounds.pop(f.fid, None)
                if uncounted.pop(f.fid, None) is not None:
                    self._dirty.add(akey + SEP + "t")
                return
            if f.fid not in bucket.rounds or f.fid in uncounted:
                if f.ts <= self.now_ms - self.rules_for(f.shop).reorder_window_ms:
                    uncounted.pop(f.fid, None)
                    self._count(st, f.shop, f.agent, f.a)
                else:
                    uncounted[f.fid] = (f.ts, f.a)
                    self._dirty.add(akey + SEP + "t")
            bucket.rounds[f.fid] = (f.a, f.b, kind == FIRST)
        elif kind == UNANSWERED:
            if f.op == DEL:
                bucket.unans.pop(f.fid, None)
            else:
                bucket.unans[f.fid] = f.b
        else:
            target = {AGENT_MSG: bucket.amsg, BUYER_MSG: bucket.bmsg, AD_BUYER: bucket.ads}[kind]
            if f.op == DEL:
                target.discard(f.fid)
            else:
                target.add(f.fid)

    def _count(self, st: AgentState, shop: str, agent: str, rt_ms: int) -> None:
        t = st.totals
        seconds = rt_ms / 1000
        lines = self.lines_for(shop, agent)
        t.rounds += 1
        t.sum_ms += rt_ms
        for i, line in enumerate((lines.warning, lines.critical, lines.slow)):
            if seconds <= line:
                t.within[i] += 1
        t.hist[histogram_index(seconds)] += 1
        self._dirty.add(agent_key(shop, agent) + SEP + "t")

    def advance(self, now_ms: int) -> None:
        """Move *now* forward and count the rounds that can no longer be corrected."""
        if now_ms <= self.now_ms:
            return
        self.now_ms = now_ms
        for (shop, agent), st in self.agents.items():
            uncounted = st.totals.uncounted
            if not uncounted:
                continue
            horizon = now_ms - self.rules_for(shop).reorder_window_ms
            ready = [fid for fid, (ts, _) in uncounted.items() if ts <= horizon]
            for fid in ready:
                _, ms = uncounted.pop(fid)
                self._count(st, shop, agent, ms)
            if ready:
                self.dirty_agents.add((shop, agent))

    # -- persistence -----------------------------------------------------------------------------

    def take_dirty(self) -> dict[str, Any]:
        """Changed records since the last call: key -> JSON-able value, or None to delete."""
        out: dict[str, Any] = {}
        for key in self._dirty:
            out[key] = self.record(key)
        self._dirty.clear()
        return out

    def record(self, key: str) -> Any:
        akey, _, part = key.rpartition(SEP)
        shop, _, agent = akey.partition("\x1f")
        st = self.agents.get((shop, agent))
        if st is None:
            return None
        if part == "p":
            return [[k, *v] for k, v in st.pending.items()] if st.pending else None
        if part == "t":
            return st.totals.to_json()
        bucket = st.buckets.get(int(part))
        return None if bucket is None or bucket.empty() else bucket.to_json()

    def load(self, key: str, value: Any) -> None:
        """Restore one record read back from the changelog."""
        akey, _, part = key.rpartition(SEP)
        shop, _, agent = akey.partition("\x1f")
        if value is None:
            st0 = self.agents.get((shop, agent))
            if st0 is not None and part not in ("p", "t"):
                st0.buckets.pop(int(part), None)
            return
        st = self._state(shop, agent)
        if part == "p":
            st.pending = {int(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in value}
        elif part == "t":
            st.totals = Totals.from_json(value)
        else:
            st.buckets[int(part)] = Bucket.from_json(value)
        self.dirty_agents.add((shop, agent))

    def drop(self, keep: Callable[[str, str], bool]) -> None:
        """Forget the agents a rebalance took away (their owner now exports them)."""
        for ident in [i for i in self.agents if not keep(*i)]:
            del self.agents[ident]
            self.dirty_agents.discard(ident)

    def expire(self, now_ms: int) -> list[str]:
        """Drop buckets no window needs any more; return their record keys (to delete)."""
        gone: list[str] = []
        for (shop, agent), st in self.agents.items():
            floor = retention_start(now_ms, self.rules_for(shop)) // MINUTE_MS
            self._floor[shop] = floor
            old = [m for m in st.buckets if m < floor]
            if old:
                akey = agent_key(shop, agent)
                for m in old:
                    del st.buckets[m]
                    gone.append(f"{akey}{SEP}{m}")
                self.dirty_agents.add((shop, agent))
        return gone

    # -- snapshots -------------------------------------------------------------------------------

    def snapshot(self, shop: str, agent: str, now_ms: int) -> AgentSnapshot | None:
        st = self.agents.get((shop, agent))
        if st is None:
            return None
        rules = self.rules_for(shop)
        lines = self.lines_for(shop, agent)
        team = self.team_of(agent) if agent else "unassigned"
        snap = AgentSnapshot(shop=shop, agent=agent, team=team)
        starts = window_starts(now_ms, rules)
        now_minute = now_ms // MINUTE_MS
        unans_after = rules.unanswered_after_ms
        crossings: list[tuple[int, int]] = []  # (crossing ms, buyer) of rounds still pending
        if agent:
            for buyer, (_start, since, _last) in st.pending.items():
                crossing = since + unans_after
                if crossing <= now_ms:
                    crossings.append((crossing, buyer))
        any_data = False
        for window, start in starts.items():
            first_minute = start // MINUTE_MS
            w = WindowKpis()
            rts: list[int] = []
            frts: list[int] = []
            replied: set[int] = set()
            received: set[int] = set()
            for m, b in st.buckets.items():
                if m < first_minute or m > now_minute:
                    continue
                for rt, buyer, first in b.rounds.values():
                    rts.append(rt)
                    replied.add(buyer)
                    if first:
                        frts.append(rt)
                received.update(b.unans.values())
                w.agent_messages += len(b.amsg)
                w.buyer_messages += len(b.bmsg)
            for crossing, buyer in crossings:
                if crossing >= start:
                    received.add(buyer)
            received |= replied
            w.rounds = len(rts)
            w.first_rounds = len(frts)
            w.replied = len(replied)
            w.received = len(received)
            if rts:
                rts.sort()
                w.rt_mean = sum(rts) / len(rts) / 1000
                w.rt_quantiles = {q: nearest_rank(rts, q) / 1000 for q in QUANTILES}
                levels = (lines.warning, lines.critical, lines.slow)
                for level, line in zip(LEVELS, levels, strict=True):
                    limit = line * 1000
                    w.within[level] = sum(1 for v in rts if v <= limit)
            else:
                w.within = dict.fromkeys(LEVELS, 0)
            if frts:
                frts.sort()
                w.frt_mean = sum(frts) / len(frts) / 1000
                w.frt_quantiles = {q: nearest_rank(frts, q) / 1000 for q in QUANTILES}
            if w.rounds or w.received or w.agent_messages or w.buyer_messages:
                any_data = True
            snap.windows[window] = w
        idle = rules.session_idle_ms
        oldest: int | None = None
        for start, _since, last in st.pending.values():
            if now_ms - last <= idle:
                snap.waiting += 1
                if oldest is None or start < oldest:
                    oldest = start
        snap.oldest_wait_since_ms = oldest
        t = st.totals
        snap.rounds_total = t.rounds
        snap.within_total = dict(zip(LEVELS, t.within, strict=True))
        cumulative = 0
        for le, n in zip(HISTOGRAM_BUCKETS, t.hist, strict=True):
            cumulative += n
            snap.histogram[le] = cumulative
        snap.response_seconds_sum = t.sum_ms / 1000
        if not (any_data or snap.waiting or t.rounds):
            return None
        return snap

    def snapshots(self, now_ms: int) -> dict[tuple[str, str], AgentSnapshot]:
        out: dict[tuple[str, str], AgentSnapshot] = {}
        for shop, agent in self.agents:
            snap = self.snapshot(shop, agent, now_ms)
            if snap is not None:
                out[(shop, agent)] = snap
        return out

    def ad_buyers(self, shop: str, now_ms: int) -> dict[str, int]:
        """Distinct ad buyers flagged per window for a shop (kept under agent "")."""
        st = self.agents.get((shop, ""))
        res = dict.fromkeys(window_starts(now_ms, self.rules_for(shop)), 0)
        if st is None:
            return res
        for window, start in window_starts(now_ms, self.rules_for(shop)).items():
            seen: set[int] = set()
            for m, b in st.buckets.items():
                if start // MINUTE_MS <= m <= now_ms // MINUTE_MS:
                    seen |= b.ads
            res[window] = len(seen)
        return res
