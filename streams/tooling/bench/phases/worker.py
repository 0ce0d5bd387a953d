"""Phase 6, worker: start-up and throughput of `kefu-pulse worker` processes on the input."""

from __future__ import annotations

import math
from typing import Any

from streams.tooling.bench.common import cpu_seconds, log, rss_mib
from streams.tooling.bench.context import BenchContext
from streams.tooling.bench.drain import DrainTimeout, drain
from streams.tooling.bench.metrics_text import outcomes
from streams.tooling.bench.phases import scrape


def _throughput_run(ctx: BenchContext, i: int, name: str, keep: bool = False) -> dict[str, Any]:
    app = f"bench-{ctx.tag}-w{i}"
    topics = {**ctx.input, "deadletter": f"{app}.deadletter"}
    w = ctx.worker(app, topics, "event", ctx.config, name)
    w.start()
    try:
        cpu0 = cpu_seconds(w.pid)
        res: dict[str, Any]
        try:
            d = drain(w, ctx.input_topics(topics), ctx.total, timeout=ctx.o.max_run_s,
                      settle_s=ctx.settle_s)
            end = d.settled_at
            res = {"finished": True, "rate": d.rate(ctx.total),
                   "stage1_rate": d.stage1_rate(ctx.total),
                   "seconds": d.settled_at - d.first_at}
        except DrainTimeout as exc:
            d = exc.drain
            end = exc.last_at
            res = {"finished": False, "rate": math.nan, "stage1_rate": exc.lower_bound(),
                   "seconds": exc.last_at - d.first_at, "accounted": exc.last_count}
            d.body = w.metrics_body()
            ctx.r["notes"].append(
                f"{name}: not finished after {ctx.o.max_run_s:g} s: {exc.last_count:,} of "
                f"{ctx.total:,} events accounted; the stage-1 rate is a lower bound")
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
        ctx.kept = w
    if res["finished"]:
        ctx.worker_bodies.append(d.body)
    return res


def run(ctx: BenchContext) -> None:
    runs = []
    for i in range(ctx.o.repeat):
        last = i == ctx.o.repeat - 1
        res = _throughput_run(ctx, i, f"worker-tp{i}", keep=last)
        runs.append(res)
        log(f"worker run {i + 1}: first event after {res['first_event_s']:.2f}s, "
            f"{res['rate']:.0f} events/s (stage 1 alone {res['stage1_rate']:.0f}/s, "
            f"worker CPU {res['cpu_share']:.0%}), outcomes {res['outcomes']}")
    ctx.r["worker"] = runs
    kept = ctx.kept
    assert kept is not None  # the last run keeps its worker (--repeat >= 1)
    try:
        scrape.run(ctx, kept)
    finally:
        kept.stop()
