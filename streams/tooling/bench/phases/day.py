"""Phase 10, day: RSS over a day of traffic, SIGKILL and recovery, flat memory, open chats."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable
from typing import Any

from streams.tooling.bench.common import (
    DAY_START_MS,
    FLAT_TOLERANCE,
    HOUR_MS,
    MINUTE_MS,
    PROBE_SHOP,
    log,
)
from streams.tooling.bench.context import BenchContext
from streams.tooling.bench.data import chat_per_buyer, generate, make_simulator
from streams.tooling.bench.drain import DrainTimeout, drain
from streams.tooling.bench.metrics_text import agent_samples
from streams.tooling.bench.probes import count_records, produce


def run(ctx: BenchContext) -> None:
    ctx.r["day"] = {}
    try:
        _day(ctx, ctx.r["day"])
    except DrainTimeout as exc:
        ctx.r["notes"].append(f"day phase cut short: {exc}")
        log(f"day: cut short ({exc})")


def _day(ctx: BenchContext, res: dict[str, Any]) -> None:
    import orjson

    o = ctx.o
    limit = o.max_run_s
    app = f"bench-{ctx.tag}-day"
    topics = ctx.topics(app)
    w1 = ctx.prestarted.get("day") or ctx.start_worker("day", "event", "worker-day")
    w1.wait_ready(90)
    idle = ctx.settled_rss(w1)
    bpm = o.day_events / chat_per_buyer(o) / 1440
    sim = make_simulator(o, o.seed + 2, DAY_START_MS, bpm)
    t0 = time.monotonic()
    data = generate(sim, duration_s=36 * 3600, kinds=ctx.kinds())
    mem: list[dict[str, Any]] = [{"step": "idle", "rss_mib": idle, "records": 0}]
    res.update(records=len(data.records), buyers_per_minute=bpm, memory=mem, rss_idle=idle)
    log(f"day: {len(data.records)} records over 36 simulated hours ({bpm:.1f} buyers/min) "
        f"generated in {time.monotonic() - t0:.1f}s; idle worker RSS {idle:.0f} MiB")
    kinds_topics = {"chat": topics["chat"], "orders": topics["orders"],
                    "ratings": topics["ratings"]}
    in_topics = ctx.input_topics(topics)
    done = expected = 0
    for label, upto in (("5m", 5 * MINUTE_MS), ("1h", HOUR_MS), ("24h", 24 * HOUR_MS)):
        seg = [r for r in data.records[done:] if r[3] < DAY_START_MS + upto]
        done += len(seg)
        expected += produce(ctx.broker.bootstrap,
                            ((kinds_topics[k], key, v) for k, key, v, _ in seg))
        t1 = time.monotonic()
        d = drain(w1, in_topics, expected, timeout=limit, interval=1.0,
                  settle_s=ctx.settle_s)
        rss = ctx.settled_rss(w1)
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
        ev = {"message_id": f"clock-{ctx.tag}-{marker}", "shop_id": PROBE_SHOP,
              "buyer_id": "clock", "sender": "system", "agent_id": None, "ts": day_end}
        return produce(ctx.broker.bootstrap,
                       [(topics["chat"], f"{PROBE_SHOP}:clock".encode(), orjson.dumps(ev))])

    expected += mark()
    d = drain(w1, in_topics, expected, timeout=limit, settle_s=ctx.settle_s)
    before = agent_samples(d.body, set(data.shops))
    res["kpi_samples"] = len(before)
    # Recovery: SIGKILL, restart at once, time to /readyz and to identical KPIs.
    w1.kill()
    res["changelogs"] = count_records(ctx.broker.bootstrap, [
        f"{app}-conversations-changelog", f"{app}-aggregates-changelog"])
    since_restart = mark()
    w2 = w1.restart_as("worker-day-restarted")
    ctx.workers.append(w2)
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
        (ctx.workdir / "recovery-before.txt").write_text(
            "".join(f"{k} {v}\n" for k, v in sorted(before.items())))
        (ctx.workdir / "recovery-after.txt").write_text(
            "".join(f"{k} {v}\n" for k, v in sorted(after.items())))
        missing = sorted(set(before) - set(after))
        extra = sorted(set(after) - set(before))
        changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
        ctx.r["notes"].append(
            f"recovery: /metrics after the restart never equalled /metrics before the kill "
            f"({wait_equal:g} s after /readyz): {len(missing)} samples missing, "
            f"{len(extra)} extra, {len(changed)} changed; e.g. missing {missing[:2]}, "
            f"extra {extra[:2]}, changed {[(k, before[k], after[k]) for k in changed[:3]]}")
    res["rss_recovered"] = rss_recovered = ctx.settled_rss(w2)
    log(f"day: restart → /readyz {ready_s:.1f}s, → identical /metrics {equal_s:.1f}s "
        f"({len(before)} KPI samples); RSS after recovery {rss_recovered:.0f} MiB")
    # Another half day: the 5m/1h/today windows expire the first day's buckets.
    seg = data.records[done:]
    since_restart += produce(ctx.broker.bootstrap,
                             ((kinds_topics[k], key, v) for k, key, v, _ in seg))
    last_ts = max(r[3] for r in data.records)
    drain(w2, in_topics, since_restart, timeout=limit, interval=1.0,
          min_watermark_ms=last_ts, settle_s=ctx.settle_s)
    res["rss_next"] = rss_next = ctx.settled_rss(w2)
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
            ev = {"message_id": f"open-{ctx.tag}-{i}", "shop_id": shop, "buyer_id": buyer,
                  "sender": "buyer", "agent_id": agent, "ts": last_ts + 1 + i // 100,
                  "text": "在吗？这个有现货吗"}
            yield topics["chat"], f"{shop}:{buyer}".encode(), orjson.dumps(ev)

    since_restart += produce(ctx.broker.bootstrap, opens())
    t1 = time.monotonic()
    d = drain(w2, in_topics, since_restart, timeout=limit, interval=1.0,
              min_watermark_ms=open_last, settle_s=ctx.settle_s)
    rss_open = ctx.settled_rss(w2)
    waiting = sum(float(v) for v in re.findall(rb"^kefu_waiting_buyers\{[^}]*\} (\S+)$",
                                                d.body, re.M))
    w2.stop()
    res.update(open=n_open, open_rate=n_open / max(1e-9, d.settled_at - t1),
               open_mib_per_100k=(rss_open - rss_next) * 100_000 / n_open,
               waiting_exported=waiting)
    log(f"day: {n_open} open conversations: RSS +{rss_open - rss_next:.0f} MiB "
        f"({res['open_mib_per_100k']:.0f} MiB per 100k), {waiting:.0f} waiting "
        f"buyers exported")
