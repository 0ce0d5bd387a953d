"""The worker's HTTP surface on a real aiohttp server: tokens, CSRF, strict validation.

anyone could write execution points (the scorecard agents are paid by):
no token, cross-origin text/plain and form posts accepted, loose coercion (`"3"`, `true`,
`null` shop, 10,000-char ids, unknown agents, periods 0001-01-01 / 9999-12-31); the wall-board
token did not cover `/api/v1/agents` or `/metrics`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.config import Settings, parse_config
from streams.export import web as worker_web
from streams.export.auth import Tokens
from streams.pipeline.runtime import Runtime
from tests.pipeline.test_runtime import RecordingSink

API, READ, METRICS = "api-s3cret", "read-s3cret", "metrics-s3cret"
CONFIG = parse_config({"agents": [{"id": "a1", "team": "pre-sales"}], "shops": {"s1": {}}})
Client = TestClient[web.Request, web.Application]


async def _client(tokens: Tokens) -> tuple[Client, Runtime, RecordingSink]:
    rt = Runtime(Settings(), CONFIG, partitions=4)
    rt.health.ready = True
    sink = RecordingSink()
    app = web.Application()
    worker_web.mount(app.router, rt, sink, tokens)
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client, rt, sink


@pytest.fixture
async def client() -> AsyncIterator[tuple[Client, Runtime, RecordingSink]]:
    c = await _client(Tokens(api=API, read=READ, metrics=METRICS))
    try:
        yield c
    finally:
        await c[0].close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


GOOD = {"shop": "s1", "agent": "a1", "period": "today", "points": 4}


async def post(c: Client, body: Any, headers: Mapping[str, str] | None = None,
               raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    resp = await c.post("/api/v1/execution", data=raw if raw is not None else orjson.dumps(body),
                        headers=hdrs)
    text = await resp.read()
    try:
        return resp.status, orjson.loads(text)
    except orjson.JSONDecodeError:
        return resp.status, {"text": text.decode()}


async def test_write_needs_the_api_token(client: tuple[Client, Runtime, RecordingSink]) -> None:
    c, rt, sink = client
    assert (await post(c, GOOD))[0] == 401
    assert (await post(c, GOOD, auth("wrong")))[0] == 401
    assert (await post(c, GOOD, auth(READ)))[0] == 401  # the read token cannot write
    assert not [s for s in sink.sent if s[0] == rt.names.facts]
    status, body = await post(c, GOOD, auth(API))
    assert status == 200, body
    assert [s for s in sink.sent if s[0] == rt.names.facts]


async def test_writes_are_refused_when_no_api_token_is_configured() -> None:
    c, _rt, sink = await _client(Tokens())
    try:
        status, body = await post(c, GOOD, auth("anything"))
        assert status == 403 and "KEFU_API_TOKEN" in body["error"]
        assert sink.sent == []
    finally:
        await c.close()


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("text/plain", orjson.dumps(GOOD)),
        ("application/x-www-form-urlencoded", b"shop=s1&agent=a1&period=today&points=4"),
        ("multipart/form-data; boundary=x", b"--x--"),
    ],
)
async def test_cross_origin_and_form_posts_cannot_write(
    client: tuple[Client, Runtime, RecordingSink], content_type: str, data: bytes
) -> None:
    c, _rt, sink = client
    # What a browser on another site can send: no Authorization header, a simple content type.
    resp = await c.post("/api/v1/execution", data=data,
                        headers={"Content-Type": content_type, "Origin": "https://evil.example"})
    assert resp.status in (401, 403, 415)
    # Even with the token (a leaked one used from a page), a simple content type is refused...
    resp = await c.post("/api/v1/execution", data=data,
                        headers={"Content-Type": content_type, **auth(API)})
    assert resp.status == 415
    # ...and so is another origin.
    status, _ = await post(c, GOOD, {**auth(API), "Origin": "https://evil.example"})
    assert status == 403
    assert sink.sent == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"points": "3"}, "points"),
        ({"points": True}, "points"),
        ({"points": None}, "points"),
        ({"points": 5.5}, "points"),
        ({"points": -1}, "points"),
        ({"points": 1e300}, "points"),
        ({"shop": None}, "shop"),
        ({"shop": 7}, "shop"),
        ({"shop": "nope"}, "shop"),
        ({"agent": "x" * 10_000}, "agent"),
        ({"agent": "ghost"}, "agent"),
        ({"agent": "a\x00"}, "agent"),
        ({"period": "0001-01-01"}, "period"),
        ({"period": "9999-12-31"}, "period"),
        ({"period": "2024-13"}, "period"),
        ({"period": 202401}, "period"),
        ({"extra": 1}, "extra"),
    ],
)
async def test_each_bad_field_is_a_400_naming_it(
    client: tuple[Client, Runtime, RecordingSink], change: dict[str, Any], field: str
) -> None:
    c, _rt, sink = client
    body = {**GOOD, **change}
    status, answer = await post(c, body, auth(API))
    assert status == 400, answer
    assert answer["field"] == field, answer
    assert field in answer["error"]
    assert sink.sent == []


async def test_malformed_bodies_are_400(client: tuple[Client, Runtime, RecordingSink]) -> None:
    c, _rt, _sink = client
    for raw in (b"", b"{", b"[]", b'"x"', b"{}" * 100_000):
        status, _ = await post(c, None, auth(API), raw=raw)
        assert status in (400, 413), raw[:20]


async def test_seen_agents_and_last_month_are_accepted(
    client: tuple[Client, Runtime, RecordingSink],
) -> None:
    c, rt, _sink = client
    rt.aggs._state("s9", "b7")  # an agent seen in events, not in the roster
    status, body = await post(c, {"shop": "s9", "agent": "b7", "period": "month", "points": 5},
                              auth(API))
    assert status == 200, body
    last_month = time.strftime("%Y-%m", time.gmtime(time.time() - 32 * 86400))
    status, body = await post(c, {**GOOD, "period": last_month}, auth(API))
    assert status == 200, body


async def test_read_token_guards_the_api_and_metrics_has_its_own(
    client: tuple[Client, Runtime, RecordingSink],
) -> None:
    c, _rt, _sink = client
    assert (await c.get("/api/v1/agents")).status == 401
    assert (await c.get("/api/v1/agents", headers=auth("wrong"))).status == 401
    assert (await c.get("/api/v1/agents", headers=auth(READ))).status == 200
    assert (await c.get(f"/api/v1/agents?token={READ}")).status == 200
    assert (await c.get("/api/v1/agents", headers=auth(API))).status == 200
    assert (await c.get("/metrics")).status == 401
    assert (await c.get("/metrics", headers=auth(READ))).status == 401
    assert (await c.get("/metrics", headers=auth(METRICS))).status == 200
    # health stays open for probes
    assert (await c.get("/healthz")).status == 200
    assert (await c.get("/readyz")).status == 200


async def test_everything_reads_openly_without_read_tokens() -> None:
    c, _rt, _sink = await _client(Tokens(api=API))
    try:
        assert (await c.get("/api/v1/agents")).status == 200
        assert (await c.get("/metrics")).status == 200
    finally:
        await c.close()


def test_tokens_from_the_environment() -> None:
    t = Tokens.from_env({"KEFU_API_TOKEN": " a ", "KEFU_READ_TOKEN": "",
                         "KEFU_WALLBOARD_TOKEN": "w"})
    assert t.api == "a" and t.read is None and t.wallboard == "w" and t.metrics is None


async def test_readyz_and_the_gauge_say_not_ready_when_the_broker_is_gone(
    client: tuple[Client, Runtime, RecordingSink],
) -> None:
    c, rt, _sink = client
    assert (await c.get("/readyz")).status == 200
    rt.health.broker_ok_at = time.time() - 60
    resp = await c.get("/readyz")
    assert resp.status == 503 and (await resp.json())["broker"] == "unreachable"
    metrics = await (await c.get("/metrics", headers=auth(METRICS))).text()
    assert "\nkefu_worker_ready 0\n" in metrics
