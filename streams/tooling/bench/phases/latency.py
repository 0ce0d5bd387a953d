"""Phase 9, latency: a live worker under steady traffic, probe rounds timed to visibility."""

from __future__ import annotations

import asyncio
import json
import math
import re
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from streams.tooling.bench.common import (
    BUYERS_PER_AGENT_MINUTE,
    FEEDS,
    PROBE_AGENT,
    PROBE_SHOP,
    log,
    quantile,
)
from streams.tooling.bench.context import BenchContext
from streams.tooling.bench.data import make_simulator
from streams.tooling.bench.metrics_text import QUEUE_GAUGES, accounted, gauge_sum
from streams.tooling.worker import WorkerProcess


def run(ctx: BenchContext) -> None:
    o = ctx.o
    w = ctx.prestarted.get("latency") or ctx.start_worker("lat", "wall", "worker-latency")
    topics = ctx.topics(f"bench-{ctx.tag}-lat")
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
    res = asyncio.run(_latency_run(ctx, w, topics, background))
    ctx.r["latency"] = res
    w.stop()
    for name, q in res.get("queues", {}).items():
        log(f"latency: {name} mean {q['mean']:.0f}, max {q['max']:.0f}")
    log(f"latency: /metrics p50 {res['metrics_p50_s'] * 1000:.0f} ms, p99 "
        f"{res['metrics_p99_s'] * 1000:.0f} ms (max {res['metrics_max_s'] * 1000:.0f}); "
        f"scrape mean {res['scrape_mean_s'] * 1000:.0f} ms, max {res['scrape_max_s'] * 1000:.0f}; "
        f"wall-board p50 {res['board_p50_s']:.2f}s p99 {res['board_p99_s']:.2f}s; "
        f"achieved {res['achieved_rate']:.0f} events/s")


async def _latency_run(ctx: BenchContext, w: WorkerProcess, topics: Mapping[str, str],
                       background: list[tuple[bytes, Any]]) -> dict[str, Any]:
    import orjson
    from aiokafka import AIOKafkaProducer

    o = ctx.o
    producer = AIOKafkaProducer(bootstrap_servers=ctx.broker.bootstrap, linger_ms=2, acks=1)
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
                gauges.append(tuple(gauge_sum(body, name) for name in QUEUE_GAUGES))
            # At most a quarter of the worker's time goes to rendering for the probe.
            stop.wait(max(0.02, 3 * (t1 - t0)))

    def feed(i: int) -> None:
        # Each feed pushes within MIN_PUSH_S (0.25 s) of a snapshot change; FEEDS of them,
        # started 1/FEEDS s apart and with distinct filters (each has its own frame cache),
        # see the snapshots every ~MIN_PUSH_S/FEEDS s for the cost of a filtered board state
        # (one shop) each.
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
    tag = ctx.tag
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
    body = w.metrics_body()
    metric_lat = visible(probes, seen)
    snap_lat = visible(probes, [x for f in feeds for x in f])
    board_lat = visible(probes, feeds[0])
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
        # One slow scrape pauses the poll 3× as long: it alone can set the /metrics p99.
        "scrape_max_s": max(scrape, default=math.nan),
        "queues": {name: {"mean": statistics.fmean(g[i] for g in gauges),
                          "max": max(g[i] for g in gauges)}
                   for i, name in enumerate(QUEUE_GAUGES)} if gauges else {},
        "polls": len(scrape),
        "agents": len(re.findall(rb"^kefu_rounds_total\{", body, re.M)),
    }

# -- a day: memory, recovery, flatness, open conversations -------------------------------------


def visible(sent_at: Sequence[float], seen: Iterable[tuple[float, int]]) -> list[float]:
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
