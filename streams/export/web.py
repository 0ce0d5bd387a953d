"""The worker's HTTP surface (docs/interfaces.md): /metrics, /api/v1/agents,
/api/v1/scorecard, /api/v1/waiting, /api/v1/execution, /healthz, /readyz, and the wall-board.

Pages only read the runtime's snapshots. Plain aiohttp handlers on Faust's own web server
(`mount` takes any aiohttp router, so the tests serve exactly these handlers). Who may read and
write is decided in `auth`; Faust's own debug views (`/table`, `/router`, `/graph`, …) are
switched off in `pipeline.faust_adapter`: they answered whether a buyer exists and listed
internal topics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web as aioweb

from streams.export import api, auth, prometheus, scorecard_api, waiting_api, wallboard
from streams.export.execution import FieldError, parse_execution
from streams.ports import Sink
from streams.state import Console

MAX_BODY_BYTES = 16 * 1024
Handler = Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]
_NO_STORE = {"Cache-Control": "no-store"}


def _recovering() -> aioweb.Response:
    """503 while state is restored: a partial table or list would look like real numbers."""
    return _json({"error": "the worker is still recovering its state; try again"}, 503,
                 {"Retry-After": "5"})


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> aioweb.Response:
    return aioweb.Response(body=orjson.dumps(body), status=status, content_type="application/json",
                           headers={**_NO_STORE, **(headers or {})})


def _unauthorized(what: str) -> aioweb.Response:
    return _json({"error": f"{what} needs a valid token (Authorization: Bearer …)"}, 401,
                 {"WWW-Authenticate": 'Bearer realm="kefu-pulse"'})


def _cross_site(request: aioweb.Request) -> bool:
    """A browser request from another site (CSRF): its Origin is not this host."""
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    return origin.partition("://")[2].rstrip("/") != request.host


class Routes:
    """The handlers, bound to one runtime, sink and set of tokens."""

    def __init__(self, rt: Console, sink: Sink, tokens: auth.Tokens) -> None:
        self.rt = rt
        self.sink = sink
        self.tokens = tokens

    def read_denied(self, request: aioweb.Request) -> aioweb.Response | None:
        readers = self.tokens.readers()
        if not readers:
            return None
        given = auth.bearer(request.headers) or request.query.get("token")
        return None if auth.matches(given, readers) else _unauthorized("this page")

    async def metrics(self, request: aioweb.Request) -> aioweb.StreamResponse:
        want = self.tokens.metrics
        if want and not auth.matches(auth.bearer(request.headers), [want]):
            return _unauthorized("/metrics")
        return aioweb.Response(body=prometheus.render(self.rt),
                               headers={"Content-Type": prometheus.CONTENT_TYPE})

    async def agents(self, request: aioweb.Request) -> aioweb.StreamResponse:
        denied = self.read_denied(request)
        if denied is not None:
            return denied
        return aioweb.Response(body=api.agents_json(self.rt), content_type="application/json",
                               headers=_NO_STORE)

    async def scorecard(self, request: aioweb.Request) -> aioweb.StreamResponse:
        """The 绩效考核表 (scorecard_api): it names agents, so it is a read like /api/v1/agents."""
        denied = self.read_denied(request)
        if denied is not None:
            return denied
        if not self.rt.health.ready:
            return _recovering()
        try:
            q = scorecard_api.parse_query(request.query)
            doc = scorecard_api.document(self.rt.snapshots.values(), self.rt.config, q.period,
                                         self.rt.clock.now_ms())
        except scorecard_api.ScorecardError as exc:
            return _json(exc.body(), exc.status)
        # An XLSX of thousands of agents takes a while: off the loop that processes events.
        body, ctype, headers = await asyncio.to_thread(scorecard_api.render, doc, q)
        return aioweb.Response(body=body, content_type=ctype, headers={**_NO_STORE, **headers},
                               charset="utf-8" if ctype == "text/csv" else None)

    def buyer_ids_denied(self, request: aioweb.Request) -> aioweb.Response | None:
        """Buyer ids need the read or the API token, even where reads are open (docs/contract.md).

        Bearer, `?token=`, or the wall-board's cookie (sent only under /wallboard, so the board
        reaches this handler as `wallboard/waiting`); the cookie counts only if it holds one of
        those two tokens, never the older wall-board token.
        """
        allowed = self.tokens.buyer_readers()
        if not allowed:
            return _json({"error": f"the waiting list holds buyer ids: set {auth.READ_TOKEN_ENV} "
                                   f"(or {auth.API_TOKEN_ENV}) to allow it and send it as "
                                   "Authorization: Bearer …"}, 403)
        if _cross_site(request):
            return _json({"error": "cross-origin reads of buyer ids are refused"}, 403)
        given = (auth.bearer(request.headers), request.query.get("token"),
                 request.cookies.get(wallboard.COOKIE))
        if any(auth.matches(g, allowed) for g in given):
            return None
        return _unauthorized("the waiting list")

    async def waiting(self, request: aioweb.Request) -> aioweb.StreamResponse:
        """Who is waiting now, longest first: buyer ids and waits (waiting_api)."""
        denied = self.buyer_ids_denied(request)
        if denied is not None:
            return denied
        if not self.rt.health.ready:
            return _recovering()
        try:
            q = waiting_api.parse_query(request.query)
        except waiting_api.WaitingError as exc:
            return _json(exc.body(), 400)
        now = self.rt.clock.now_ms()
        rows = self.rt.waiting(now, q.shop, q.agent)
        return _json(waiting_api.document(rows, q, now, self.rt.clock.mode),
                     headers={"Referrer-Policy": "no-referrer"})

    async def execution(self, request: aioweb.Request) -> aioweb.StreamResponse:
        """POST {"shop", "agent", "period": "today"|"month"|"YYYY-MM(-DD)", "points"}."""
        if not self.tokens.api:
            return _json({"error": f"writes are disabled: set {auth.API_TOKEN_ENV} to allow "
                                   "them (send it as Authorization: Bearer …)"}, 403)
        if _cross_site(request):
            return _json({"error": "cross-origin writes are refused"}, 403)
        if request.content_type != "application/json":
            return _json({"error": "Content-Type must be application/json"}, 415)
        if not auth.matches(auth.bearer(request.headers), [self.tokens.api]):
            return _unauthorized("writing")
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return _json({"error": "body too large"}, 413)
        raw = await request.content.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            return _json({"error": "body too large"}, 413)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _json({"error": "body: not valid JSON", "field": "body"}, 400)
        rt = self.rt
        try:
            ex = parse_execution(body, rt.config, self._known, rt.clock.now_ms())
            result = await rt.submit_execution(ex.shop, ex.agent, ex.period, ex.points, self.sink)
        except FieldError as exc:
            return _json({"error": str(exc), "field": exc.field}, 400)
        except ValueError as exc:  # the runtime's own checks (kept as a second line)
            return _json({"error": str(exc) or "bad request", "field": "body"}, 400)
        return _json(result)

    def _known(self, shop: str, agent: str) -> tuple[bool, bool]:
        config, seen = self.rt.config, self.rt.aggs.agents
        shop_known = shop in config.shops or any(s == shop for s, _ in seen)
        return shop_known, agent in config.agents or (shop, agent) in seen

    async def healthz(self, request: aioweb.Request) -> aioweb.StreamResponse:
        return _json({"status": "ok"})

    async def readyz(self, request: aioweb.Request) -> aioweb.StreamResponse:
        health = self.rt.health
        ok = health.is_ready()
        body = {"ready": ok, "recovered": health.ready, "partitions": sorted(self.rt.owned),
                "broker": "ok" if health.broker_reachable() else "unreachable"}
        return _json(body, 200 if ok else 503)

    def table(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/metrics", self.metrics),
            ("GET", "/api/v1/agents", self.agents),
            ("GET", "/api/v1/scorecard", self.scorecard),
            ("GET", "/api/v1/waiting", self.waiting),
            # The same list for the wall-board's drill-down, under the path its cookie covers.
            ("GET", "/wallboard/waiting", self.waiting),
            ("POST", "/api/v1/execution", self.execution),
            ("GET", "/healthz", self.healthz),
            ("GET", "/readyz", self.readyz),
        ]


def mount(router: aioweb.UrlDispatcher, rt: Console, sink: Sink, tokens: auth.Tokens) -> None:
    """Add the handlers to an aiohttp router."""
    for method, path, handler in Routes(rt, sink, tokens).table():
        router.add_route(method, path, handler)


def register(app: wallboard.PageHost, rt: Console, sink: Sink) -> None:
    """Mount the handlers and the wall-board on the worker's (Faust's aiohttp) web server."""
    web_app: aioweb.Application = app.web.web_app
    mount(web_app.router, rt, sink, auth.Tokens.from_env())
    wallboard.register(app, rt)
