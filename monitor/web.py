"""The HTTP face of the daemon: /metrics, /healthz, /readyz and the JSON API.

Probers and detection know nothing of this module; it reads from the objects it is given.
`/metrics` never stalls probing: the small families are rendered in a worker thread, and the
one with a series per target (`target_up`) is streamed from its buffer in slices of 256 KiB,
yielding to the loop after each. Rendering it all in a thread did not suffice: with the GIL, a
long render starves the loop all the same, and so does sending the whole body in one loop step
(bench/bench_scale.py).
"""

from __future__ import annotations

import asyncio
import html
import json
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

    async def metrics_handler(request: web.Request) -> web.StreamResponse:
        async with render_lock:
            rest = await asyncio.get_running_loop().run_in_executor(None, metrics.render_rest)
            size, parts = metrics.render_parts(rest)
            resp = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
            resp.content_length = size
            await resp.prepare(request)
            try:
                for part in parts:
                    await resp.write(part)
                    # write() suspends only when the transport is paused; a scraper on a
                    # fast link takes the whole body at once, ~40 ms of send() at 100,000
                    # targets: let the probes in between the slices.
                    await asyncio.sleep(0)
                await resp.write_eof()
            except ConnectionResetError:  # the scraper went away (timed out): nothing to do
                pass
            except RuntimeError:  # a reload moved target_up's lines: end short, scrape again
                if request.transport is not None:
                    request.transport.close()
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

        async def index(request: web.Request) -> web.Response:
            doc = a.status()
            _, body = a.outages(None, None, None, "json")
            return web.Response(text=status_page(doc, json.loads(body)), content_type="text/html")

        app.router.add_get("/", index)
        app.router.add_get("/api/v1/status", status)
        app.router.add_get("/api/v1/outages", outages)
    return app


_COLOURS = {
    "up": "#2e7d32",
    "degraded": "#f9a825",
    "partial": "#ef6c00",
    "down": "#c62828",
    "unknown": "#616161",
}


def status_page(status: dict[str, object], events: list[dict[str, object]]) -> str:
    """A plain HTML page for people: each entity's state and the latest outage events."""
    esc = html.escape
    rows = []
    for ent in status.get("entities", []):  # type: ignore[attr-defined]
        state = str(ent["state"])
        colour = _COLOURS.get(state, "#000")
        rows.append(
            f"<tr><td>{esc(str(ent['name']))}</td>"
            f'<td style="color:{colour};font-weight:bold">{esc(state)}</td>'
            f"<td>{esc(str(ent['since']))}</td></tr>"
        )
    evrows = []
    for ev in events[-20:][::-1]:
        evrows.append(
            "<tr>"
            + "".join(
                f"<td>{esc(str(ev.get(k) if ev.get(k) is not None else 'open'))}</td>"
                for k in ("start", "end", "entity", "kind", "duration_seconds")
            )
            + "</tr>"
        )
    vantage = "healthy" if status.get("vantage_healthy") else "OFFLINE (our own uplink fails)"
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>dprk-outage-monitor</title>"
        '<meta http-equiv="refresh" content="15">'
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em .8em;"
        "text-align:left}</style></head><body><h1>dprk-outage-monitor</h1>"
        f"<p>Vantage: {esc(vantage)}</p>"
        "<h2>Entities</h2><table><tr><th>entity</th><th>state</th><th>since</th></tr>"
        + "".join(rows)
        + "</table><h2>Latest outages</h2><table><tr><th>start</th><th>end</th><th>entity</th>"
        "<th>kind</th><th>seconds</th></tr>"
        + "".join(evrows)
        + '</table><p><a href="/metrics">/metrics</a> · <a href="/api/v1/status">/api/v1/status'
        '</a> · <a href="/api/v1/outages">/api/v1/outages</a></p></body></html>'
    )
