"""`/api/v1/agents`: a JSON snapshot of every KPI per (shop, agent), for the wall-board and tools.

No buyer ids, order ids or message text: only what the Prometheus labels may carry.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson

from streams.domain.limits import label
from streams.domain.model import LEVELS, MONEY_SCALE, WINDOWS, AgentSnapshot, WindowKpis
from streams.state import State


def _window(w: WindowKpis) -> dict[str, Any]:
    return {
        "rounds": w.rounds,
        "response_time_mean_seconds": w.rt_mean,
        "response_time_seconds": {str(q): v for q, v in w.rt_quantiles.items()},
        "first_rounds": w.first_rounds,
        "first_response_time_mean_seconds": w.frt_mean,
        "first_response_time_seconds": {str(q): v for q, v in w.frt_quantiles.items()},
        "within_target_ratio": {level: w.within_ratio(level) for level in LEVELS},
        "received_buyers": w.received,
        "replied_buyers": w.replied,
        "missed_buyers": w.missed,
        "reply_rate": w.reply_rate,
        "agent_messages": w.agent_messages,
        "buyer_messages": w.buyer_messages,
        "qa_ratio": w.qa_ratio,
        "inquiries": w.inquiries,
        "converted_buyers": w.converted,
        "conversion_rate": w.conversion_rate,
        "ordered_buyers": w.ordered_buyers,
        "paid_buyers": w.paid_buyers,
        "paid_orders": w.paid_orders,
        "payment_success_rate": w.payment_success_rate,
        "sales_amount": str(Decimal(w.sales_units) / MONEY_SCALE),
        "average_order_value": w.average_order_value,
        "refunded_orders": w.refunded_orders,
        "refund_amount": str(Decimal(w.refund_units) / MONEY_SCALE),
        "refund_rate": w.refund_rate,
        "assists": w.assists,
        "ratings": w.ratings,
        "csat_mean": w.csat_mean,
        "csat_good_ratio": w.csat_good_share,
        "marked_sessions": w.marked_sessions,
        "resolved_sessions": w.resolved_sessions,
        "resolution_rate": w.resolution_rate,
    }


def agent_dict(s: AgentSnapshot, state: State, now_ms: int) -> dict[str, Any]:
    lines = state.config.lines(s.shop, s.team)
    info = state.config.agent(s.agent) if s.agent else None
    return {
        "shop": s.shop,
        "team": s.team,
        "agent": label(s.agent),
        "name": info.name if info and info.name else label(s.agent),
        "waiting_buyers": s.waiting,
        "oldest_wait_seconds": s.oldest_wait_seconds(now_ms),
        "oldest_wait_since": (s.oldest_wait_since_ms / 1000) if s.oldest_wait_since_ms else None,
        "targets": {**lines.as_levels(), "page_wait": lines.page_wait},
        "rounds_total": s.rounds_total,
        "windows": {w: _window(s.windows[w]) for w in WINDOWS if w in s.windows},
        "month": None if s.month is None else {
            **_window(s.month), "response_time_mean_seconds": s.month_rt_mean,
        },
        "sales_target": s.sales_target,
        "target_completion": s.target_completion,
        "scorecard": {
            period: {"items": card.items, "total": card.total, "passed": card.passed}
            for period, card in s.score.items()
        },
        # Status and load (docs/kpis.md); the shop queue (agent "") has none.
        "status": s.status,
        "status_seconds": s.status_seconds,
        "concurrent_buyers": s.concurrent if s.agent else None,
        "max_concurrent": s.max_concurrent if s.agent else None,
        "occupancy_ratio": s.occupancy if s.agent else None,
    }


def agents_json(state: State) -> bytes:
    now = state.clock.now_ms()
    agents = [
        agent_dict(s, state, now)
        for s in sorted(state.snapshots.values(), key=lambda s: (s.shop, s.team, s.agent))
    ]
    body = {
        "now": now / 1000,
        "watermark": state.clock.watermark_ms / 1000,
        "snapshot_at": state.snapshot_at_ms / 1000,
        "ready": state.health.ready,
        "ad_buyers": state.ad_buyers,
        "agents": agents,
    }
    return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
