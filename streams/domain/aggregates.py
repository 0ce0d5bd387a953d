"""Per-agent aggregates: idempotent records in UTC-minute buckets, and the KPI snapshots.

State is keyed by (shop, agent) and split into records (one per minute bucket, one for the
'waiting now' map, one for the monotone counters) so that a batch rewrites only what it touched.
Every fact is an upsert or delete by id, so redelivered facts change nothing. Buckets older than
the longest window are expired here, not by the wall clock of a framework. The per-agent state
is `agent_state.AgentState`; its changelog records are written and read by `aggregates_codec`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from streams.domain import aggregates_codec, status
from streams.domain.agent_state import AgentState
from streams.domain.buckets import Bucket, Summary, record_key
from streams.domain.facts import (
    AGENT_MSG,
    DEL,
    EXECUTION,
    PENDING,
    ROUND_KINDS,
    SESSION,
    STATUS,
    Fact,
)
from streams.domain.keys import RECORD_SEP, agent_key, split_agent_key
from streams.domain.model import LEVELS, SUMMABLE, AgentSnapshot, WindowKpis
from streams.domain.rules import DAY_MS, MINUTE_MS, Lines, ShopRules
from streams.domain.window_kpis import Prefix, window_kpis
from streams.domain.windows import (
    HISTOGRAM_BUCKETS,
    histogram_index,
    month_start_ms,
    retention_start,
    window_starts,
)

RulesFor = Callable[[str], ShopRules]
LinesFor = Callable[[str, str], Lines]  # (shop, agent) -> lines
TeamOf = Callable[[str], str]

NOTHING = Prefix(Summary())  # an agent with no bucket: no paid buyer
SEP = RECORD_SEP  # agent key + SEP + record name (a minute, "d<day>", "p", "t", "e", "S", "c")


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
        # Fills targets and scorecards (streams.domain.scorecard); None in response-only tests.
        self.scoring: Callable[[AgentSnapshot, dict[int, float], int], None] | None = None
        # The roster's max_concurrent of an agent (None = not set); see streams.domain.status.
        self.roster_limit: Callable[[str], int | None] = lambda _agent: None

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
                st.buyers.pop(f.fid, None)
            else:
                st.pending[f.fid] = (f.ts, f.a, f.b)
                if f.buyer_id:
                    st.buyers[f.fid] = f.buyer_id
            self._dirty.add(akey + SEP + "p")
            return
        if f.kind == STATUS or f.kind == SESSION:
            if f.kind == SESSION:
                st.load.apply_session(f)
                self._dirty.add(akey + SEP + "c")
            elif st.load.apply_status(f):
                self._dirty.add(akey + SEP + "S")
            else:
                self.late_facts += 1
            return
        if f.kind == EXECUTION:
            if f.op == DEL:
                st.execution.pop(f.ts, None)
            else:
                st.execution[f.ts] = f.a / 100
            self._dirty.add(akey + SEP + "e")
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
        bucket.summary = None
        st.hours.pop(minute // 60, None)
        if st.prefix and any(first <= minute <= last for first, last in st.prefix):
            st.prefix.clear()  # a late fact or a correction inside a cached range
        kind = f.kind
        key = record_key(kind, f.fid)
        recs = bucket.recs
        if kind in ROUND_KINDS:
            uncounted = st.totals.uncounted
            if f.op == DEL:
                recs.pop(key, None)
                if uncounted.pop(f.fid, None) is not None:
                    self._dirty.add(akey + SEP + "t")
                return
            if key not in recs or f.fid in uncounted:
                if f.ts <= self.now_ms - self.rules_for(f.shop).reorder_window_ms:
                    uncounted.pop(f.fid, None)
                    self._count(st, f.shop, f.agent, f.a)
                else:
                    uncounted[f.fid] = (f.ts, f.a)
                    self._dirty.add(akey + SEP + "t")
        if kind == AGENT_MSG:  # its ms within the minute (a is unused): the status timeline
            st.load.apply_reply(f.op, key, f.ts)
            f = f._replace(a=f.ts - minute * MINUTE_MS)
        if f.op == DEL:
            recs.pop(key, None)
        else:
            recs[key] = (kind, f.a, f.b)

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
            if st.totals.uncounted:
                self._count_settled(st, shop, agent)

    def hold_back(self, now_ms: int) -> None:
        """Move *now* for counting back (never below 0): rounds it had not counted wait until
        `advance` passes them again. Counted rounds stay counted; counters never go down."""
        self.now_ms = min(self.now_ms, max(now_ms, 0))

    def _count_settled(self, st: AgentState, shop: str, agent: str) -> None:
        """Count the agent's uncounted rounds that are older than now − reorder window."""
        uncounted = st.totals.uncounted
        horizon = self.now_ms - self.rules_for(shop).reorder_window_ms
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
        """The changelog value of one record (see `aggregates_codec`); None: delete it."""
        akey, _, part = key.rpartition(SEP)
        shop, agent = split_agent_key(akey)
        st = self.agents.get((shop, agent))
        if st is None:
            return None
        return aggregates_codec.encode(st, part)

    def load(self, key: str, value: Any) -> None:
        """Restore one record read back from the changelog."""
        akey, _, part = key.rpartition(SEP)
        shop, agent = split_agent_key(akey)
        if value is None:
            st0 = self.agents.get((shop, agent))
            if st0 is not None:
                aggregates_codec.delete(st0, part)
            return
        st = self._state(shop, agent)
        aggregates_codec.decode(st, part, value)
        if part == "t":
            # Rounds the writer had not counted yet (its *now* was earlier: another worker's
            # clock, or a tick that had not come yet). `advance` only looks again when *now*
            # moves forward, so those already settled by this *now* are counted here, or never.
            self._count_settled(st, shop, agent)
        self.dirty_agents.add((shop, agent))

    def drop(self, keep: Callable[[str, str], bool]) -> None:
        """Forget the agents a rebalance took away (their owner now exports them)."""
        for ident in [i for i in self.agents if not keep(*i)]:
            del self.agents[ident]
            self.dirty_agents.discard(ident)

    def expire(self, now_ms: int) -> list[str]:
        """Close finished days into summaries and drop what no window needs; return the keys
        of deleted records.

        A day's minute buckets are kept until an hour after it ends (the 1h window at 00:30
        still reaches back into yesterday), then summed into one record per day: month KPIs
        come from at most ~31 small summaries per agent, not from events.
        """
        gone: list[str] = []
        for (shop, agent), st in self.agents.items():
            rules = self.rules_for(shop)
            floor = retention_start(now_ms, rules) // MINUTE_MS
            self._floor[shop] = floor
            akey = agent_key(shop, agent)
            if st.load.fold(floor * MINUTE_MS, status.gap_ms(rules), now_ms, rules.session_idle_ms):
                self._dirty.update((akey + SEP + "S", akey + SEP + "c"))
                self.dirty_agents.add((shop, agent))
            old = [m for m in st.buckets if m < floor]
            if old:
                for day in sorted({rules.day_start_ms(m * MINUTE_MS) for m in old}):
                    if day not in st.days:
                        end = rules.day_start_ms(day + 26 * 3_600_000)
                        st.days[day] = self._window(
                            st, shop, agent, day, end - 1, now_ms, lines=self.lines_for(shop, agent)
                        )
                        self._dirty.add(f"{akey}{SEP}d{day}")
                for m in old:
                    del st.buckets[m]
                    st.hours.pop(m // 60, None)
                    gone.append(f"{akey}{SEP}{m}")
                st.prefix.clear()
                self.dirty_agents.add((shop, agent))
            month = month_start_ms(now_ms, rules)
            for day in [d for d in st.days if d < month - 3 * DAY_MS]:
                del st.days[day]
                gone.append(f"{akey}{SEP}d{day}")
        return gone

    # -- snapshots -------------------------------------------------------------------------------

    def _parts(self, st: AgentState, first_minute: int, last_minute: int
               ) -> tuple[Prefix, Summary | None]:
        """The agent's buckets in [first_minute, last_minute] as (finished minutes, current one).

        New facts land in the current minute, so everything before it is merged and sorted once
        and cached (`prefix`); a refresh reads that and the last minute's own summary as they
        are (`window_kpis`), without merging them.
        """
        if last_minute <= first_minute:
            return Prefix(self._merged(st, first_minute, last_minute)), None
        key = (first_minute, last_minute - 1)
        pre = st.prefix.get(key)
        if pre is None:
            pre = st.prefix.pop((first_minute, last_minute - 2), None)
            if pre is not None:  # a fixed start (today): the minute that just ended joins it
                b = st.buckets.get(last_minute - 1)
                if b is not None:
                    pre.extend(b.summarize())
            else:
                pre = Prefix(self._merged(st, first_minute, last_minute - 1))
            if len(st.prefix) > 8:  # keys of minutes gone by
                for old in [k for k in st.prefix if k[1] < last_minute - 1]:
                    del st.prefix[old]
            st.prefix[key] = pre
        b = st.buckets.get(last_minute)
        return pre, None if b is None else b.summarize()

    def prepare_turn(self, shop: str, agent: str, now_ms: int) -> None:
        """Build now the finished-minutes part of the agent's sliding windows as the next
        minute will need it, so that the minute's turn only adds the minute that ended.

        Why: at each minute's turn every agent's 5m and 1h windows slide, and their first
        snapshot after it merged up to an hour of minutes again (~0.4 ms an agent, all agents
        at once: the latency tail). Prepared during the minute (the runtime does it with time
        left over), the turn finds the prefix [start of next window, this minute − 1] cached
        and extends it by this minute in place (`_parts`). A fact landing in a prepared range
        clears it like any cached prefix, so the result is the same either way.
        """
        st = self.agents.get((shop, agent))
        if st is None or not st.buckets:
            return
        minute = now_ms // MINUTE_MS
        first_bucket = min(st.buckets)
        for start in window_starts((minute + 1) * MINUTE_MS, self.rules_for(shop)).values():
            first = max(start // MINUTE_MS, first_bucket)
            if first < minute:
                self._parts(st, first, minute)

    def _merged(self, st: AgentState, first_minute: int, last_minute: int) -> Summary:
        """Whole hours that are over come from the hour cache; the rest minute by minute."""
        total = Summary()
        buckets = st.buckets
        now_hour = self.now_ms // MINUTE_MS // 60
        m = first_minute
        while m <= last_minute:
            hour = m // 60
            if m % 60 == 0 and m + 59 <= last_minute and hour < now_hour:
                hs = st.hours.get(hour)
                if hs is None:
                    hs = Summary()
                    for mm in range(m, m + 60):
                        b = buckets.get(mm)
                        if b is not None:
                            b.summarize_into(hs)
                    st.hours[hour] = hs.seal()
                total.merge(hs)
                m += 60
                continue
            b = buckets.get(m)
            if b is not None:
                total.merge(b.summarize())
            m += 1
        return total

    def _paid(self, st: AgentState, now_ms: int, first: int | None = None
              ) -> tuple[Prefix, Summary | None]:
        """Everything still retained: conversion counts buyers who paid an order credited to
        this agent at any time in it."""
        if not st.buckets:
            return NOTHING, None
        return self._parts(st, min(st.buckets) if first is None else first, now_ms // MINUTE_MS)

    def _window(
        self,
        st: AgentState,
        shop: str,
        agent: str,
        start: int,
        end: int,
        now_ms: int,
        lines: Lines,
        paid: tuple[Prefix, Summary | None] | None = None,
        first_bucket: int | None = None,
    ) -> WindowKpis:
        """Every KPI of one agent over [start, end] (epoch ms, minute-aligned start)."""
        last_minute = min(end, now_ms) // MINUTE_MS
        first_minute = start // MINUTE_MS
        if st.buckets:
            first = min(st.buckets) if first_bucket is None else first_bucket
            first_minute = max(first_minute, first)
        pre, tail = self._parts(st, first_minute, last_minute)
        crossing: set[int] = set()
        if agent and st.pending:
            # Waiting buyers become "received" once unanswered for `unanswered_after`.
            unans_after, until = self.rules_for(shop).unanswered_after_ms, min(end, now_ms)
            crossing = {buyer for buyer, (_start, since, _last) in st.pending.items()
                        if start <= since + unans_after <= until}
        if paid is None:
            paid = self._paid(st, now_ms)
        return window_kpis(pre, tail, crossing, paid, lines)

    def snapshot(self, shop: str, agent: str, now_ms: int) -> AgentSnapshot | None:
        st = self.agents.get((shop, agent))
        if st is None:
            return None
        rules = self.rules_for(shop)
        lines = self.lines_for(shop, agent)
        team = self.team_of(agent) if agent else "unassigned"
        snap = AgentSnapshot(shop=shop, agent=agent, team=team)
        first = min(st.buckets) if st.buckets else None
        paid_buyers = self._paid(st, now_ms, first)
        any_data = False
        for window, start in window_starts(now_ms, rules).items():
            w = self._window(st, shop, agent, start, now_ms, now_ms, lines, paid_buyers, first)
            if any(getattr(w, name) for name in SUMMABLE):
                any_data = True
            snap.windows[window] = w
        month_start = month_start_ms(now_ms, rules)
        today_start = rules.day_start_ms(now_ms)
        month = WindowKpis(within=dict.fromkeys(LEVELS, 0))
        for day, summary in st.days.items():
            if month_start <= day < today_start:
                month.add(summary)
        yesterday = rules.day_start_ms(today_start - 3_600_000)
        if month_start <= yesterday and yesterday not in st.days and st.buckets:
            # 00:00–01:00: yesterday is still in minute buckets, not yet a day summary
            month.add(self._window(st, shop, agent, yesterday, today_start - 1, now_ms, lines,
                                   paid_buyers, first))
        month.add(snap.windows["today"])
        snap.month = month
        snap.month_rt_mean = month.rt_sum_ms / month.rounds / 1000 if month.rounds else None
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
        if agent and self.scoring is not None:
            self.scoring(snap, st.execution, now_ms)
        if agent:
            status.fill(snap, st.load, rules, now_ms, self.roster_limit(agent))
        month_data = any(getattr(month, name) for name in SUMMABLE)
        if not (any_data or snap.waiting or t.rounds or month_data or st.load.has_status()):
            return None
        return snap

    def next_change(self, shop: str, agent: str, after_ms: int) -> int | None:
        """When this agent's snapshot next changes with time alone (no new facts), if ever.

        Between facts only waiting buyers move it: one becomes "received" once unanswered
        for `unanswered_after`, and stops counting as waiting after `session_idle`; and the
        status and load (an assumed offline, a session going idle: `status.next_change`).
        (Window edges move every minute, when every agent is re-snapshotted anyway.)
        """
        st = self.agents.get((shop, agent))
        if st is None:
            return None
        rules = self.rules_for(shop)
        after_unanswered, idle = rules.unanswered_after_ms, rules.session_idle_ms
        due = status.next_change(st.load, rules, after_ms) if agent else None
        for _start, since, last in st.pending.values():
            for t in (since + after_unanswered, last + idle + 1):
                if t > after_ms and (due is None or t < due):
                    due = t
        return due

    def snapshots(self, now_ms: int) -> dict[tuple[str, str], AgentSnapshot]:
        out: dict[tuple[str, str], AgentSnapshot] = {}
        for shop, agent in self.agents:
            snap = self.snapshot(shop, agent, now_ms)
            if snap is not None:
                out[(shop, agent)] = snap
        return out

    def ad_buyers(self, shop: str, now_ms: int) -> dict[str, int]:
        """Distinct ad buyers flagged per window for a shop (kept under agent "")."""
        starts = window_starts(now_ms, self.rules_for(shop))
        st = self.agents.get((shop, ""))
        if st is None:
            return dict.fromkeys(starts, 0)
        last = now_ms // MINUTE_MS
        out: dict[str, int] = {}
        for w, start in starts.items():
            pre, tail = self._parts(st, start // MINUTE_MS, last)
            ads = pre.summary.ads
            out[w] = len(ads) + (len(tail.ads - ads) if tail is not None else 0)
        return out
