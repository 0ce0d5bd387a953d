"""Every Grafana panel query returns data from a real Prometheus scraping a real worker.

A `kefu-pulse worker` on the embedded broker gets an hour of simulated traffic ending now
(KEFU_CLOCK=event, so the windows hold it), with `kefu.agents` status events and `resolved`
marks added the way the end-to-end day adds them (tests/integration/day.py), so the status,
load and resolution panels read real series, not zeros and absent ratios. Prometheus (Debian
package `prometheus`) scrapes it every second while the last minutes stream in, and then each
panel's PromQL — template variables replaced by real label values,
$__rate_interval/$__range/$__interval by fixed durations — runs through the HTTP API the way
Grafana would run it (instant or range). A query that errors, or returns no series or only NaN,
fails the test, unless it reads a metric in PENDING_METRICS that the worker does not export yet.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.tooling.broker import EmbeddedBroker
from streams.tooling.net import free_port
from streams.tooling.simulate import Simulator
from tests.deploy import require_tool
from tests.integration.day import with_status_and_marks
from tests.integration.harness import ROOT, Worker, parse_metrics, produce

pytestmark = pytest.mark.integration

# Metrics a dashboard may show before the worker exports them: a query reading one of these may
# come back empty while the metric is absent from /metrics. Empty today — keep it that way.
PENDING_METRICS: frozenset[str] = frozenset()  # everything the dashboards read ships now

DURATIONS = {"__rate_interval": "15s", "__range": "2m", "__interval": "2s"}
VAR_RE = re.compile(r"\$(?:\{([A-Za-z0-9_.]+)(?::[a-z]+)?\}|([A-Za-z0-9_]+))")
HISTORY_S = 3600
TAIL_S = 90  # simulated seconds streamed while Prometheus scrapes
CHUNKS = 10


def load_dashboards() -> dict[str, dict[str, Any]]:
    try:
        import grafana_foundation_sdk  # noqa: F401
    except ImportError:
        reason = "grafana-foundation-sdk is not installed (it belongs in the [test] extra)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    spec = importlib.util.spec_from_file_location("kefu_grafana_generate",
                                                  ROOT / "grafana" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built: dict[str, dict[str, Any]] = module.build_all()
    return built


class Prometheus:
    """A real Prometheus server on loopback, scraping one worker every second."""

    def __init__(self, binary: str, workdir: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: kefu-pulse\n"
            f"    static_configs:\n      - targets: ['{target}']\n",
            encoding="utf-8",
        )
        self.log_path = workdir / "prometheus.log"
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Prometheus:
        log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.config}",
             f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1d", "--log.level=warn"],
            stdout=log, stderr=log,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited:\n{self.log_tail()}"
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def api(self, path: str, method: str = "POST", **params: str | float) -> Any:
        query = urllib.parse.urlencode(params)
        if method == "GET":
            req = urllib.request.Request(f"{self.url}/api/v1/{path}?{query}")
        else:
            req = urllib.request.Request(f"{self.url}/api/v1/{path}", data=query.encode(),
                                         method="POST")
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
        try:
            body = json.loads(raw)
        except ValueError:
            raise QueryError(raw.decode(errors="replace").strip()) from None
        if body.get("status") != "success":
            raise QueryError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def label_values(self, label: str, match: str) -> list[str]:
        values: list[str] = self.api(f"label/{label}/values", "GET", **{"match[]": match})
        return values


class QueryError(Exception):
    pass


def substitute(expr: str, values: dict[str, str]) -> str:
    return VAR_RE.sub(lambda m: values[m.group(1) or m.group(2)], expr)


def finite_values(data: dict[str, Any]) -> int:
    n = 0
    for series in data["result"]:
        points = series.get("values") or [series["value"]]
        n += sum(1 for _, v in points if math.isfinite(float(v)))
    return n


def queries(
    dashboards: dict[str, dict[str, Any]],
) -> Iterator[tuple[str, str, str, str, bool]]:
    """(dashboard, panel title, refId, expr, instant) for every panel target."""
    for name, d in sorted(dashboards.items()):
        for panel in d["panels"]:
            for target in panel.get("targets", []):
                yield name, panel["title"], target["refId"], target["expr"], target["instant"]


@pytest.fixture
def stack(broker: EmbeddedBroker, app_id: str, workdir: Path) -> Iterator[tuple[Worker, Any]]:
    binary = require_tool("prometheus")  # Debian package prometheus (make test-deps)
    now_ms = int(time.time() * 1000)
    sim = Simulator(seed=11, start_ms=now_ms - HISTORY_S * 1000, buyers_per_minute=30)
    config = workdir / "kefu.toml"
    config.write_text('[defaults]\nprofile = "taobao"\n\n[filters]\nad_patterns = ["加微信"]\n\n'
                      + sim.shops_toml() + "\n" + sim.roster_toml(), encoding="utf-8")
    worker = Worker(broker, app_id=app_id, workdir=workdir, clock="event", config_path=config,
                    partitions=4).start()
    prom = Prometheus(binary, workdir / "prometheus", f"127.0.0.1:{worker.port}")
    try:
        messages = with_status_and_marks(sim, list(sim.messages(HISTORY_S)))
        cut = now_ms - TAIL_S * 1000
        backlog = [m for m in messages if m.ts < cut]
        tail = [m for m in messages if m.ts >= cut]
        send(broker, worker, backlog)
        last_ts = max(m.ts for m in backlog if m.topic == "chat") / 1000
        worker.wait_until(
            lambda: worker.metrics()[("kefu_watermark_timestamp_seconds", frozenset())]
            >= last_ts - 1, 120, "the backlog processed")
        prom.start()
        size = math.ceil(len(tail) / CHUNKS)
        for i in range(0, len(tail), size):
            send(broker, worker, tail[i:i + size])
            time.sleep(1.5)
        time.sleep(4)  # a few more scrapes after the last chunk
        yield worker, prom
    finally:
        prom.stop()
        worker.stop()


def send(broker: EmbeddedBroker, worker: Worker, messages: list[Any]) -> None:
    by_topic: dict[str, list[tuple[bytes, bytes]]] = defaultdict(list)
    for m in messages:
        by_topic[m.topic].append((m.key, m.value))
    for topic, pairs in by_topic.items():
        produce(broker, worker.topics[topic], pairs)


def test_every_panel_query_returns_data(stack: tuple[Worker, Prometheus]) -> None:
    worker, prom = stack
    dashboards = load_dashboards()
    exported = {name for name, _ in parse_metrics(worker.get("/metrics")[1].decode())}
    exported |= {re.sub(r"_(bucket|sum|count)$", "", n) for n in exported}

    # Template variables: what label_values() offers, then the busiest agent of the last minute
    # among those with a monthly sales target (an after-sales agent has none, so its target
    # completion panels are rightly empty).
    shops = prom.label_values("shop", "kefu_rounds_total")
    assert len(shops) == 3, shops
    busiest = prom.api("query", query="topk(1, sum by (shop, team, agent) "
                                      "(increase(kefu_rounds_total[1m])) "
                                      "and on (shop, team, agent) kefu_sales_target)")["result"]
    assert busiest, "no rounds answered while Prometheus was scraping"
    pick = busiest[0]["metric"]
    assert pick["team"] in prom.label_values("team", f'kefu_rounds_total{{shop="{pick["shop"]}"}}')
    agents = prom.label_values("agent", f'kefu_rounds_total{{shop="{pick["shop"]}",'
                                        f'team="{pick["team"]}"}}')
    assert pick["agent"] in agents
    values = {"shop": pick["shop"], "team": pick["team"], "agent": pick["agent"],
              "window": "1h", **DURATIONS}

    now = time.time()
    failures: list[str] = []
    pending: list[str] = []
    checked = 0
    for dash, title, ref, expr, instant in queries(dashboards):
        promql = substitute(expr, values)
        where = f"{dash} / {title} / {ref}: {promql}"
        try:
            if instant:
                data = prom.api("query", query=promql, time=now)
            else:
                data = prom.api("query_range", query=promql, start=now - 60, end=now, step=2)
        except QueryError as exc:
            failures.append(f"ERROR {where}\n    {exc}")
            continue
        checked += 1
        if finite_values(data):
            continue
        waiting_for = set(re.findall(r"kefu_[a-z0-9_]+", promql)) & (PENDING_METRICS - exported)
        if waiting_for:
            pending.append(f"{where} (pending: {', '.join(sorted(waiting_for))})")
        else:
            failures.append(f"EMPTY {where}")
    print(f"\n{checked} queries evaluated for {values['shop']}/{values['team']}/"
          f"{values['agent']}; {len(pending)} pending on unexported metrics:")
    for line in pending:
        print("  ", line)
    assert checked >= 80
    assert not failures, "\n".join(failures)
    # The data behind the status, load and resolution panels is real, not all zeros.
    samples = parse_metrics(worker.get("/metrics")[1].decode())

    def total(name: str) -> float:
        return sum(v for (n, _), v in samples.items() if n == name)

    for name in ("kefu_agent_status", "kefu_status_seconds", "kefu_concurrent_buyers",
                 "kefu_occupancy_ratio", "kefu_marked_sessions", "kefu_resolved_sessions",
                 "kefu_resolution_rate", "kefu_missed_buyers"):
        assert total(name) > 0, f"{name}: no data behind its panels"
