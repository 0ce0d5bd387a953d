"""Where the worker's time goes: py-spy stacks grouped by layer, and cProfile in-process."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streams.tooling.bench.common import log

CATEGORIES = (
    "idle/wait",
    "aiokafka consumer thread (fetching, record parsing)",
    "/metrics & pages",
    "produce (facts, changelogs, rekey)",
    "partition_of (pure-Python murmur2)",
    "decode + validate",
    "domain: conversations (stage 1)",
    "domain: aggregates & snapshots (stage 2)",
    "pipeline glue (streams/pipeline)",
    "Faust/mode/asyncio machinery (main thread)",
)
_PRODUCE_FUNCS = frozenset({"_send_facts", "_persist_aggregates", "_rekey"})


def classify(frames: Sequence[tuple[str, str]], thread: str = "MainThread") -> str:
    """Which layer one sampled stack (root → leaf, (function, file)) spent its time in.

    Decided by the deepest frame of our own code (`streams/`): below an agent's `async for`
    is Faust's stream machinery, below `ProducerSink.send` the producer, and so on.
    """
    machinery = "Faust/mode/asyncio machinery (main thread)"
    if not frames:
        return machinery
    funcs = [fn.rsplit(".", 1)[-1] for fn, _ in frames]
    files = [f for _, f in frames]
    if files[-1].endswith("selectors.py") and funcs[-1] in ("select", "poll"):
        return "idle/wait"
    if "MainThread" not in thread:
        return "aiokafka consumer thread (fetching, record parsing)"
    ours = [i for i, f in enumerate(files) if "/streams/" in f and not f.endswith("/cli.py")]
    if not ours:
        # Faust's and aiokafka's producer tasks (buffer flush, sender) are producing too.
        return "produce (facts, changelogs, rekey)" if any("producer" in f for f in files) \
            else machinery
    k = ours[-1]
    fn, f = funcs[k], files[k]
    below = files[k + 1:]
    if "/streams/export/" in f:
        return "/metrics & pages"
    sink = fn in ("send", "send_many") and f.endswith("/faust_adapter/sink.py")
    if fn in _PRODUCE_FUNCS or sink or any("producer" in x for x in below):
        return "produce (facts, changelogs, rekey)"
    if fn == "partition_of" or "murmur2" in funcs:
        return "partition_of (pure-Python murmur2)"
    if f.endswith("/streams/events.py"):
        return "decode + validate"
    if re.search(r"/streams/domain/(aggregates|agent_state|buckets|windows|scorecard|status)", f):
        return "domain: aggregates & snapshots (stage 2)"
    if "/streams/domain/" in f:
        return "domain: conversations (stage 1)"
    if "/faust_adapter/" in f and below:
        return machinery  # Faust's loop as the adapter drives it
    return "pipeline glue (streams/pipeline)"


def summarise_speedscope(path: Path) -> dict[str, Any]:
    """Busy time per layer and the hottest leaf functions of a py-spy speedscope profile."""
    doc = json.loads(path.read_text())
    frames = [(f.get("name", ""), f.get("file", "") or "") for f in doc["shared"]["frames"]]
    by_cat: Counter[str] = Counter()
    leaf_funcs: Counter[str] = Counter()
    total = 0.0
    for prof in doc.get("profiles", []):
        thread = str(prof.get("name", "MainThread"))
        samples = prof.get("samples", [])
        weights = prof.get("weights", [1] * len(samples))
        for stack, wt in zip(samples, weights, strict=False):
            fr = [frames[i] for i in stack]
            cat = classify(fr, thread)
            by_cat[cat] += wt
            total += wt
            if fr and cat != "idle/wait":
                fn, fl = fr[-1]
                leaf_funcs[f"{fn} ({_short(fl)})"] += wt
    busy = total - by_cat["idle/wait"]
    return {
        "total": total,
        "busy": busy,
        "unit": str(doc.get("profiles", [{}])[0].get("unit", "samples")) if doc.get("profiles")
        else "samples",
        "categories": {c: (by_cat[c] / busy if busy else 0.0) for c in CATEGORIES[1:]},
        "top_leaves": [(name, n / busy if busy else 0.0) for name, n in leaf_funcs.most_common(12)],
    }


def _short(path: str) -> str:
    for marker in ("site-packages/", "/streams/", "/lib/python3"):
        i = path.find(marker)
        if i >= 0:
            return path[i + len(marker) if marker != "/streams/" else i + 1:]
    return path


def profile_in_process(events: list[Any], cfg: Any) -> list[tuple[str, float, float]]:
    """cProfile of decode-free Engine feeding: (function, own seconds, cumulative) top list."""
    import cProfile
    import pstats

    from streams.tooling.engine import Engine

    eng = Engine(cfg.rules, cfg.filters, cfg.team_of,
                 lambda shop, agent: cfg.lines(shop, cfg.team_of(agent)))
    prof = cProfile.Profile()
    prof.enable()
    for i in range(0, len(events), 1000):
        eng.feed(events[i:i + 1000])
    eng.snapshots(eng.now_ms)
    prof.disable()
    st = pstats.Stats(prof)
    rows: list[tuple[str, float, float]] = []
    stats: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
    for (file, line, fn), (_cc, _nc, tt, ct, _callers) in stats.items():
        rows.append((f"{fn} ({_short(file)}:{line})", float(tt), float(ct)))
    rows.sort(key=lambda r: -r[1])
    return rows[:10]


def run_py_spy(pid: int, path: Path, workdir: Path, seconds: float) -> bool:
    """`py-spy record` for `seconds` against a running process; False if py-spy is missing."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        log("profile: py-spy not installed (pip install py-spy)")
        return False
    with open(workdir / "py-spy.log", "wb") as logf:
        proc = subprocess.run(
            [exe, "record", "--pid", str(pid), "--format", "speedscope", "--output", str(path),
             "--rate", "200", "--nonblocking", "--duration", str(max(1, round(seconds)))],
            stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, timeout=seconds + 60,
            check=False,
        )
    return proc.returncode == 0
