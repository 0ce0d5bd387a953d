"""Phase 3, domain: decode and both domain stages in-process, the ceiling without Kafka."""

from __future__ import annotations

import contextlib
import gc
import time
from typing import Any

from streams.tooling.bench.common import log
from streams.tooling.bench.context import BenchContext
from streams.tooling.bench.profiling import profile_in_process


def run(ctx: BenchContext) -> None:
    """Decode + both domain stages in-process: the ceiling without Kafka and Faust, with the
    worker's garbage-collector policy."""
    from streams import gc_policy

    old = gc_policy.tune()  # the worker's collector policy (streams.gc_policy), restored below
    try:
        from streams.config import load_config
        from streams.events import MAX_EVENT_BYTES, Rejected
        from streams.pipeline.runtime import DECODERS
        from streams.tooling.engine import Engine

        cfg = load_config(ctx.config)
        values = [(DECODERS[r[0]], r[2]) for r in ctx.data.records]
        t0 = time.monotonic()
        events: list[Any] = []
        for decode, v in values:
            with contextlib.suppress(Rejected):
                events.append(decode(v, MAX_EVENT_BYTES))
        t1 = time.monotonic()
        eng = Engine(cfg.rules, cfg.filters, cfg.team_of,
                     lambda shop, agent: cfg.lines(shop, cfg.team_of(agent)))
        for i in range(0, len(events), 1000):
            eng.feed(events[i:i + 1000])
        t2 = time.monotonic()
        snaps = eng.snapshots(eng.now_ms)
        t3 = time.monotonic()
        ctx.r["domain"] = {
            "decode_rate": len(values) / (t1 - t0),
            "engine_rate": len(events) / (t2 - t1),
            "rate": len(values) / (t2 - t0),
            "snapshot_s": t3 - t2, "agents": len(snaps),
        }
        if ctx.o.profile:
            ctx.r["domain"]["cprofile"] = profile_in_process(events, cfg)
        log(f"domain in-process: decode {ctx.r['domain']['decode_rate']:.0f}/s, engine "
            f"{ctx.r['domain']['engine_rate']:.0f}/s, together "
            f"{ctx.r['domain']['rate']:.0f}/s; {len(snaps)} agent snapshots in "
            f"{t3 - t2:.3f}s")
    except Exception as exc:  # the domain API is shared with work in progress
        ctx.r["domain"] = {"error": repr(exc)}
        log(f"domain in-process: unavailable ({exc!r})")
    finally:
        gc.set_threshold(*old)
