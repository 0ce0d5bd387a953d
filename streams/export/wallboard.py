"""The support-room wall-board (docs/interfaces.md): `/wallboard`, its assets and a live SSE feed.

- `/wallboard` — the page (zh-CN by default, `?lang=en`; `?shop=…&team=…` filter, repeatable).
- `/wallboard/static/<file>` — its CSS and JS, served by the worker itself (no CDN, works offline).
- `/wallboard/events` — `text/event-stream`: one compact JSON board state on connect, then
  within 0.25 s of any snapshot change (and at least once a second), filtered like the page.

The board state is built only from the runtime's snapshots: it picks fields, adds up exact
counts for the header (waiting buyers, rounds, within-line rounds, received/replied buyers) and
sorts agents worst-first. No buyer ids or message text exist in a snapshot, so none can leak.

If `KEFU_READ_TOKEN` or `KEFU_WALLBOARD_TOKEN` is set, the page and the feed need one of them
(or the API token) as `?token=` (which also sets a cookie, so a TV can drop the token from its
URL after the first load), that cookie or a Bearer header; otherwise 401 (see `auth`). The
static assets carry no data and stay open.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web as aioweb

from streams.domain import keys, limits
from streams.domain.model import AgentSnapshot, WindowKpis
from streams.domain.rules import Lines
from streams.export import auth
from streams.state import State

__all__ = [
    "COOKIE",
    "STALE_AFTER_S",
    "TOKEN_ENV",
    "BoardFilter",
    "PageHost",
    "board_state",
    "register",
    "token_ok",
]

TOKEN_ENV = "KEFU_WALLBOARD_TOKEN"
COOKIE = "kefu_wallboard_token"
STATIC_DIR = Path(__file__).with_name("static")
ASSETS: dict[str, str] = {"wallboard.css": "text/css", "wallboard.js": "text/javascript"}
# A board gets a frame when the snapshots changed, at most every MIN_PUSH_S, and at least every
# PUSH_INTERVAL_S (its wait timers and the stale check move with the clock alone).
PUSH_INTERVAL_S = 1.0
MIN_PUSH_S = 0.25
STALE_AFTER_S = 15.0  # snapshot or event lag older than this: the board says its data is stale
MAX_FILTER_VALUES = 32
_SEVERITY = {"ok": 0, "warn": 1, "crit": 2}

SECURITY_HEADERS: dict[str, str] = {
    # Everything comes from the worker itself: no CDN, no inline script, nothing to leak to.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Query(Protocol):
    """The part of aiohttp's `request.query` (a MultiDict) the filter reads."""

    def getall(self, key: str, default: list[str]) -> list[str]: ...


# --------------------------------------------------------------------------------------------
# Filter and token
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoardFilter:
    """`?shop=a&shop=b&team=x` (or comma-separated); empty sets mean "all"."""

    shops: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()

    @staticmethod
    def from_query(query: Query) -> BoardFilter:
        """Repeatable and comma-separated; `\\,` is a comma inside an id, `\\\\` a backslash
        (ids may hold any printable character, commas included)."""

        def values(key: str) -> frozenset[str]:
            out: set[str] = set()
            for raw in query.getall(key, []):
                out.update(v.strip() for v in keys.split(raw, ",", "\\") if v.strip())
            return frozenset(sorted(out)[:MAX_FILTER_VALUES])

        return BoardFilter(values("shop"), values("team"))

    def admits(self, snap: AgentSnapshot) -> bool:
        if self.shops and snap.shop not in self.shops:
            return False
        if snap.agent == "":
            # The shop's unassigned queue belongs to no team: shown only on a shop-wide board.
            return not self.teams
        return not self.teams or snap.team in self.teams

    def as_json(self) -> dict[str, list[str]]:
        return {"shop": sorted(self.shops), "team": sorted(self.teams)}


def token_ok(expected: str | None, given: str | None, cookie: str | None) -> bool:
    """No token configured: open. Else the query token or the cookie must match exactly."""
    if not expected:
        return True
    want = expected.encode()
    return any(
        candidate is not None and hmac.compare_digest(candidate.encode(), want)
        for candidate in (given, cookie)
    )


def _board_tokens() -> list[str]:
    """Tokens that open the board: KEFU_READ_TOKEN (or the API token) and the board's own."""
    return auth.Tokens.from_env().board_readers()


def _denied(request: Any) -> aioweb.Response | None:
    readers = _board_tokens()
    if not readers:
        return None
    given = (request.query.get("token"), request.cookies.get(COOKIE), auth.bearer(request.headers))
    if any(auth.matches(g, readers) for g in given):
        return None
    return aioweb.Response(
        status=401,
        text="401: this wall-board needs its token: open /wallboard?token=...\n",
        headers={"Cache-Control": "no-store", **SECURITY_HEADERS},
    )


