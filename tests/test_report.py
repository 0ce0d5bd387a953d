"""`kefu-pulse report`: one 绩效考核表 file merged from two real worker endpoints.

Two aiohttp servers run the worker's own handlers, each holding some of the agents (as two
workers owning different partitions would). The merged file must hold every agent once, with
the oracle's figures; an agent both report, a worker that refuses the token or does not hold
the period, fail the whole report without writing a file.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openpyxl import load_workbook

from streams import cli
from streams.config import Settings
from streams.domain.model import AgentSnapshot
from streams.export import web as worker_web
from streams.export.auth import Tokens
from streams.pipeline.runtime import Runtime
from streams.report import ReportError, make_report, scorecard_url
from tests.export.scorecard_day import CONFIG, HEADERS_ZH, engine_snapshots, expected_rows
from tests.pipeline.test_runtime import RecordingSink

READ = "read-s3cret"
Client = TestClient[web.Request, web.Application]


async def _worker(snaps: Sequence[AgentSnapshot]) -> Client:
    rt = Runtime(Settings(), CONFIG, partitions=4)
    rt.health.ready = True
    rt.snapshots.update({(s.shop, s.agent): s for s in snaps})
    app = web.Application()
    worker_web.mount(app.router, rt, RecordingSink(), Tokens(read=READ))
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def workers() -> AsyncIterator[list[str]]:
    snaps = engine_snapshots()
    shops = [[s for s in snaps.values() if s.shop == shop] for shop in ("s2", "s1")]
    clients = [await _worker(part) for part in shops]
    try:
        yield [str(c.make_url("")).rstrip("/") for c in clients]
    finally:
        for c in clients:
            await c.close()


async def test_two_workers_merge_into_one_xlsx(workers: list[str], tmp_path: Path) -> None:
    out = tmp_path / "score.xlsx"
    doc = await asyncio.to_thread(make_report, workers, "month", "xlsx", out, token=READ)
    want = expected_rows("month")
    assert [(r["shop"], r["agent"]) for r in doc["agents"]] == [(w.shop, w.agent) for w in want]
    ws = load_workbook(out).active
    assert ws is not None
    values = list(ws.iter_rows(values_only=True))
    assert list(values[0]) == HEADERS_ZH
    assert len(values) == 1 + len(want)
    for got, w in zip(values[1:], want, strict=True):
        exp = w.cells("zh")
        assert list(got[:5]) == exp[:5]
        assert got[26] == pytest.approx(exp[26], abs=1e-3)  # total
        assert got[28] == exp[28]  # 合格 / 不合格
        for col in range(5, 26):
            if exp[col] is None:
                assert got[col] is None, col
            else:
                assert got[col] == pytest.approx(exp[col], abs=1e-4), (w.agent, col)


async def test_the_cli_writes_csv_with_the_token_from_the_environment(
    workers: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KEFU_READ_TOKEN", READ)
    out = tmp_path / "score.csv"
    code = await asyncio.to_thread(
        cli.main, ["report", "--period", "today", "--out", str(out), *workers])
    assert code == 0, capsys.readouterr().err
    assert "3 agents" in capsys.readouterr().err
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [r[2] for r in rows[1:]] == [w.agent for w in expected_rows("today")]
    assert [r[4] for r in rows[1:]] == [w.period for w in expected_rows("today")]


async def test_an_agent_reported_twice_is_an_error(workers: list[str], tmp_path: Path) -> None:
    out = tmp_path / "score.xlsx"
    # a worker listed twice
    with pytest.raises(ReportError, match="reported by both") as err:
        await asyncio.to_thread(make_report, [workers[0], workers[1], workers[0]], "month",
                                "xlsx", out, token=READ)
    assert workers[0] in str(err.value)
    # two workers both holding a1 (a rebalance moving it)
    stale = await _worker([engine_snapshots()[("s1", "a1")]])
    try:
        url = str(stale.make_url("")).rstrip("/")
        with pytest.raises(ReportError, match="agent a1 of shop s1 is reported by both") as err:
            await asyncio.to_thread(make_report, [*workers, url], "month", "xlsx", out,
                                    token=READ)
        assert workers[1] in str(err.value) and url in str(err.value)
    finally:
        await stale.close()
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("token", "period", "message"),
    [
        (None, "month", "HTTP 401"),
        ("wrong", "month", "HTTP 401"),
        (READ, "2020-01", "HTTP 404 period 2020-01 is not held"),
    ],
)
async def test_a_refusing_worker_fails_the_report(
    workers: list[str], tmp_path: Path, token: str | None, period: str, message: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("KEFU_READ_TOKEN", raising=False)
    out = tmp_path / "score.xlsx"
    args = ["report", "--period", period, "--out", str(out), *workers]
    if token:
        args[1:1] = ["--token", token]
    code = await asyncio.to_thread(cli.main, args)
    err = capsys.readouterr().err.strip()
    assert code == 1 and message in err and workers[0] in err
    assert err.count("\n") == 0 and "Traceback" not in err
    assert not out.exists()


async def test_an_unreachable_worker_fails_the_report(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"127\.0\.0\.1:9"):
        await asyncio.to_thread(make_report, ["http://127.0.0.1:9"], "month", "csv",
                                tmp_path / "x.csv", timeout=2)


def test_urls_take_a_base_or_the_endpoint() -> None:
    want = "http://w1:6066/api/v1/scorecard?period=2026-11&format=json"
    assert scorecard_url("http://w1:6066", "2026-11") == want
    assert scorecard_url("http://w1:6066/", "2026-11") == want
    assert scorecard_url("w1:6066", "2026-11") == want
    assert scorecard_url("http://w1:6066/api/v1/scorecard", "2026-11") == want
    assert scorecard_url("https://kefu.example/w1/", "month") == (
        "https://kefu.example/w1/api/v1/scorecard?period=month&format=json")
