"""One generated support day and its oracle, shared by the end-to-end tests.

A simulated day of chat, orders and ratings, keyed as producers must key it, with the
independent reference computations (tests/domain) of every response and business KPI, and a
comparison of a worker's `/metrics` against them that lists every difference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from streams.config import Config
from streams.events import Rejected, decode_chat, decode_order, decode_rating
from streams.tooling.simulate import Simulator
from tests.domain import business_reference as ref
from tests.domain.reference import reference_snapshots, walk
from tests.integration.harness import Sample, labels

DAY_START_MS = 1_731_254_400_000  # 2024-11-11 00:00 +08:00
BUYERS_PER_MINUTE = 1.0  # ~1,400 visits, ~14k chat events, ~1k order events in the day
DECODERS: dict[str, Callable[[bytes], Any]] = {
    "chat": decode_chat, "orders": decode_order, "ratings": decode_rating,
}
# kefu_* name -> BizKpis field (counts: exact)
COUNTS = {
    "kefu_inquiries": "inquiries", "kefu_converted_buyers": "converted",
    "kefu_ordered_buyers": "ordered_buyers", "kefu_paid_buyers": "paid_buyers",
    "kefu_paid_orders": "paid_orders", "kefu_refunded_orders": "refunded_orders",
    "kefu_assists": "assists", "kefu_ratings": "ratings", "kefu_ratings_good": "ratings_good",
    "kefu_rating_score_sum": "rating_sum", "kefu_marked_sessions": "marked_sessions",
    "kefu_resolved_sessions": "resolved_sessions",
}  # fmt: skip
# money: (metric, exact Decimal field)
MONEY = {"kefu_sales_amount": "sales", "kefu_refund_amount": "refund_amount"}
# ratios: exported only when their denominator is > 0
RATIOS = {
    "kefu_conversion_rate": "conversion_rate",
    "kefu_payment_success_rate": "payment_success_rate",
    "kefu_average_order_value": "average_order_value",
    "kefu_refund_rate": "refund_rate", "kefu_csat_mean": "csat_mean",
    "kefu_csat_good_ratio": "csat_good_share", "kefu_resolution_rate": "resolution_rate",
}  # fmt: skip
SILENT = {
    "kefu_silent_ordered_buyers": "ordered_buyers", "kefu_silent_paid_orders": "paid_orders",
}


def write_config(sim: Simulator, path: Path) -> Path:
    path.write_text(
        '[filters]\nad_patterns = ["加微信", "(?i)https?://", "QQ号"]\n'
        + sim.shops_toml() + "\n" + sim.roster_toml(),
        encoding="utf-8",
    )
    return path


Stream = list[tuple[str, int, bytes, bytes]]  # (topic kind, arrival ms, key, value)


def keyed_stream(messages: list[Any]) -> tuple[Stream, dict[str, list]]:
    """The day in arrival order as (topic kind, arrival ms, conversation key, value) records,
    and the decoded good events per topic kind."""
    stream: Stream = []
    events: dict[str, list] = {k: [] for k in DECODERS}
    for m in messages:
        try:
            ev = DECODERS[m.topic](m.value)
        except Rejected:
            stream.append((m.topic, m.ts, m.key, m.value))
            continue
        stream.append((m.topic, m.ts, ev.conversation_key.encode(), m.value))
        events[m.topic].append(ev)
    return stream, events


def of_kind(stream: Stream, kind: str) -> list[tuple[bytes, bytes]]:
    return [(key, value) for k, _, key, value in stream if k == kind]


def close(got: float, want: float) -> bool:
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)


class Expected:
    """The oracle's business figures and scorecards for one generated day."""

    def __init__(self, cfg: Config, events: Mapping[str, list], now: int) -> None:
        self.cfg = cfg
        self.now = now
        chat, orders, ratings = events["chat"], events["orders"], events["ratings"]
        self.business = ref.business_snapshots(chat, orders, ratings, cfg.rules, cfg.filters, now)
        self.response = reference_snapshots(chat, cfg.rules, cfg.filters, now, cfg.team_of)
        self.trace = walk(chat, cfg.rules, cfg.filters, now)
        self.agents = {k for k in self.business if k[1]} | {k for k in self.response if k[1]}
        self.cards = {
            (shop, agent, period): self._card(shop, agent, period)
            for shop, agent in self.agents for period in ref.PERIODS
        }

    def completion(self, shop: str, agent: str, period: str) -> float | None:
        info = self.cfg.agent(agent)
        return ref.completion(self.kpis(shop, agent, period), period,
                              info.sales_target if info else None, self.now,
                              self.cfg.rules(shop).timezone)

    def kpis(self, shop: str, agent: str, window: str) -> ref.BizKpis:
        snap = self.business.get((shop, agent))
        return snap.windows[window] if snap else ref.BizKpis()

    def _card(self, shop: str, agent: str, period: str) -> ref.Card:
        cfg = self.cfg
        rules = cfg.rules(shop)
        team = cfg.team_of(agent)
        sc = cfg.scorecard(team)
        k = self.kpis(shop, agent, period)
        done = self.completion(shop, agent, period)
        reply_rate, rt_mean = ref.response_for_score(self.trace, shop, agent, rules,
                                                     self.now)[period]
        return ref.scorecard(
            k, reply_rate, rt_mean, done, cfg.lines(shop, team), weights=sc.weights,
            conversion_target=sc.conversion_target,
            payment_success_target=sc.payment_success_target, aov_target=sc.aov_target,
            reply_rate_target=sc.reply_rate_target, pass_score=sc.pass_score,
            execution=sc.execution_default,
        )

    def differences(self, samples: Mapping[Sample, float]) -> list[str]:
        """Every business sample of /metrics that differs from the oracle (and every missing
        or extra one)."""
        diffs: list[str] = []
        exported: dict[tuple[str, str], str] = {}  # (shop, agent) -> team
        for (name, labelset), _ in samples.items():
            lab = dict(labelset)
            if name == "kefu_score_total":
                exported[(lab["shop"], lab["agent"])] = lab["team"]
        if set(exported) != self.agents:
            diffs.append(f"scored agents: missing {sorted(self.agents - set(exported))[:5]}, "
                         f"extra {sorted(set(exported) - self.agents)[:5]}")
        for (shop, agent) in sorted(self.agents & set(exported)):
            base = {"shop": shop, "team": exported[(shop, agent)], "agent": agent}
            if exported[(shop, agent)] != self.cfg.team_of(agent):
                diffs.append(f"{shop}/{agent}: team {exported[(shop, agent)]!r}")
            for window in ref.ALL_WINDOWS:
                diffs.extend(self._window(samples, base, window))
            for period in ref.PERIODS:
                want = self.cards[(shop, agent, period)]
                key = ("kefu_score_total", labels(**base, period=period))
                got = samples.get(key)
                if got is None or abs(got - want.total) > 1e-3:
                    diffs.append(f"{shop}/{agent} score {period}: metrics={got} oracle="
                                 f"{want.total:.6f} {want.items}")
                passed = samples.get(("kefu_score_passed", labels(**base, period=period)))
                if passed != (1 if want.passed else 0):
                    diffs.append(f"{shop}/{agent} passed {period}: metrics={passed}")
                for item, points in want.items.items():
                    got = samples.get(("kefu_score_points", labels(**base, period=period,
                                                                     item=item)))
                    if got is None or abs(got - points) > 1e-4:
                        diffs.append(f"{shop}/{agent} {item} {period}: metrics={got} "
                                     f"oracle={points}")
                done = self.completion(shop, agent, period)
                got = samples.get(("kefu_target_completion_ratio",
                                   labels(**base, window=period)))
                if (got is None) != (done is None) or (
                    got is not None and done is not None and not close(got, done)
                ):
                    diffs.append(f"{shop}/{agent} target completion {period}: metrics={got} "
                                 f"oracle={done}")
        for shop in sorted({s for s, _ in self.agents}):
            for window in ref.ALL_WINDOWS:
                want = self.kpis(shop, "", window)
                for name, fld in SILENT.items():
                    got = samples.get((name, labels(shop=shop, window=window)), 0)
                    if got != getattr(want, fld):
                        diffs.append(f"{shop} {name}[{window}]: metrics={got} "
                                     f"oracle={getattr(want, fld)}")
                got = samples.get(("kefu_silent_sales_amount", labels(shop=shop, window=window)),
                                  0.0)
                if round(got * 10_000) != want.sales_units or not close(got, float(want.sales)):
                    diffs.append(f"{shop} silent sales[{window}]: metrics={got} "
                                 f"oracle={want.sales}")
        return diffs

    def _window(self, samples: Mapping[Sample, float], base: dict[str, str],
                window: str) -> list[str]:
        diffs: list[str] = []
        want = self.kpis(base["shop"], base["agent"], window)
        lab = labels(**base, window=window)
        where = f"{base['shop']}/{base['agent']}[{window}]"
        for name, fld in COUNTS.items():
            got = samples.get((name, lab))
            if got != getattr(want, fld):
                diffs.append(f"{where} {name}: metrics={got} oracle={getattr(want, fld)}")
        for name, fld in MONEY.items():
            got = samples.get((name, lab))
            exact: Decimal = getattr(want, fld)
            units = ref.to_units(exact)
            if got is None or round(got * 10_000) != units or not close(got, float(exact)):
                diffs.append(f"{where} {name}: metrics={got} oracle={exact}")
        for name, prop in RATIOS.items():
            got = samples.get((name, lab))
            value = getattr(want, prop)
            if value is None:
                if got is not None:
                    diffs.append(f"{where} {name}: metrics={got} oracle=absent (no data)")
            elif got is None or not close(got, float(value)):
                diffs.append(f"{where} {name}: metrics={got} oracle={float(value)}")
        return diffs




def produce_stream(bootstrap: list[str] | str, topics: Mapping[str, str], stream: Stream) -> None:
    """The whole day as one interleaved stream, in arrival order, from one producer (unpaced):
    a worker then reads the three topics at its own pace."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    try:
        for kind, _, key, value in stream:
            producer.send(topics[kind], key=key, value=value)
        producer.flush(60)
    finally:
        producer.close(10)
