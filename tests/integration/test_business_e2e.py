"""The business half end to end on the real embedded broker: a generated day of chat, orders,
ratings and agent status → every business KPI and the scorecard on /metrics == the oracle
(tests/domain/business_reference.py), and so is the 绩效考核表 the worker serves and
`kefu-pulse report` writes; status and load (tests/domain/status_reference.py) and missed buyers
(tests/domain/reference.py) == their oracles at the worker's watermark.

The simulator's day gets `kefu.agents` status events and `resolved` marks on closes and ratings
from `day.with_status_and_marks` (see there for the awkward cases it puts in).

Event-clock mode (KEFU_CLOCK=event): *now* is the largest event ts, so the whole simulated day
replays in seconds. Every record is keyed "{shop_id}:{buyer_id}" (the simulator mis-keys ~0.5 %
of chat on purpose; re-keyed by the worker, they would arrive in another order than the
oracle's). The same day is delivered three ways, and each must give the oracle's figures:

- `chat-first`: chat is produced first and processed, then orders, ratings and status events:
  the order system and the consoles lag the whole day, the contract's "order events arriving after
  later chat events" case at its extreme.
- `live`: as a live shop sends it: one producer thread per topic, each sending its records in
  the simulator's arrival order, paced by one shared clock (the day squeezed into ~20 s), so
  chat, orders, ratings and status reach the broker interleaved in event time.
- `one-stream`: the whole day as one interleaved stream (arrival order, all four topics) from
  one producer, unpaced: the worker reads the topics at its own pace, so orders, ratings and
  status may be read well before the chat around them, and chat before the orders.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from kafka import KafkaProducer
from openpyxl import load_workbook

from streams.config import load_config
from streams.report import make_report
from streams.tooling.broker import EmbeddedBroker
from streams.tooling.simulate import Simulator
from tests.domain import business_reference as ref
from tests.integration.day import (
    BUYERS_PER_MINUTE,
    DAY_START_MS,
    DECODERS,
    Expected,
    Stream,
    keyed_stream,
    of_kind,
    produce_stream,
    roster_limits,
    with_status_and_marks,
    write_config,
)
from tests.integration.harness import Worker, labels, produce

pytestmark = pytest.mark.integration

LIVE_SECONDS = 20.0  # the `live` delivery's wall-clock length of the simulated day


def _events_seen(worker: Worker, kind: str) -> float:
    samples = worker.metrics()
    topic = worker.topics[kind]
    return sum(samples.get(("kefu_events_total", labels(topic=topic, outcome=o)), 0)
               for o in ("accepted", "duplicate", "late", "rejected"))


def _deliver_chat_first(broker: EmbeddedBroker, worker: Worker, stream: Stream) -> None:
    chat = of_kind(stream, "chat")
    produce(broker, worker.topics["chat"], chat)
    worker.wait_until(lambda: _events_seen(worker, "chat") == len(chat), 90,
                      "the day's chat to be processed")
    produce(broker, worker.topics["orders"], of_kind(stream, "orders"))
    produce(broker, worker.topics["ratings"], of_kind(stream, "ratings"))
    produce(broker, worker.topics["agents"], of_kind(stream, "agents"))


def _deliver_live(broker: EmbeddedBroker, worker: Worker, stream: Stream) -> None:
    """One producer thread per topic, each sending at its records' arrival time on one shared
    clock that runs the day in LIVE_SECONDS."""
    first, last = stream[0][1], stream[-1][1]
    scale = LIVE_SECONDS / max(1, last - first)
    t0 = time.monotonic() + 0.5
    errors: list[BaseException] = []
    sent: dict[str, int] = {}

    def send(kind: str) -> None:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, acks="all")
        try:
            n = 0
            for k, arrival, key, value in stream:
                if k != kind:
                    continue
                delay = t0 + (arrival - first) * scale - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                producer.send(worker.topics[kind], key=key, value=value)
                n += 1
            producer.flush(60)
            sent[kind] = n
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            producer.close(10)

    threads = [threading.Thread(target=send, args=(kind,), name=f"produce-{kind}")
               for kind in DECODERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LIVE_SECONDS + 120)
    assert not errors, errors
    assert sent == {kind: len(of_kind(stream, kind)) for kind in DECODERS}, sent


def _deliver_one_stream(broker: EmbeddedBroker, worker: Worker, stream: Stream) -> None:
    produce_stream(broker.bootstrap, worker.topics, stream)


DELIVERIES: dict[str, Callable[[EmbeddedBroker, Worker, Stream], None]] = {
    "chat-first": _deliver_chat_first, "live": _deliver_live, "one-stream": _deliver_one_stream,
}


@pytest.mark.parametrize("delivery", list(DELIVERIES))
def test_generated_day_business_kpis_match_reference(broker, app_id, workdir, delivery):
    sim = Simulator(seed=11, start_ms=DAY_START_MS, buyers_per_minute=BUYERS_PER_MINUTE)
    messages = with_status_and_marks(sim, list(sim.messages(24 * 3600)))
    config_path = write_config(sim, workdir / "kefu.toml", roster_limits(sim))
    cfg = load_config(config_path)
    stream, events = keyed_stream(messages)
    now = max(e.ts for evs in events.values() for e in evs)
    expected = Expected(cfg, events, now)
    _assert_day_has_status_and_marks(expected, events)
    # the day has what the KPIs are about
    month = [s.windows["month"] for s in expected.business.values()]
    assert len(expected.agents) >= 15
    assert sum(w.assists for w in month) > 0 and sum(w.refunded_orders for w in month) > 0
    assert sum(w.converted for w in month) > 0 and sum(w.ratings for w in month) > 0
    assert any(agent == "" for _, agent in expected.business), "no silent orders"
    assert all(e.status != "paid" or e.amount == e.amount.quantize(Decimal("0.01"))
               for e in events["orders"])

    worker = Worker(broker, app_id=app_id, workdir=workdir, config_path=config_path).start()
    try:
        DELIVERIES[delivery](broker, worker, stream)

        last: list[str] = []

        def settled() -> bool:
            samples = worker.metrics()
            if samples.get(("kefu_watermark_timestamp_seconds", frozenset())) != now / 1000:
                return False
            diffs = expected.differences(samples) + expected.load_differences(samples)
            last[:] = diffs
            return not diffs

        try:
            worker.wait_until(settled, 90, "the business, status and load KPIs on /metrics to "
                                           "equal the oracles")
        except AssertionError:
            raise AssertionError(
                f"{len(last)} differences, first: " + "; ".join(last[:8])
            ) from None
        samples = worker.metrics()
        for kind in ("orders", "ratings"):
            topic = worker.topics[kind]
            accepted = samples.get(("kefu_events_total", labels(topic=topic,
                                                                 outcome="accepted")), 0)
            duplicate = samples.get(("kefu_events_total", labels(topic=topic,
                                                                  outcome="duplicate")), 0)
            assert accepted + duplicate == len(of_kind(stream, kind)), kind
        # the month is today here (nothing earlier this month): same figures, both periods scored
        for key, snap in expected.business.items():
            assert snap.windows["month"] == snap.windows["today"], key
        _assert_scorecard_export(worker, expected, workdir)
    finally:
        worker.stop()


def _assert_day_has_status_and_marks(expected: Expected, events: dict[str, list[Any]]) -> None:
    """The generated day holds every case the new KPIs are about, so equality means something:
    marks of both values, ratings overriding a close's mark with the other answer, sessions
    without marks; status time in every status, an assumed offline (a gap), replies while
    `away`, an agent without status events, limits from events, the roster and the default,
    open sessions now."""
    month = [s.windows["month"] for s in expected.business.values()]
    marked = sum(w.marked_sessions for w in month)
    resolved = sum(w.resolved_sessions for w in month)
    assert 0 < resolved < marked, (resolved, marked)
    closes = [e for e in events["chat"] if e.event == "close"]
    assert any(e.resolved is None for e in closes), "no session without a mark"
    close_marks = {(e.shop_id, e.buyer_id): e.resolved for e in closes if e.resolved is not None}
    overrides = [r for r in events["ratings"] if r.resolved is not None
                 and close_marks.get((r.shop_id, r.buyer_id)) == (not r.resolved)]
    assert overrides, "no rating that overrides a close mark with the other answer"

    status = expected.status
    today = [k.seconds["today"] for k in status.values()]
    for s in ("online", "busy", "away", "offline"):
        assert sum(t[s] for t in today) > 0, f"no time {s}"
    explicit_offline = {(e.shop_id, e.agent_id) for e in events["agents"] if e.status == "offline"}
    assert any(k.seconds["today"]["offline"] > 0 for key, k in status.items()
               if key not in explicit_offline), "no assumed offline (status gap)"
    with_status = {(e.shop_id, e.agent_id) for e in events["agents"]}
    assert any(k.status is None for k in status.values()), "every agent has a status"
    assert set(expected.agents) - with_status, "no agent without status events"
    away_since: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for e in events["agents"]:
        away_since.setdefault((e.shop_id, e.agent_id), []).append((e.ts, e.status))
    replies_while_away = 0
    for m in expected.trace.messages:
        if m.kind == "agent":
            before = [st for ts, st in sorted(away_since.get((m.shop, m.agent), [])) if ts < m.ts]
            replies_while_away += bool(before) and before[-1] == "away"
    assert replies_while_away > 0, "no reply while away"
    limits = {k.max_concurrent for k in status.values()}
    roster = set(roster_limits_of(expected))
    assert 10 in limits and limits & roster and limits - roster - {10}, limits
    assert sum(k.concurrent for k in status.values()) > 0, "no open session now"


def roster_limits_of(expected: Expected) -> list[int]:
    return [a.max_concurrent for a in expected.cfg.agents.values() if a.max_concurrent]


def _assert_scorecard_export(worker: Worker, expected: Expected, workdir: Path) -> None:
    """The 绩效考核表 from the real worker: `kefu-pulse report`'s XLSX of the month (named as
    YYYY-MM, the way a supervisor asks) and the endpoint's JSON of today, cell by cell against
    the oracle's cards."""
    tz = expected.cfg.defaults.timezone
    local = datetime.fromtimestamp(expected.now / 1000, ZoneInfo(tz))
    out = workdir / "scorecard.xlsx"
    make_report([worker.url], local.strftime("%Y-%m"), "xlsx", out)
    ws = load_workbook(out).active
    assert ws is not None
    sheet = list(ws.iter_rows(values_only=True))[1:]
    status, body = worker.get("/api/v1/scorecard?period=today")
    assert status == 200, body[:200]
    today = orjson.loads(body)["agents"]
    assert len(sheet) == len(today) == len(expected.agents)
    for period, label, rows in (("month", local.strftime("%Y-%m"), sheet),
                                ("today", local.strftime("%Y-%m-%d"), today)):
        got_agents = []
        for row in rows:
            if isinstance(row, dict):  # the JSON document: flatten as the file does
                cells: list[Any] = [row["shop"], row["team"], row["agent"], row["name"],
                                    row["period"]]
                for item in ref.WEIGHTS:
                    c = row["items"][item]
                    cells += [c["actual"], c["target"], c["points"]]
                cells += [row["total"], row["pass_score"], "合格" if row["passed"] else "不合格"]
            else:
                cells = list(row)
            shop, agent = cells[0], cells[2]
            got_agents.append((shop, agent))
            card = expected.cards[(shop, agent, period)]
            where = f"{shop}/{agent} {period}"
            assert cells[1] == expected.cfg.team_of(agent) and cells[4] == label, where
            for i, item in enumerate(ref.WEIGHTS):
                actual, target, points = cells[5 + 3 * i: 8 + 3 * i]
                want = card.actual[item]
                assert (actual is None) == (want is None), (where, item, actual, want)
                if want is not None:
                    assert actual == pytest.approx(want, rel=1e-9, abs=1e-12), (where, item)
                assert target == pytest.approx(card.target[item]), (where, item)
                assert points == pytest.approx(card.items[item], abs=1e-4), (where, item)
            assert cells[26] == pytest.approx(card.total, abs=1e-3), where
            assert cells[28] == ("合格" if card.passed else "不合格"), where
        assert sorted(got_agents) == sorted(expected.agents), period