# --------------------------------------------------------------------------------------------
# Board state
# --------------------------------------------------------------------------------------------


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _status(p90: float | None, oldest_wait_s: float, lines: Lines) -> str:
    """Red past the critical line or when someone waits past page_wait; amber past warning."""
    if oldest_wait_s > lines.page_wait or (p90 is not None and p90 > lines.critical):
        return "crit"
    if oldest_wait_s > lines.warning or (p90 is not None and p90 > lines.warning):
        return "warn"
    return "ok"


def _agent_tile(
    snap: AgentSnapshot, lines: Lines, name: str, now_ms: int
) -> tuple[dict[str, Any], tuple[Any, ...]]:
    w5 = snap.windows.get("5m") or WindowKpis()
    today = snap.windows.get("today") or WindowKpis()
    p50 = w5.rt_quantiles.get(0.5) if w5.rounds else None
    p90 = w5.rt_quantiles.get(0.9) if w5.rounds else None
    oldest = snap.oldest_wait_seconds(now_ms) if snap.waiting else 0.0
    status = _status(p90, oldest, lines)
    tile = {
        "id": keys.tile_id(snap.shop, snap.agent),
        "shop": snap.shop,
        "team": snap.team,
        "agent": limits.label(snap.agent),
        "name": name,
        "status": status,
        "waiting": snap.waiting,
        "oldest_since": (
            snap.oldest_wait_since_ms / 1000
            if snap.waiting and snap.oldest_wait_since_ms is not None
            else None
        ),
        "oldest_wait": _r(oldest),
        "rounds_5m": w5.rounds,
        "p50_5m": _r(p50),
        "p90_5m": _r(p90),
        "rounds_today": today.rounds,
        "mean_today": _r(today.rt_mean if today.rounds else None),
        "reply_rate_today": _r(today.reply_rate, 4),
        "missed_today": today.missed,
        "resolution_rate_today": _r(today.resolution_rate, 4),
        # Status and load: the console's status (null = none sent yet), buyers now / limit.
        "agent_status": snap.status,
        "concurrent": snap.concurrent,
        "max_concurrent": snap.max_concurrent,
        "occupancy": _r(snap.occupancy, 4),
        "lines": {
            "warning": lines.warning,
            "critical": lines.critical,
            "page_wait": lines.page_wait,
        },
    }
    # Worst first: status, then who has waited longest / most, then 5m p90 against own lines.
    ratio = (p90 / lines.critical) if p90 is not None and lines.critical > 0 else 0.0
    key = (-_SEVERITY[status], -oldest, -snap.waiting, -ratio, name, snap.shop, snap.agent)
    return tile, key


