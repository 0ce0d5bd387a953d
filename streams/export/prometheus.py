"""`/metrics`: the snapshots in Prometheus text format (docs/metrics.md).

Reads what the runtime computed; computes nothing. The KPI families are written straight to text
because a worker exports ~205 series per agent (a busy one, with the business KPIs, its
scorecard and status; at most 225, see docs/metrics.md; tests/export/test_prometheus.py counts
them) and prometheus-client's object model
costs ~10 µs a series (a second per scrape at 1,000 agents); process metrics still come from
the client. That test also reads this text back with the client's own parser.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import REGISTRY, generate_latest

from streams.domain.limits import is_overflow
from streams.domain.model import AgentSnapshot
from streams.export import agent_text
from streams.state import State

CONTENT_TYPE = "text/plain; version=0.0.4"  # aiohttp refuses a charset here; UTF-8 is the default


_esc = agent_text.esc
_num = agent_text.num


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
    "kefu_missed_buyers": ("gauge", "Received buyers not replied to in the window (未回复人数)."),
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
    "kefu_rounds_within_target": ("gauge", "Rounds answered within a line (for team ratios)."),
    "kefu_inquiries": ("gauge", "Distinct buyers who got a human reply (询单人数)."),
    "kefu_converted_buyers": ("gauge", "Inquired buyers who paid an order credited to the agent."),
    "kefu_conversion_rate": ("gauge", "Converted / inquired buyers, cohort (询单转化率)."),
    "kefu_ordered_buyers": ("gauge", "Buyers with an order credited to the agent."),
    "kefu_paid_buyers": ("gauge", "Buyers with a paid order credited to the agent."),
    "kefu_paid_orders": ("gauge", "Paid orders credited to the agent."),
    "kefu_payment_success_rate": ("gauge", "Paid / ordered buyers (付款成功率)."),
    "kefu_sales_amount": ("gauge", "Paid amount of credited orders (销售额)."),
    "kefu_average_order_value": ("gauge", "Sales / paid buyers (客单价)."),
    "kefu_refunded_orders": ("gauge", "Credited orders refunded in the window."),
    "kefu_refund_amount": ("gauge", "Refunded amount of credited orders."),
    "kefu_refund_rate": ("gauge", "Refunded / paid credited orders (退款率)."),
    "kefu_assists": ("gauge", "Orders the agent helped on, credited to another (协助跟进)."),
    "kefu_ratings": ("gauge", "Satisfaction ratings received."),
    "kefu_marked_sessions": ("gauge", "Sessions with a resolution mark (close or rating)."),
    "kefu_resolved_sessions": ("gauge", "Marked sessions marked resolved."),
    "kefu_resolution_rate": ("gauge", "Resolved / marked sessions (问题解决率)."),
    "kefu_ratings_good": ("gauge", "Ratings of 4 or 5."),
    "kefu_rating_score_sum": ("gauge", "Sum of rating scores (for team means)."),
    "kefu_csat_mean": ("gauge", "Mean rating 1–5 (满意度)."),
    "kefu_csat_good_ratio": ("gauge", "Share of ratings >= 4."),
    "kefu_sales_target": ("gauge", "Planned monthly sales from the roster."),
    "kefu_target_completion_ratio": ("gauge", "Sales / planned target (指标完成率)."),
    "kefu_score_points": ("gauge", "Scorecard points per item (绩效考核表)."),
    "kefu_score_total": ("gauge", "Scorecard total out of 100."),
    "kefu_score_passed": ("gauge", "1 when the scorecard total reaches the pass score."),
    "kefu_agent_status": ("gauge", "1 for the agent's current status, 0 for the others."),
    "kefu_status_seconds": ("gauge", "Seconds in each status in the window (在线时长)."),
    "kefu_concurrent_buyers": ("gauge", "Buyers in open sessions assigned to the agent (接待量)."),
    "kefu_max_concurrent": ("gauge", "Buyers the agent may serve at once (event, roster or 10)."),
    "kefu_occupancy_ratio": ("gauge", "Concurrent buyers / max_concurrent (饱和度)."),
    "kefu_silent_ordered_buyers": ("gauge", "Buyers who ordered, no agent to credit (静默下单)."),
    "kefu_silent_paid_orders": ("gauge", "Paid silent orders."),
    "kefu_silent_sales_amount": ("gauge", "Paid amount of silent orders."),
    "kefu_ad_buyers": ("gauge", "Distinct ad/spam buyers flagged in the window (广告/骚扰)."),
    "kefu_events_total": ("counter", "Input events by outcome."),
    "kefu_deadletter_total": ("counter", "Dead-lettered events by reason."),
    "kefu_watermark_timestamp_seconds": ("gauge", "Largest event ts this worker processed."),
    "kefu_event_lag_seconds": ("gauge", "How far behind the input this worker is (0 = caught up)."),
    "kefu_snapshot_timestamp_seconds": ("gauge", "The *now* of the exported KPI snapshot."),
    "kefu_owned_partitions": ("gauge", "Partitions this worker owns and exports."),
    "kefu_consumer_lag_messages": ("gauge", "Unread input messages per owned partition."),
    "kefu_facts_lag_messages": ("gauge", "Unread facts (stage 2 input) per owned partition."),
    "kefu_snapshot_queue_agents": (
        "gauge", "Agents whose numbers changed and wait for a snapshot refresh."
    ),
    "kefu_snapshot_refreshes_total": ("counter", "Agent snapshots recomputed."),
    "kefu_snapshot_refresh_seconds_total": ("counter", "Time spent recomputing agent snapshots."),
    "kefu_broker_last_ack_timestamp_seconds": ("gauge", "When the broker last acked a heartbeat."),
    "kefu_exported_agents": ("gauge", "(shop, agent) series sets this worker exports."),
    "kefu_agents_over_limit": (
        "gauge", "(shop, agent) pairs past KEFU_MAX_AGENTS (their numbers: team=\"over_limit\")."
    ),
    "kefu_shops_over_limit": ("gauge", "Shops past KEFU_MAX_SHOPS (folded into shop=\"\")."),
    "kefu_worker_ready": (
        "gauge", "1 once state is recovered, while the broker answers (as /readyz)."
    ),
}


FAMILIES: tuple[str, ...] = tuple(HELP)
_HEADERS = {name: f"# HELP {name} {text}\n# TYPE {name} {kind}\n".encode()
            for name, (kind, text) in HELP.items()}

# Rendered text of each agent's series, one bytes string per family (b"" when it has none),
# reused while its snapshot object is unchanged (an agent with no new facts keeps the same
# snapshot between refreshes). Keyed by (shop, agent).
_FRAGMENTS: dict[tuple[str, str], tuple[AgentSnapshot, list[bytes]]] = {}


def forget_rendered() -> None:
    """Drop the reused text: the next scrape renders every agent (the bench's worst case)."""
    _FRAGMENTS.clear()


_NO_TEXT = ("",) * len(FAMILIES)


def _aligned(s: AgentSnapshot) -> list[bytes]:
    """The agent's text per family, in `FAMILIES` order, encoded once."""
    return [text.encode() for text in map(agent_text.fragments(s).get, FAMILIES, _NO_TEXT)]


def render(state: State) -> bytes:
    """The whole exposition: KPI families, then the client's process metrics."""
    out: dict[str, list[str]] = {name: [] for name in HELP}
    snaps = sorted(state.snapshots.values(), key=lambda s: (s.shop, s.agent))
    now_ms = state.clock.now_ms()
    frags: list[list[bytes]] = []
    cache = _FRAGMENTS
    seen: set[tuple[str, str]] = set()
    waits = out["kefu_oldest_wait_seconds"]
    for s in snaps:
        key = (s.shop, s.agent)
        seen.add(key)
        hit = cache.get(key)
        if hit is None or hit[0] is not s:
            hit = cache[key] = (s, _aligned(s))
        frags.append(hit[1])
        # The one family that moves with the clock, not with the snapshot.
        waits.append(f"{{{agent_text.base_labels(s)}}} {_num(s.oldest_wait_seconds(now_ms))}")
    if len(cache) > len(seen):
        for gone in [key for key in cache if key not in seen]:
            del cache[gone]
    agents = sum(1 for s in snaps if s.agent and not is_overflow(s.agent))
    _targets(out, state, snaps)
    for shop, per_window in sorted(state.ad_buyers.items()):
        for window, n in per_window.items():
            out["kefu_ad_buyers"].append(f'{{shop="{_esc(shop)}",window="{window}"}} {n}')
    _pipeline(out, state, agents)
    chunks: list[bytes] = []
    # Family by family: zip(*frags) turns the agents' rows into columns in C.
    columns = zip(*frags, strict=True) if frags else [()] * len(FAMILIES)
    for name, column in zip(FAMILIES, columns, strict=True):
        samples = out[name]
        agent_lines = b"".join(column)
        if not samples and not agent_lines:
            continue
        chunks.append(_HEADERS[name])
        chunks.append(agent_lines)
        if samples:  # one C-level join instead of a Python concatenation per sample
            chunks.append((name + ("\n" + name).join(samples) + "\n").encode())
    chunks.append(generate_latest(REGISTRY))
    return b"".join(chunks)


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
    out["kefu_event_lag_seconds"].append(f" {_num(state.health.lag_seconds(watermark))}")
    out["kefu_broker_last_ack_timestamp_seconds"].append(f" {_num(state.health.broker_ok_at)}")
    out["kefu_snapshot_timestamp_seconds"].append(f" {_num(state.snapshot_at_ms / 1000)}")
    out["kefu_owned_partitions"].append(f" {len(state.owned)}")
    out["kefu_exported_agents"].append(f" {agents}")
    for part, n in sorted(state.health.backlog.items()):
        out["kefu_consumer_lag_messages"].append(f'{{partition="{part}"}} {n}')
    for part, n in sorted(state.health.facts_backlog.items()):
        out["kefu_facts_lag_messages"].append(f'{{partition="{part}"}} {n}')
    out["kefu_snapshot_queue_agents"].append(f" {state.snapshot_queue}")
    out["kefu_snapshot_refreshes_total"].append(f" {state.snapshots_refreshed}")
    out["kefu_snapshot_refresh_seconds_total"].append(f" {_num(state.snapshot_seconds)}")
    limits = getattr(state, "limits", None)
    if limits is not None:
        out["kefu_agents_over_limit"].append(f" {len(limits.over)}")
        out["kefu_shops_over_limit"].append(f" {len(limits.over_shops)}")
    out["kefu_worker_ready"].append(f" {1 if state.health.is_ready() else 0}")
