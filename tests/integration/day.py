"""One generated support day and its oracle, shared by the end-to-end tests.

A simulated day of chat, orders and ratings, keyed as producers must key it, with the
independent reference computations (tests/domain) of every response and business KPI, and a
comparison of a worker's `/metrics` against them that lists every difference.

`with_status_and_marks` adds what the simulator does not (yet) generate: `kefu.agents` status
events and `resolved` marks on `close` events and ratings. It is a post-processing step here,
not a simulator change, so the end-to-end oracle keeps its awkward cases (status gaps, replies
while `away`, an agent without status events, ratings overriding close marks, sessions without
marks) whatever the demo's simulator becomes.
"""

from __future__ import annotations

import dataclasses
import math
import random
import tomllib
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer

from streams.config import Config
from streams.domain.model import STATUSES, WINDOWS
from streams.events import (
    Rejected,
    decode_agent_status,
    decode_chat,
    decode_order,
    decode_rating,
)
from streams.tooling.simulate import Simulator
from tests.domain import business_reference as ref
from tests.domain.reference import reference_snapshots, walk
from tests.domain.status_reference import StatusKpis, status_reference
from tests.integration.harness import Sample, labels

DAY_START_MS = 1_731_254_400_000  # 2024-11-11 00:00 +08:00
BUYERS_PER_MINUTE = 1.0  # ~1,400 visits, ~14k chat events, ~1k order events in the day
DECODERS: dict[str, Callable[[bytes], Any]] = {
    "chat": decode_chat, "orders": decode_order, "ratings": decode_rating,
    "agents": decode_agent_status,
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


def write_config(sim: Simulator, path: Path,
                 max_concurrent: Mapping[str, int] | None = None) -> Path:
    """The day's config: ad patterns, shop profiles and the simulator's roster, with
    `max_concurrent` added to the roster entries of the agents in `max_concurrent` (so the
    day has limits from the roster as well as from status events and the default)."""
    roster = sim.roster_toml()
    if max_concurrent:
        lines = []
        for line in roster.splitlines(keepends=True):
            lines.append(line)
            if line.startswith("id = "):
                agent = tomllib.loads(line)["id"]
                if agent in max_concurrent:
                    lines.append(f"max_concurrent = {max_concurrent[agent]}\n")
        roster = "".join(lines)
    path.write_text(
        '[filters]\nad_patterns = ["加微信", "(?i)https?://", "QQ号"]\n'
        + sim.shops_toml() + "\n" + roster,
        encoding="utf-8",
    )
    return path


# ---- status events and resolution marks (post-processing of the simulated day) ----------------


@dataclass(frozen=True, slots=True)
class DayMessage:
    """A record added to the simulated day (same shape as the simulator's `SimMessage`, whose
    topic kinds do not include `agents`)."""

    topic: str
    key: bytes
    value: bytes
    ts: int


MINUTE = 60_000


def roster_limits(sim: Simulator) -> dict[str, int]:
    """Roster `max_concurrent` for every fourth agent (the second, sixth, ...): one of them
    (the tenth) also gets limits on its status events, which must win over the roster."""
    return {a.id: 4 + i for i, a in enumerate(sim.agents) if i % 4 == 1}


def _mark(*parts: str, true: int, false: int) -> bool | None:
    """A deterministic mark from the record's identity: a redelivered copy gets the same one
    (so de-duplication cannot change the answer), `true`/`false` tenths marked each way and
    the rest left without a mark."""
    h = zlib.crc32("\x1f".join(parts).encode()) % 10
    return True if h < true else False if h < true + false else None


def _with_mark(value: bytes, resolved: bool | None) -> bytes:
    obj = orjson.loads(value)
    obj.pop("resolved", None)  # the simulator may mark some one day: this step decides
    if resolved is not None:
        obj["resolved"] = resolved
    return orjson.dumps(obj)


def add_marks(messages: Sequence[Any]) -> list[Any]:
    """`resolved` on ~60 % of the good `close` events (2:1 resolved) and on ~70 % of the good
    ratings (4:3 resolved): independent draws, so many ratings override a close mark with the
    other answer, and many sessions stay without any mark. Bad records stay as they are."""
    out: list[Any] = []
    for m in messages:
        value = m.value
        try:
            if m.topic == "chat":
                ev = decode_chat(m.value)
                if ev.event == "close":
                    value = _with_mark(m.value, _mark(ev.shop_id, ev.buyer_id, ev.message_id,
                                                      true=4, false=2))
            elif m.topic == "ratings":
                r = decode_rating(m.value)
                value = _with_mark(m.value, _mark(r.shop_id, r.buyer_id, r.agent_id, str(r.ts),
                                                  true=4, false=3))
        except Rejected:
            pass
        out.append(m if value == m.value else dataclasses.replace(m, value=value))
    return out


def status_events(sim: Simulator, start_ms: int, end_ms: int, seed: int = 11
                  ) -> list[DayMessage]:
    """A console's status stream per agent over [start_ms, end_ms], arriving at its ts.

    Every agent but the last has one: a random walk over online / busy / away (explicit
    `offline` only for every sixth agent) with segments of ~25 min and, now and then, a silence
    of 70–150 min (past 6 × session_idle: offline is assumed unless the agent replies).
    `away` segments overlap the simulator's replies, so agents reply while away. Every third
    agent sends `max_concurrent` on some events; one redelivered event and one same-millisecond
    pair (away and online: online wins) are in the day too.
    """
    rng = random.Random(f"kefu-day-status:{seed}")
    out: list[DayMessage] = []

    def emit(shop: str, agent: str, status: str, ts: int, limit: int | None) -> None:
        body: dict[str, Any] = {"shop_id": shop, "agent_id": agent, "status": status, "ts": ts}
        if limit is not None:
            body["max_concurrent"] = limit
        out.append(DayMessage("agents", f"{shop}:{agent}".encode(), orjson.dumps(body), ts))

    for i, agent in enumerate(sim.agents[:-1]):  # the last agent: no status events at all
        t = start_ms + rng.randrange(40 * MINUTE)
        first = True
        while t <= end_ms:
            status = "online" if first else rng.choices(
                ("online", "busy", "away", "offline"),
                (5, 2.5, 2.5, 1 if i % 6 == 2 else 0))[0]
            limit = rng.randint(3, 15) if i % 3 == 0 and rng.random() < 0.3 else None
            emit(agent.shop, agent.id, status, t, limit)
            if i == 1 and first:
                emit(agent.shop, agent.id, "away", t, None)  # same ms: online wins
            if i == 4 and rng.random() < 0.2:
                emit(agent.shop, agent.id, status, t, limit)  # a redelivered event
            first = False
            gap = rng.uniform(70, 150) if rng.random() < 0.1 else rng.expovariate(1 / 25)
            t += max(1000, int(gap * MINUTE))
    return out


def with_status_and_marks(sim: Simulator, messages: Sequence[Any]) -> list[Any]:
    """The simulated day with resolution marks and status events, in arrival order (a status
    event arrives at its ts; no status event lies after the day's last event, so *now* stays
    the simulated day's)."""
    end = max(e.ts for e in keyed_stream(list(messages))[1]["chat"])
    marked = add_marks(messages)
    added = status_events(sim, DAY_START_MS, end)
    return sorted([*marked, *added], key=lambda m: m.ts)  # stable: the day's order kept


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
        key = ev.routing_key if m.topic == "agents" else ev.conversation_key.encode()
        stream.append((m.topic, m.ts, key, m.value))
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
        self.status = status_reference(chat, events.get("agents", []), cfg.rules, cfg.filters,
                                       now, roster=self.roster_limit)
        self.trace = walk(chat, cfg.rules, cfg.filters, now)
        self.agents = {k for k in self.business if k[1]} | {k for k in self.response if k[1]}
        self.cards = {
            (shop, agent, period): self._card(shop, agent, period)
            for shop, agent in self.agents for period in ref.PERIODS
        }

    def roster_limit(self, agent: str) -> int | None:
        info = self.cfg.agent(agent)
        return info.max_concurrent if info else None

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


    def load_differences(self, samples: Mapping[Sample, float]) -> list[str]:
        """Status and load (tests/domain/status_reference.py) and missed buyers
        (tests/domain/reference.py) on /metrics against the oracles, at the oracle's *now*
        (call it once the worker's watermark is there: status seconds and occupancy depend on
        now). An exported agent the status oracle does not know must show no status and no
        load; an agent the oracle knows from a status event or a reply must be exported (one
        known only from an open session handed over by a transfer is not shown yet, by
        docs/kpis.md)."""
        diffs: list[str] = []
        exported: dict[tuple[str, str], str] = {}
        for (name, labelset), _ in samples.items():
            if name == "kefu_max_concurrent":
                lab = dict(labelset)
                exported[(lab["shop"], lab["agent"])] = lab["team"]
        shown = {k for k, v in self.status.items() if v.status is not None or any(
            sec for w in v.seconds.values() for sec in w.values())}
        missing = sorted(shown - set(exported))
        if missing:
            diffs.append(f"status agents missing from /metrics: {missing[:5]}")
        for (shop, agent), team in sorted(exported.items()):
            want = self.status.get((shop, agent)) or StatusKpis(
                None, {w: dict.fromkeys(STATUSES, 0.0) for w in WINDOWS}, 0,
                self.roster_limit(agent) or 10, 0.0)
            base = {"shop": shop, "team": team, "agent": agent}
            where = f"{shop}/{agent}"
            for status in STATUSES:
                got = samples.get(("kefu_agent_status", labels(**base, status=status)))
                if got != (1 if want.status == status else 0):
                    diffs.append(f"{where} status {status}: metrics={got} oracle={want.status}")
                for window, seconds in want.seconds.items():
                    got = samples.get(("kefu_status_seconds",
                                       labels(**base, status=status, window=window)))
                    if got is None or not close(got, seconds[status]):
                        diffs.append(f"{where} {status} seconds[{window}]: metrics={got} "
                                     f"oracle={seconds[status]}")
            for name, value in (("kefu_concurrent_buyers", float(want.concurrent)),
                                ("kefu_max_concurrent", float(want.max_concurrent)),
                                ("kefu_occupancy_ratio", want.occupancy)):
                got = samples.get((name, labels(**base)))
                if got is None or not close(got, value):
                    diffs.append(f"{where} {name}: metrics={got} oracle={value}")
            snap = self.response.get((shop, agent))
            for window in WINDOWS:
                missed = snap.windows[window].missed if snap else 0
                got = samples.get(("kefu_missed_buyers", labels(**base, window=window)), 0)
                if got != missed:
                    diffs.append(f"{where} missed[{window}]: metrics={got} oracle={missed}")
        for (shop, agent), snap in self.response.items():
            if agent and (shop, agent) not in exported and any(
                    w.missed for w in snap.windows.values()):
                diffs.append(f"{shop}/{agent}: missed buyers but not on /metrics")
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
