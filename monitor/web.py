"""The HTTP face of the daemon: /metrics, /healthz, /readyz and the JSON API.

Probers and detection know nothing of this module; it reads from the objects it is given.
`/metrics` never stalls probing: the small families are rendered in a worker thread, and the
one with a series per target (`target_up`) is streamed from its buffer in slices of 256 KiB,
yielding to the loop after each. Rendering it all in a thread did not suffice: with the GIL, a
long render starves the loop all the same, and so does sending the whole body in one loop step
(bench/bench_scale.py).

The event log's routes (`/`, `/api/v1/outages[/{id}]`) never read the log on the loop: each
query runs in the store's reader threads (`EventStore.*_async`, `render_page`, `render_all`);
an export without `limit` is streamed in chunks of STREAM_CHUNK events, each read and
rendered in a thread. `/api/v1/openapi.json` describes every /api/v1 route (monitor/openapi.py).
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Callable
from typing import Protocol

import structlog
from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from monitor.annotations_web import add_routes as add_annotation_routes
from monitor.annotations_web import renderer as feed_renderer
from monitor.config import Config
from monitor.events import LATEST, MAX_LIMIT, EventStore, Query, StoreError
from monitor.feeds import CONTENT_TYPES, FORMATS
from monitor.history import api as history_api
from monitor.metrics import Metrics
from monitor.openapi import document as openapi_document
from monitor.pages import PageOptions
from monitor.pages import add_routes as add_page_routes

log = structlog.get_logger("monitor.web")


class Api(Protocol):
    """What the status routes read (implemented by the daemon)."""

    def status(self) -> dict[str, object]: ...


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _limit(value: str | None) -> int | None:
    if value is None:
        return None
    # Digits only: int() would also take " 5", "+5" and other scripts' digits.
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_LIMIT:
        raise ValueError(f"limit: must be an integer from 1 to {MAX_LIMIT}")
    return int(value)


def make_app(
    metrics: Metrics,
    ready: Callable[[], bool],
    api: Api | None = None,
    events: EventStore | None = None,
    pages: PageOptions | None = None,
    history: history_api.HistorySource | None = None,
    config: Callable[[], Config] | None = None,
) -> web.Application:
    """The app. With `api`: the status page and /api/v1/status; with `events` too, the event
    log's routes, each query run in the store's reader threads (never on the loop)."""
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
    if api is None:
        return app
    a = api

    async def status(request: web.Request) -> web.Response:
        return web.json_response(a.status())

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(openapi_document())

    # The pages for people (monitor/pages): `/`, `/outages/{id}` and their static files.
    add_page_routes(app, a, events, pages)
    app.router.add_get("/api/v1/status", status)
    app.router.add_get("/api/v1/openapi.json", openapi)

    async def history_route(request: web.Request) -> web.Response:
        return await history_api.handle(request, history)  # read in the store's threads

    app.router.add_get("/api/v1/history", history_route)
    if events is None:
        return app
    store = events

    async def outages(request: web.Request) -> web.StreamResponse:
        q = request.query
        fmt = q.get("format", "json")
        try:
            if fmt not in FORMATS:
                raise ValueError(f"format: must be {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
            query = Query.parse(q.get("since"), q.get("until"), q.get("entity"), q.get("cursor"))
            limit = _limit(q.get("limit"))
        except ValueError as e:
            return _error(400, str(e))
        ctype = CONTENT_TYPES[fmt]
        # json and csv by name; Atom and CODF built for this request (monitor/feeds.py).
        render = feed_renderer(fmt, request, config() if config is not None else None)
        now = time.time()
        if limit is not None:
            try:
                body, nxt = await store.render_page(query, limit, render, now)
            except StoreError as e:
                return _error(503, str(e))
            headers = {}
            if nxt is not None:
                headers["X-Next-Cursor"] = nxt
                headers["Link"] = f'<{request.rel_url.update_query(cursor=nxt)}>; rel="next"'
            return web.Response(text=body, content_type=ctype, headers=headers)
        # No limit: everything, in chunks read and rendered off the loop as the client takes
        # them (the old contract: the whole list in one body).
        chunks = store.render_all(query, render, now)
        try:
            first = await anext(chunks)
        except StoreError as e:
            return _error(503, str(e))
        resp = web.StreamResponse(headers={"Content-Type": f"{ctype}; charset=utf-8"})
        await resp.prepare(request)
        try:
            await resp.write(first)
            async for chunk in chunks:
                await resp.write(chunk)
            await resp.write_eof()
        except (StoreError, ConnectionResetError) as e:
            # Headers are out: all that is left is to end the body short, so that the client
            # sees an error rather than a list that looks whole.
            log.warning("outages export ended early", error=str(e))
            if request.transport is not None:
                request.transport.close()
        finally:
            await chunks.aclose()
        return resp

    async def outage(request: web.Request) -> web.Response:
        event_id = request.match_info["id"]
        try:
            ev = await store.get_async(event_id)
        except StoreError as e:
            return _error(503, str(e))
        if ev is None:
            return _error(404, f"no event with id {event_id!r}")
        return web.json_response(ev.to_api(time.time()))

    app.router.add_get("/api/v1/outages", outages)
    # `.+`: an id is matched whole, even one holding an (escaped) slash: a 404 in JSON.
    # .../annotations (GET; POST: 403 unless the config names a token file): before the
    # event's route, whose `.+` would take them (monitor/annotations_web.py).
    add_annotation_routes(app, store, config)
    app.router.add_get("/api/v1/outages/{id:.+}", outage)
    return app


_COLOURS = {
    "up": "#2e7d32",
    "degraded": "#f9a825",
    "partial": "#ef6c00",
    "down": "#c62828",
    "unknown": "#616161",
}


def status_page(status: dict[str, object], events: list[dict[str, object]]) -> str:
    """A plain HTML page for people: each entity's state and the latest outage events (as
    given: newest first, at most LATEST shown)."""
    esc = html.escape
    rows = []
    for ent in status.get("entities", []):  # type: ignore[attr-defined]
        state = str(ent["state"])
        colour = _COLOURS.get(state, "#000")
        # Targets by state, never answered apart from down (a silent address of the config is
        # not an outage): totals, each with its per-kind split as a tooltip.
        cells = []
        by_kind: dict[str, dict[str, int]] = ent.get("targets") or {}
        for key, col in (("up", "up"), ("down", "down"), ("never_answered", "unknown")):
            total = sum(c.get(key, 0) for c in by_kind.values())
            split = ", ".join(f"{k} {c.get(key, 0)}" for k, c in by_kind.items())
            style = f' style="color:{_COLOURS[col]}"' if total else ""
            cells.append(f'<td{style} title="{esc(split)}">{total}</td>')
        rows.append(
            f"<tr><td>{esc(str(ent['name']))}</td>"
            f'<td style="color:{colour};font-weight:bold">{esc(state)}</td>'
            f"<td>{esc(str(ent['since']))}</td>" + "".join(cells) + "</tr>"
        )
    evrows = []
    for ev in events[:LATEST]:
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
        "<h2>Entities</h2><table><tr><th>entity</th><th>state</th><th>since</th>"
        "<th>targets up</th><th>down</th><th>never answered</th></tr>"
        + "".join(rows)
        + "</table><h2>Latest outages</h2><table><tr><th>start</th><th>end</th><th>entity</th>"
        "<th>kind</th><th>seconds</th></tr>"
        + "".join(evrows)
        + '</table><p><a href="/metrics">/metrics</a> · <a href="/api/v1/status">/api/v1/status'
        '</a> · <a href="/api/v1/outages">/api/v1/outages</a></p></body></html>'
    )
