"""The pages for people: `/` (status) and `/outages/{id}` (an event told in words and a chart).

Server-rendered HTML with inline SVG (render.py, chart.py, story.py: pure), one stylesheet and
one small script shipped as package data (static/), nothing from elsewhere: the pages work
air-gapped. Every page carries a Content-Security-Policy allowing 'self' only (plus `data:`
images, which the PNG export draws from); the script refreshes the status page by fetching
it again, and exports the event chart as SVG or PNG.

Nothing here reads a database on the event loop: the event log through its `*_async` readers,
the history store (`History.query`, sync) and the rendering in a worker thread. That thread
still holds the GIL while it works in Python, and the loop waits for it: so the history is read
at no more points than a chart has pixels, in short pieces, and kept once final, and drawn
timelines are kept (cache.py); a refresh reads and draws only what changed. A missing or
failing history store is a note on the page, never an error page.

`add_routes` is called by monitor/web.py; these routes are not part of the /api/v1 OpenAPI
document (they serve HTML, not the API).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

import structlog
from aiohttp import web

from monitor.events import LATEST, EventStore, StoreError
from monitor.pages import cache, chart, render
from monitor.pages.chart import Sample
from monitor.pages.model import Annotations, History

log = structlog.get_logger("monitor.pages")

CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
STATIC = {"pages.css": "text/css", "pages.js": "text/javascript"}


class Site(Protocol):
    """What the status page reads (implemented by the daemon; web.Api)."""

    def status(self) -> dict[str, object]: ...


def _none() -> None:
    return None


@dataclass(frozen=True, slots=True)
class PageOptions:
    """Read at each request (a reload may change them): the history store, if any, and the
    Grafana base URL (config `grafana_url`) the event page links to."""

    history: Callable[[], History | None] = field(default=_none)
    grafana_url: Callable[[], str | None] = field(default=_none)


def _static(name: str) -> bytes:
    return resources.files("monitor.pages").joinpath("static", name).read_bytes()


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=HEADERS)


class Pages:
    """What the pages keep between requests (see cache.py): history samples and drawings."""

    def __init__(self) -> None:
        self.reader = cache.Reader()
        self.strips = cache.StripCache()

    def strip(
        self, svg_id: str, samples: Sequence[Sample], t0: float, t1: float, title: str
    ) -> str:
        """chart.strip_svg, drawn once per distinct input."""
        return self.strips.get(
            (svg_id, title),
            (t0, t1, tuple(samples)),
            lambda: chart.strip_svg(svg_id, samples, t0, t1, title),
        )

    def timelines(
        self, history: History | None, names: Sequence[str], now: float
    ) -> Mapping[str, render.Timelines]:
        """Per entity its 24 h and 7 d samples, each at the finest step a timeline can draw
        (one read when both have the same step: the day is the week's end)."""
        if history is None:
            return {}
        out = {}
        for i, name in enumerate(names):
            if i:
                cache.breathe()  # one entity at a time: the loop gets in between
            try:
                out[name] = self._entity(history, name, now)
            except Exception as e:  # a failing history is a note on the page, not an error page
                log.warning("status page without history", entity=name, error=str(e))
                out[name] = render.Timelines(error=f"{type(e).__name__}: {e}")
        return out

    def _entity(self, history: History, name: str, now: float) -> render.Timelines:
        read: dict[int | None, tuple[float, list[Sample]]] = {}
        last = None
        got = {}
        # The week first: the day reuses its samples when the step is the same.
        for key, span in (("week", 7 * render.DAY), ("day", render.DAY)):
            since = now - span
            step = cache.pick_step(history, since, now, chart.STRIP_PLOT, now)
            if step in read and read[step][0] <= since:
                lo = since - (step or 0)
                got[key] = [s for s in read[step][1] if s.t > lo]
                continue
            samples, newest = self.reader.samples(history, "status", name, since, now, step)
            read[step] = (since, samples)
            got[key] = samples
            last = newest if last is None or (newest is not None and newest.t > last.t) else last
        if last is not None and last.t <= now - render.DAY - last.step:
            last = None  # the block beliefs shown are the last day's, as the day's strip
        return render.Timelines(got["day"], got["week"], last=last)

    def event_samples(
        self, history: History, ev_id: str, entity: str, t0: float, t1: float, now: float
    ) -> list[Sample]:
        step = cache.pick_step(history, t0, t1, chart.EVENT_PLOT, now)
        return self.reader.samples(history, f"event:{ev_id}", entity, t0, t1, step)[0]


def add_routes(
    app: web.Application,
    site: Site,
    events: EventStore | None,
    options: PageOptions | None = None,
) -> None:
    """`/`, `/outages/{id}` (when there is an event log) and `/static/pages.{css,js}`."""
    opts = options or PageOptions()
    files = {name: _static(name) for name in STATIC}
    kept = Pages()

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in files:
            raise web.HTTPNotFound()
        return web.Response(
            body=files[name],
            content_type=STATIC[name],
            charset="utf-8",
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    async def index(request: web.Request) -> web.Response:
        now = time.time()
        status = site.status()
        latest: list[Any] = []
        events_error = None
        if events is not None:
            try:
                latest = await events.latest_async(LATEST)
            except StoreError as e:  # the page still shows the entities
                log.warning("status page without events", error=str(e))
                events_error = str(e)
        ents = status.get("entities")
        names = (
            [str(e.get("name")) for e in ents if isinstance(e, dict)]
            if isinstance(ents, list)
            else []
        )
        history = opts.history()

        def work() -> str:
            timelines = kept.timelines(history, names, now)
            data = render.StatusData(status, latest, timelines, events_error)
            return render.status_html(data, now, kept.strip)

        return _html(await asyncio.get_running_loop().run_in_executor(None, work))

    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    if events is None:
        return
    store = events

    async def outage_page(request: web.Request) -> web.Response:
        event_id = request.match_info["id"]
        try:
            ev = await store.get_async(event_id)
        except StoreError as e:
            return _html(render.error_html(str(e)), 503)
        if ev is None:
            return _html(render.not_found_html(event_id), 404)
        now = time.time()
        history = opts.history()
        grafana = opts.grafana_url()

        def work() -> str:
            points: Sequence[Sample] | None = None
            error = None
            if history is not None:
                t0, t1 = render.chart_range(ev, now)
                try:
                    points = kept.event_samples(history, ev.id, ev.entity, t0, t1, now)
                except Exception as e:
                    log.warning("event page without history", id=ev.id, error=str(e))
                    error = f"{type(e).__name__}: {e}"
            ann = Annotations.from_api(ev.to_api(now).get("annotations"))
            return render.event_html(
                ev, points, now, annotations=ann, grafana_url=grafana, history_error=error
            )

        return _html(await asyncio.get_running_loop().run_in_executor(None, work))

    # `.+`: an id is matched whole, as /api/v1/outages/{id} does.
    app.router.add_get("/outages/{id:.+}", outage_page)
