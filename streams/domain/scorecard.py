"""绩效考核表: the 100-point scorecard (docs/contract.md), per agent for `today` and `month`.

Each item earns weight × how far the agent reached its target, capped at the weight. Response
time earns full marks at or under the warning line and none at twice the critical line, linear
in between. Execution is entered by a supervisor (POST /api/v1/execution); until then it earns
`execution_default` points. Items without data (no inquiries yet, no rounds) earn 0.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from streams.domain.model import AgentSnapshot, ScoreCard, WindowKpis
from streams.domain.rules import Lines, ShopRules, zone

ITEMS: tuple[str, ...] = (
    "target_completion", "conversion", "payment_success", "aov", "reply_rate", "response_time",
    "execution",
)
DEFAULT_WEIGHTS: dict[str, float] = {
    "target_completion": 30, "conversion": 30, "payment_success": 10, "aov": 10,
    "reply_rate": 10, "response_time": 5, "execution": 5,
}


@dataclass(frozen=True, slots=True)
class ScorecardRules:
    """Weights and targets; configurable per team (`[scorecard]`, `[scorecard.teams.<team>]`)."""

    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    conversion_target: float = 0.40
    payment_success_target: float = 0.90
    aov_target: float = 200.0
    reply_rate_target: float = 1.0
    pass_score: float = 70.0
    execution_default: float | None = None  # None = full marks until a supervisor enters points


def _reach(value: float | None, target: float) -> float:
    if value is None or target <= 0:
        return 0.0
    return max(0.0, min(1.0, value / target))


def response_reach(mean_seconds: float | None, lines: Lines) -> float:
    """1 at or under the warning line, 0 at twice the critical line, linear in between."""
    if mean_seconds is None:
        return 0.0
    zero_at = 2 * lines.critical
    if mean_seconds <= lines.warning:
        return 1.0
    if mean_seconds >= zero_at:
        return 0.0
    return (zero_at - mean_seconds) / (zero_at - lines.warning)


def score(
    kpis: WindowKpis,
    rt_mean: float | None,
    completion: float | None,
    execution: float | None,
    lines: Lines,
    rules: ScorecardRules,
) -> ScoreCard:
    """One period's card. Besides the points it keeps each item's actual value and target (the
    warning line for response time, the weight for execution), which the exported table shows.
    Execution's actual value is what a supervisor entered, None until then."""
    w = rules.weights
    actual: dict[str, float | None] = {
        "target_completion": completion,
        "conversion": kpis.conversion_rate,
        "payment_success": kpis.payment_success_rate,
        "aov": kpis.average_order_value,
        "reply_rate": kpis.reply_rate,
        "response_time": rt_mean,
        "execution": execution,
    }
    target = {
        "target_completion": 1.0,
        "conversion": rules.conversion_target,
        "payment_success": rules.payment_success_target,
        "aov": rules.aov_target,
        "reply_rate": rules.reply_rate_target,
        "response_time": lines.warning,
        "execution": w.get("execution", 0.0),
    }
    reach = {
        item: _reach(actual[item], target[item])
        for item in ("target_completion", "conversion", "payment_success", "aov", "reply_rate")
    }
    reach["response_time"] = response_reach(rt_mean, lines)
    items = {item: round(w.get(item, 0.0) * r, 4) for item, r in reach.items()}
    weight = w.get("execution", 0.0)
    if execution is None:
        execution = weight if rules.execution_default is None else rules.execution_default
    items["execution"] = max(0.0, min(weight, execution))
    total = round(sum(items.values()), 4)
    return ScoreCard(items=items, total=total, passed=total >= rules.pass_score, actual=actual,
                     target=target, weights={item: w.get(item, 0.0) for item in ITEMS},
                     pass_score=rules.pass_score)


@lru_cache(maxsize=1024)
def period_label(start_ms: int, tz: str, fmt: str) -> str:
    """The local date (`%Y-%m-%d`) or month (`%Y-%m`) a period starting at `start_ms` names.

    Cached: every agent of a shop asks for the same few starts on each snapshot round."""
    return datetime.fromtimestamp(start_ms / 1000, zone(tz)).strftime(fmt)


def days_in_month(now_ms: int, shop: ShopRules) -> int:
    local = datetime.fromtimestamp(now_ms / 1000, zone(shop.timezone))
    return calendar.monthrange(local.year, local.month)[1]


def fill(
    snap: AgentSnapshot,
    execution: dict[int, float],
    now_ms: int,
    *,
    shop: ShopRules,
    lines: Lines,
    rules: ScorecardRules,
    sales_target: float | None,
    day_start: int,
    month_start: int,
) -> None:
    """Target completion (指标完成率) and both scorecards onto an agent's snapshot."""
    snap.sales_target = sales_target
    today = snap.windows.get("today")
    month = snap.month
    if today is None or month is None:
        return
    done_today = done_month = None
    if sales_target:
        daily = sales_target / days_in_month(now_ms, shop)
        done_today = today.sales / daily
        done_month = month.sales / sales_target
        snap.target_completion = {"today": done_today, "month": done_month}
    snap.score = {
        "today": score(today, today.rt_mean, done_today, execution.get(day_start), lines, rules),
        "month": score(
            month, snap.month_rt_mean, done_month, execution.get(month_start), lines, rules
        ),
    }
    snap.score["today"].period = period_label(day_start, shop.timezone, "%Y-%m-%d")
    snap.score["month"].period = period_label(month_start, shop.timezone, "%Y-%m")
