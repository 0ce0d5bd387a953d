"""The goals (issues 6 and 14) judged from a run's results, and the number formatting the
reports share."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from streams.tooling.bench.common import (
    FLAT_TOLERANCE,
    GOAL_DOMAIN_RATIO,
    GOAL_FIRST_EVENT_S,
    GOAL_LATENCY_P99_S,
    GOAL_RATIO_AIM,
    GOAL_RATIO_MIN,
    GOAL_RECOVERY_S,
    GOAL_SCALE,
    GOAL_SCRAPE_S,
    GOAL_WALLBOARD_S,
    median,
)


def fmt(v: Any, fmt: str = "{:.0f}") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return fmt.format(v)


def num(d: Mapping[str, Any], key: str) -> float:
    v = d.get(key)
    return float(v) if isinstance(v, int | float) else math.nan


def worker_rate(r: Mapping[str, Any]) -> tuple[float, bool]:
    """(median worker events/s, True if every run finished; else the stage-1 lower bound)."""
    runs = r.get("worker", [])
    if runs and all(x.get("finished") for x in runs):
        return median([x["rate"] for x in runs]), True
    return median([x["stage1_rate"] for x in runs]), False


def goals(r: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(goal, target, measured, verdict) rows of the issue-6 table."""
    rows: list[tuple[str, str, str, str]] = []
    bare = median(r["bare"])
    worker, finished = worker_rate(r)
    ratio = worker / bare if bare else math.nan
    if ratio >= GOAL_RATIO_AIM:
        verdict = "met (aim too)"
    elif ratio >= GOAL_RATIO_MIN:
        verdict = "met"
    else:
        verdict = "NOT met"
    bound = "" if finished else "≤ "
    rows.append(("throughput / bare consumer", f"≥ {GOAL_RATIO_MIN} (aim {GOAL_RATIO_AIM})",
                 f"{bound}{fmt(ratio, '{:.4f}')} ({bound}{fmt(worker, '{:,.0f}')} / "
                 f"{fmt(bare, '{:,.0f}')} events/s)", verdict if finished or ratio >= GOAL_RATIO_MIN
                 else "NOT met"))
    dom = r.get("domain", {})
    if "rate" in dom:
        dratio = dom["rate"] / bare if bare else math.nan
        rows.append(("in-process domain / bare consumer", f"≥ {GOAL_DOMAIN_RATIO}",
                     f"{fmt(dratio, '{:.4f}')} ({fmt(dom['rate'], '{:,.0f}')} events/s)",
                     _verdict(dratio >= GOAL_DOMAIN_RATIO)))
    sc2 = r.get("scale", {})
    if "speedup" in sc2:
        keyed = sc2.get("keyed")
        if keyed is None:  # results.json from before the keyed check
            equal, kpis = sc2["equal"], (
                f"{sc2['different']:,} of {sc2['compared']:,} samples differ from one worker's")
        else:
            equal = keyed["equal"]
            kpis = (f"with every key right, {keyed['different']:,} of {keyed['compared']:,} "
                    f"samples differ from one worker's, {keyed['missing']} missing"
                    + (" (equal)" if equal else ""))
        rows.append(("two workers / one worker", f"≥ {GOAL_SCALE}× with equal KPIs",
                     f"{fmt(sc2['speedup'], '{:.2f}')}× ({fmt(sc2['rate'], '{:,.0f}')} events/s); "
                     + kpis, _verdict(sc2["speedup"] >= GOAL_SCALE and equal)))
    lat = r.get("latency", {})
    p99 = num(lat, "metrics_p99_s")
    rows.append((f"latency p99 at {r['latency_rate']:g} events/s", f"< {GOAL_LATENCY_P99_S:g} s",
                 f"{fmt(p99, '{:.3f}')} s on /metrics "
                 f"(p50 {fmt(num(lat, 'metrics_p50_s'), '{:.3f}')} s; "
                 f"snapshot p99 {fmt(num(lat, 'snapshot_p99_s'), '{:.3f}')} s)",
                 _verdict(p99 < GOAL_LATENCY_P99_S)))
    bp99 = num(lat, "board_p99_s")
    rows.append(("wall-board update p99", f"< {GOAL_WALLBOARD_S:g} s", f"{fmt(bp99, '{:.2f}')} s",
                 _verdict(bp99 < GOAL_WALLBOARD_S)))
    sc = r.get("scrape", {})
    sm = num(sc, "median_s")
    cold = num(sc, "cold_median_s")
    rows.append((f"/metrics render, {sc.get('agents', '?')} agents",
                 f"< {GOAL_SCRAPE_S * 1000:.0f} ms",
                 f"{fmt(cold * 1000)} ms when every agent changed; {fmt(sm * 1000)} ms median "
                 f"idle (text reused); "
                 f"{fmt(num(sc, 'series_per_agent'), '{:.0f}')} series per agent",
                 _verdict(cold < GOAL_SCRAPE_S)))
    first = median([x["first_event_s"] for x in r.get("worker", [])])
    rows.append(("first event after start", f"< {GOAL_FIRST_EVENT_S:g} s",
                 f"{fmt(first, '{:.1f}')} s",
                 _verdict(first < GOAL_FIRST_EVENT_S)))
    day = r.get("day", {})
    rec = num(day, "recovery_equal_s")
    rows.append((f"recovery, a day for {r['data']['agents']} agents", f"< {GOAL_RECOVERY_S:g} s",
                 f"{fmt(rec, '{:.1f}')} s to identical /metrics "
                 f"({fmt(num(day, 'recovery_ready_s'), '{:.1f}')} s to /readyz)",
                 _verdict(rec < GOAL_RECOVERY_S)))
    if "flat" in day:
        rows.append(("memory flat after the windows roll over", f"≤ +{FLAT_TOLERANCE:.0%}",
                     f"{day['rss_next']:.0f} MiB after +12 h vs "
                     f"{max(day['rss_day'], day['rss_recovered']):.0f} MiB with a full day",
                     _verdict(bool(day["flat"]))))
    else:
        rows.append(("memory flat after the windows roll over", f"≤ +{FLAT_TOLERANCE:.0%}",
                     "not measured (day phase cut short)", "NOT met"))
    return rows


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"
