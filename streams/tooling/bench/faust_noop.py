"""The do-nothing Faust baseline: agents that only count records, run as their own process.

Faust owns its event loop and signals, so each baseline run is a child process
(`python -m streams.tooling.bench.faust_noop …`); `faust_noop()` starts one and returns its
events/s. The child writes its result to a file because Faust redirects stdout into its log.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["faust_noop", "main"]


def faust_noop(bootstrap_url: str, topic: str, app_id: str, mode: str, total: int,
               workdir: Path, timeout: float) -> float:
    """Events/s of a do-nothing agent (`plain`: `async for`, `take`: `stream.take`) over
    `total` records of `topic` (comma-separated topics allowed), from the first to the last."""
    result = workdir / f"{app_id}.json"
    with open(workdir / f"{app_id}.log", "wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", __name__, bootstrap_url, topic, app_id, mode, str(total),
             str(workdir / f"{app_id}-data"), str(result)],
            stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise RuntimeError(f"faust {mode} baseline did not finish in {timeout:g}s") from None
    if not result.exists():
        raise RuntimeError(f"faust {mode} baseline failed; see {workdir / (app_id + '.log')}")
    r = json.loads(result.read_text())
    span = float(r["done"]) - float(r["first"])
    return (int(r["n"]) - int(r["first_n"])) / span if span > 0 else math.nan


def main(argv: Sequence[str]) -> None:
    """The child: count records until `total`, write the timings, exit at once."""
    import faust

    broker, topic, app_id, mode, total_s, datadir, result = argv[:7]
    total = int(total_s)
    app = faust.App(app_id, broker=broker, store="memory://", web_enabled=False,
                    datadir=datadir, broker_session_timeout=6.0, broker_heartbeat_interval=1.5,
                    broker_rebalance_timeout=12.0, consumer_auto_offset_reset="earliest")
    src = app.topic(*topic.split(","), key_serializer="raw", value_serializer="raw")
    st: dict[str, Any] = {"n": 0, "first": None, "first_n": 0}

    def count(k: int) -> None:
        st["n"] += k
        if st["first"] is None:
            st["first"], st["first_n"] = time.monotonic(), st["n"]
        if st["n"] >= total:
            done = time.monotonic()
            with open(result, "w") as fh:  # Faust redirects stdout into its log
                json.dump({"first": st["first"], "first_n": st["first_n"], "done": done,
                           "n": st["n"]}, fh)
            os._exit(0)

    if mode == "plain":
        @app.agent(src)
        async def noop(stream: Any) -> None:
            async for _ in stream:
                count(1)
    else:
        @app.agent(src)
        async def noop_take(stream: Any) -> None:
            async for batch in stream.take(1000, within=0.1):
                count(len(batch))

    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
