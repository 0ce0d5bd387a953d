"""Phase 7, scale: two workers of one consumer group on the throughput data, against one.

What Kafka partitions give: each worker owns half the partitions (and their conversations and
agents), so two processes use both cores. Measured as two workers' events/s over the median of
the worker phase's runs, on the same pre-produced topics, and checked: the two workers' agent
KPIs together must equal the single worker's (every `today` window figure and the monotone
counters; the 5m and 1h windows and status seconds depend on each worker's own *now* in
event-clock mode, so they are left out of the check).
"""

from __future__ import annotations

import math
import time
from typing import Any

from streams.tooling.bench.common import cpu_seconds, log
from streams.tooling.bench.context import BenchContext
from streams.tooling.bench.metrics_text import (
    accounted,
    agent_samples,
    outcomes,
    progress_signature,
)
from streams.tooling.bench.report.goals import worker_rate
from streams.tooling.worker import WorkerProcess

WORKERS = 2
_COUNTERS = ("kefu_rounds_total{", "kefu_rounds_within_target_total{",
             "kefu_response_time_histogram_seconds_")


def comparable(body: bytes) -> dict[str, str]:
    """The agent samples that do not depend on the worker's own *now* (see module doc)."""
    return {series: value for series, value in agent_samples(body).items()
            if series.startswith(_COUNTERS)
            or ('window="today"' in series and not series.startswith("kefu_status_seconds"))}


def run(ctx: BenchContext) -> None:
    one, finished = worker_rate(ctx.r)
    if not ctx.r.get("worker") or not finished or not ctx.worker_bodies:
        ctx.r["scale"] = {"error": "needs a finished worker phase in the same run"}
        log("scale: skipped (needs a finished worker phase in the same run)")
        return
    app = f"bench-{ctx.tag}-scale"
    topics = {**ctx.input, "deadletter": f"{app}.deadletter"}
    ws = [ctx.worker(app, topics, "event", ctx.config, f"worker-scale{i}")
          for i in range(WORKERS)]
    for w in ws:
        w.start()
    try:
        res = _drain(ctx, ws, ctx.input_topics(topics))
    finally:
        for w in ws:
            w.stop()
    res["one_worker_rate"] = one
    res["speedup"] = res["rate"] / one if one else math.nan
    ctx.r["scale"] = res
    log(f"scale: {WORKERS} workers {res['rate']:.0f} events/s = {res['speedup']:.2f}x one "
        f"({one:.0f}/s); KPIs equal to one worker's: {res['equal']} "
        f"({res['compared']} samples, {res['different']} different, {res['missing']} missing; "
        f"between single runs {res['different_between_single_runs']}; late {res['late']})")


def _drain(ctx: BenchContext, ws: list[WorkerProcess], topics: list[str]) -> dict[str, Any]:
    """Poll both workers until every event is accounted and their KPIs are stable."""
    total, deadline = ctx.total, time.monotonic() + ctx.o.max_run_s
    cpu0 = [cpu_seconds(w.pid) for w in ws]
    first_at, first_count = math.nan, 0
    sig: tuple[Any, ...] | None = None
    sig_since = 0.0
    while time.monotonic() < deadline:
        bodies = []
        for w in ws:
            w.check()
            status, body = w.get("/metrics", 30)
            bodies.append(body if status == 200 else b"")
        now = time.monotonic()
        n = sum(accounted(b, topics) for b in bodies if b)
        if n > 0 and math.isnan(first_at):
            first_at, first_count = now, n
        if n >= total:
            s = tuple(progress_signature(b) for b in bodies)
            if s != sig:
                sig, sig_since = s, now
            elif now - sig_since >= ctx.settle_s:
                return _result(ctx, ws, bodies, cpu0, total - first_count, sig_since - first_at)
        time.sleep(0.25 if n >= total else 0.5)
    raise RuntimeError(f"scale: {total} events not processed by {WORKERS} workers in "
                       f"{ctx.o.max_run_s:g}s")


def _different(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return [k for k, v in a.items() if k in b and b[k] != v]


def _result(ctx: BenchContext, ws: list[WorkerProcess], bodies: list[bytes], cpu0: list[float],
            events: int, seconds: float) -> dict[str, Any]:
    single = comparable(ctx.worker_bodies[-1])
    together: dict[str, str] = {}
    overlap = 0
    for body in bodies:
        mine = comparable(body)
        overlap += len(together.keys() & mine.keys())  # one agent exported by both: wrong
        together.update(mine)
    diff = _different(single, together)
    different = len(diff)
    missing = len(single.keys() - together.keys()) + len(together.keys() - single.keys())
    # Two runs of one worker differ too where events arrive past the reorder window: in
    # event-clock mode the watermark is the worker's, so which events are late depends on
    # how the partitions interleave (`late` in kefu_events_total). That is the yardstick.
    between = [len(_different(comparable(a), comparable(b)))
               for a, b in zip(ctx.worker_bodies, ctx.worker_bodies[1:], strict=False)]
    return {
        "rate": events / seconds if seconds > 0 else math.nan,
        "seconds": seconds,
        "cpu_share": [(cpu_seconds(w.pid) - c) / max(1e-9, seconds) for w, c in zip(ws, cpu0,
                                                                                   strict=True)],
        "compared": len(single), "different": different, "missing": missing,
        "exported_twice": overlap,
        "examples": [(k, single[k], together[k]) for k in sorted(diff)[:8]],
        "late": [outcomes(b).get("late", 0) for b in (*bodies, *ctx.worker_bodies)],
        "different_between_single_runs": between,
        "equal": different == 0 and missing == 0 and overlap == 0,
    }
