"""Phase 7, scale: two workers of one consumer group on the throughput data, against one.

What Kafka partitions give: each worker owns half the partitions (and their conversations and
agents), so two processes use both cores. Measured as two workers' events/s over the median of
the worker phase's runs, on the same pre-produced topics.

Then checked for exactness on the same events with every key right: one worker, then two,
each on fresh consumer groups; their agent KPIs must be equal, sample for sample (every
`today` window figure and the monotone counters; the 5m and 1h windows and status seconds
depend on each worker's own *now* in event-clock mode, so they are left out). The throughput
data cannot show that: its ~0.5 % mis-keyed events come back through the rekey topic, and
which of them then arrive more than the reorder window behind their conversation (and count
as late) depends on timing — two runs of one worker differ too (docs/interfaces.md).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any

from streams.tooling.bench.common import cpu_seconds, log
from streams.tooling.bench.context import BenchContext
from streams.tooling.bench.data import ensure, generate, throughput_simulator
from streams.tooling.bench.metrics_text import (
    accounted,
    agent_samples,
    outcomes,
    progress_signature,
)
from streams.tooling.bench.probes import produce
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


@dataclasses.dataclass
class _Run:
    """Workers of one consumer group, drained: their last /metrics and how fast."""

    bodies: list[bytes]
    rate: float
    seconds: float
    cpu_share: list[float]


def run(ctx: BenchContext) -> None:
    one, finished = worker_rate(ctx.r)
    if not ctx.r.get("worker") or not finished or not ctx.worker_bodies:
        ctx.r["scale"] = {"error": "needs a finished worker phase in the same run"}
        log("scale: skipped (needs a finished worker phase in the same run)")
        return
    app = f"bench-{ctx.tag}-scale"
    two = _group(ctx, app, ctx.input, WORKERS, ctx.total)
    res = _compare(comparable(ctx.worker_bodies[-1]), two.bodies)
    res.update({"rate": two.rate, "seconds": two.seconds, "cpu_share": two.cpu_share,
                "one_worker_rate": one, "speedup": two.rate / one if one else math.nan})
    # Two runs of one worker differ too where mis-keyed events come back late: the yardstick.
    res["different_between_single_runs"] = [
        len(_different(comparable(a), comparable(b)))
        for a, b in zip(ctx.worker_bodies, ctx.worker_bodies[1:], strict=False)]
    res["late"] = [outcomes(b).get("late", 0) for b in (*two.bodies, *ctx.worker_bodies)]
    ctx.r["scale"] = res
    log(f"scale: {WORKERS} workers {res['rate']:.0f} events/s = {res['speedup']:.2f}x one "
        f"({one:.0f}/s); {res['different']} of {res['compared']} samples differ from one "
        f"worker's (between single runs {res['different_between_single_runs']}; late "
        f"{res['late']})")
    res["keyed"] = keyed = _keyed(ctx)
    log(f"scale, every key right: one worker {keyed['one_rate']:.0f}/s, two "
        f"{keyed['two_rate']:.0f}/s; KPIs equal: {keyed['equal']} ({keyed['compared']} "
        f"samples, {keyed['different']} different, {keyed['missing']} missing, "
        f"{keyed['exported_twice']} exported twice; late {keyed['late']})")


def _keyed(ctx: BenchContext) -> dict[str, Any]:
    """One worker, then two, on the throughput events with every key right (module doc)."""
    from streams.tooling.simulate.profile import DEFAULT

    profile = dataclasses.replace(DEFAULT, wrong_key_rate=0.0)  # same random draws, right keys
    data = generate(throughput_simulator(ctx.o, profile), chat_limit=ctx.o.events,
                    kinds=ctx.kinds())
    topics = ctx.topics(f"bench-{ctx.tag}-keyed")
    ensure(ctx.broker.bootstrap, dict.fromkeys(topics.values(), ctx.o.partitions))
    total = produce(ctx.broker.bootstrap,
                    ((topics[k], key, value) for k, key, value, _ in data.records))
    one = _group(ctx, f"bench-{ctx.tag}-keyed1", topics, 1, total)
    two = _group(ctx, f"bench-{ctx.tag}-keyed2", topics, WORKERS, total)
    res = _compare(comparable(one.bodies[0]), two.bodies)
    res.update({"records": total, "one_rate": one.rate, "two_rate": two.rate,
                "speedup": two.rate / one.rate if one.rate else math.nan,
                "late": [outcomes(b).get("late", 0) for b in (*one.bodies, *two.bodies)]})
    return res


def _group(ctx: BenchContext, app: str, inputs: Mapping[str, str], workers: int,
           total: int) -> _Run:
    """Start `workers` workers of consumer group `app` on `inputs` and drain them."""
    topics = {**inputs, "deadletter": f"{app}.deadletter"}
    ws = [ctx.worker(app, topics, "event", ctx.config, f"worker-{app.rsplit('-', 1)[-1]}-{i}")
          for i in range(workers)]
    for w in ws:
        w.start()
    try:
        return _drain(ctx, ws, ctx.input_topics(topics), total)
    finally:
        for w in ws:
            w.stop()


def _drain(ctx: BenchContext, ws: list[WorkerProcess], topics: list[str], total: int) -> _Run:
    """Poll the workers until every event is accounted and their KPIs are stable."""
    deadline = time.monotonic() + ctx.o.max_run_s
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
                seconds = sig_since - first_at
                return _Run(
                    bodies=bodies,
                    rate=(total - first_count) / seconds if seconds > 0 else math.nan,
                    seconds=seconds,
                    cpu_share=[(cpu_seconds(w.pid) - c) / max(1e-9, seconds)
                               for w, c in zip(ws, cpu0, strict=True)])
        time.sleep(0.25 if n >= total else 0.5)
    raise RuntimeError(f"scale: {total} events not processed by {len(ws)} workers in "
                       f"{ctx.o.max_run_s:g}s")


def _different(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return [k for k, v in a.items() if k in b and b[k] != v]


def _compare(single: dict[str, str], bodies: list[bytes]) -> dict[str, Any]:
    """The workers' agent samples together against one worker's (`single`)."""
    together: dict[str, str] = {}
    overlap = 0
    for body in bodies:
        mine = comparable(body)
        overlap += len(together.keys() & mine.keys())  # one agent exported by both: wrong
        together.update(mine)
    diff = _different(single, together)
    missing = len(single.keys() - together.keys()) + len(together.keys() - single.keys())
    return {
        "compared": len(single), "different": len(diff), "missing": missing,
        "exported_twice": overlap,
        "examples": [(k, single[k], together[k]) for k in sorted(diff)[:8]],
        "equal": not diff and missing == 0 and overlap == 0,
    }
