"""Simulator profiles: the awkward day the tests rely on, and the calm room the demo shows.

Two audiences want different traffic. The tests and the bench need every hostile case often
enough to assert on: 5 % of buyers never answered, agents whose median reply is a minute,
queued buyers, duplicates, wrong keys and garbage. A newcomer opening `make demo` needs the
opposite: a room where red *means* something, so nearly every buyer is answered in realistic
times, most agents sit inside the lines, and one scripted incident shows what red looks like.
Before profiles existed the demo ran the test day at Double-11 load and opened on a board
where 33 of 36 agents were red.

`DEFAULT` is exactly the constants the simulator always used (same seed, same bytes, so no
test's numbers move); `DEMO` changes rates and adds what the default day leaves out: agent
status events on `kefu.agents`, `resolved` marks on closes and ratings, and the incident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from streams.tooling.simulate.model import (
    _SPEED_CYCLE,
    AD_BUYER_RATE,
    BAD_RATE,
    DUPLICATE_RATE,
    JITTER_RATE,
    QUEUED_RATE,
    SILENT_BUYER_RATE,
    SPEED_MEDIAN_S,
    TRANSFER_RATE,
    UNANSWERED_RATE,
    WRONG_KEY_RATE,
    Speed,
)


@dataclass(frozen=True, slots=True)
class Incident:
    """One agent steps away (`away`) while the shop's router keeps sending them buyers.

    Nobody answers those buyers until the agent is back; then the agent works through the
    queue oldest first, replaying the away time `catch_up_ratio` times as fast (180 s away,
    ~30 s to answer everyone). Times are seconds after the live start (when a live run reaches
    the wall clock), so a demo shows it within its first minutes.
    """

    shop_index: int
    agent_index: int
    away_s: float
    back_s: float
    catch_up_ratio: float = 0.15
    # New buyers the router sends the away agent, seconds after `away_s`, on top of chance:
    # so the queue and its page line come on time in every run, whatever the random traffic.
    buyers_after_s: tuple[float, ...] = (5.0, 45.0, 100.0)


@dataclass(frozen=True, slots=True)
class Profile:
    """Rates and scripted parts of one kind of traffic (see the module docstring)."""

    name: str
    speed_median_s: Mapping[Speed, float]
    speed_cycle: tuple[Speed, ...]
    reply_sigma: float = 0.55  # spread of the log-normal reply delay
    distracted_rate: float = 0.03  # replies that take four times as long
    unanswered_rate: float = UNANSWERED_RATE
    transfer_rate: float = TRANSFER_RATE
    queued_rate: float = QUEUED_RATE
    queue_ms: tuple[int, int] = (3_000, 40_000)  # how long a queued buyer waits for a system assign
    ad_buyer_rate: float = AD_BUYER_RATE
    silent_buyer_rate: float = SILENT_BUYER_RATE
    duplicate_rate: float = DUPLICATE_RATE
    jitter_rate: float = JITTER_RATE
    wrong_key_rate: float = WRONG_KEY_RATE
    bad_rate: float = BAD_RATE
    close_rate: float = 0.85  # answered sessions that end with a `close` event
    # Reply-time medians of single agents, by (shop index, agent index): a trainee, say.
    agent_median_s: Mapping[tuple[int, int], float] = field(
        default_factory=lambda: MappingProxyType({})
    )
    close_mark_rate: float = 0.0  # closes that carry `resolved` (0: the field is never sent)
    resolved_rate: float = 0.0  # of marked closes, the share marked resolved
    rating_mark_rate: float = 0.0  # ratings that carry the buyer's `resolved`
    status_events: bool = False  # emit `kefu.agents` status events (shift, breaks, incident)
    max_concurrent: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    buyers_per_agent_minute: float | None = None  # a live run's load when no rate is given
    incident: Incident | None = None
    # The incident shop's `page_wait_seconds` for the demo config, so the page fires in minutes.
    page_wait_seconds: float | None = None
    # The demo config grades every shop around the clock: the jd and pdd rule profiles leave
    # out rounds started 23:00-08:00/09:00 (Beijing), and a demo run at night would otherwise
    # show two of three shops without response times.
    always_in_service: bool = False

    def median_s(self, speed: Speed, shop_index: int, agent_index: int) -> float:
        """The agent's median reply time: its own if the profile names one, else its speed's."""
        own = self.agent_median_s.get((shop_index, agent_index))
        return self.speed_median_s[speed] if own is None else own


DEFAULT = Profile(name="default", speed_median_s=SPEED_MEDIAN_S, speed_cycle=_SPEED_CYCLE)

# A plausible room on an ordinary busy afternoon: ~0.8 new buyers a minute per agent, median
# replies of 8-21 s (one trainee slower), every buyer answered, sessions closed. Chosen so the
# 5m p90 of the ~5-15 rounds one agent has in five minutes stays under the 30 s line for most
# agents; `tests/tooling/test_demo_profile.py` holds the room to that.
DEMO = Profile(
    name="demo",
    speed_median_s=MappingProxyType({"fast": 8.0, "normal": 11.0, "slow": 21.0}),
    # One slow agent per shop (amber now and then), the rest fast or normal.
    speed_cycle=("fast", "normal", "normal", "fast", "slow", "normal") + ("fast", "normal") * 3,
    reply_sigma=0.35,
    distracted_rate=0.0,
    unanswered_rate=0.0,
    transfer_rate=0.05,
    queued_rate=0.05,
    queue_ms=(3_000, 12_000),
    ad_buyer_rate=0.02,
    wrong_key_rate=0.0,
    bad_rate=0.0,
    close_rate=0.97,
    agent_median_s=MappingProxyType({(1, 5): 30.0}),  # jd-store's trainee: red by its p90
    close_mark_rate=0.9,
    resolved_rate=0.86,
    rating_mark_rate=0.7,
    status_events=True,
    max_concurrent=MappingProxyType({"pre-sales": 8, "after-sales": 6}),
    buyers_per_agent_minute=0.8,
    incident=Incident(shop_index=0, agent_index=2, away_s=30.0, back_s=210.0),
    page_wait_seconds=90.0,
    always_in_service=True,
)

PROFILES: Mapping[str, Profile] = MappingProxyType({p.name: p for p in (DEFAULT, DEMO)})
