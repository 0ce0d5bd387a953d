"""`GET /api/v1/scorecard` on a real aiohttp server: tokens, formats, errors (docs/interfaces.md).

The table names agents, so it is guarded like /api/v1/agents: the read token (or the API
token) when KEFU_READ_TOKEN is set, open otherwise. The cells themselves are checked against
the oracle in test_scorecard_files.py; here the HTTP side and that the files served are the
ones the document gives.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openpyxl import load_workbook

from streams.config import Settings
from streams.export import web as worker_web
from streams.export.auth import Tokens
from streams.pipeline.runtime import Runtime
from tests.export.scorecard_day import CONFIG, HEADERS_EN, HEADERS_ZH, engine_snapshots
from tests.pipeline.test_runtime import RecordingSink

API, READ = "api-s3cret", "read-s3cret"
Client = TestClient[web.Request, web.Application]
URL = "/api/v1/scorecard"


async def _client(tokens: Tokens, ready: bool = True) -> tuple[Client, Runtime]:
    rt = Runtime(Settings(), CONFIG, partitions=4)
    rt.health.ready = ready
    rt.snapshots.update(engine_snapshots())
    app = web.Application()
    worker_web.mount(app.router, rt, RecordingSink(), tokens)
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client, rt


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    c, _rt = await _client(Tokens(api=API, read=READ))
    try:
        yield c
    finally:
        await c.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_read_token_guards_it(client: Client) -> None:
    for fmt in ("json", "csv", "xlsx"):
        resp = await client.get(f"{URL}?format={fmt}")
        assert resp.status == 401, fmt
        assert "WWW-Authenticate" in resp.headers
        assert (await client.get(f"{URL}?format={fmt}", headers=bearer("wrong"))).status == 401
        assert (await client.get(f"{URL}?format={fmt}", headers=bearer(READ))).status == 200
    assert (await client.get(URL, headers=bearer(API))).status == 200
    assert (await client.get(f"{URL}?token={READ}")).status == 200  # a link for a browser


async def test_open_without_a_read_token() -> None:
    c, _rt = await _client(Tokens(api=API))
    try:
        assert (await c.get(URL)).status == 200
    finally:
        await c.close()


async def test_json_csv_and_xlsx_hold_the_same_table(client: Client) -> None:
    resp = await client.get(f"{URL}?period=month", headers=bearer(READ))
    assert resp.status == 200 and resp.content_type == "application/json"
    assert resp.headers["Cache-Control"] == "no-store"
    doc = orjson.loads(await resp.read())
    assert doc["period"] == "month" and len(doc["agents"]) == 3
    names = [r["name"] for r in doc["agents"]]
    totals = [r["total"] for r in doc["agents"]]

    resp = await client.get(f"{URL}?period=month&format=csv", headers=bearer(READ))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert resp.headers["Content-Disposition"] == (
        'attachment; filename="kefu-scorecard-month.csv"')
    raw = await resp.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == HEADERS_ZH
    assert [r[3] for r in rows[1:]] == names
    assert [float(r[26]) for r in rows[1:]] == pytest.approx(totals, abs=1e-6)

    resp = await client.get(f"{URL}?period=month&format=xlsx&lang=en", headers=bearer(READ))
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/vnd.openxmlformats")
    ws = load_workbook(io.BytesIO(await resp.read())).active
    assert ws is not None
    values = list(ws.iter_rows(values_only=True))
    assert list(values[0]) == HEADERS_EN
    assert [r[3] for r in values[1:]] == names
    assert [r[26] for r in values[1:]] == totals


async def test_a_named_period_the_worker_holds(client: Client) -> None:
    resp = await client.get(f"{URL}?period=2024-03", headers=bearer(READ))
    assert resp.status == 200
    assert {r["period"] for r in (await resp.json())["agents"]} == {"2024-03"}


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("period=2020-01", 404, "period"),  # a month this worker does not hold
        ("period=2024-03-01", 404, "period"),  # a past day of the held month
        ("period=2024-13", 400, "period"),
        ("period=last-month", 400, "period"),
        ("format=pdf", 400, "format"),
        ("lang=ja", 400, "lang"),
        ("agent=a1", 400, "agent"),
    ],
)
async def test_bad_and_unheld_periods_are_json_errors(
    client: Client, query: str, status: int, field: str
) -> None:
    resp = await client.get(f"{URL}?{query}&format=xlsx", headers=bearer(READ))
    assert resp.status == status
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["field"] == field and field in body["error"]
    if status == 404:
        assert "2024-03" in body["held"]


async def test_a_recovering_worker_answers_503_not_partial_numbers() -> None:
    c, rt = await _client(Tokens(), ready=False)
    try:
        resp = await c.get(URL)
        assert resp.status == 503 and "recovering" in (await resp.json())["error"]
        rt.health.ready = True
        assert (await c.get(URL)).status == 200
    finally:
        await c.close()
