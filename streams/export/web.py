"""The worker's HTTP surface (SPEC §6): /metrics, /api/v1/agents, /healthz, /readyz.

Pages only read the runtime's snapshots; registered on Faust's own web server (aiohttp).
"""

from __future__ import annotations

from typing import Any

import faust

from streams.export import api, prometheus, wallboard
from streams.pipeline.runtime import Runtime, Sink


def register(app: faust.App, rt: Runtime, sink: Sink) -> None:
    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        return web.bytes(prometheus.render(rt), content_type=prometheus.CONTENT_TYPE)

    @app.page("/api/v1/agents")
    async def agents_page(web: Any, request: Any) -> Any:
        return web.bytes(api.agents_json(rt), content_type="application/json")

    @app.page("/api/v1/execution")
    class ExecutionView(faust.web.View):
        """POST {"shop", "agent", "period": "today"|"month"|"YYYY-MM(-DD)", "points"}."""

        async def post(self, request: Any) -> Any:
            try:
                body = await request.json()
                result = await rt.submit_execution(
                    str(body["shop"]), str(body["agent"]), str(body.get("period", "month")),
                    float(body["points"]), sink,
                )
            except (KeyError, TypeError, ValueError) as exc:
                return self.json({"error": str(exc) or "bad request"}, status=400)
            return self.json(result)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ok = rt.health.ready
        return web.json({"ready": ok, "partitions": sorted(rt.owned)}, status=200 if ok else 503)

    del metrics_page, agents_page, healthz, readyz, ExecutionView
    wallboard.register(app, rt)
