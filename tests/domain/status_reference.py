"""Reference (test oracle) of status and load: 在线时长 / 接待量 / 饱和度 (docs/kpis.md).

Written from the definitions, with no incremental state, no retention floor and no carry: the
whole history of every agent is kept and walked at every question.

1. An agent's *events* are its status events (de-duplicated by their content) and its human
   messages to non-ad buyers (the Q/A messages of tests/domain/reference.py, so replies while
   an ad buyer is one are not the agent's activity, as for every other KPI).
2. Sorted by ts; at one ts the replies come first, then status events in the order
   offline, away, busy, online (so the most available status of one instant wins).
3. Walking them: a status event sets the status; a reply while `away` or `offline` sets
   `online`; before the first status event there is no status. Between two consecutive events
   (and after the last one, up to now) that lie more than G = 6 × session_idle apart, a status
   other than `offline` turns `offline` at (earlier event + G).
4. Seconds in a status within a window [lo, now] = the length of the time in it, exact in ms.
5. Concurrent buyers now: conversations (de-duplicated, walked in (ts, message_id)) whose
   session was opened by a buyer message and not closed since, whose current agent is the
   agent, whose last event is no more than session_idle before now, and whose buyer is not an
   ad buyer at that last event.
6. max_concurrent: of the status event with the largest (ts, rank of rule 2, value) among
   those carrying one, else the roster's, else 10; occupancy = concurrent / max_concurrent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from streams.domain.model import STATUSES, AgentStatusEvent, ChatEvent
from streams.domain.rules import Filters, ShopRules
from tests.domain.reference import dedup, walk, window_bounds

RulesFor = Callable[[str], ShopRules]
ORDER = ("offline", "away", "busy", "online")  # rule 2: later wins at one ts


@dataclass
class StatusKpis:
    status: str | None
    seconds: dict[str, dict[str, float]]  # window -> status -> seconds
    concurrent: int
    max_concurrent: int
    occupancy: float


def _events_of(
    statuses: list[AgentStatusEvent], replies: list[int], now: int
) -> list[tuple[int, int, str | None]]:
    """(ts, order, status or None for a reply), rule 2's order, up to now."""
    out: list[tuple[int, int, str | None]] = [(ts, 0, None) for ts in replies if ts <= now]
    out += [(e.ts, 1 + ORDER.index(e.status), e.status) for e in statuses if e.ts <= now]
    return sorted(out, key=lambda x: (x[0], x[1]))


def _pieces(events: list[tuple[int, int, str | None]], now: int, gap: int
            ) -> tuple[list[tuple[int, int, str]], str | None]:
    """Rule 3: [(from, to, status)] pieces of time, and the status at now."""
    pieces: list[tuple[int, int, str]] = []
    status: str | None = None
    for i, (ts, _, new) in enumerate(events):
        if new is not None:
            status = new
        elif status in ("away", "offline"):
            status = "online"
        nxt = events[i + 1][0] if i + 1 < len(events) else now
        if status is None:
            continue
        if nxt - ts > gap and status != "offline":
            pieces.append((ts, ts + gap, status))
            pieces.append((ts + gap, nxt, "offline"))
            status = "offline"
        else:
            pieces.append((ts, nxt, status))
    return pieces, status


def _concurrent(chat: list[ChatEvent], rules_for: RulesFor, filters: Filters, now: int
                ) -> dict[tuple[str, str], int]:
    convs: dict[tuple[str, str], list[ChatEvent]] = {}
    for e in chat:
        convs.setdefault((e.shop_id, e.buyer_id), []).append(e)
    out: dict[tuple[str, str], int] = {}
    for (shop, buyer), evs in convs.items():
        rules = rules_for(shop)
        evs.sort(key=lambda e: (e.ts, e.message_id))
        is_open, agent = False, None
        for e in evs:
            if e.event == "close":
                is_open, agent = False, None
            elif e.event == "transfer":
                agent = e.agent_id
            elif e.sender == "buyer":
                is_open = True
                agent = e.agent_id
        last = evs[-1]
        day = rules.day_start_ms(last.ts)
        ad = any(rules.day_start_ms(e.ts) == day and (
            buyer in filters.block_list or (e.sender == "buyer" and filters.is_ad(buyer, e.text)))
            for e in evs)
        if is_open and agent is not None and now - last.ts <= rules.session_idle_ms and not ad:
            out[(shop, agent)] = out.get((shop, agent), 0) + 1
    return out


def status_reference(
    chat: Iterable[ChatEvent],
    statuses: Iterable[AgentStatusEvent],
    rules_for: RulesFor,
    filters: Filters,
    now: int,
    roster: Callable[[str], int | None] = lambda _agent: None,
) -> dict[tuple[str, str], StatusKpis]:
    """Status and load of every agent that has a status event, a reply or an open session."""
    chat = dedup(chat)
    trace = walk(chat, rules_for, filters, now)
    replies: dict[tuple[str, str], list[int]] = {}
    for m in trace.messages:
        if m.kind == "agent":
            replies.setdefault((m.shop, m.agent), []).append(m.ts)
    by_agent: dict[tuple[str, str], list[AgentStatusEvent]] = {}
    for ev in set(statuses):
        by_agent.setdefault((ev.shop_id, ev.agent_id), []).append(ev)
    concurrent = _concurrent(chat, rules_for, filters, now)
    out: dict[tuple[str, str], StatusKpis] = {}
    for key in sorted(set(replies) | set(by_agent) | set(concurrent)):
        rules = rules_for(key[0])
        own = by_agent.get(key, [])
        pieces, status = _pieces(_events_of(own, replies.get(key, []), now), now,
                                 6 * rules.session_idle_ms)
        seconds = {}
        for window, (lo, hi) in window_bounds(rules, now).items():
            ms = dict.fromkeys(STATUSES, 0)
            for a, b, s in pieces:
                ms[s] += max(0, min(b, hi) - max(a, lo))
            seconds[window] = {s: v / 1000 for s, v in ms.items()}
        limited = [(e.ts, ORDER.index(e.status), e.max_concurrent) for e in own
                   if e.max_concurrent is not None and e.ts <= now]
        limit = max(limited)[2] if limited else (roster(key[1]) or 10)
        n = concurrent.get(key, 0)
        out[key] = StatusKpis(status, seconds, n, limit, n / limit)
    return out
