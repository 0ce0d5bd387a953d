"""Real parts for integration tests: `kefu-pulse worker` processes on the embedded broker.

Workers run as subprocesses (as in production) so a test can SIGKILL one mid-stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from streams.tooling.broker import EmbeddedBroker
from streams.tooling.worker import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

Sample = tuple[str, frozenset[tuple[str, str]]]


def parse_metrics(text: str) -> dict[Sample, float]:
    """`/metrics` text → {(sample name, frozenset(labels)): value}."""
    out: dict[Sample, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return out


def labels(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


class Worker(WorkerProcess):
    """One `kefu-pulse worker` subprocess with its own web port and log file.

    `streams.tooling.worker.WorkerProcess` with what tests want: topics named after the app id,
    waits that fail as assertions, and `/metrics` parsed.
    """

    def __init__(
        self,
        broker: EmbeddedBroker,
        *,
        app_id: str,
        workdir: Path,
        clock: str = "event",
        config_path: Path | None = None,
        partitions: int = 4,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        name: str = "worker",
    ) -> None:
        super().__init__(
            broker.url, workdir, app_id=app_id, clock=clock, config=config_path,
            partitions=partitions, name=name, port=port, extra_env=env, cwd=ROOT,
            new_session=False,
        )
        if config_path is not None:  # the explicit config wins over one in `env`
            self.env["KEFU_CONFIG"] = str(config_path)

    def start(self, wait_ready: bool = True, timeout: float = 90) -> Worker:  # type: ignore[override]
        super().start()
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90) -> float:
        self.wait_until(lambda: self.get("/readyz")[0] == 200, timeout, "worker ready")
        return time.monotonic() - self.spawned_at

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        return super().get(path, timeout)

    def metrics(self) -> dict[Sample, float]:
        status, body = self.get("/metrics")
        assert status == 200, f"/metrics answered {status}"
        return parse_metrics(body.decode())

    def agents(self) -> dict[str, Any]:
        status, body = self.get("/api/v1/agents")
        assert status == 200
        result: dict[str, Any] = orjson.loads(body)
        return result

    def wait_until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}) waiting for "
                                     f"{what}; log tail:\n{self.log_tail()}")
            try:
                if predicate():
                    return
            except (AssertionError, KeyError, OSError):
                pass
            time.sleep(0.3)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; log tail:\n"
                             f"{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        return super().log_tail(n)


def produce(
    broker: EmbeddedBroker, topic: str, messages: Iterable[tuple[bytes | None, bytes]]
) -> int:
    """Send (key, value) pairs in order and wait until the broker has them all."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5, acks="all")
    n = 0
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
            n += 1
        producer.flush(60)
    finally:
        producer.close(10)
    return n


def snapshots_from_metrics(samples: Mapping[Sample, float], now_ms: int) -> dict[Any, Any]:
    """Rebuild per-agent `AgentSnapshot`s from a scrape, to compare with the reference oracle.

    Within-line counts come back from ratio × rounds; the oldest wait from its age at `now_ms`.
    """
    from streams.domain.model import LEVELS, WINDOWS, AgentSnapshot, WindowKpis

    snaps: dict[tuple[str, str], AgentSnapshot] = {}

    def snap(lab: dict[str, str]) -> AgentSnapshot:
        key = (lab["shop"], lab["agent"])
        if key not in snaps:
            s = AgentSnapshot(shop=key[0], agent=key[1], team=lab["team"])
            s.windows = {w: WindowKpis(within=dict.fromkeys(LEVELS, 0)) for w in WINDOWS}
            s.within_total = dict.fromkeys(LEVELS, 0)
            snaps[key] = s
        return snaps[key]

    ratios: list[tuple[AgentSnapshot, str, str, float]] = []
    for (name, labelset), value in samples.items():
        lab = dict(labelset)
        if "agent" not in lab or "shop" not in lab:
            continue
        s = snap(lab)
        w = s.windows.get(lab.get("window", ""))
        q = float(lab["quantile"]) if "quantile" in lab else None
        if name == "kefu_waiting_buyers":
            s.waiting = int(value)
        elif name == "kefu_oldest_wait_seconds":
            s.oldest_wait_since_ms = now_ms - round(value * 1000) if s.waiting or value else None
        elif name == "kefu_rounds_total":
            s.rounds_total = int(value)
        elif name == "kefu_rounds_within_target_total":
            s.within_total[lab["level"]] = int(value)
        elif name == "kefu_response_time_histogram_seconds_bucket":
            s.histogram[float(lab["le"])] = int(value)
        elif name == "kefu_response_time_histogram_seconds_sum":
            s.response_seconds_sum = value
        elif w is None:
            continue
        elif name == "kefu_rounds":
            w.rounds = int(value)
        elif name == "kefu_first_rounds":
            w.first_rounds = int(value)
        elif name == "kefu_received_buyers":
            w.received = int(value)
        elif name == "kefu_replied_buyers":
            w.replied = int(value)
        elif name == "kefu_missed_buyers":
            w.missed = int(value)
        elif name == "kefu_agent_messages":
            w.agent_messages = int(value)
        elif name == "kefu_buyer_messages":
            w.buyer_messages = int(value)
        elif name == "kefu_response_time_seconds" and q is not None:
            w.rt_quantiles[q] = value
        elif name == "kefu_first_response_time_seconds" and q is not None:
            w.frt_quantiles[q] = value
        elif name == "kefu_response_time_mean_seconds":
            w.rt_mean = value
        elif name == "kefu_first_response_time_mean_seconds":
            w.frt_mean = value
        elif name == "kefu_rounds_within_target_ratio":
            ratios.append((s, lab["window"], lab["level"], value))
    for s, window, level, ratio in ratios:
        s.windows[window].within[level] = round(ratio * s.windows[window].rounds)
    for s in snaps.values():
        for w in s.windows.values():
            if w.rt_mean is not None:
                w.rt_sum_ms = round(w.rt_mean * 1000 * w.rounds)
    return snaps
