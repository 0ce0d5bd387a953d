"""Agent status and load (在线时长 / 接待量 / 饱和度): docs/kpis.md "Status and load".

Stage 1 (per conversation, or stateless for status events) makes two idempotent fact kinds:

- `STATUS`: one per `kefu.agents` event, id = hash of (shop, agent, ts, status, limit). It
  needs no stage-1 state: the same event always makes the same fact, so a replay after a
  crash re-sends an identical record.
- `SESSION`: the conversation's *open session assigned to an agent*, one record per
  conversation (id = the conversation hash, like `PENDING`), PUT at the assigned agent with
  the last activity ts, DEL when the session closes, moves to another agent, or becomes an ad
  buyer's. Stage 2 closes it by itself once idle past `session_idle` (it must carry the exact
  last activity for that). Volume: re-sent when the record changes, at most once per
  conversation per stage-1 batch (`session_changes` runs once per touched conversation, like
  the 'waiting now' record), so ≤ 1 extra fact per chat event and far fewer with real batches.
  No DEL when stage 1 forgets an expired conversation: its session went idle long before, and
  stage 2 forgets idle sessions by itself.

Stage 2 keeps per agent an `AgentLoad`: the status events since the retention floor, the
agent's human-message times (from `AGENT_MSG` facts: a reply while `away`/`offline` makes the
agent `online`, and any event resets the offline assumption), and the open sessions. The
timeline before the floor is folded into a *carry* (status and last activity at the floor),
so the state stays a day's worth of events. Pure Python, no Faust.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streams.domain.facts import DEL, PUT, SESSION, STATUS, Fact, replace_record, stable_hash
from streams.domain.model import STATUSES, AgentSnapshot, AgentStatusEvent
from streams.domain.rules import MINUTE_MS, ShopRules
from streams.domain.windows import window_starts

if TYPE_CHECKING:
    from streams.domain.conversation import Conversation, Core, Ctx

ONLINE, BUSY, AWAY, OFFLINE = range(4)  # codes = indexes into model.STATUSES
NONE = -1  # no status event yet
# Status events with the same ts apply in this order, so the last one wins whatever the
# arrival order: the most available status is believed (a console that sends "away" and
# "online" in the same millisecond is taken as online).
TIE_RANK = {OFFLINE: 0, AWAY: 1, BUSY: 2, ONLINE: 3}
DEFAULT_MAX_CONCURRENT = 10
OFFLINE_AFTER_IDLE = 6  # offline is assumed after session_idle × this without any event

# -- stage 1 -------------------------------------------------------------------------------------


def status_fact(ev: AgentStatusEvent) -> Fact:
    """The record of one status event, routed to the agent's aggregate."""
    limit = ev.max_concurrent or 0
    fid = stable_hash("status", ev.shop_id, ev.agent_id, str(ev.ts), ev.status, str(limit))
    return Fact(PUT, STATUS, ev.shop_id, ev.agent_id, fid, ev.ts, STATUSES.index(ev.status),
                limit)


def session_fact(core: Core, ctx: Ctx) -> Fact | None:
    """The open-session record this conversation state implies, if any.

    Open = a buyer message opened it and no `close` ended it since (stage 2 applies the idle
    rule); assigned = an agent holds it; ad buyers are left out of every KPI.
    """
    if not core.session_open or core.agent is None or core.is_ad(core.last_ts):
        return None
    return Fact(PUT, SESSION, ctx.shop, core.agent, ctx.conv_hash, core.last_ts)


def session_changes(conv: Conversation, ctx: Ctx, out: list[Fact]) -> None:
    """Emit the change of the open-session record since the last call (once per batch)."""
    conv.session = replace_record(session_fact(conv.head, ctx), conv.session, out)


def session_to_list(f: Fact | None) -> list[Any] | None:
    return None if f is None else [f.agent, f.ts]


def session_from_list(v: list[Any] | None, ctx: Ctx) -> Fact | None:
    return None if not v else Fact(PUT, SESSION, ctx.shop, str(v[0]), ctx.conv_hash, int(v[1]))


# -- stage 2 -------------------------------------------------------------------------------------

Limit = tuple[int, int, int]  # (ts, tie rank, max_concurrent) of a status event carrying one


