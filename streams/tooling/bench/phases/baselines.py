"""Phases 4 and 5: the bare aiokafka consumer and do-nothing Faust agents on the same data."""

from __future__ import annotations

from streams.tooling.bench.common import log
from streams.tooling.bench.context import BenchContext
from streams.tooling.bench.faust_noop import faust_noop
from streams.tooling.bench.probes import bare_consume


def run_bare(ctx: BenchContext) -> None:
    topics = {t: ctx.o.partitions for t in ctx.input_topics(ctx.input)}
    rates = []
    for i in range(ctx.o.repeat):
        rates.append(bare_consume(ctx.broker.bootstrap, topics, ctx.total))
        log(f"bare consumer run {i + 1}: {rates[-1]:.0f} events/s")
    ctx.r["bare"] = rates


def run_faust(ctx: BenchContext) -> None:
    out: dict[str, list[float]] = {"plain": [], "take": []}
    for mode in out:
        for i in range(ctx.o.repeat):
            app = f"bench-{ctx.tag}-faust-{mode}-{i}"
            try:
                rate = faust_noop(ctx.broker.url, ",".join(ctx.input_topics(ctx.input)),
                                  app, mode, ctx.total, ctx.workdir,
                                  timeout=60 + ctx.total / 1000)
            except RuntimeError as exc:
                ctx.r["notes"].append(f"faust {mode} baseline failed: {exc}")
                log(str(exc))
                break
            out[mode].append(rate)
            log(f"faust do-nothing ({mode}) run {i + 1}: {rate:.0f} events/s")
    ctx.r["faust"] = out
