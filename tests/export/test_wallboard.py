"""The wall-board's board-state builder, token check and HTTP handlers, on a fake runtime.

The handlers run on a real aiohttp server through a stand-in for Faust's `app.page` (which
registers `(view, request, **match_info)` handlers on its own aiohttp application), so the
page, assets, 401s, cookie and the first Server-Sent Events frame are checked without Kafka.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import MultiDict

from streams.config import Config, parse_config
from streams.domain.model import AgentSnapshot, WindowKpis
from streams.export import wallboard
from streams.export.wallboard import BoardFilter, board_state, token_ok
from streams.state import Health

NOW_MS = 1_731_300_000_000


@dataclass
class FakeClock:
    now: int = NOW_MS
    mode: str = "wall"
    watermark_ms: int = NOW_MS - 2_000

    def now_ms(self) -> int:
        return self.now


@dataclass
class FakeRuntime:
    """Just the attributes the exporters read (`streams.export.prometheus.State`)."""

    config: Config
    snapshots: dict[tuple[str, str], AgentSnapshot] = field(default_factory=dict)
    ad_buyers: dict[str, dict[str, int]] = field(default_factory=dict)
    events_total: Counter[tuple[str, str]] = field(default_factory=Counter)
    rejected_reasons: Counter[tuple[str, str]] = field(default_factory=Counter)
    owned: set[int] = field(default_factory=set)
    health: Health = field(default_factory=lambda: Health(ready=True))
    clock: FakeClock = field(default_factory=FakeClock)
    snapshot_at_ms: int = NOW_MS
    snapshots_refreshed: int = 0

    def refresh(self, snap: AgentSnapshot) -> None:
        """A changed snapshot, as `Runtime.refresh_snapshots` leaves it."""
        self.add(snap)
        self.snapshots_refreshed += 1

    def add(self, snap: AgentSnapshot) -> AgentSnapshot:
        self.snapshots[(snap.shop, snap.agent)] = snap
        return snap


CONFIG = {
    "teams": {"after-sales": {"warning_seconds": 50, "critical_seconds": 60}},
    "agents": [
        {"id": "a1", "name": "小美", "team": "pre-sales"},
        {"id": "a2", "name": "阿强", "team": "pre-sales"},
        {"id": "a3", "name": "小雪", "team": "after-sales"},
        {"id": "a4", "name": "大伟", "team": "pre-sales"},
    ],
}


def window(
    rounds: int = 0,
    p50: float | None = None,
    p90: float | None = None,
    mean: float | None = None,
    within: int = 0,
    received: int = 0,
    replied: int = 0,
) -> WindowKpis:
    q = {} if p50 is None or p90 is None else {0.5: p50, 0.9: p90, 0.95: p90, 0.99: p90}
    return WindowKpis(
        rounds=rounds,
        rt_mean=mean,
        rt_quantiles=q,
        within={"warning": within, "critical": within, "slow": rounds},
        received=received,
        replied=replied,
    )


def snapshot(
    agent: str,
    team: str,
    shop: str = "s1",
    five: WindowKpis | None = None,
    today: WindowKpis | None = None,
    waiting: int = 0,
    waited_s: float | None = None,
) -> AgentSnapshot:
    since = None if waited_s is None else NOW_MS - int(waited_s * 1000)
    return AgentSnapshot(
        shop=shop,
        agent=agent,
        team=team,
        windows={"5m": five or WindowKpis(), "1h": WindowKpis(), "today": today or WindowKpis()},
        waiting=waiting,
        oldest_wait_since_ms=since,
    )


@pytest.fixture
def rt() -> FakeRuntime:
    r = FakeRuntime(config=parse_config(CONFIG))
    # fast and idle
    r.add(snapshot("a1", "pre-sales", five=window(4, 5.0, 8.0, 6.0),
                   today=window(40, 5.0, 9.0, 6.5, within=40, received=40, replied=40)))
    # p90 over the 40 s critical line: red
    r.add(snapshot("a2", "pre-sales", five=window(3, 20.0, 62.0, 30.0),
                   today=window(10, 20.0, 60.0, 31.0, within=6, received=12, replied=10)))
    # after-sales lines are 50/60: 55 s is amber there (red for pre-sales)
    r.add(snapshot("a3", "after-sales", five=window(2, 30.0, 55.0, 42.0),
                   today=window(8, 30.0, 55.0, 40.0, within=5, received=8, replied=8)))
    # nobody answered yet, one buyer waiting 35 s: amber by the wait alone
    r.add(snapshot("a4", "pre-sales", waiting=1, waited_s=35))
    # the shop's unassigned queue
    r.add(snapshot("", "unassigned", waiting=2, waited_s=200))
    # another shop
    r.add(snapshot("b1", "unassigned", shop="s2", five=window(1, 3.0, 3.0, 3.0),
                   today=window(1, 3.0, 3.0, 3.0, within=1, received=1, replied=1)))
    r.ad_buyers = {"s1": {"5m": 0, "1h": 1, "today": 3}, "s2": {"today": 1}}
    return r


def q(**kw: str | list[str]) -> MultiDict[str]:
    md: MultiDict[str] = MultiDict()
    for k, v in kw.items():
        for item in [v] if isinstance(v, str) else v:
            md.add(k, item)
    return md


# ---- board state -------------------------------------------------------------------------


def test_agents_are_sorted_worst_first_with_their_own_lines(rt: FakeRuntime) -> None:
    state = board_state(rt, BoardFilter())
    order = [(a["agent"], a["status"]) for a in state["agents"]]
    assert order == [("a2", "crit"), ("a4", "warn"), ("a3", "warn"), ("a1", "ok"), ("b1", "ok")]
    a3 = next(a for a in state["agents"] if a["agent"] == "a3")
    assert a3["lines"] == {"warning": 50.0, "critical": 60.0, "page_wait": 180.0}
    assert state["counts"] == {"ok": 2, "warn": 2, "crit": 1}


def test_agent_tile_picks_fields_and_names(rt: FakeRuntime) -> None:
    tiles = {a["agent"]: a for a in board_state(rt, BoardFilter())["agents"]}
    a1 = tiles["a1"]
    assert a1["name"] == "小美" and a1["team"] == "pre-sales" and a1["shop"] == "s1"
    assert (a1["p50_5m"], a1["p90_5m"], a1["rounds_5m"]) == (5.0, 8.0, 4)
    assert (a1["mean_today"], a1["reply_rate_today"], a1["rounds_today"]) == (6.5, 1.0, 40)
    assert a1["waiting"] == 0 and a1["oldest_since"] is None
    a4 = tiles["a4"]
    assert a4["waiting"] == 1 and a4["oldest_wait"] == 35.0
    assert a4["oldest_since"] == (NOW_MS - 35_000) / 1000
    assert a4["p90_5m"] is None and a4["mean_today"] is None and a4["reply_rate_today"] is None
    assert tiles["b1"]["name"] == "b1"  # not on the roster: its id


def test_waiting_past_page_wait_is_red_even_with_fast_replies(rt: FakeRuntime) -> None:
    rt.add(snapshot("a1", "pre-sales", five=window(4, 5.0, 8.0, 6.0), waiting=1, waited_s=181))
    tiles = {a["agent"]: a for a in board_state(rt, BoardFilter())["agents"]}
    assert tiles["a1"]["status"] == "crit"


def test_header_adds_up_exact_counts(rt: FakeRuntime) -> None:
    h = board_state(rt, BoardFilter())["header"]
    assert h["waiting"] == 3 + 0  # a4 + queue in s1, nothing in s2
    assert h["queue_waiting"] == 2
    assert h["oldest_since"] == (NOW_MS - 200_000) / 1000 and h["oldest_wait"] == 200.0
    assert h["oldest_lines"] == {"warning": 30.0, "page_wait": 180.0}
    assert (h["p90_5m"], h["p90_5m_agent"]) == (62.0, "阿强")
    assert h["p90_5m_lines"] == {"warning": 30.0, "critical": 40.0}
    assert h["rounds_today"] == 40 + 10 + 8 + 1 and h["rounds_5m"] == 4 + 3 + 2 + 1
    assert h["within_warning_today"] == round((40 + 6 + 5 + 1) / 59, 4)
    assert h["warning_line"] is None  # 30 s and 50 s teams mixed
    assert h["reply_rate_today"] == round((40 + 10 + 8 + 1) / (40 + 12 + 8 + 1), 4)
    assert h["sales_today"] is None and h["conversion_today"] is None  # hooks
    assert h["ad_buyers_today"] == 4


def test_team_filter_leaves_out_the_queue_and_other_teams(rt: FakeRuntime) -> None:
    state = board_state(rt, BoardFilter.from_query(q(shop="s1", team="pre-sales")))
    assert [a["agent"] for a in state["agents"]] == ["a2", "a4", "a1"]
    h = state["header"]
    assert h["waiting"] == 1 and h["queue_waiting"] == 0 and h["oldest_wait"] == 35.0
    assert h["warning_line"] == 30.0
    assert state["filter"] == {"shop": ["s1"], "team": ["pre-sales"]}
    assert state["shops"] == ["s1"] and state["teams"] == ["pre-sales"]


def test_shop_filter_repeatable_and_comma_separated(rt: FakeRuntime) -> None:
    one = board_state(rt, BoardFilter.from_query(q(shop="s2")))
    assert [a["agent"] for a in one["agents"]] == ["b1"]
    assert one["header"]["waiting"] == 0 and one["header"]["ad_buyers_today"] == 1
    both = BoardFilter.from_query(q(shop=["s2", "s1,  "]))
    assert both == BoardFilter(frozenset({"s1", "s2"}))
    assert len(board_state(rt, both)["agents"]) == 5
    none = board_state(rt, BoardFilter.from_query(q(shop="nope")))
    assert none["agents"] == [] and none["header"]["waiting"] == 0
    assert none["header"]["p90_5m"] is None and none["header"]["reply_rate_today"] is None


def test_no_buyer_ids_or_text_in_the_state(rt: FakeRuntime) -> None:
    body = orjson.dumps(board_state(rt, BoardFilter()))
    keys: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            keys.update(v)
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(orjson.loads(body))
    assert not {k for k in keys if "buyer_id" in k or "text" in k or "message" in k}


@pytest.mark.parametrize(
    ("ready", "snapshot_age_s", "backlog", "watermark_age_s", "expected"),
    [
        (True, 0.5, 0, 600, None),  # a quiet room: old watermark but nothing to read
        (False, 0.5, 0, 1, "not_ready"),
        (True, 16, 0, 1, "snapshot_old"),
        (True, 0.5, 500, 30, "lagging"),
        (True, 0.5, 500, 3, None),
    ],
)
def test_stale_flag(
    rt: FakeRuntime,
    ready: bool,
    snapshot_age_s: float,
    backlog: int,
    watermark_age_s: float,
    expected: str | None,
) -> None:
    wall = int(time.time() * 1000)
    rt.clock = FakeClock(now=wall, watermark_ms=wall - int(watermark_age_s * 1000))
    rt.snapshot_at_ms = wall - int(snapshot_age_s * 1000)
    rt.health = Health(ready=ready, backlog={0: backlog})
    state = board_state(rt, BoardFilter())
    assert state["stale"] == expected
    assert state["ready"] is ready and state["stale_after"] == wallboard.STALE_AFTER_S


def test_state_is_compact_json(rt: FakeRuntime) -> None:
    for i in range(200):
        rt.add(snapshot(f"x{i}", "pre-sales", five=window(3, 10.0, 20.0, 12.0),
                        today=window(30, 10.0, 20.0, 12.0, within=25, received=30, replied=29)))
    body = wallboard.encode_state(rt, BoardFilter())
    assert len(body) / 205 < 600  # bytes per agent tile, pushed every second


# ---- token -------------------------------------------------------------------------------


def test_token_check() -> None:
    assert token_ok(None, None, None) and token_ok("", None, None)
    assert token_ok("s3cret", "s3cret", None)
    assert token_ok("s3cret", None, "s3cret")
    assert token_ok("s3cret", "wrong", "s3cret")
    assert not token_ok("s3cret", None, None)
    assert not token_ok("s3cret", "wrong", None)
    assert not token_ok("s3cret", "s3cret ", "S3CRET")
    assert token_ok("密码", "密码", None) and not token_ok("密码", "密", None)


# ---- HTTP handlers -----------------------------------------------------------------------


class PageApp:
    """Stand-in for `faust.App.page` on a plain aiohttp application."""

    def __init__(self) -> None:
        self.web_app = web.Application()
        self.web = self  # Faust: app.web.web_app is the aiohttp Application

    def page(self, path: str) -> Callable[[Any], Any]:
        def decorate(fun: Any) -> Any:
            async def handler(request: web.Request) -> web.StreamResponse:
                result: web.StreamResponse = await fun(None, request, **request.match_info)
                return result

            self.web_app.router.add_get(path, handler)
            return fun

        return decorate


@pytest.fixture
async def client(rt: FakeRuntime) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = PageApp()
    wallboard.register(app, rt)  # type: ignore[arg-type]
    async with TestClient(TestServer(app.web_app)) as c:
        yield c


async def first_event(resp: Any) -> dict[str, Any]:
    buf = b""
    while b"\n\n" not in buf or not buf.split(b"\n\n")[-2].startswith(b"data: "):
        buf += await asyncio.wait_for(resp.content.readany(), 5)
        for frame in buf.split(b"\n\n"):
            if frame.startswith(b"data: "):
                result: dict[str, Any] = orjson.loads(frame[len(b"data: "):])
                return result
    raise AssertionError(buf)


async def test_page_and_assets_are_served_offline(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/wallboard?lang=en")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    html = await resp.text()
    assert "wallboard/static/wallboard.js" in html and "wallboard/static/wallboard.css" in html
    assert "http://" not in html and "https://" not in html  # no CDN
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    for name, ctype in (("wallboard.js", "text/javascript"), ("wallboard.css", "text/css")):
        asset = await client.get(f"/wallboard/static/{name}")
        assert asset.status == 200 and asset.content_type == ctype
        body = await asset.text()
        assert "http://" not in body and "https://" not in body and "@import" not in body
        again = await client.get(
            f"/wallboard/static/{name}", headers={"If-None-Match": asset.headers["ETag"]}
        )
        assert again.status == 304
    moved = await client.get("/wallboard/?lang=en&shop=s1", allow_redirects=False)
    assert moved.status == 301 and moved.headers["Location"] == "../wallboard?lang=en&shop=s1"
    for bad in ("nope.js", "..%2Fwallboard.py", "wallboard.html"):
        assert (await client.get(f"/wallboard/static/{bad}")).status == 404


async def test_events_push_immediately_then_every_second(
    client: TestClient[Any, Any], rt: FakeRuntime
) -> None:
    t0 = time.monotonic()
    resp = await client.get("/wallboard/events?shop=s1&team=pre-sales")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    first = await first_event(resp)
    assert time.monotonic() - t0 < 1.0
    assert [a["agent"] for a in first["agents"]] == ["a2", "a4", "a1"]
    rt.add(snapshot("a1", "pre-sales", waiting=3, waited_s=5))
    second = await first_event(resp)
    assert {a["agent"]: a["waiting"] for a in second["agents"]}["a1"] == 3
    resp.close()


async def test_a_changed_snapshot_is_pushed_at_once_not_at_the_next_interval(
    client: TestClient[Any, Any], rt: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wallboard, "PUSH_INTERVAL_S", 60.0)  # no interval push in this test
    monkeypatch.setattr(wallboard, "MIN_PUSH_S", 0.05)
    resp = await client.get("/wallboard/events?shop=s1&team=pre-sales")
    first = await first_event(resp)
    assert {a["agent"]: a["waiting"] for a in first["agents"]}["a1"] == 0
    with pytest.raises(TimeoutError):  # nothing changed: nothing is pushed
        await asyncio.wait_for(resp.content.readany(), 0.3)
    await asyncio.sleep(0.1)  # past the filter's frame cache (MIN_PUSH_S)
    rt.refresh(snapshot("a1", "pre-sales", waiting=3, waited_s=5))
    second = await first_event(resp)  # within its 5 s, far before the 60 s interval
    assert {a["agent"]: a["waiting"] for a in second["agents"]}["a1"] == 3
    resp.close()


async def test_a_board_served_a_shared_frame_from_before_a_change_still_gets_the_change(
    client: TestClient[Any, Any], rt: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Boards on one filter share a frame for `MIN_PUSH_S`; one that got the shared frame from
    before a change must push again once the frame is stale, not wait for the interval."""
    monkeypatch.setattr(wallboard, "PUSH_INTERVAL_S", 60.0)
    monkeypatch.setattr(wallboard, "MIN_PUSH_S", 0.5)
    url = "/wallboard/events?shop=s1&team=pre-sales"
    first = await client.get(url)
    await first_event(first)  # the filter's frame is built now
    rt.refresh(snapshot("a1", "pre-sales", waiting=3, waited_s=5))
    second = await client.get(url)  # within MIN_PUSH_S: the shared frame, from before
    assert {a["agent"]: a["waiting"] for a in (await first_event(second))["agents"]}["a1"] == 0
    again = await first_event(second)  # not 60 s later
    assert {a["agent"]: a["waiting"] for a in again["agents"]}["a1"] == 3
    first.close()
    second.close()


