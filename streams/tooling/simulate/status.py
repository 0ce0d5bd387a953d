"""Who is at their console when: agent status events (`kefu.agents`) and the router's view.

A profile with `status_events` gets a small, fixed script, because a support manager reads
status against load and the demo should show both move: everyone signs in at the start of the
run; one agent per shop starts late; one per shop takes a short `busy` stint every 20 minutes
(the router sends them no new buyers meanwhile, but they answer the ones they have); and the
profile's incident agent goes `away` while the router, wrongly, keeps sending them buyers.
Everything is a function of time, so an endless live run needs no growing state and the same
seed gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import orjson

from streams.tooling.simulate.model import SimAgent, SimMessage
from streams.tooling.simulate.profile import Profile

Status = Literal["online", "busy", "away", "offline"]
STINT_PERIOD_MS = 20 * 60_000
LATE_JOIN_S = 40.0  # the late agent of shop i signs in this long (+15 s per shop) after live start


@dataclass(frozen=True, slots=True)
class _Role:
    """What the script does with one agent: nothing, a late sign-in, stints, or the incident."""

    late_ms: int | None = None  # sign-in time (absolute); offline before
    stint_offset_ms: int | None = None  # first busy stint start, relative to the live start
    stint_ms: int = 0
    incident: bool = False


class StatusPlan:
    """The status script of one run; `events` yields its records, the rest answer questions."""

    def __init__(
        self,
        profile: Profile,
        agents: tuple[SimAgent, ...],
        index_of: dict[str, tuple[int, int]],
        start_ms: int,
        live_start_ms: int,
    ) -> None:
        self.profile = profile
        self.agents = agents
        self.index_of = index_of
        self.start_ms = start_ms
        self.live_ms = live_start_ms
        self.roles: dict[str, _Role] = {}
        inc = profile.incident
        self.incident_agent: SimAgent | None = None
        self.away_ms = self.back_ms = 0
        if inc is not None:
            self.away_ms = live_start_ms + int(inc.away_s * 1000)
            self.back_ms = live_start_ms + int(inc.back_s * 1000)
        per_shop: dict[int, int] = {}
        for a in agents:
            i, j = index_of[a.id]
            per_shop[i] = max(per_shop.get(i, 0), j + 1)
        for a in agents:
            i, j = index_of[a.id]
            n = per_shop[i]
            if inc is not None and (i, j) == (inc.shop_index, inc.agent_index):
                self.incident_agent = a
                self.roles[a.id] = _Role(incident=True)
            elif n >= 6 and j == n - 1:  # the last of the shop signs in late
                self.roles[a.id] = _Role(late_ms=live_start_ms + int((LATE_JOIN_S + 15 * i) * 1000))
            elif n >= 6 and j == n - 4:  # a short busy stint (a long after-sales case)
                self.roles[a.id] = _Role(
                    stint_offset_ms=(100 + 70 * i) * 1000, stint_ms=(90 + 30 * i) * 1000
                )

    # -- the router's and the session's questions ---------------------------------------------

    def status_at(self, agent: SimAgent, ts: int) -> Status:
        role = self.roles.get(agent.id)
        if role is None:
            return "online"
        if role.incident:
            return "away" if self.away_ms <= ts < self.back_ms else "online"
        if role.late_ms is not None:
            return "offline" if ts < role.late_ms else "online"
        if role.stint_offset_ms is not None:
            since = ts - self.live_ms - role.stint_offset_ms
            if since >= 0 and since % STINT_PERIOD_MS < role.stint_ms:
                return "busy"
        return "online"

    def routable(self, agent: SimAgent, ts: int) -> bool:
        """May the router give this agent a new buyer at `ts`? (The incident is the router's
        fault: it keeps sending buyers to the agent who went away.)"""
        role = self.roles.get(agent.id)
        if role is not None and role.incident:
            return True
        return self.status_at(agent, ts) == "online"

    def held_reply(self, agent: SimAgent, asked_ms: int, reply_ms: int, typing_ms: int) -> int:
        """When a round asked at `asked_ms` is answered, given the incident (`reply_ms` if the
        agent is not away by then). Held rounds are answered oldest first after the return."""
        inc = self.profile.incident
        if agent is not self.incident_agent or inc is None:
            return reply_ms
        if reply_ms < self.away_ms or asked_ms >= self.back_ms:
            return reply_ms
        queued_for = max(0, asked_ms - self.away_ms)
        return self.back_ms + int(queued_for * inc.catch_up_ratio) + typing_ms

    # -- the records ------------------------------------------------------------------------

    def events(self) -> Iterator[SimMessage]:
        """Status records in time order, endless (busy stints repeat every 20 minutes)."""
        first: list[tuple[int, SimAgent, Status]] = []
        for a in self.agents:
            role = self.roles.get(a.id)
            if role is not None and role.late_ms is not None:
                first += [(self.start_ms, a, "offline"), (role.late_ms, a, "online")]
            else:
                first.append((self.start_ms, a, "online"))
            if role is not None and role.incident:
                first += [(self.away_ms, a, "away"), (self.back_ms, a, "online")]
        first.sort(key=lambda e: e[0])
        stints = [(a, r) for a in self.agents if (r := self.roles.get(a.id)) and r.stint_ms]
        period = 0
        queue = first
        while True:
            base = self.live_ms + period * STINT_PERIOD_MS
            for a, role in stints:
                assert role.stint_offset_ms is not None
                begin = base + role.stint_offset_ms
                queue += [(begin, a, "busy"), (begin + role.stint_ms, a, "online")]
            queue.sort(key=lambda e: e[0])
            horizon = base + STINT_PERIOD_MS
            while queue and queue[0][0] < horizon:
                ts, a, status = queue.pop(0)
                yield self._record(a, status, ts)
            if not stints and not queue:
                return
            period += 1

    def _record(self, agent: SimAgent, status: Status, ts: int) -> SimMessage:
        obj: dict[str, object] = {
            "shop_id": agent.shop,
            "agent_id": agent.id,
            "status": status,
            "ts": ts,
        }
        limit = self.profile.max_concurrent.get(agent.team)
        if limit is not None and status != "offline":
            obj["max_concurrent"] = limit
        key = f"{agent.shop}:{agent.id}".encode()
        return SimMessage("agents", key, orjson.dumps(obj), ts)