def board_state(state: State, flt: BoardFilter) -> dict[str, Any]:
    """The JSON the wall-board renders: header tiles for the selection, agent tiles worst-first."""
    now_ms = state.clock.now_ms()
    config = state.config
    selected = [s for s in state.snapshots.values() if flt.admits(s)]

    tiles: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    waiting = queue_waiting = 0
    oldest_ms: int | None = None
    oldest_lines: Lines | None = None
    worst_p90: tuple[float, str, Lines] | None = None
    rounds_today = rounds_5m = within_warning = received = replied = 0
    missed = marked = resolved = 0
    online = busy = with_status = free_capacity = 0
    warning_lines: set[float] = set()
    shops: set[str] = set()
    teams: set[str] = set()

    for snap in selected:
        lines = config.lines(snap.shop, snap.team)
        shops.add(snap.shop)
        waiting += snap.waiting
        if snap.waiting and snap.oldest_wait_since_ms is not None and (
            oldest_ms is None or snap.oldest_wait_since_ms < oldest_ms
        ):
            oldest_ms, oldest_lines = snap.oldest_wait_since_ms, lines
        if snap.agent == "":
            queue_waiting += snap.waiting
            continue
        teams.add(snap.team)
        info = config.agent(snap.agent)
        name = info.name if info is not None and info.name else limits.label(snap.agent)
        tile, key = _agent_tile(snap, lines, name, now_ms)
        tiles.append((key, tile))
        if snap.status is not None:
            with_status += 1
            if snap.status == "online":
                online += 1
                free_capacity += max(0, snap.max_concurrent - snap.concurrent)
            elif snap.status == "busy":
                busy += 1
        if tile["p90_5m"] is not None and (worst_p90 is None or tile["p90_5m"] > worst_p90[0]):
            worst_p90 = (tile["p90_5m"], name, lines)
        today = snap.windows.get("today")
        if today is not None:
            rounds_today += today.rounds
            within_warning += today.within.get("warning", 0)
            received += today.received
            replied += today.replied
            missed += today.missed
            marked += today.marked_sessions
            resolved += today.resolved_sessions
            if today.rounds:
                warning_lines.add(lines.warning)
        w5 = snap.windows.get("5m")
        rounds_5m += w5.rounds if w5 is not None else 0

    tiles.sort(key=lambda kt: kt[0])
    agents = [t for _, t in tiles]
    counts = {level: sum(1 for t in agents if t["status"] == level) for level in _SEVERITY}
    ad_today = sum(
        state.ad_buyers.get(shop, {}).get("today", 0) for shop in (shops or flt.shops)
    )

    snapshot_at = state.snapshot_at_ms / 1000
    now = now_ms / 1000
    watermark = state.clock.watermark_ms / 1000
    lag = state.health.lag_seconds(watermark)  # behind the input, or cut off from the broker
    stale: str | None = None
    if not state.health.ready:
        stale = "not_ready"
    elif not state.health.broker_reachable():
        stale = "broker_unreachable"
    elif snapshot_at <= 0 or now - snapshot_at > STALE_AFTER_S:
        stale = "snapshot_old"
    elif lag > STALE_AFTER_S:
        stale = "lagging"

    header: dict[str, Any] = {
        "waiting": waiting,
        "queue_waiting": queue_waiting,
        "oldest_since": oldest_ms / 1000 if oldest_ms is not None else None,
        "oldest_wait": (
            _r(max(0.0, (now_ms - oldest_ms) / 1000)) if oldest_ms is not None else None
        ),
        "oldest_lines": (
            {"warning": oldest_lines.warning, "page_wait": oldest_lines.page_wait}
            if oldest_lines is not None
            else None
        ),
        # Upper bound of the group's p90 (no agent's own p90 is above it): the slowest agent's.
        "p90_5m": worst_p90[0] if worst_p90 else None,
        "p90_5m_agent": worst_p90[1] if worst_p90 else None,
        "p90_5m_lines": (
            {"warning": worst_p90[2].warning, "critical": worst_p90[2].critical}
            if worst_p90
            else None
        ),
        "rounds_5m": rounds_5m,
        "rounds_today": rounds_today,
        "within_warning_today": _r(within_warning / rounds_today if rounds_today else None, 4),
        "warning_line": warning_lines.pop() if len(warning_lines) == 1 else None,
        "reply_rate_today": _r(replied / received if received else None, 4),
        "missed_today": missed,  # received buyers not replied to (未回复人数)
        "resolution_rate_today": _r(resolved / marked if marked else None, 4),  # 问题解决率
        # Hooks for the business KPIs: shown by the page as soon as they are not null.
        "sales_today": None,
        "conversion_today": None,
        "ad_buyers_today": ad_today,
        # Who is in the room, and the queue against what the online agents can still take
        # (Σ max(0, max_concurrent − concurrent) of agents online; busy ones take no more).
        # None when no agent of the selection ever sent a status: nothing to say.
        "agents_online": online if with_status else None,
        "agents_busy": busy if with_status else None,
        "free_capacity": free_capacity if with_status else None,
    }
    return {
        "v": 1,
        "now": now,
        "clock": state.clock.mode,
        "snapshot_at": snapshot_at,
        "watermark": watermark,
        "lag_seconds": _r(lag),
        "ready": state.health.is_ready(),
        "stale": stale,
        "stale_after": STALE_AFTER_S,
        "filter": flt.as_json(),
        "shops": sorted(shops),
        "teams": sorted(teams),
        "counts": counts,
        "header": header,
        "agents": agents,
    }


def encode_state(state: State, flt: BoardFilter) -> bytes:
    return orjson.dumps(board_state(state, flt))


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    content_type: str
    etag: str


