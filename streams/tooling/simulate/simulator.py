"""`Simulator`: the deterministic roster and one run's arrival-ordered stream of records.

A run (`_Run`) keeps its mutable state apart so a `Simulator` can be asked for `messages()`
any number of times and give the same bytes; each buyer's visit is built by `session._Session`.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Iterator
from typing import Literal

from streams.tooling.simulate.model import (
    _NAMES,
    _SHOP_TEMPLATES,
    DEFAULT_START_MS,
    SimAgent,
    SimMessage,
    SimShop,
    _base36,
    _toml_str,
)
from streams.tooling.simulate.profile import DEFAULT, Profile
from streams.tooling.simulate.session import _Session
from streams.tooling.simulate.status import StatusPlan


class Simulator:
    """Deterministic traffic for `shops` shops; all randomness comes from `seed`.

    `profile` picks the kind of day (`profile.DEFAULT`, the awkward one the tests use, or
    `profile.DEMO`); `live_start_ms` is when a live run reaches the wall clock (after its
    warm-up), from which a profile's scripted incident is timed (default: `start_ms`).
    """

    def __init__(
        self,
        seed: int = 7,
        start_ms: int | None = None,
        shops: int = 3,
        agents_per_shop: int = 6,
        buyers_per_minute: float = 30.0,
        profile: Profile = DEFAULT,
        live_start_ms: int | None = None,
    ) -> None:
        if shops < 1 or agents_per_shop < 2:
            raise ValueError("need at least 1 shop and 2 agents per shop (pre- and after-sales)")
        if not buyers_per_minute > 0 or not math.isfinite(buyers_per_minute):
            raise ValueError("buyers_per_minute must be a positive number")
        self.seed = seed
        self.start_ms = DEFAULT_START_MS if start_ms is None else int(start_ms)
        self.buyers_per_minute = float(buyers_per_minute)
        self.profile = profile
        self.live_start_ms = self.start_ms if live_start_ms is None else int(live_start_ms)
        r = random.Random(f"kefu-roster:{seed}")
        shop_list: list[SimShop] = []
        agents: list[SimAgent] = []
        self.index_of: dict[str, tuple[int, int]] = {}  # agent id -> (shop index, agent index)
        self.median_s: dict[str, float] = {}  # agent id -> median reply seconds
        names = list(_NAMES)
        r.shuffle(names)
        for i in range(shops):
            sid, platform, cn, prefix, weight, lo, hi = _SHOP_TEMPLATES[i % 3]
            n = i // 3
            if n:
                sid, prefix, cn = f"{sid}-{n + 1}", f"{prefix}{n + 1}", f"{cn}{n + 1}号"
            shop_list.append(SimShop(sid, platform, cn, prefix, weight, lo, hi))
            pre = max(1, min(agents_per_shop - 1, round(agents_per_shop * 2 / 3)))
            for j in range(agents_per_shop):
                team: Literal["pre-sales", "after-sales"] = (
                    "pre-sales" if j < pre else "after-sales"
                )
                cycle = profile.speed_cycle
                speed = cycle[(i + j) % len(cycle)]
                if (i, j) in profile.agent_median_s:
                    speed = "slow"  # a named slow agent (a trainee) sells and rates like one
                k = i * agents_per_shop + j
                name = names[k % len(names)] + (str(k // len(names) + 1) if k >= len(names) else "")
                target = None
                if team == "pre-sales":
                    target = int(hi * 200 * (1.5 if speed == "fast" else 1.0)) // 1000 * 1000
                agent = SimAgent(f"{prefix}-a{j + 1:02d}", name, sid, team, speed, target)
                agents.append(agent)
                self.index_of[agent.id] = (i, j)
                self.median_s[agent.id] = profile.median_s(speed, i, j)
        self.shops: tuple[SimShop, ...] = tuple(shop_list)
        self.agents: tuple[SimAgent, ...] = tuple(agents)

    def messages(self, duration_s: float) -> Iterator[SimMessage]:
        """Records arriving in [start, start + duration_s), in arrival order (inf = endless)."""
        return _Run(self).messages(duration_s)

    def roster_toml(self) -> str:
        """The `[[agents]]` roster of the generated agents, for the demo config."""
        out = [f"# kefu-pulse simulator roster (seed {self.seed})\n"]
        for a in self.agents:
            out.append(
                f"\n[[agents]]  # {a.shop}, {a.speed} (~{self.median_s[a.id]:.0f} s)\n"
                f"id = {_toml_str(a.id)}\nname = {_toml_str(a.name)}\nteam = {_toml_str(a.team)}\n"
            )
            if a.sales_target is not None:
                out.append(f"sales_target = {a.sales_target}\n")
        return "".join(out)

    def shops_toml(self) -> str:
        """`[shops.<id>]` tables selecting each shop's platform rule profile (and what the
        profile asks of the demo config: the incident shop's shorter page line, so the page
        fires within minutes; service around the clock, so the hour of the run does not matter)."""
        out = []
        inc, page = self.profile.incident, self.profile.page_wait_seconds
        for i, s in enumerate(self.shops):
            out.append(f"\n[shops.{_toml_str(s.id)}]\nprofile = {_toml_str(s.platform)}\n")
            if inc is not None and page is not None and i == inc.shop_index:
                out.append(f"page_wait_seconds = {page:g}  # demo: default 180\n")
            if self.profile.always_in_service:
                out.append("service_hours = []  # demo: graded at any hour you run it\n")
        return "".join(out)

    @property
    def incident_agent(self) -> SimAgent | None:
        """The agent of the profile's scripted incident, if any."""
        inc = self.profile.incident
        if inc is None:
            return None
        return next(
            (a for a in self.agents if self.index_of[a.id] == (inc.shop_index, inc.agent_index)),
            None,
        )


