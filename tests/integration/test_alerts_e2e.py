"""Alerts end to end with the real servers: worker → Prometheus → Alertmanager → webhooks.

Embedded broker + `kefu-pulse worker` (KEFU_CLOCK=wall) + Debian's `prometheus` scraping it
with the real rules + Debian's `prometheus-alertmanager` with the real routing, posting to a
small HTTP receiver in this test. Event timestamps are set in the recent past, so a reply
"45 s after the question" needs no waiting. `test_pages_reach_the_pager` covers the response
pages and the monitor; `test_empty_room_pages_and_a_healthy_room_never` the empty room
(KefuEmptyRoom from `kefu.agents` statuses, and its inhibition of the same queue's
KefuBuyerWaiting).

The test copies of the configs differ from deploy/ only where a test must (see
`prometheus_test_config` and `tests.deploy.alertmanager_test_config`):
  * Prometheus: scrape and evaluation every 1 s; the kefu-pulse job scrapes the test worker's
    port (static target instead of DNS discovery); the self-scrape jobs are dropped; alerts go
    to the test Alertmanager; rule groups lose their own `interval`; and `for:` is shortened
    for the two alerts this test waits for (FOR_OVERRIDES). Expressions, labels and
    annotations are untouched.
  * Alertmanager: receivers post to the local receiver (PagerDuty Events v2 and Slack
    payloads, secrets in files holding test values); group_wait 1 s, group_interval 2 s.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.tooling.broker import EmbeddedBroker
from tests.deploy import (
    PROM_CONFIG,
    RULE_FILES,
    Server,
    alertmanager_test_config,
    dump_yaml,
    http_json,
    load_yaml,
    require_tool,
    start_alertmanager,
    start_prometheus,
    wait_for,
)
from tests.integration.harness import Worker, labels, produce

pytestmark = pytest.mark.integration

SHOP = "e2e-shop"
# The shop's default (taobao) lines: warning 30 s, critical 40 s, page_wait 180 s.
ROSTER = """
[[agents]]
id = "a-slow"
name = "慢慢"
team = "pre-sales"

[[agents]]
id = "a-mid"
name = "中中"
team = "vip"

[[agents]]
id = "a-ok"
name = "快快"
team = "after-sales"

