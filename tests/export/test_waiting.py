"""GET /api/v1/waiting: who is waiting now, longest first.

Definitions: docs/kpis.md (*Waiting now*) and docs/interfaces.md.

Chat events go through the real stage 1 of one runtime; its facts go, as wire messages, to the
stage 2 of *another* runtime that never saw a conversation — two workers, one holding the
buyers, the other the agents. The list must still name every buyer, with waits checked
against a hand-computed timeline, and must need the read or API token in every configuration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streams.config import Settings, parse_config
from streams.domain.aggregates import SEP, Aggregates
from streams.domain.facts import PENDING, Fact, agent_key
from streams.domain.waiting import waiting_now
from streams.export import api, prometheus, wallboard
from streams.export import web as worker_web
from streams.export.auth import Tokens
from streams.pipeline.runtime import Record, Runtime
from tests.pipeline.test_runtime import RecordingSink

API, READ, METRICS, BOARD = "api-s3cret", "read-s3cret", "metrics-s3cret", "board-s3cret"
CONFIG = parse_config({
    "agents": [{"id": "a1", "team": "pre-sales"}, {"id": "a2", "team": "after-sales"}],
    "shops": {"s1": {}, "s2": {}},
})
T0 = 1_731_290_000_000
S = 1000
Client = TestClient[web.Request, web.Application]


class Chat:
    def __init__(self) -> None:
        self.n = 0
        self.events: list[bytes] = []

    def add(self, buyer: str, sender: str, agent: str | None, at_s: int, shop: str = "s1",
            event: str = "message") -> Chat:
        self.n += 1
        self.events.append(orjson.dumps({
            "message_id": f"m{self.n}", "shop_id": shop, "buyer_id": buyer, "sender": sender,
            "agent_id": agent, "ts": T0 + at_s * S, "event": event}))
        return self


# The timeline (seconds after T0). *now* is the last event: T0 + 600 s (the event clock).
TIMELINE = (
    Chat()
    .add("b-idle", "buyer", "a1", -100)      # silent 700 s > session_idle 600 s: not waiting
    .add("b-long", "buyer", "a1", 100)
    .add("b-long", "buyer", "a1", 150)       # a second message does not restart the round
    .add("b-answered", "buyer", "a1", 200)
    .add("b-answered", "agent", "a1", 210)   # answered: not waiting
    .add("b-other", "buyer", "a2", 250)
    .add("b-mid", "buyer", "a1", 300)
    .add("b-moved", "buyer", "a1", 320)
    .add("b-moved", "system", "a2", 450, event="transfer")  # waits on a2 now, since 320
    .add("b-queue", "buyer", None, 400)      # the shop's unassigned queue
    .add("b-s2", "buyer", "a1", 500, shop="s2")
    .add("b-clock", "buyer", "a2", 590)
    .add("b-clock", "agent", "a2", 600)
)
NOW_S = 600
# Hand-computed: wait = now − round start, longest first.
EXPECTED = [
    ("s1", "a1", "b-long", 100),
    ("s1", "a2", "b-other", 250),
    ("s1", "a1", "b-mid", 300),
    ("s1", "a2", "b-moved", 320),
    ("s1", "", "b-queue", 400),
    ("s2", "a1", "b-s2", 500),
]


def _runtime() -> Runtime:
    rt = Runtime(Settings(clock="event"), CONFIG, partitions=4)
    rt.health.ready = True
    return rt


async def two_workers(chat: Chat = TIMELINE) -> tuple[Runtime, Runtime]:
    """Stage 1 on `conv` only, stage 2 on `agents` only: the facts cross as wire messages."""
    conv, agents = _runtime(), _runtime()
    sink = RecordingSink()
    records = [Record("kefu.chat", 0, i, None, v) for i, v in enumerate(chat.events)]
    for r in records:  # keyed as producers key them (shop:buyer), so nothing is re-keyed
        ev = orjson.loads(r.value or b"")
        r.key = f"{ev['shop_id']}:{ev['buyer_id']}".encode()
    await conv.on_input_batch(records, sink)
    facts = [Record(conv.names.facts, p or 0, i, None, v)
             for i, (t, _k, v, p, _h) in enumerate(sink.sent) if t == conv.names.facts]
    assert facts
    await agents.on_facts_batch(facts, RecordingSink())
    agents.clock.observe(T0 + NOW_S * S)
    agents.refresh_snapshots(agents.clock.now_ms())
    assert not agents.stage1.conversations  # this worker never held a conversation
    return conv, agents


def rows(body: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    return [(w["shop"], w["agent"], w["buyer"], round((T0 + NOW_S * S) / 1000 - w["since"]))
            for w in body["waiting"]]


async def _client(tokens: Tokens, rt: Runtime) -> Client:
    app = web.Application()
    worker_web.mount(app.router, rt, RecordingSink(), tokens)
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def served() -> AsyncIterator[tuple[Client, Runtime]]:
    _conv, rt = await two_workers()
    c = await _client(Tokens(api=API, read=READ, metrics=METRICS, wallboard=BOARD), rt)
    try:
        yield c, rt
    finally:
        await c.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get(c: Client, path: str, **kw: Any) -> tuple[int, Any]:
    r = await c.get(path, **kw)
    text = await r.text()
    return r.status, orjson.loads(text) if r.content_type == "application/json" else text


# -- the list ------------------------------------------------------------------------------------


async def test_every_waiting_buyer_longest_first_with_hand_computed_waits(
    served: tuple[Client, Runtime],
) -> None:
    c, _rt = served
    status, body = await get(c, "/api/v1/waiting", headers=bearer(READ))
    assert status == 200
    assert body["now"] == (T0 + NOW_S * S) / 1000 and body["clock"] == "event"
    assert [(s, a, b) for s, a, b, _ in rows(body)] == [(s, a, b) for s, a, b, _ in EXPECTED]
    assert [w["wait_seconds"] for w in body["waiting"]] == [NOW_S - t for *_, t in EXPECTED]
    assert [w["since"] for w in body["waiting"]] == [(T0 + t * S) / 1000 for *_, t in EXPECTED]
    assert [w["queue"] for w in body["waiting"]] == [a == "" for _, a, _, _ in EXPECTED]
    assert body["total"] == len(EXPECTED) and body["truncated"] is False


async def test_filters_shop_agent_and_the_queue(served: tuple[Client, Runtime]) -> None:
    c, _rt = served
    h = bearer(READ)

    async def buyers(query: str) -> list[str]:
        status, body = await get(c, f"/api/v1/waiting?{query}", headers=h)
        assert status == 200, body
        return [w["buyer"] for w in body["waiting"]]

    assert await buyers("shop=s1&agent=a1") == ["b-long", "b-mid"]
    assert await buyers("shop=s1&agent=a2") == ["b-other", "b-moved"]
    assert await buyers("shop=s1&agent=") == ["b-queue"]  # agent="" is the shop queue
    assert await buyers("agent=a1") == ["b-long", "b-mid", "b-s2"]
    assert await buyers("shop=s2") == ["b-s2"]
    assert await buyers("shop=s1") == ["b-long", "b-other", "b-mid", "b-moved", "b-queue"]
    assert await buyers("shop=s9") == []
    status, body = await get(c, "/api/v1/waiting?limit=2", headers=h)
    assert [w["buyer"] for w in body["waiting"]] == ["b-long", "b-other"]
    assert body["total"] == 6 and body["truncated"] is True
    for bad in ("limit=0", "limit=x", "limit=10001", f"shop={'s' * 300}"):
        status, body = await get(c, f"/api/v1/waiting?{bad}", headers=h)
        assert status == 400 and body["field"] in ("limit", "shop"), (bad, body)


async def test_the_list_is_the_tiles_count(served: tuple[Client, Runtime]) -> None:
    """Every agent's list has exactly as many buyers as its tile says are waiting."""
    _c, rt = served
    now = rt.clock.now_ms()
    for (shop, agent), snap in rt.snapshots.items():
        assert len(waiting_now(rt.aggs, now, shop, agent)) == snap.waiting, (shop, agent)
    assert sum(s.waiting for s in rt.snapshots.values()) == len(EXPECTED)


