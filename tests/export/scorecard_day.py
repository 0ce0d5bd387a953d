"""A small two-day month through the engine, and the 绩效考核表 rows the oracle expects of it.

Shared by the scorecard file, endpoint and report tests. The engine's snapshots are what a
worker exports; the expected rows come from the independent reference computations
(tests/domain/business_reference.py and reference.py), never from streams.domain.scorecard.
Two shops in different time zones, three agents of two teams (one team with its own weights
and AOV target), one agent with a sales target and a name, one supervisor entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from streams.config import Config, parse_config
from streams.domain import scorecard
from streams.domain.model import AgentSnapshot, ChatEvent, OrderEvent
from streams.domain.rules import Filters
from streams.tooling.engine import Engine
from tests.domain import business_reference as ref
from tests.domain.reference import walk

CONFIG: Config = parse_config({
    "shops": {"s1": {}, "s2": {"timezone": "America/Los_Angeles"}},
    "agents": [
        {"id": "a1", "name": "小美", "team": "pre-sales", "sales_target": 31_000},
        {"id": "a2", "team": "after-sales"},
        {"id": "a3", "name": "Lee", "team": "pre-sales"},
    ],
    "scorecard": {"teams": {"after-sales": {
        "weights": {"target_completion": 0, "conversion": 20, "reply_rate": 40,
                    "response_time": 15},
        "aov_target": 100,
    }}},
})
SH = ZoneInfo("Asia/Shanghai")
DAY1 = int(datetime(2024, 3, 14, 10, tzinfo=SH).timestamp() * 1000)
DAY2 = DAY1 + 24 * 3_600_000
NOW = DAY2 + 4 * 3_600_000  # 2024-03-15 14:00 Shanghai = 2024-03-14 23:00 Los Angeles
ENTERED = {("s1", "a2", "today"): 2.5}  # a supervisor's execution points
FILTERS = Filters(ad_patterns=(re.compile("加微信"),))


def _events() -> list[ChatEvent | OrderEvent]:
    events: list[ChatEvent | OrderEvent] = []
    n = 0
    plan = (("s1", "a1", ("b1", "b2", "b3"), ("b4", "b5")),
            ("s1", "a2", ("c1",), ("c2", "c3", "c4")),
            ("s2", "a3", ("d1", "d2"), ("d3",)))
    for shop, agent, first_day, second_day in plan:
        for base, buyers in ((DAY1, first_day), (DAY2, second_day)):
            for i, buyer in enumerate(buyers):
                t = base + i * 600_000
                for sender, dt in (("buyer", 0), ("agent", 12_000 + 25_000 * i),
                                   ("buyer", 60_000), ("agent", 110_000 + 9_000 * i)):
                    n += 1
                    events.append(ChatEvent(f"m{n}", shop, buyer, sender, agent, t + dt))  # type: ignore[arg-type]
                if i % 2 == 0:
                    amount = Decimal(150 + 37 * i) + Decimal("0.5")
                    events.append(OrderEvent(f"o{buyer}", shop, buyer, "created", amount,
                                             t + 200_000))
                    events.append(OrderEvent(f"o{buyer}", shop, buyer, "paid", amount,
                                             t + 260_000))
                elif shop == "s1":  # ordered, never paid: payment success below 100 %
                    events.append(OrderEvent(f"o{buyer}", shop, buyer, "created",
                                             Decimal("99"), t + 200_000))
    # nobody answered these buyers: received, not replied (reply rate below 100 %)
    events.append(ChatEvent("m9001", "s1", "b9", "buyer", "a1", DAY2 + 3_000_000))
    events.append(ChatEvent("m9002", "s1", "c9", "buyer", "a2", DAY2 + 3_100_000))
    return events


EVENTS = _events()
AGENTS = sorted({(e.shop_id, e.agent_id) for e in EVENTS
                 if isinstance(e, ChatEvent) and e.agent_id})


def engine_snapshots(now: int = NOW) -> dict[tuple[str, str], AgentSnapshot]:
    """What a worker holds at `now`: the engine with the worker's scoring hook (as Runtime)."""
    config = CONFIG
    engine = Engine(config.rules, FILTERS, config.team_of,
                    lambda shop, agent: config.lines(shop, config.team_of(agent)))

    def scoring(snap: AgentSnapshot, execution: dict[int, float], at: int) -> None:
        rules = config.rules(snap.shop)
        day_start = ref.local_midnight(at, rules.timezone)
        entered = ENTERED.get((snap.shop, snap.agent, "today"))
        info = config.agent(snap.agent)
        scorecard.fill(
            snap, {day_start: entered} if entered is not None else execution, at, shop=rules,
            lines=config.lines(snap.shop, snap.team), rules=config.scorecard(snap.team),
            sales_target=info.sales_target if info else None, day_start=day_start,
            month_start=ref.local_month_start(at, rules.timezone))

    engine.stage2.scoring = scoring
    engine.feed(EVENTS)
    return engine.snapshots(now)


