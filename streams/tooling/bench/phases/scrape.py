"""Phase 7, scrape: `/metrics` render time and series per agent, idle and with every agent
changed (in-process, the text cache emptied)."""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from streams.tooling.bench.common import log, median
from streams.tooling.bench.context import BenchContext
from streams.tooling.worker import WorkerProcess


def run(ctx: BenchContext, w: WorkerProcess) -> None:
    times, sizes = [], []
    body = b""
    for _ in range(10 if not ctx.o.quick else 3):
        t0 = time.monotonic()
        body = w.metrics_body()
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
    cold = cold_render(ctx.data, ctx.config)
    ctx.r["scrape"] = {
        "cold_median_s": cold[0], "cold_agents": cold[1],
        "median_s": median(times), "max_s": max(times), "bytes": median(sizes),
        "series": len(series), "agents": n_agents,
        "series_per_agent": (sum(per_agent.values()) / n_agents) if n_agents else math.nan,
        "families_per_agent": {k: v / n_agents for k, v in sorted(families.items())}
        if n_agents else {},
        "api_median_s": median(api),
    }
    log(f"scrape: /metrics {median(times) * 1000:.0f} ms median ({len(series)} series, "
        f"{n_agents} agents, {ctx.r['scrape']['series_per_agent']:.0f} per agent, "
        f"{median(sizes) / 1e6:.1f} MB); /api/v1/agents {median(api) * 1000:.0f} ms")


def cold_render(data: Any, config_path: Path, runs: int = 3) -> tuple[float, int]:
    """/metrics render time (median of `runs`) when every agent changed since the last scrape.

    In-process on the same data (a `Runtime` fed directly, no Kafka), with the per-agent text
    cache emptied before each render and the worker's collector policy: what a Prometheus
    scrape costs a busy worker, where the idle worker's figure reuses every agent's text.
    """
    import contextlib as _cl
    import gc

    from streams import gc_policy
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
    old = gc_policy.tune()  # as in the worker (streams.gc_policy), not the bench's defaults
    try:
        for _ in range(runs):
            prometheus.forget_rendered()
            t0 = time.perf_counter()
            prometheus.render(rt)
            times.append(time.perf_counter() - t0)
    finally:
        gc.set_threshold(*old)
    return median(times), sum(1 for s in rt.snapshots.values() if s.agent)