async def test_waits_follow_the_workers_clock() -> None:
    _conv, rt = await two_workers()
    later = T0 + (NOW_S + 30) * S
    rt.clock.observe(later)
    got = [(w.buyer, w.wait_ms) for w in waiting_now(rt.aggs, rt.clock.now_ms(), "s1", "a1")]
    assert got == [("b-long", 530 * S), ("b-mid", 330 * S)]
    # Past session_idle after its last message a buyer stops waiting, as on the tile.
    gone = T0 + (150 + 600 + 1) * S
    assert [w.buyer for w in waiting_now(rt.aggs, gone, "s1", "a1")] == ["b-mid"]


async def test_the_buyer_ids_survive_a_restart_of_the_agents_worker() -> None:
    _conv, rt = await two_workers()
    fresh = Aggregates(rt.aggs.rules_for, rt.aggs.lines_for, rt.aggs.team_of)
    for (shop, agent), st in rt.aggs.agents.items():
        if st.pending:  # its `…p` record, through JSON as the changelog holds it
            key = agent_key(shop, agent) + SEP + "p"
            fresh.load(key, orjson.loads(orjson.dumps(rt.aggs.record(key))))
    now = rt.clock.now_ms()
    assert waiting_now(fresh, now) == waiting_now(rt.aggs, now)
    # A record written before PENDING facts carried buyer ids (four values): buyer unknown.
    old = Aggregates(rt.aggs.rules_for, rt.aggs.lines_for, rt.aggs.team_of)
    old.load(agent_key("s1", "a1") + SEP + "p", [[7, T0 + 100 * S, T0 + 100 * S, T0 + 150 * S]])
    (w,) = waiting_now(old, now)
    assert (w.buyer, w.wait_ms) == (None, 500 * S)