def _load_assets(directory: Path) -> dict[str, _Asset]:
    out: dict[str, _Asset] = {}
    for name, ctype in ASSETS.items():
        body = (directory / name).read_bytes()
        out[name] = _Asset(body, ctype, '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
    return out


class _Feed:
    """Shares one encoded state per filter among every connected board, and pushes it when
    the snapshots change.

    Why on change: with a frame every second, a reply reached the board up to a second (p99
    1.5 s at 2,000 events/s) after its snapshot, where the snapshot itself took ~0.5 s.
    Pushes follow `State.snapshots_refreshed` (it moves whenever an agent is re-snapshotted),
    at most every `MIN_PUSH_S`; a filter's frame is encoded at most once per `MIN_PUSH_S`
    whatever the number of boards, and reused while no snapshot changed (for up to 0.5 s: the
    waiting times in it move with the clock).
    """

    def __init__(self, state: State) -> None:
        self.state = state
        self.cache: dict[BoardFilter, tuple[float, int, bytes]] = {}
        self.stopping = asyncio.Event()

    def frame(self, flt: BoardFilter) -> tuple[int, bytes]:
        """(the snapshot version it shows, the SSE frame) for a filter: a frame younger than
        `MIN_PUSH_S` may show an older version, which its board then pushes again next time."""
        t = time.monotonic()
        version = self.state.snapshots_refreshed
        hit = self.cache.get(flt)
        if hit is not None and (t - hit[0] < MIN_PUSH_S or (hit[1] == version
                                                            and t - hit[0] < 0.5)):
            return hit[1], hit[2]
        if len(self.cache) > 64:
            self.cache.clear()
        body = b"data: " + encode_state(self.state, flt) + b"\n\n"
        self.cache[flt] = (t, version, body)
        return version, body

    async def stream(self, request: Any) -> aioweb.StreamResponse:
        flt = BoardFilter.from_query(request.query)
        resp = aioweb.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # a reverse proxy must not buffer the stream
                **SECURITY_HEADERS,
            }
        )
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        try:
            await resp.write(b"retry: 2000\n\n")
            pushed_at, pushed_version = float("-inf"), -1
            while not self.stopping.is_set():
                if (self.state.snapshots_refreshed != pushed_version
                        or time.monotonic() - pushed_at >= PUSH_INTERVAL_S - MIN_PUSH_S / 2):
                    pushed_version, body = self.frame(flt)
                    pushed_at = time.monotonic()
                    await resp.write(body)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), MIN_PUSH_S)
        except ConnectionError:  # the board went away (aiohttp's reset errors subclass this)
            pass
        return resp


class PageHost(Protocol):
    """The web server the pages go on: Faust's app (`page` and its aiohttp `web`).

    A protocol rather than `faust.App`, so the exporters do not import the framework: the
    composition root (`streams.worker`) hands the Faust app in.
    """

    @property
    def web(self) -> Any: ...

    def page(self, path: str) -> Callable[..., Any]: ...


def register(app: PageHost, rt: State, static_dir: Path = STATIC_DIR) -> None:
    """Add /wallboard, /wallboard/static/<file> and /wallboard/events to the worker's web server."""
    html = (static_dir / "wallboard.html").read_bytes()
    assets = _load_assets(static_dir)
    feed = _Feed(rt)

    async def _on_shutdown(_: Any) -> None:
        feed.stopping.set()  # end open streams so the worker's web server stops promptly

    web_app = getattr(getattr(app, "web", None), "web_app", None)
    if web_app is not None:
        web_app.on_shutdown.append(_on_shutdown)

    @app.page("/wallboard")
    async def wallboard_page(web: Any, request: Any) -> Any:
        denied = _denied(request)
        if denied is not None:
            return denied
        resp = aioweb.Response(
            body=html,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-store", **SECURITY_HEADERS},
        )
        token, readers = request.query.get("token"), _board_tokens()
        if readers and auth.matches(token, readers):
            # Remembered, so the TV's URL need not keep the token after the first load.
            resp.set_cookie(
                COOKIE, token, path="/wallboard", httponly=True, samesite="Strict",
                max_age=400 * 86400,
            )
        return resp

    @app.page("/wallboard/")
    async def wallboard_slash(web: Any, request: Any) -> Any:
        # Relative, so it also works behind a reverse proxy that adds a path prefix.
        qs = request.query_string
        location = "../wallboard" + (f"?{qs}" if qs else "")
        return aioweb.Response(status=301, headers={"Location": location})

    @app.page("/wallboard/static/{name}")
    async def wallboard_static(web: Any, request: Any, name: str = "") -> Any:
        asset = assets.get(name or request.match_info.get("name", ""))
        if asset is None:
            return aioweb.Response(status=404, text="404: not found\n")
        headers = {"Cache-Control": "no-cache", "ETag": asset.etag, **SECURITY_HEADERS}
        if request.headers.get("If-None-Match") == asset.etag:
            return aioweb.Response(status=304, headers=headers)
        return aioweb.Response(
            body=asset.body, content_type=asset.content_type, charset="utf-8", headers=headers
        )

    @app.page("/wallboard/events")
    async def wallboard_events(web: Any, request: Any) -> Any:
        denied = _denied(request)
        if denied is not None:
            return denied
        return await feed.stream(request)

    del wallboard_page, wallboard_slash, wallboard_static, wallboard_events

