"""What `make demo` tells and configures: the banner's script and the demo's TOML.

A newcomer looking at a board cannot tell a scripted incident from a bug in the monitor. Saying
beforehand who goes away, when the page line is crossed and when they come back turns the red
tile into the point of the demo; the times come from the same profile the simulator runs. The
config lives here too, so the tests judge the room by exactly the rules the demo worker uses.
"""

from __future__ import annotations

from streams.tooling.simulate.simulator import Simulator
from streams.tooling.simulate.status import LATE_JOIN_S


def _clock(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s // 60}:{s % 60:02d}"


def demo_config(sim: Simulator) -> str:
    """The demo worker's TOML: taobao defaults, the ad filter, each shop's rules, the roster."""
    return (
        '[defaults]\nprofile = "taobao"\n\n[filters]\n'
        'ad_patterns = ["加微信", "(?i)https?://", "QQ号"]\n\n'
        + sim.shops_toml() + "\n" + sim.roster_toml()
    )


def demo_script(sim: Simulator, config_given: bool = False) -> str:
    """Banner lines (indented, newline-terminated) for `sim`'s profile; empty if it has none.

    `config_given`: the user passed their own TOML, so the page line is theirs, not the demo's.
    """
    profile = sim.profile
    if not profile.status_events and profile.incident is None:
        return ""
    lines = ["  What happens (minutes from now, approximately):"]
    load = profile.buyers_per_agent_minute
    room = f"{len(sim.agents)} agents"
    if load is not None:
        room += f", ~{load * len(sim.agents):.0f} new buyers a minute"
    trainees = [
        a for a in sim.agents if sim.index_of[a.id] in profile.agent_median_s
    ]
    calm = f"    0:00  a calm room ({room}): most tiles green, a few amber"
    if trainees:
        who = ", ".join(f"{a.name} ({a.id})" for a in trainees)
        calm += f"; trainee {who} red by a slow 5m p90"
    lines.append(calm)
    inc = profile.incident
    agent = sim.incident_agent
    if inc is not None and agent is not None:
        shop = agent.shop
        page = profile.page_wait_seconds if not config_given else None
        page_text = (
            f"{shop}'s page line ({page:g} s in this demo; default 180 s)"
            if page is not None
            else f"{shop}'s page line (page_wait_seconds)"
        )
        crossing = inc.away_s + (page if page is not None else 180.0)
        done = inc.back_s + (inc.back_s - inc.away_s) * inc.catch_up_ratio
        lines += [
            f"    {_clock(inc.away_s)}  {agent.name} ({agent.id}, {shop} {agent.team}) goes "
            "away; the router keeps sending buyers and nobody answers them",
            f"    ~{_clock(crossing)} their oldest wait passes {page_text}: the tile turns red",
            f"    {_clock(inc.back_s)}  {agent.name} is back online and answers the queue oldest "
            f"first (done by ~{_clock(done)}); the tile stays red on its slow 5m p90 until "
            f"~{_clock(done + 300)}",
        ]
    if profile.status_events:
        lines.append(
            f"    also  each shop's last agent signs in at ~{_clock(LATE_JOIN_S)}-"
            f"{_clock(LATE_JOIN_S + 15 * (len(sim.shops) - 1))}; one agent per shop takes a "
            "'busy' stint (no new buyers) from ~1:40; status events go to kefu.agents"
        )
    return "\n".join(lines) + "\n"
