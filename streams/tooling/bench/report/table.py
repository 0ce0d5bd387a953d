"""The plain-text table `kefu-pulse bench` prints on stdout."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from streams.tooling.bench.common import median
from streams.tooling.bench.report.goals import fmt, goals, num, worker_rate


def render_table(r: Mapping[str, Any]) -> str:
    bare = median(r["bare"])
    lines = [f"{'measure':<50} {'value':>18} {'× bare':>8}", "-" * 78]

    def row(name: str, value: float, unit: str = "/s", ratio: bool = False) -> None:
        v = fmt(value, "{:,.0f}") + unit if unit == "/s" else fmt(value, "{:.3f}") + unit
        rt = ""
        if ratio:
            rt = fmt(value / bare if bare and not math.isnan(value) else math.nan, "{:.4f}")
        lines.append(f"{name:<50} {v:>18} {rt:>8}")

    row("bare aiokafka consumer + orjson.loads", bare, ratio=True)
    if "faust" in r:
        for mode, label in (("plain", "faust do-nothing (async for x in stream)"),
                            ("take", "faust do-nothing (stream.take(1000, 0.1))")):
            row(label, median(r["faust"].get(mode, [])), ratio=True)
    worker, finished = worker_rate(r)
    row("kefu-pulse worker (all stages, settled)" if finished
        else "kefu-pulse worker (NOT finished; lower bound)", worker, ratio=True)
    row("kefu-pulse worker stage 1 (events accounted)",
        median([x["stage1_rate"] for x in r["worker"]]), ratio=True)
    dom = r.get("domain", {})
    if "rate" in dom:
        row("decode + domain in-process (no Kafka)", dom["rate"], ratio=True)
    lat = r.get("latency", {})
    row(f"latency p50 at {r['latency_rate']:g}/s (/metrics)", num(lat, "metrics_p50_s"), " s")
    row(f"latency p99 at {r['latency_rate']:g}/s (/metrics)", num(lat, "metrics_p99_s"), " s")
    row("latency p99 (snapshot, 0.1 s resolution)", num(lat, "snapshot_p99_s"), " s")
    row("wall-board p99", num(lat, "board_p99_s"), " s")
    sc = r.get("scrape", {})
    row(f"/metrics render ({sc.get('agents', '?')} agents)", num(sc, "median_s"), " s")
    lines.append(f"{'series per agent':<50} {fmt(num(sc, 'series_per_agent'), '{:.1f}'):>18}")
    row("first event after start", median([x["first_event_s"] for x in r["worker"]]), " s")
    day = r.get("day", {})
    row("recovery → /readyz", num(day, "recovery_ready_s"), " s")
    row("recovery → identical /metrics", num(day, "recovery_equal_s"), " s")
    for m in day.get("memory", []):
        lines.append(f"{'RSS ' + m['step']:<50} {m['rss_mib']:>14.0f} MiB")
    if "open_mib_per_100k" in day:
        lines.append(f"{'RSS per 100k open conversations':<50} "
                     f"{day['open_mib_per_100k']:>14.0f} MiB")
    lines.append("")
    lines.append("goals:")
    for goal, target, measured, verdict in goals(r):
        lines.append(f"  {verdict:<14} {goal}: {measured} (goal {target})")
    return "\n".join(lines)