@dataclass(slots=True)
class AgentLoad:
    """Status timeline and open sessions of one agent (two changelog records: `S` and `c`)."""

    events: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # fid -> (ts, code, lim)
    replies: dict[int, dict[int, int]] = field(default_factory=dict)  # minute -> {rec key: ts}
    sessions: dict[int, int] = field(default_factory=dict)  # conversation -> last activity ts
    floor: int = -1  # ms before which the timeline is folded into the carry
    carry_status: int = NONE
    carry_last: int = -1  # last activity at or before the floor (-1 = none)
    carry_limit: Limit = (-1, -1, 0)
    _sorted: list[int] | None = None  # cache: reply times, ascending
    # cache: the timeline walked so far, (gap, cut, intervals, status, last activity) over all
    # activity up to `cut` (see `timeline`); dropped when activity at or before `cut` changes.
    _memo: tuple[int, int, list[tuple[int, int]], int, int] | None = None

    def has_status(self) -> bool:
        """Whether the agent ever sent a status event still in effect or retained: such an
        agent is shown even with no chat data (an online agent waiting for buyers)."""
        return bool(self.events) or self.carry_status != NONE

    # facts ------------------------------------------------------------------------------------

    def _changed_at(self, ts: int) -> None:
        """Activity at `ts` changed: a walked timeline that reached it is no longer right."""
        memo = self._memo
        if memo is not None and ts <= memo[1]:
            self._memo = None

    def apply_status(self, f: Fact) -> bool:
        """Apply a STATUS fact; False when it lies before the folded floor (late)."""
        if f.ts < self.floor:
            return False
        old = self.events.get(f.fid)  # a record re-sent with another ts moves from there
        self._changed_at(f.ts if old is None else min(f.ts, old[0]))
        if f.op == DEL:
            self.events.pop(f.fid, None)
        else:
            self.events[f.fid] = (f.ts, f.a, f.b)
        return True

    def apply_session(self, f: Fact) -> None:
        if f.op == DEL:
            self.sessions.pop(f.fid, None)
        else:
            self.sessions[f.fid] = f.ts

    def apply_reply(self, op: int, key: int, ts: int) -> None:
        """An AGENT_MSG record (key = its bucket key) put or deleted at `ts`."""
        minute = ts // MINUTE_MS
        if op == DEL:
            recs = self.replies.get(minute)
            if recs is not None and recs.pop(key, None) is not None:
                self._sorted = None
                self._changed_at(ts)
                if not recs:
                    del self.replies[minute]
            return
        recs = self.replies.setdefault(minute, {})
        if key in recs:
            return
        recs[key] = ts
        self._changed_at(ts)
        cache = self._sorted
        if cache is not None:
            if not cache or ts >= cache[-1]:
                cache.append(ts)  # the usual case: the newest reply
            else:
                bisect.insort(cache, ts)  # a little out of order (two partitions, a reorder)

    def load_replies(self, minute: int, times: dict[int, int] | None) -> None:
        """A minute bucket restored from the changelog (None = deleted)."""
        if times:
            self.replies[minute] = times
        else:
            self.replies.pop(minute, None)
        self._sorted = None
        self._memo = None

    def reply_times(self) -> list[int]:
        if self._sorted is None:
            self._sorted = sorted(ts for recs in self.replies.values() for ts in recs.values())
        return self._sorted

    # the timeline -----------------------------------------------------------------------------

    def _activity(self, after: int, upto: int) -> Iterator[tuple[int, int, int]]:
        """(ts, order, code) of the agent's events in (after, upto], in the order they apply:
        replies (code NONE) before status events of the same ts."""
        status = sorted((ts, 1 + TIE_RANK[code], code)
                        for ts, code, _ in self.events.values() if after < ts <= upto)
        times = self.reply_times()
        lo = bisect.bisect_right(times, after)
        hi = bisect.bisect_right(times, upto)
        if not status:
            return ((t, 0, NONE) for t in times[lo:hi])
        return heapq.merge(((t, 0, NONE) for t in times[lo:hi]), status)

    def timeline(self, upto: int, gap_ms: int) -> tuple[list[tuple[int, int]], int, int]:
        """(intervals [(start ms, code)], status at `upto`, last activity) from the floor.

        Each interval lasts until the next one starts (the last until `upto`). The walk is
        kept (`_memo`) up to the last activity it passed, so the next call walks only what came
        after: a snapshot costs the new replies, not the day's (docs/optimisations.md).
        """
        memo = self._memo
        if memo is not None and memo[0] == gap_ms and memo[1] <= upto:
            _, after, walked, cur, last = memo
            out = walked.copy()
        else:
            # Everything from the floor: status events are never before it (folded), replies
            # before it are the carry's.
            after, cur, last = self.floor - 1, self.carry_status, self.carry_last
            out = [(self.floor, cur)] if cur != NONE else []
        cut = after
        for ts, _, code in self._activity(after, upto):
            if cur not in (NONE, OFFLINE) and ts - last > gap_ms:
                cur = OFFLINE
                out.append((last + gap_ms, OFFLINE))
            if code != NONE:
                cur = code
                out.append((ts, code))
            elif cur in (AWAY, OFFLINE):  # a reply: the console lost an "online"
                cur = ONLINE
                out.append((ts, ONLINE))
            last = cut = ts
        self._memo = (gap_ms, cut, out.copy(), cur, last)
        if cur not in (NONE, OFFLINE) and upto - last > gap_ms:
            cur = OFFLINE
            out.append((last + gap_ms, OFFLINE))
        return out, cur, last

    def limit(self, upto: int) -> int:
        """max_concurrent of the latest status event carrying one (0 = none)."""
        best = self.carry_limit
        for ts, code, lim in self.events.values():
            if lim and ts <= upto and (ts, TIE_RANK[code], lim) > best:
                best = (ts, TIE_RANK[code], lim)
        return best[2]

    def open_sessions(self, now: int, idle_ms: int) -> int:
        return sum(1 for last in self.sessions.values() if now - last <= idle_ms)

    # retention --------------------------------------------------------------------------------

    def fold(self, floor: int, gap_ms: int, now: int, idle_ms: int) -> bool:
        """Fold the timeline before `floor` into the carry and drop idle sessions; True when
        the stored records change."""
        stale = [fid for fid, last in self.sessions.items() if now - last > idle_ms]
        for fid in stale:  # stage 1 never says "idle": the session is over, forget it
            del self.sessions[fid]
        changed = bool(stale)
        if floor <= self.floor:
            return changed
        _, cur, last = self.timeline(floor - 1, gap_ms)
        if cur not in (NONE, OFFLINE) and floor - last > gap_ms:
            cur = OFFLINE
        limit = self.carry_limit
        for fid, (ts, code, lim) in list(self.events.items()):
            if ts < floor:
                if lim and (ts, TIE_RANK[code], lim) > limit:
                    limit = (ts, TIE_RANK[code], lim)
                del self.events[fid]
                changed = True
        for minute in [m for m in self.replies if m * MINUTE_MS < floor]:
            del self.replies[minute]
        self._sorted = None
        # The floor alone moving needs no write: windows never reach before it, and a restored
        # older floor folds the same way again. Only a changed carry does.
        before = (self.carry_status, self.carry_last if self.carry_status != NONE else -1,
                  self.carry_limit)
        changed |= before != (cur, last if cur != NONE else -1, limit)
        self.floor, self.carry_status, self.carry_last, self.carry_limit = floor, cur, last, limit
        self._memo = None  # walked from the old floor and carry
        return changed

    # persistence ------------------------------------------------------------------------------

    def status_record(self) -> Any:
        if not self.events and self.carry_status == NONE and not self.carry_limit[2]:
            return None
        return {"f": [self.floor, self.carry_status, self.carry_last, list(self.carry_limit)],
                "e": [[fid, ts, code, lim] for fid, (ts, code, lim) in self.events.items()]}

    def load_status(self, value: Any) -> None:
        self._memo = None
        if value is None:
            self.events = {}
            self.floor, self.carry_status, self.carry_last = -1, NONE, -1
            self.carry_limit = (-1, -1, 0)
            return
        floor, cur, last, limit = value["f"]
        self.floor, self.carry_status, self.carry_last = int(floor), int(cur), int(last)
        self.carry_limit = (int(limit[0]), int(limit[1]), int(limit[2]))
        self.events = {int(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in value["e"]}

    def sessions_record(self) -> Any:
        return [[k, v] for k, v in self.sessions.items()] if self.sessions else None

    def load_sessions(self, value: Any) -> None:
        self.sessions = {int(k): int(v) for k, v in value or ()}


def gap_ms(rules: ShopRules) -> int:
    return rules.session_idle_ms * OFFLINE_AFTER_IDLE


def fill(snap: AgentSnapshot, load: AgentLoad, rules: ShopRules, now: int,
         roster_limit: int | None) -> None:
    """Status and load fields of a snapshot at `now` (exporters only read them)."""
    intervals, cur, _ = load.timeline(now, gap_ms(rules))
    snap.status = None if cur == NONE else STATUSES[cur]
    snap.status_seconds = {w: seconds_in(intervals, start, now)
                           for w, start in window_starts(now, rules).items()}
    snap.concurrent = load.open_sessions(now, rules.session_idle_ms)
    snap.max_concurrent = load.limit(now) or roster_limit or DEFAULT_MAX_CONCURRENT
    snap.occupancy = snap.concurrent / snap.max_concurrent


def seconds_in(intervals: list[tuple[int, int]], start: int, end: int) -> dict[str, float]:
    """Seconds in each status within [start, end] (exact: summed in ms)."""
    ms = [0] * len(STATUSES)
    for i, (begin, code) in enumerate(intervals):
        until = intervals[i + 1][0] if i + 1 < len(intervals) else end
        overlap = min(until, end) - max(begin, start)
        if overlap > 0:
            ms[code] += overlap
    return {name: ms[i] / 1000 for i, name in enumerate(STATUSES)}


def next_change(load: AgentLoad, rules: ShopRules, after: int) -> int | None:
    """When time alone next changes the status or the load: the offline assumption, a session
    going idle, or a status event dated ahead of *now* (wall clock)."""
    due: list[int] = []
    _, cur, last = load.timeline(after, gap_ms(rules))
    if cur not in (NONE, OFFLINE):
        due.append(last + gap_ms(rules) + 1)
    idle = rules.session_idle_ms
    due.extend(last_ + idle + 1 for last_ in load.sessions.values())
    due.extend(ts for ts, _, _ in load.events.values())
    later = [t for t in due if t > after]
    return min(later) if later else None

