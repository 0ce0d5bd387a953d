"""Phase 1, data: generate the records once and produce them to the shared input topics."""

from __future__ import annotations

import math
import time
from typing import Any

from streams.tooling.bench.common import log
from streams.tooling.bench.context import BenchContext
from streams.tooling.bench.data import ensure, generate
from streams.tooling.bench.probes import produce


def run(ctx: BenchContext, sim: Any) -> None:
    o = ctx.o
    t0 = time.monotonic()
    ctx.sim = sim
    data = generate(sim, chat_limit=o.events, kinds=ctx.kinds())
    ctx.data = data
    chat = [r for r in data.records if r[0] == "chat"]
    span_s = (chat[-1][3] - chat[0][3]) / 1000 if chat else 0.0
    ctx.input = ctx.topics(f"bench-{ctx.tag}-in")
    parts = {t: o.partitions for t in ctx.input.values()}
    ensure(ctx.broker.bootstrap, parts)
    t1 = time.monotonic()
    n = produce(ctx.broker.bootstrap,
                ((ctx.input[k], key, value) for k, key, value, _ in data.records))
    t2 = time.monotonic()
    ctx.total = n
    sizes = [len(r[2]) for r in chat]
    ctx.r["data"] = {
        "records": n, "chat": len(chat), "kinds": list(ctx.kinds()),
        "mean_bytes": sum(sizes) / len(sizes) if sizes else 0.0,
        "agents": len(sim.agents), "shops": len(sim.shops),
        "simulated_minutes": span_s / 60, "generate_s": t1 - t0,
        "produce_rate": n / (t2 - t1) if t2 > t1 else math.nan,
    }
    log(f"data: {n} records ({len(chat)} chat, ~{ctx.r['data']['mean_bytes']:.0f} B), "
        f"{len(sim.agents)} agents, {span_s / 60:.1f} simulated minutes; "
        f"produced at {ctx.r['data']['produce_rate']:.0f}/s")
