"""`kefu-pulse bench --quick` runs every phase end to end and writes a well-formed report.

Not a timed test: the figures depend on the machine and on what else runs; only their presence
and the report's shape are checked. The speed goals are judged by reading docs/benchmarks.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import ROOT

HEADINGS = (
    "## Command and machine",
    "## Goals",
    "## Throughput",
    "## Latency",
    "## Scrape cost",
    "## Start-up and recovery",
    "## Memory",
    "## Profile of the worker's hot path",
)
TABLE_ROWS = (
    "bare aiokafka consumer + orjson.loads",
    "kefu-pulse worker stage 1 (events accounted)",
    "decode + domain in-process (no Kafka)",
    "latency p99 at 300/s (/metrics)",
    "latency p99 (snapshot, 0.1 s resolution)",
    "wall-board p99",
    "/metrics render (",
    "series per agent",
    "first event after start",
    "recovery → /readyz",
    "recovery → identical /metrics",
    "RSS idle",
    "RSS 24h",
    "RSS per 100k open conversations",
)
GOALS = (
    "throughput / bare consumer",
    "in-process domain / bare consumer",
    "two workers / one worker",
    "latency p99 at",
    "wall-board update p99",
    "/metrics render,",
    "first event after start",
    "recovery, a day for",
    "memory flat after the windows roll over",
)


def _command() -> list[str]:
    """`kefu-pulse bench` once the CLI has the subcommand, else the module itself."""
    from streams import cli

    try:
        cli.build_parser().parse_args(["bench", "--quick"])
    except SystemExit:
        return [sys.executable, "-m", "streams.tooling.bench.runner"]
    return [sys.executable, "-m", "streams.cli", "bench"]


def _tables(md: str) -> list[list[list[str]]]:
    """Markdown tables as rows of cells (header and separator included)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*md.splitlines(), ""]:
        if line.startswith("|") and line.endswith("|"):
            current.append([c.strip() for c in line[1:-1].split("|")])
        elif current:
            tables.append(current)
            current = []
    return tables


@pytest.mark.integration
def test_quick_bench_prints_a_table_and_writes_a_well_formed_report(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    work = tmp_path / "work"
    proc = subprocess.run(
        [*_command(), "--quick", "--out", str(out), "--workdir", str(work)],
        capture_output=True, timeout=400, cwd=ROOT, check=False,
    )
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, f"bench failed ({proc.returncode}):\n{stderr[-4000:]}"

    # The table on stdout: every measure, then one verdict per issue-6 goal.
    table = proc.stdout.decode()
    for row in TABLE_ROWS:
        assert row in table, f"table lacks {row!r}:\n{table}"
    assert "goals:" in table
    verdicts = [ln.strip() for ln in table.splitlines() if ln.startswith("  ") and "(goal " in ln]
    assert len(verdicts) == len(GOALS), verdicts
    for line, goal in zip(verdicts, GOALS, strict=True):
        assert line.startswith(("met", "NOT met")) and goal in line, line
    bare = re.search(r"bare aiokafka consumer \+ orjson\.loads\s+([\d,]+)/s", table)
    assert bare and int(bare.group(1).replace(",", "")) > 0

    # The report: the command that reproduces it, the machine, every section.
    md = out.read_text(encoding="utf-8")
    assert md.startswith("# kefu-pulse benchmarks\n")
    for heading in HEADINGS:
        assert heading in md, f"report lacks {heading!r}"
    command = re.search(r"```sh\n(kefu-pulse bench [^\n]+)\n```", md)
    assert command and "--quick" in command.group(1) and "--events" in command.group(1)
    for machine in ("| CPUs (nproc) |", "| RAM |", "| Python |", "| broker | embedded tansu"):
        assert machine in md
    # Every markdown table is rectangular, and the goals table has a verdict per goal.
    tables = _tables(md)
    assert tables
    for t in tables:
        widths = {len(row) for row in t}
        assert len(widths) == 1, f"ragged table: {t[:3]}"
        assert set(t[1][0]) <= set("-:"), f"no separator row: {t[:2]}"
    goals_table = next(t for t in tables if t[0] == ["goal", "target", "measured", "verdict"])
    assert [row[0].split(" ")[0] for row in goals_table[2:]] == [g.split(" ")[0] for g in GOALS]
    assert all(row[3] in ("**met**", "**met (aim too)**", "**NOT met**")
               for row in goals_table[2:])
    summary = re.search(r"<!-- bench-summary ratio=(\S+) worker=(\S+) bare=(\S+) "
                        r"finished=(True|False) -->", md)
    assert summary and float(summary.group(3)) > 0

    # Every phase produced its figures (values, not speeds).
    results = json.loads((work / "results.json").read_text())
    assert results["data"]["records"] > 0
    assert results["worker"] and results["worker"][0]["outcomes"].get("accepted", 0) > 0
    assert results["scrape"]["agents"] > 0 and results["scrape"]["series_per_agent"] > 0
    assert results["latency"]["probes"] > 0
    # Two workers of one group count exactly what one counts when every key is right.
    keyed = results["scale"]["keyed"]
    assert keyed["compared"] > 0 and keyed["equal"], keyed
    assert results["day"]["memory"] and results["day"]["kpi_samples"] > 0