def test_pending_rows_carry_the_buyer_and_other_rows_stay_six_values() -> None:
    f = Fact(1, PENDING, "s1", "a1", 7, T0, T0, T0, "b-1")
    assert f.to_wire() == [1, PENDING, 7, T0, T0, T0, "b-1"]
    assert Fact.from_wire("s1", "a1", f.to_wire()) == f
    r = Fact(1, "r", "s1", "a1", 7, T0, 4000, 9)
    assert r.to_wire() == [1, "r", 7, T0, 4000, 9]
    assert Fact.from_wire("s1", "a1", r.to_wire()) == r


# -- tokens --------------------------------------------------------------------------------------


async def test_it_needs_the_read_or_api_token(served: tuple[Client, Runtime]) -> None:
    c, _rt = served
    for path in ("/api/v1/waiting", "/wallboard/waiting"):
        r = await c.get(path)
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert "b-long" not in await r.text()
        for wrong in ("wrong", METRICS, BOARD, READ[:-1], READ + "x"):
            assert (await c.get(path, headers=bearer(wrong))).status == 401, wrong
            assert (await c.get(f"{path}?token={wrong}")).status == 401, wrong
        for good in (READ, API):
            assert (await c.get(path, headers=bearer(good))).status == 200, good
            assert (await c.get(f"{path}?token={good}")).status == 200, good
    # The board's cookie opens the board's path, if it holds the read token — not the TV's.
    status, _ = await get(c, "/wallboard/waiting", cookies={wallboard.COOKIE: READ})
    assert status == 200
    status, _ = await get(c, "/wallboard/waiting", cookies={wallboard.COOKIE: BOARD})
    assert status == 401
    # Another site's page cannot read buyer ids, even with the token in the URL.
    r = await c.get(f"/api/v1/waiting?token={READ}", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status == 403
    r = await c.get("/api/v1/waiting", headers={**bearer(READ), "Origin": "https://evil.example"})
    assert r.status == 403


@pytest.mark.parametrize("tokens, ok", [
    (Tokens(), ()),                               # nothing configured: refused, never open
    (Tokens(wallboard=BOARD, metrics=METRICS), ()),
    (Tokens(api=API), (API,)),                    # reads are open here, buyer ids are not
    (Tokens(read=READ), (READ,)),
])
async def test_it_always_needs_a_token_even_where_reads_are_open(
    tokens: Tokens, ok: tuple[str, ...],
) -> None:
    _conv, rt = await two_workers()
    c = await _client(tokens, rt)
    try:
        if not tokens.read:
            assert (await c.get("/api/v1/agents")).status == 200  # reads open, as before
        status, body = await get(c, "/api/v1/waiting")
        if ok:
            assert status == 401
        else:
            assert status == 403 and "KEFU_READ_TOKEN" in body["error"], body
        for token in (API, READ, BOARD, METRICS):
            status, body = await get(c, "/api/v1/waiting", headers=bearer(token))
            assert status == (200 if token in ok else 403 if not ok else 401), token
            if status == 200:
                assert body["waiting"][0]["buyer"] == "b-long"
            else:
                assert "b-long" not in orjson.dumps(body).decode()
    finally:
        await c.close()


async def test_503_while_recovering(served: tuple[Client, Runtime]) -> None:
    c, rt = served
    rt.health.ready = False
    r = await c.get("/api/v1/waiting", headers=bearer(READ))
    assert r.status == 503 and r.headers["Retry-After"]


# -- nowhere else --------------------------------------------------------------------------------


async def test_buyer_ids_appear_nowhere_else(served: tuple[Client, Runtime]) -> None:
    """Not in /metrics, the agents API or the board's pushed state: only in the waiting list."""
    c, rt = served
    surfaces = [
        prometheus.render(rt).decode(),
        api.agents_json(rt).decode(),
        wallboard.encode_state(rt, wallboard.BoardFilter()).decode(),
        await (await c.get("/metrics", headers=bearer(METRICS))).text(),
        await (await c.get("/api/v1/agents", headers=bearer(READ))).text(),
        await (await c.get("/api/v1/scorecard", headers=bearer(READ))).text(),
    ]
    for _s, _a, buyer, _t in EXPECTED:
        for text in surfaces:
            assert buyer not in text
    assert sum(s.waiting for s in rt.snapshots.values()) == len(EXPECTED)  # they are there
