"""Phase 2, broker: one Kafka hop's latency and whether ListOffsets(latest) tells the truth."""

from __future__ import annotations

import asyncio

from streams.tooling.bench.common import FAUST_FETCH_MAX_WAIT_MS, log, quantile
from streams.tooling.bench.context import BenchContext
from streams.tooling.bench.data import ensure
from streams.tooling.bench.probes import hop_latency, list_offsets_check


def run(ctx: BenchContext) -> None:
    """Two broker properties the worker's figures depend on, measured directly."""
    topic = f"bench-{ctx.tag}-broker"
    ensure(ctx.broker.bootstrap, {topic: 1, f"{topic}-offsets": 1})
    seconds = 2.0 if ctx.o.quick else 6.0
    hops: dict[str, dict[str, float]] = {}
    for wait_ms in (FAUST_FETCH_MAX_WAIT_MS, 50):
        d = asyncio.run(hop_latency(ctx.broker.bootstrap, topic, wait_ms, 20.0, seconds))
        hops[str(wait_ms)] = {"p50": quantile(d, 0.5), "p99": quantile(d, 0.99),
                              "n": float(len(d))}
    n = 1000
    latest = asyncio.run(list_offsets_check(ctx.broker.bootstrap, f"{topic}-offsets", n))
    ctx.r["broker"] = {"hops": hops, "records": n, "list_offsets_latest": latest}
    h = hops[str(FAUST_FETCH_MAX_WAIT_MS)]
    log(f"broker: one hop with fetch_max_wait_ms={FAUST_FETCH_MAX_WAIT_MS} (Faust's) "
        f"p50 {h['p50'] * 1000:.0f} ms p99 {h['p99'] * 1000:.0f} ms, with 50 ms "
        f"p50 {hops['50']['p50'] * 1000:.0f} ms; ListOffsets(latest) after {n} records: "
        f"{latest}")