async def test_token_required_when_configured(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(wallboard.TOKEN_ENV, "s3cret")
    assert (await client.get("/wallboard")).status == 401
    assert (await client.get("/wallboard?token=wrong")).status == 401
    assert (await client.get("/wallboard/events")).status == 401
    assert (await client.get("/wallboard/static/wallboard.js")).status == 200  # no data in it

    ok = await client.get("/wallboard?token=s3cret&lang=en")
    assert ok.status == 200
    cookie = ok.cookies[wallboard.COOKIE]
    assert cookie.value == "s3cret" and cookie["httponly"] and cookie["path"] == "/wallboard"
    # The cookie alone now opens the page and the feed (the TV's URL can drop the token).
    assert (await client.get("/wallboard")).status == 200
    events = await client.get("/wallboard/events")
    assert events.status == 200
    assert "agents" in await first_event(events)
    events.close()


async def test_open_when_no_token_configured(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(wallboard.TOKEN_ENV, raising=False)
    resp = await client.get("/wallboard?token=anything")
    assert resp.status == 200 and wallboard.COOKIE not in resp.cookies


async def test_streams_end_when_the_server_shuts_down(rt: FakeRuntime) -> None:
    app = PageApp()
    wallboard.register(app, rt)  # type: ignore[arg-type]
    runner = web.AppRunner(app.web_app, shutdown_timeout=30)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /wallboard/events HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    assert b"data: " in await asyncio.wait_for(reader.readuntil(b"data: "), 5)
    t0 = time.monotonic()
    await asyncio.wait_for(runner.cleanup(), 10)
    assert time.monotonic() - t0 < 5, "an open board must not hold the worker's shutdown"
    writer.close()


# ---- ids with separators -------------------------------------------------


def test_tiles_of_ids_with_slashes_never_collide() -> None:
    r = FakeRuntime(config=parse_config({}))
    r.add(snapshot("d", "unassigned", shop="w/1", five=window(1, 3.0, 3.0, 3.0)))
    r.add(snapshot("1/d", "unassigned", shop="w", five=window(1, 4.0, 4.0, 4.0)))
    r.add(snapshot('引"号 😀', "unassigned", shop="s:1", five=window(1, 4.0, 4.0, 4.0)))
    ids = [a["id"] for a in board_state(r, BoardFilter())["agents"]]
    assert len(ids) == 3 and len(set(ids)) == 3


def test_filter_values_may_hold_commas_escaped() -> None:
    r = FakeRuntime(config=parse_config({}))
    r.add(snapshot("a", "unassigned", shop="x,y"))
    r.add(snapshot("b", "unassigned", shop="x"))
    flt = BoardFilter.from_query(q(shop="x\\,y"))
    assert flt.shops == frozenset({"x,y"})
    assert [a["agent"] for a in board_state(r, flt)["agents"]] == ["a"]
    assert BoardFilter.from_query(q(shop="x\\\\")).shops == frozenset({"x\\"})


def test_board_says_when_the_broker_is_unreachable(rt: FakeRuntime) -> None:
    rt.health.broker_ok_at = time.time() - 60
    assert board_state(rt, BoardFilter())["stale"] == "broker_unreachable"


def test_header_sums_missed_buyers_and_resolution_marks(rt: FakeRuntime) -> None:
    """The room's missed buyers and resolution rate: sums of the agents' own counts."""
    h = board_state(rt, BoardFilter())["header"]
    assert h["missed_today"] == 0 and h["resolution_rate_today"] is None  # no data: no rate
    marks = {"a1": (5, 4, 0), "a2": (3, 1, 2), "b1": (2, 2, 0)}  # marked, resolved, missed
    for (_shop, agent), snap in rt.snapshots.items():
        if agent in marks:
            today = snap.windows["today"]
            today.marked_sessions, today.resolved_sessions, today.missed = marks[agent]
    h = board_state(rt, BoardFilter())["header"]
    assert h["missed_today"] == 2
    assert h["resolution_rate_today"] == round((4 + 1 + 2) / (5 + 3 + 2), 4)
    s2 = board_state(rt, BoardFilter.from_query(q(shop="s2")))["header"]
    assert s2["resolution_rate_today"] == 1.0 and s2["missed_today"] == 0