[[agents]]
id = "a-away"
name = "离开"
team = "after-sales"
"""
ROUNDS = 6  # per agent; the slow-response alerts need at least 5 in the 5m window
REPLY_AFTER_S = {"a-slow": 45, "a-mid": 35, "a-ok": 5}  # over critical / over warning / fine
WAIT_BEFORE_CROSSING_S = 15  # a-away's buyer passes page_wait this long after being produced

FOR_OVERRIDES = {"KefuAgentSlowResponse": "5s", "KefuWorkerDown": "3s"}
AM_TIMING = {"group_wait": "1s", "group_interval": "2s"}


# ---- the webhook receiver -----------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    at: float
    receiver: str  # the Alertmanager receiver name (the URL path the test config gave it)
    body: dict[str, Any]


class Receiver:
    """Accepts PagerDuty Events v2 and Slack webhook posts on loopback and keeps them."""

    def __init__(self) -> None:
        self.received: list[Notification] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    body = {"raw": raw.decode(errors="replace")}
                name = urllib.parse.urlparse(self.path).path.strip("/")
                with sink.lock:
                    sink.received.append(Notification(time.time(), name, body))
                pager = "pager" in name
                out = b'{"status":"success","message":"Event processed"}' if pager else b"ok"
                self.send_response(202 if pager else 200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def all(self) -> list[Notification]:
        with self.lock:
            return list(self.received)

    def pages(self, receiver: str, alertname: str) -> list[Notification]:
        """PagerDuty 'trigger' events for `alertname` sent to the `receiver` pager."""
        return [
            n for n in self.all()
            if n.receiver == receiver and n.body.get("event_action") == "trigger"
            and n.body["payload"]["custom_details"].get("alertname") == alertname
        ]

    def chats(self, receiver: str) -> list[str]:
        """Slack message texts (title + text) posted to `receiver`."""
        out = []
        for n in self.all():
            if n.receiver == receiver:
                for att in n.body.get("attachments", []):
                    out.append(f"{att.get('title', '')}\n{att.get('text', '')}")
        return out

    def dump(self) -> str:
        return "\n".join(f"{n.receiver}: {orjson.dumps(n.body).decode()[:1500]}"
                         for n in self.all())


# ---- configs ------------------------------------------------------------------------------------


def prometheus_test_config(tmp: Path, worker_port: int, am_port: int) -> Path:
    """The real prometheus.yml and rules, with the test's targets, 1 s pace and short `for:`s."""
    config = load_yaml(PROM_CONFIG)
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "kefu-pulse"]
    job.pop("dns_sd_configs", None)
    job.update(scrape_interval="1s", static_configs=[{"targets": [f"127.0.0.1:{worker_port}"]}])
    config["scrape_configs"] = [job]
    config["alerting"]["alertmanagers"] = [
        {"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}
    ]
    rule_dir = tmp / "rules"
    rule_dir.mkdir(exist_ok=True)
    seen = set()
    for path in RULE_FILES:
        rules = load_yaml(path)
        for group in rules["groups"]:
            group.pop("interval", None)
            for rule in group["rules"]:
                if rule.get("alert") in FOR_OVERRIDES:
                    rule["for"] = FOR_OVERRIDES[rule["alert"]]
                    seen.add(rule["alert"])
        dump_yaml(rules, rule_dir / path.name)
    assert seen == set(FOR_OVERRIDES), f"alerts renamed? {set(FOR_OVERRIDES) - seen}"
    config["rule_files"] = [str(rule_dir / "*.yml")]
    return dump_yaml(config, tmp / "prometheus.yml")


# ---- chat events --------------------------------------------------------------------------------


def _event(buyer: str, sender: str, agent: str | None, ts_ms: int, n: int) -> tuple[bytes, bytes]:
    body = {
        "message_id": f"{buyer}-{n}", "shop_id": SHOP, "buyer_id": buyer, "sender": sender,
        "agent_id": agent, "ts": ts_ms, "event": "message",
    }
    return f"{SHOP}:{buyer}".encode(), orjson.dumps(body)


def answered_rounds(now_ms: int) -> list[tuple[bytes, bytes]]:
    """Each agent in REPLY_AFTER_S answers ROUNDS buyers, replies 30–80 s ago."""
    events = []
    for agent, after in REPLY_AFTER_S.items():
        for i in range(ROUNDS):
            asked = now_ms - (after + 80 - 10 * i) * 1000
            buyer = f"{agent}-buyer{i}"
            events.append(_event(buyer, "buyer", agent, asked, 1))
            events.append(_event(buyer, "agent", agent, asked + after * 1000, 2))
    return events


# ---- helpers ------------------------------------------------------------------------------------


def prom_query(prom: Server, expr: str) -> list[dict[str, Any]]:
    answer = http_json(f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@dataclass
class AlertRun:
    """One end-to-end alert run: a worker and Alertmanager started, Prometheus when asked."""

    worker: Worker
    am: Server
    servers: list[Server]
    timeline: list[str]  # printed at the end (pytest -s) and on failure
    started: float

    def mark(self, what: str) -> None:
        self.timeline.append(f"{time.monotonic() - self.started:6.1f}s  {what}")

    def start_prometheus(self, workdir: Path) -> Server:
        """Prometheus scraping the worker and alerting to Alertmanager, first scrape done."""
        prom = start_prometheus(
            prometheus_test_config(workdir, self.worker.port, self.am.port), workdir
        )
        self.servers.append(prom)
        wait_for(lambda: prom_query(prom, 'up{job="kefu-pulse"} == 1'), 20, "the first scrape")
        self.mark("prometheus scraping")
        return prom


@contextmanager
def alert_run(broker: EmbeddedBroker, app_id: str, workdir: Path, receiver: Receiver,
              roster: str) -> Iterator[AlertRun]:
    """Start the worker (wall clock, `roster`) and Alertmanager; on failure print the timeline,
    the webhooks received and every log tail; always stop them all."""
    for tool in ("prometheus", "alertmanager"):
        require_tool(tool)
    config_path = workdir / "kefu.toml"
    config_path.write_text(roster, encoding="utf-8")
    worker = Worker(broker, app_id=app_id, workdir=workdir, clock="wall", config_path=config_path)
    servers: list[Server] = []
    timeline: list[str] = []
    started = time.monotonic()
    try:
        worker.start()
        timeline.append(f"{time.monotonic() - started:6.1f}s  worker ready")
        am = start_alertmanager(
            alertmanager_test_config(workdir, receiver.url, AM_TIMING), workdir
        )
        servers.append(am)
        yield AlertRun(worker, am, servers, timeline, started)
    except BaseException:
        print("\n".join(timeline))
        print(receiver.dump())
        for server in servers:
            print(f"--- {server.name} log tail ---\n{server.log_tail()}")
        print(f"--- worker log tail ---\n{worker.log_tail()}")
        raise
    finally:
        for server in reversed(servers):
            server.stop()
        worker.kill()


def test_pages_reach_the_pager(
    broker: EmbeddedBroker, app_id: str, workdir: Path, receiver: Receiver
) -> None:
    with alert_run(broker, app_id, workdir, receiver, ROSTER) as run:
        worker, mark = run.worker, run.mark

        # Answered rounds first, so the worker exports every agent before Prometheus looks.
        produce(broker, worker.topics["chat"], answered_rounds(int(time.time() * 1000)))

        def rounds_exported() -> bool:
            m = worker.metrics()
            return all(
                m[("kefu_rounds", labels(shop=SHOP, team=team, agent=agent, window="5m"))]
                == ROUNDS
                for agent, team in (("a-slow", "pre-sales"), ("a-mid", "vip"),
                                    ("a-ok", "after-sales"))
            )

        worker.wait_until(rounds_exported, 60, "the worker to export every agent's rounds")
        mark("rounds exported")

        prom = run.start_prometheus(workdir)

        # a-away's buyer asks now and is never answered: page_wait (180 s) passes soon.
        asked_ms = int(time.time() * 1000) - (180 - WAIT_BEFORE_CROSSING_S) * 1000
        crossing = asked_ms / 1000 + 180
        produce(broker, worker.topics["chat"],
                [_event("away-buyer", "buyer", "a-away", asked_ms, 1)])

        # -- the slow agent pages, with the right labels -------------------------------------
        (page,) = wait_for(lambda: receiver.pages("support-pager", "KefuAgentSlowResponse"),
                           60, "the slow agent's page")[:1]
        mark("slow-agent page received")
        details = page.body["payload"]["custom_details"]
        assert details["severity"] == "page"
        assert (details["shop"], details["team"], details["agents"]) == (
            SHOP, "pre-sales", "a-slow"), details
        assert page.body["routing_key"] == "test-routing-key-support-pager"  # from the key file
        assert page.body["payload"]["severity"] == "critical"
        assert "45s" in details["summary"] and "超过合格线" in details["summary_zh"], details
        assert details["runbook_url"].endswith("#alert-kefuagentslowresponse")
        firing = prom_query(prom, 'ALERTS{alertname="KefuAgentSlowResponse",severity="page",'
                                  'alertstate="firing"}')
        assert [a["metric"] for a in firing] == [{
            "__name__": "ALERTS", "alertname": "KefuAgentSlowResponse", "alertstate": "firing",
            "severity": "page", "component": "kpi", "line": "critical",
            "shop": SHOP, "team": "pre-sales", "agent": "a-slow",
        }]

        # -- the buyer still waiting pages, after page_wait and before anyone answers ----------
        (waiting,) = wait_for(lambda: receiver.pages("support-pager", "KefuBuyerWaiting"),
                              WAIT_BEFORE_CROSSING_S + 45, "the waiting buyer's page")[:1]
        mark(f"waiting-buyer page received {waiting.at - crossing:+.1f}s after page_wait")
        details = waiting.body["payload"]["custom_details"]
        assert (details["shop"], details["team"], details["agents"]) == (
            SHOP, "after-sales", "a-away"), details
        assert crossing <= waiting.at <= crossing + 30, (crossing, waiting.at)
        now_metrics = worker.metrics()
        still = labels(shop=SHOP, team="after-sales", agent="a-away")
        assert now_metrics[("kefu_waiting_buyers", still)] == 1, "paged after the reply?"
        assert now_metrics[("kefu_oldest_wait_seconds", still)] > 180

        # -- the agent just over the warning line gets a chat message, never a page -----------
        # (and a-slow's own warning is inhibited by its page)
        def mid_warning() -> list[str]:
            return [t for t in receiver.chats("support-chat") if "[warning] agent=a-mid" in t]

        wait_for(mid_warning, 30, "a-mid's warning in the support chat")
        mark("a-mid warning in chat")
        slow_pages = receiver.pages("support-pager", "KefuAgentSlowResponse")
        assert {n.body["payload"]["custom_details"]["agents"] for n in slow_pages} == {"a-slow"}
        chats = receiver.chats("support-chat")
        assert not [t for t in chats if "[warning] agent=a-slow" in t], chats

        # -- the healthy agent never paged or warned --------------------------------------------
        assert not [n for n in receiver.all() if "a-ok" in orjson.dumps(n.body).decode()], (
            receiver.dump())
        assert not prom_query(prom, 'count_over_time(ALERTS{agent="a-ok"}[1h])')
        mentioned_mid = [n for n in receiver.all() if n.receiver.endswith("pager")
                         and "a-mid" in orjson.dumps(n.body).decode()]
        assert not mentioned_mid, "a warning-level agent reached the pager"

        # -- killing the worker pages "monitor down" -------------------------------------------
        worker.kill()
        (down,) = wait_for(lambda: receiver.pages("sre-pager", "KefuWorkerDown"),
                           30, "the worker-down page")[:1]
        mark("worker-down page received")
        details = down.body["payload"]["custom_details"]
        assert details["severity"] == "page" and details["instances"] == f"127.0.0.1:{worker.port}"
        assert down.body["routing_key"] == "test-routing-key-sre-pager"
        assert not receiver.pages("support-pager", "KefuWorkerDown")
        assert time.monotonic() - run.started < 180, "the alert test should stay under 3 minutes"
        print("\n".join(run.timeline))
        print(receiver.dump())


# ---- the empty room ----------------------------------------------------------------------------

EMPTY_SHOP = "e2e-empty-room"  # its agents go away while a buyer waits in its queue
HEALTHY_SHOP = "e2e-healthy-room"  # the same queue, but an agent is online
ROOM_ROSTER = """
[[agents]]
id = "r-away"
name = "走开"
team = "pre-sales"

[[agents]]
id = "r-off"
name = "下线"
team = "after-sales"

[[agents]]
id = "r-on"
name = "在线"
team = "pre-sales"
"""


def _status(shop: str, agent: str, status: str, ts_ms: int) -> tuple[bytes, bytes]:
    body = {"shop_id": shop, "agent_id": agent, "status": status, "ts": ts_ms}
    return f"{shop}:{agent}".encode(), orjson.dumps(body)


def _queued(shop: str, buyer: str, ts_ms: int) -> tuple[bytes, bytes]:
    """A buyer message nobody has been assigned to (agent_id null): the shop queue."""
    body = {"message_id": f"{buyer}-1", "shop_id": shop, "buyer_id": buyer, "sender": "buyer",
            "agent_id": None, "ts": ts_ms, "event": "message"}
    return f"{shop}:{buyer}".encode(), orjson.dumps(body)


def test_empty_room_pages_and_a_healthy_room_never(
    broker: EmbeddedBroker, app_id: str, workdir: Path, receiver: Receiver
) -> None:
    """KefuEmptyRoom on the real Prometheus and Alertmanager: both shops' queues wait past
    page_wait; the shop whose agents went away (one `away`, one `offline`) gets the empty-room
    page, and its queue's KefuBuyerWaiting is inhibited by it (one page per queue, the one that
    says why); the shop with an agent online pages only KefuBuyerWaiting and never the empty
    room."""
    with alert_run(broker, app_id, workdir, receiver, ROOM_ROSTER) as run:
        worker, mark, am = run.worker, run.mark, run.am

        # The room: everyone online ten minutes ago; in the empty shop one agent went away and
        # one offline five minutes ago, in the healthy one the agent is still online.
        now_ms = int(time.time() * 1000)
        produce(broker, worker.topics["agents"], [
            _status(EMPTY_SHOP, "r-away", "online", now_ms - 600_000),
            _status(EMPTY_SHOP, "r-off", "online", now_ms - 600_000),
            _status(EMPTY_SHOP, "r-away", "away", now_ms - 300_000),
            _status(EMPTY_SHOP, "r-off", "offline", now_ms - 300_000),
            _status(HEALTHY_SHOP, "r-on", "online", now_ms - 600_000),
        ])
        # Both queues: a buyer nobody took, crossing page_wait (180 s) soon.
        asked_ms = now_ms - (180 - WAIT_BEFORE_CROSSING_S) * 1000
        crossing = asked_ms / 1000 + 180
        produce(broker, worker.topics["chat"], [
            _queued(EMPTY_SHOP, "queued-1", asked_ms), _queued(HEALTHY_SHOP, "queued-2", asked_ms),
        ])

        def room_exported() -> bool:
            m = worker.metrics()
            away = m[("kefu_agent_status", labels(shop=EMPTY_SHOP, team="pre-sales",
                                                  agent="r-away", status="away"))]
            online = m[("kefu_agent_status", labels(shop=HEALTHY_SHOP, team="pre-sales",
                                                    agent="r-on", status="online"))]
            queues = [m[("kefu_waiting_buyers", labels(shop=shop, team="unassigned", agent=""))]
                      for shop in (EMPTY_SHOP, HEALTHY_SHOP)]
            return away == online == 1 and queues == [1, 1]

        worker.wait_until(room_exported, 60, "the room's statuses and queues on /metrics")
        mark("statuses and queues exported")

        prom = run.start_prometheus(workdir)

        # -- the empty room pages, with the shop and the runbook --------------------------------
        (page,) = wait_for(lambda: receiver.pages("support-pager", "KefuEmptyRoom"),
                           WAIT_BEFORE_CROSSING_S + 45, "the empty room's page")[:1]
        mark(f"empty-room page received {page.at - crossing:+.1f}s after page_wait")
        assert crossing <= page.at <= crossing + 30, (crossing, page.at)
        details = page.body["payload"]["custom_details"]
        assert (details["severity"], details["shop"], details["team"]) == (
            "page", EMPTY_SHOP, "unassigned"), details
        assert "no agent is online" in details["summary"], details
        assert "没有客服在线" in details["summary_zh"], details
        assert details["runbook_url"].endswith("#alert-kefuemptyroom")

        # -- the healthy room's queue pages as a waiting buyer --------------------------------
        wait_for(lambda: [n for n in receiver.pages("support-pager", "KefuBuyerWaiting")
                          if n.body["payload"]["custom_details"]["shop"] == HEALTHY_SHOP],
                 30, "the healthy shop's waiting-buyer page")
        mark("healthy shop's waiting-buyer page received")

        # -- the empty shop's KefuBuyerWaiting fires in Prometheus but Alertmanager holds it --
        def empty_queue_alert() -> list[dict[str, Any]]:
            return [a for a in http_json(am.url + "/api/v2/alerts")
                    if a["labels"].get("alertname") == "KefuBuyerWaiting"
                    and a["labels"].get("shop") == EMPTY_SHOP]

        (held,) = wait_for(empty_queue_alert, 20, "the empty shop's KefuBuyerWaiting in AM")
        assert held["status"]["state"] == "suppressed" and held["status"]["inhibitedBy"], held
        time.sleep(5)  # a few more evaluations and group intervals
        for n in receiver.pages("support-pager", "KefuBuyerWaiting"):
            assert n.body["payload"]["custom_details"]["shop"] != EMPTY_SHOP, receiver.dump()

        # -- the healthy room never pages as empty ---------------------------------------------
        assert not prom_query(
            prom, f'count_over_time(ALERTS{{alertname="KefuEmptyRoom",shop="{HEALTHY_SHOP}"}}[1h])')
        assert [n for n in receiver.pages("support-pager", "KefuEmptyRoom")
                if n.body["payload"]["custom_details"]["shop"] != EMPTY_SHOP] == []
        print("\n".join(run.timeline))
