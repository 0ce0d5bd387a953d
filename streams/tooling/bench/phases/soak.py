"""The soak phase (`kefu-pulse bench --phases soak`): does a worker stay flat under steady traffic?

Why: a leak (a cache keyed by something unbounded, a list of every buyer) shows only over time,
and a worker that grows past its memory limit or its scrape's `body_size_limit` takes a support
room's monitor down. The soak runs one live worker (wall clock) for `--soak-minutes` (30) at
`--soak-rate` events/s (2,000) of simulator traffic over `--agents` (1,000) agents, with the
simulator's awkward cases (bad JSON, late and reordered events, ads, mis-keyed messages, orders,
refunds, ratings), re-timed so event time follows the wall clock. Each minute it samples the
worker's RSS and the size of `/metrics`; *flat* means both grew less than 2 % over the last 10
minutes (the last half of a shorter soak). The curve and the verdict go into their own section
of docs/benchmarks.md (`report/soak.py`), kept when the rest of the report is rewritten.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import Any

import orjson

from streams.tooling.bench.common import (
    BUYERS_PER_AGENT_MINUTE,
    FLAT_GROWTH,
    TAIL_MINUTES,
    log,
    rss_mib,
)
from streams.tooling.bench.context import BenchContext
from streams.tooling.bench.data import make_simulator

__all__ = ["run"]

_GAUGE = re.compile(rb"^(kefu_[a-z_]+)(?:\{[^}]*\})? (\S+)$", re.M)


def _gauges(body: bytes) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in _GAUGE.findall(body):
        try:
            out[name.decode()] = out.get(name.decode(), 0.0) + float(value)
        except ValueError:
            continue
    return out


def run(bench: BenchContext) -> dict[str, Any]:
    """Run the soak on `bench` (its broker up)."""
    o = bench.o
    w = bench.start_worker("soak", "wall", "worker-soak")
    ready = w.wait_ready(120)
    topics = bench.topics(f"bench-{bench.tag}-soak")
    sim = make_simulator(o, o.seed + 2, int(time.time() * 1000),
                         BUYERS_PER_AGENT_MINUTE * o.agents)
    minutes = o.soak_minutes
    log(f"soak: worker ready after {ready:.1f}s; {minutes:g} min at {o.soak_rate:g} events/s "
        f"over {len(sim.agents)} agents")
    samples: list[dict[str, float]] = []
    sent = asyncio.run(_feed(bench, w, topics, sim, samples, log, rss_mib))
    w.stop()
    res = _verdict(samples, sent, minutes, o.soak_rate, len(sim.agents), ready)
    log(f"soak: over the last {res['window_minutes']:g} min RSS {res['rss_growth']:+.1%}, "
        f"/metrics {res['metrics_growth']:+.1%}: {'flat' if res['flat'] else 'NOT flat'}")
    return res


async def _feed(bench: BenchContext, w: Any, topics: dict[str, str], sim: Any,
                samples: list[dict[str, float]], log: Any, rss_mib: Any) -> int:
    from aiokafka import AIOKafkaProducer

    o = bench.o
    producer = AIOKafkaProducer(bootstrap_servers=bench.broker.bootstrap, linger_ms=5, acks=1)
    await producer.start()
    messages = sim.messages(math.inf)
    started = time.monotonic()
    end = started + o.soak_minutes * 60
    step = 0.1
    per_step = o.soak_rate * step
    owed = 0.0
    sent = 0
    sim_now = 0  # the largest simulator ts sent: event ts = wall now + (ts - sim_now)
    next_sample = started
    loop = asyncio.get_running_loop()
    try:
        while True:
            t = time.monotonic()
            if t >= next_sample:
                sample = await loop.run_in_executor(None, _sample, w, rss_mib, started, sent)
                samples.append(sample)
                log(f"soak: minute {sample['minute']:.0f}: RSS {sample['rss_mib']:.0f} MiB, "
                    f"/metrics {sample['metrics_bytes'] / 1e6:.2f} MB, "
                    f"{sample['events_per_s']:.0f} events/s, lag {sample['lag_s']:.1f}s")
                next_sample += o.soak_sample_s
            if t >= end:
                break
            owed += per_step
            now_ms = int(time.time() * 1000)
            while owed >= 1:
                m = next(messages)
                owed -= 1
                value = m.value
                try:
                    obj = orjson.loads(value)
                except orjson.JSONDecodeError:
                    obj = None  # the simulator's bad input stays as it is
                if isinstance(obj, dict) and isinstance(obj.get("ts"), int):
                    sim_now = max(sim_now, obj["ts"])
                    obj["ts"] = now_ms + (obj["ts"] - sim_now)
                    value = orjson.dumps(obj)
                await producer.send(topics[m.topic], value=value, key=m.key)
                sent += 1
            await asyncio.sleep(max(0.0, step - (time.monotonic() - t)))
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def _sample(w: Any, rss_mib: Any, started: float, sent: int) -> dict[str, float]:
    t0 = time.monotonic()
    status, body = w.get("/metrics", 60)
    render_s = time.monotonic() - t0
    g = _gauges(body) if status == 200 else {}
    elapsed = max(1e-9, time.monotonic() - started)
    return {
        "minute": round((time.monotonic() - started) / 60, 2),
        "rss_mib": rss_mib(w.pid),
        "metrics_bytes": float(len(body)),
        "metrics_lines": float(body.count(b"\n") - body.count(b"\n#")),
        "scrape_s": render_s,
        "agents": g.get("kefu_exported_agents", 0.0),
        "lag_s": g.get("kefu_event_lag_seconds", 0.0),
        "events_per_s": sent / elapsed,
    }


def _growth(samples: list[dict[str, float]], key: str, minutes: float) -> float:
    tail = [s for s in samples if s["minute"] >= samples[-1]["minute"] - minutes - 0.5]
    first, last = tail[0][key], samples[-1][key]
    return (last - first) / first if first else math.inf


def _verdict(samples: list[dict[str, float]], sent: int, minutes: float, rate: float,
             agents: int, ready: float) -> dict[str, Any]:
    window = TAIL_MINUTES if minutes >= 2 * TAIL_MINUTES else max(minutes / 2, 0.5)
    rss = _growth(samples, "rss_mib", window) if len(samples) >= 2 else math.nan
    size = _growth(samples, "metrics_bytes", window) if len(samples) >= 2 else math.nan
    flat = len(samples) >= 2 and rss < FLAT_GROWTH and size < FLAT_GROWTH
    return {
        "minutes": minutes, "rate": rate, "agents": agents, "sent": sent, "ready_s": ready,
        "samples": samples, "window_minutes": window, "rss_growth": rss, "metrics_growth": size,
        "flat": flat,
    }