class _Run:
    """Mutable state of one `messages()` call, so the Simulator itself stays reusable."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.heap: list[tuple[int, int, SimMessage]] = []
        self.seq = 0
        # Recently seen buyers per shop, who may come back, and when each one's chat ended
        # (insertion-ordered and capped, so an endless live run does not grow without bound).
        self.returning: dict[str, deque[str]] = {s.id: deque(maxlen=200) for s in sim.shops}
        self.busy_until: dict[tuple[str, str], int] = {}
        # Message ids must differ between live runs (the worker drops repeated ids).
        self.tag = _base36(sim.start_ms)
        self.by_team: dict[tuple[str, str], tuple[SimAgent, ...]] = {}
        for s in sim.shops:
            for team in ("pre-sales", "after-sales"):
                self.by_team[(s.id, team)] = tuple(
                    a for a in sim.agents if a.shop == s.id and a.team == team
                )
        self.weights = [s.weight for s in sim.shops]
        self.profile = sim.profile
        self.median_s = sim.median_s
        self.plan: StatusPlan | None = None
        if sim.profile.status_events:
            self.plan = StatusPlan(
                sim.profile, sim.agents, sim.index_of, sim.start_ms, sim.live_start_ms
            )

    def messages(self, duration_s: float) -> Iterator[SimMessage]:
        end = self.sim.start_ms + duration_s * 1000.0
        heap = self.heap
        status = self.plan.events() if self.plan is not None else iter(())
        upcoming = next(status, None)
        for t, n, forced in self._merged_arrivals():
            while upcoming is not None and upcoming.ts <= t:  # status events join the heap
                self.push(upcoming.ts, upcoming)
                upcoming = next(status, None)
            if t >= end:
                break
            while heap and heap[0][0] <= t:
                yield heapq.heappop(heap)[2]
            self._session(n, t, forced)
        while upcoming is not None and upcoming.ts < end:
            self.push(upcoming.ts, upcoming)
            upcoming = next(status, None)
        while heap:
            msg = heapq.heappop(heap)[2]
            if msg.ts >= end:
                break
            yield msg

    def _merged_arrivals(self) -> Iterator[tuple[int, int, SimAgent | None]]:
        """(time, visit number, forced agent): chance arrivals plus the incident's scripted
        buyers (negative numbers, their own random streams), in time order."""
        plan = self.plan
        inc = self.profile.incident
        scripted: list[tuple[int, SimAgent]] = []
        if plan is not None and inc is not None and plan.incident_agent is not None:
            scripted = [
                (plan.away_ms + int(s * 1000), plan.incident_agent) for s in inc.buyers_after_s
            ]
        k = 0
        for n, t in enumerate(self._arrivals()):
            while k < len(scripted) and scripted[k][0] <= t:
                yield scripted[k][0], -(k + 1), scripted[k][1]
                k += 1
            yield t, n, None

    def _arrivals(self) -> Iterator[int]:
        """Non-homogeneous Poisson arrivals (thinning): a 30-min wave plus promotion bursts."""
        sim = self.sim
        r = random.Random(f"kefu-arrivals:{sim.seed}")
        base = sim.buyers_per_minute / 60_000.0  # per ms
        peak = 1.35 * 2.5
        t = float(sim.start_ms)
        burst_start = t + r.expovariate(1 / 720_000)
        burst_end = burst_start + r.uniform(60_000, 180_000)
        while True:
            t += r.expovariate(base * peak)
            while t >= burst_end:
                burst_start = burst_end + r.expovariate(1 / 720_000)
                burst_end = burst_start + r.uniform(60_000, 180_000)
            wave = 1.0 + 0.35 * math.sin(2 * math.pi * (t - sim.start_ms) / 1_800_000)
            factor = wave * (2.5 if t >= burst_start else 1.0)
            if r.random() * peak < factor:
                yield int(t)

    # -- emission -------------------------------------------------------------------------

    def push(self, arrival: int, msg: SimMessage) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (arrival, self.seq, msg))

    def routable(self, agent: SimAgent, ts: int) -> bool:
        """May the router give `agent` a new buyer at `ts` (always, without a status script)?"""
        return self.plan is None or self.plan.routable(agent, ts)

    def hold(self, agent: SimAgent, asked_ms: int, reply_ms: int, r: random.Random) -> int:
        """The reply time of a round, moved past the incident if its agent is away by then."""
        if self.plan is None or agent is not self.plan.incident_agent:
            return reply_ms  # no draw: the default day keeps its bytes
        return self.plan.held_reply(agent, asked_ms, reply_ms, r.randrange(2_000, 6_000))

    def _session(self, n: int, t0: int, forced: SimAgent | None = None) -> None:
        r = random.Random(f"kefu-session:{self.sim.seed}:{self.sim.start_ms}:{n}")
        shop = r.choices(self.sim.shops, self.weights)[0]
        if forced is not None:  # a scripted buyer: chats with that agent
            shop = next(s for s in self.sim.shops if s.id == forced.shop)
        roll = 1.0 if forced is not None else r.random()
        ad_rate = self.profile.ad_buyer_rate
        is_ad = roll < ad_rate
        buyer = self._buyer(r, shop, t0, returning=not is_ad)
        s = _Session(self, r, shop, buyer, n)
        if is_ad:
            s.ad(t0)
        elif roll < ad_rate + self.profile.silent_buyer_rate:
            s.order(t0)
        else:
            s.chat(t0, forced)
        s.flush()
        busy = self.busy_until
        busy.pop((shop.id, buyer), None)
        busy[(shop.id, buyer)] = max(t0, s.last_chat_ts)
        if len(busy) > 250 * len(self.sim.shops):  # older buyers have left every pool
            del busy[next(iter(busy))]
        if not is_ad:  # an ad buyer stays one all day: never bring them back
            self.returning[shop.id].append(buyer)

    def _buyer(self, r: random.Random, shop: SimShop, t0: int, returning: bool) -> str:
        pool = self.returning[shop.id]
        if returning and pool and r.random() < 0.10:
            buyer = pool[int(r.random() * len(pool))]
            # Never interleave two generated sessions of one buyer.
            if self.busy_until.get((shop.id, buyer), t0) + 60_000 < t0:
                return buyer
        if shop.platform == "taobao":
            return f"tb{r.randrange(10**8, 10**10)}"
        if shop.platform == "jd":
            return f"jd_{r.randrange(16**10):010x}"
        return f"pdd{r.randrange(10**10):010d}"

