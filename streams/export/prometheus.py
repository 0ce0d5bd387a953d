"""`/metrics`: the snapshots in Prometheus text format (SPEC §4).

Reads what the runtime computed; computes nothing. The KPI families are written straight to text
because a worker exports ~90 series per agent and prometheus-client's object model costs ~10 µs
a series (a second per scrape at 1,000 agents); process metrics still come from the client.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable
from typing import Protocol

from prometheus_client import REGISTRY, generate_latest

from streams.config import Config
from streams.domain.model import LEVELS, QUANTILES, WINDOWS, AgentSnapshot
from streams.pipeline.clock import Clock
from streams.pipeline.runtime import Health

CONTENT_TYPE = "text/plain; version=0.0.4"  # aiohttp refuses a charset here; UTF-8 is the default
_QLABEL = {q: repr(q) for q in QUANTILES}


class State(Protocol):
    """What the exporter reads (the worker's `Runtime` provides it)."""

    config: Config
    snapshots: dict[tuple[str, str], AgentSnapshot]
    ad_buyers: dict[str, dict[str, int]]
    events_total: Counter[tuple[str, str]]
    rejected_reasons: Counter[tuple[str, str]]
    owned: set[int]
    health: Health
    clock: Clock
    snapshot_at_ms: int


def _esc(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _num(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


HELP: dict[str, tuple[str, str]] = {
    "kefu_response_time_seconds": ("gauge", "Response-time quantile (nearest rank) per window."),
    "kefu_response_time_mean_seconds": ("gauge", "Mean response time per window."),
    "kefu_first_response_time_seconds": ("gauge", "First-response-time quantile per window."),
    "kefu_first_response_time_mean_seconds": ("gauge", "Mean first response time per window."),
    "kefu_rounds": ("gauge", "Answered rounds in the window."),
    "kefu_first_rounds": ("gauge", "Answered first rounds (first responses) in the window."),
    "kefu_rounds_within_target_ratio": ("gauge", "Share of rounds answered within a line."),
    "kefu_reply_rate": ("gauge", "Replied buyers / received buyers (回复率)."),
    "kefu_received_buyers": ("gauge", "Buyers in the reply-rate denominator."),
    "kefu_replied_buyers": ("gauge", "Buyers whose question got a human reply."),
    "kefu_qa_ratio": ("gauge", "Agent human messages / buyer messages assigned (问答比)."),
    "kefu_agent_messages": ("gauge", "Human messages sent by the agent in the window."),
    "kefu_buyer_messages": ("gauge", "Buyer messages assigned to the agent in the window."),
    "kefu_waiting_buyers": ("gauge", "Buyers waiting for a reply now (agent=\"\": shop queue)."),
    "kefu_oldest_wait_seconds": ("gauge", "Age of the oldest waiting round now."),
    "kefu_response_target_seconds": ("gauge", "Configured response lines per shop and team."),
    "kefu_rounds_total": ("counter", "Answered rounds, for SLO burn rates."),
    "kefu_rounds_within_target_total": ("counter", "Rounds answered within a line."),
    "kefu_response_time_histogram_seconds": ("histogram", "Response-time distribution."),
    "kefu_ad_buyers": ("gauge", "Distinct ad/spam buyers flagged in the window (广告/骚扰)."),
    "kefu_events_total": ("counter", "Input events by outcome."),
    "kefu_deadletter_total": ("counter", "Dead-lettered events by reason."),
    "kefu_watermark_timestamp_seconds": ("gauge", "Largest event ts this worker processed."),
    "kefu_event_lag_seconds": ("gauge", "How far behind the input this worker is (0 = caught up)."),
    "kefu_snapshot_timestamp_seconds": ("gauge", "The *now* of the exported KPI snapshot."),
    "kefu_owned_partitions": ("gauge", "Partitions this worker owns and exports."),
    "kefu_exported_agents": ("gauge", "(shop, agent) series sets this worker exports."),
    "kefu_worker_ready": ("gauge", "1 once state is recovered and the worker is consuming."),
}


def render(state: State) -> bytes:
    """The whole exposition: KPI families, then the client's process metrics."""
    out: dict[str, list[str]] = {name: [] for name in HELP}
    snaps = sorted(state.snapshots.values(), key=lambda s: (s.shop, s.agent))
    for s in snaps:
        _agent(out, s, state.clock.now_ms())
    _targets(out, state, snaps)
    for shop, per_window in sorted(state.ad_buyers.items()):
        for window, n in per_window.items():
            out["kefu_ad_buyers"].append(f'{{shop="{_esc(shop)}",window="{window}"}} {n}')
    _pipeline(out, state, len(snaps))
    lines: list[str] = []
    for name, (kind, text) in HELP.items():
        samples = out[name]
        if not samples:
            continue
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        if kind == "histogram":
            lines.extend(samples)
        else:
            lines.extend(name + s for s in samples)
    body = "\n".join(lines) + "\n"
    return body.encode() + generate_latest(REGISTRY)


def _agent(out: dict[str, list[str]], s: AgentSnapshot, now_ms: int) -> None:
    base = f'shop="{_esc(s.shop)}",team="{_esc(s.team)}",agent="{_esc(s.agent)}"'
    out["kefu_waiting_buyers"].append(f"{{{base}}} {s.waiting}")
    out["kefu_oldest_wait_seconds"].append(f"{{{base}}} {_num(s.oldest_wait_seconds(now_ms))}")
    if not s.agent:
        return  # the shop queue has waiting buyers only
    for window in WINDOWS:
        w = s.windows.get(window)
        if w is None:
            continue
        wl = f'{base},window="{window}"'
        out["kefu_rounds"].append(f"{{{wl}}} {w.rounds}")
        out["kefu_first_rounds"].append(f"{{{wl}}} {w.first_rounds}")
        out["kefu_received_buyers"].append(f"{{{wl}}} {w.received}")
        out["kefu_replied_buyers"].append(f"{{{wl}}} {w.replied}")
        out["kefu_agent_messages"].append(f"{{{wl}}} {w.agent_messages}")
        out["kefu_buyer_messages"].append(f"{{{wl}}} {w.buyer_messages}")
        for q, v in w.rt_quantiles.items():
            out["kefu_response_time_seconds"].append(f'{{{wl},quantile="{_QLABEL[q]}"}} {_num(v)}')
        for q, v in w.frt_quantiles.items():
            out["kefu_first_response_time_seconds"].append(
                f'{{{wl},quantile="{_QLABEL[q]}"}} {_num(v)}'
            )
        if w.rt_mean is not None:
            out["kefu_response_time_mean_seconds"].append(f"{{{wl}}} {_num(w.rt_mean)}")
        if w.frt_mean is not None:
            out["kefu_first_response_time_mean_seconds"].append(f"{{{wl}}} {_num(w.frt_mean)}")
        if w.rounds:
            for level in LEVELS:
                ratio = w.within.get(level, 0) / w.rounds
                out["kefu_rounds_within_target_ratio"].append(
                    f'{{{wl},level="{level}"}} {_num(ratio)}'
                )
        if w.reply_rate is not None:
            out["kefu_reply_rate"].append(f"{{{wl}}} {_num(w.reply_rate)}")
        if w.qa_ratio is not None:
            out["kefu_qa_ratio"].append(f"{{{wl}}} {_num(w.qa_ratio)}")
    out["kefu_rounds_total"].append(f"{{{base}}} {s.rounds_total}")
    for level in LEVELS:
        n = s.within_total.get(level, 0)
        out["kefu_rounds_within_target_total"].append(f'{{{base},level="{level}"}} {n}')
    hist = out["kefu_response_time_histogram_seconds"]
    name = "kefu_response_time_histogram_seconds"
    for le, n in s.histogram.items():
        hist.append(f'{name}_bucket{{{base},le="{_num(float(le))}"}} {n}')
    hist.append(f"{name}_sum{{{base}}} {_num(s.response_seconds_sum)}")
    hist.append(f"{name}_count{{{base}}} {s.rounds_total}")


def _targets(out: dict[str, list[str]], state: State, snaps: Iterable[AgentSnapshot]) -> None:
    pairs = {(s.shop, s.team) for s in snaps}
    shops = {shop for shop, _ in pairs}
    teams = {a.team for a in state.config.agents.values()} | {"unassigned"}
    for shop in shops:
        for team in teams:
            pairs.add((shop, team))
    for shop, team in sorted(pairs):
        lines = state.config.lines(shop, team)
        base = f'shop="{_esc(shop)}",team="{_esc(team)}"'
        for level, value in (*lines.as_levels().items(), ("page_wait", lines.page_wait)):
            out["kefu_response_target_seconds"].append(f'{{{base},level="{level}"}} {_num(value)}')


def _pipeline(out: dict[str, list[str]], state: State, agents: int) -> None:
    for (topic, outcome), n in sorted(state.events_total.items()):
        out["kefu_events_total"].append(f'{{topic="{_esc(topic)}",outcome="{outcome}"}} {n}')
    for (topic, reason), n in sorted(state.rejected_reasons.items()):
        labels = f'topic="{_esc(topic)}",reason="{_esc(reason)}"'
        out["kefu_deadletter_total"].append(f"{{{labels}}} {n}")
    watermark = state.clock.watermark_ms / 1000
    out["kefu_watermark_timestamp_seconds"].append(f" {_num(watermark)}")
    backlog = sum(state.health.backlog.values())
    lag = max(0.0, time.time() - watermark) if backlog and watermark else 0.0
    out["kefu_event_lag_seconds"].append(f" {_num(lag)}")
    out["kefu_snapshot_timestamp_seconds"].append(f" {_num(state.snapshot_at_ms / 1000)}")
    out["kefu_owned_partitions"].append(f" {len(state.owned)}")
    out["kefu_exported_agents"].append(f" {agents}")
    out["kefu_worker_ready"].append(f" {1 if state.health.ready else 0}")