@dataclass(frozen=True)
class Row:
    shop: str
    team: str
    agent: str
    name: str
    period: str
    card: ref.Card
    weights: dict[str, float]
    pass_score: float

    def cells(self, lang: str) -> list[Any]:
        """The row as the files must hold it (None = empty cell)."""
        out: list[Any] = [self.shop, self.team, self.agent, self.name, self.period]
        for item in ref.WEIGHTS:
            out += [self.card.actual[item], self.card.target[item], self.card.items[item]]
        verdict = ("合格", "不合格") if lang == "zh" else ("pass", "fail")
        out += [self.card.total, self.pass_score, verdict[0] if self.card.passed else verdict[1]]
        return out


def expected_rows(period: str, now: int = NOW) -> list[Row]:
    """The oracle's rows for `today` or `month`, sorted by shop, team, agent."""
    chat = [e for e in EVENTS if isinstance(e, ChatEvent)]
    orders = [e for e in EVENTS if isinstance(e, OrderEvent)]
    business = ref.business_snapshots(chat, orders, [], CONFIG.rules, FILTERS, now)
    trace = walk(chat, CONFIG.rules, FILTERS, now)
    rows = []
    for shop, agent in AGENTS:
        rules = CONFIG.rules(shop)
        team = CONFIG.team_of(agent)
        sc = CONFIG.scorecard(team)
        info = CONFIG.agent(agent)
        k = business[(shop, agent)].windows[period]
        done = ref.completion(k, period, info.sales_target if info else None, now,
                              rules.timezone)
        reply_rate, rt_mean = ref.response_for_score(trace, shop, agent, rules, now)[period]
        card = ref.scorecard(
            k, reply_rate, rt_mean, done, CONFIG.lines(shop, team), weights=sc.weights,
            conversion_target=sc.conversion_target,
            payment_success_target=sc.payment_success_target, aov_target=sc.aov_target,
            reply_rate_target=sc.reply_rate_target, pass_score=sc.pass_score,
            execution=sc.execution_default, entered=ENTERED.get((shop, agent, period)))
        local = datetime.fromtimestamp(now / 1000, ZoneInfo(rules.timezone))
        label = local.strftime("%Y-%m-%d" if period == "today" else "%Y-%m")
        name = info.name if info and info.name else agent
        rows.append(Row(shop, team, agent, name, label, card, dict(sc.weights), sc.pass_score))
    return sorted(rows, key=lambda r: (r.shop, r.team, r.agent))


HEADERS_ZH = [
    "店铺", "组别", "客服账号", "客服姓名", "考核周期",
    "指标完成率 实际", "指标完成率 目标", "指标完成率 得分",
    "询单转化率 实际", "询单转化率 目标", "询单转化率 得分",
    "付款成功率 实际", "付款成功率 目标", "付款成功率 得分",
    "客单价 实际", "客单价 目标", "客单价 得分",
    "回复率 实际", "回复率 目标", "回复率 得分",
    "平均响应时间(秒) 实际", "平均响应时间(秒) 目标", "平均响应时间(秒) 得分",
    "执行力 实际", "执行力 目标", "执行力 得分",
    "总分", "合格线", "考核结果",
]
HEADERS_EN = [
    "Shop", "Team", "Agent ID", "Name", "Period",
    "Target completion actual", "Target completion target", "Target completion points",
    "Conversion actual", "Conversion target", "Conversion points",
    "Payment success actual", "Payment success target", "Payment success points",
    "AOV actual", "AOV target", "AOV points",
    "Reply rate actual", "Reply rate target", "Reply rate points",
    "Mean response time (s) actual", "Mean response time (s) target",
    "Mean response time (s) points",
    "Execution actual", "Execution target", "Execution points",
    "Total", "Pass score", "Result",
]
