"""The HTTP face of the daemon: /metrics, /healthz, /readyz and the JSON API.

Probers and detection know nothing of this module; it reads from the objects it is given.
`/metrics` is rendered in a worker thread so that a scrape of many series never stalls probing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from monitor.metrics import Metrics


class Api(Protocol):
    """What the API routes read (implemented by the daemon)."""

    def status(self) -> dict[str, object]: ...

    def outages(
        self, since: str | None, until: str | None, entity: str | None, fmt: str
    ) -> tuple[str, str]:
        """Return (content type, body)."""
        ...


def make_app(
    metrics: Metrics, ready: Callable[[], bool], api: Api | None = None
) -> web.Application:
    app = web.Application()
    # One render at a time: concurrent scrapes share the thread instead of piling up.
    render_lock = asyncio.Lock()

    async def metrics_handler(request: web.Request) -> web.Response:
        async with render_lock:
            body = await asyncio.get_running_loop().run_in_executor(None, metrics.render)
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")

    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)

    if api is not None:
        a = api

        async def status(request: web.Request) -> web.Response:
            return web.json_response(a.status())

        async def outages(request: web.Request) -> web.Response:
            q = request.query
            fmt = q.get("format", "json")
            if fmt not in ("json", "csv"):
                return web.json_response({"error": "format must be json or csv"}, status=400)
            try:
                ctype, body = a.outages(q.get("since"), q.get("until"), q.get("entity"), fmt)
            except ValueError as e:
                return web.json_response({"error": str(e)}, status=400)
            return web.Response(text=body, content_type=ctype)

        app.router.add_get("/api/v1/status", status)
        app.router.add_get("/api/v1/outages", outages)
    return app
