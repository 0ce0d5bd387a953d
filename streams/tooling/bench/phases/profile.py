"""Phase 8, profile: py-spy sampling a further worker run."""

from __future__ import annotations

from streams.tooling.bench.common import PROFILE_S, log
from streams.tooling.bench.context import BenchContext
from streams.tooling.bench.metrics_text import accounted
from streams.tooling.bench.profiling import run_py_spy, summarise_speedscope


def run(ctx: BenchContext) -> None:
    """py-spy on a worker working through the throughput data (PROFILE_S of sampling)."""
    path = ctx.workdir / "worker-profile.speedscope.json"
    app = f"bench-{ctx.tag}-prof"
    topics = {**ctx.input, "deadletter": f"{app}.deadletter"}
    w = ctx.worker(app, topics, "event", ctx.config, "worker-profiled")
    w.start()
    try:
        w.wait_ready(90)
        seconds = min(PROFILE_S, ctx.o.max_run_s)
        ok = run_py_spy(w.pid, path, ctx.workdir, seconds)
        body = w.metrics_body()
    except Exception as exc:
        ctx.r["profile"] = {"error": repr(exc)}
        log(f"profile: failed ({exc!r})")
        return
    finally:
        w.stop()
    if not ok or not path.exists():
        ctx.r["profile"] = {"error": f"py-spy failed; see {ctx.workdir / 'py-spy.log'}"}
        log(ctx.r["profile"]["error"])
        return
    summary = summarise_speedscope(path)
    summary["seconds"] = seconds
    summary["accounted"] = accounted(body, ctx.input_topics(topics))
    summary["file"] = str(path)
    ctx.r["profile"] = summary
    cats = ", ".join(f"{k} {v:.0%}" for k, v in summary["categories"].items() if v >= 0.01)
    log(f"profile: {cats}")

# -- latency ----------------------------------------------------------------------------------
