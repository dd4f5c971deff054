"""The HTTP side of annotations and feeds, wired into the app by monitor/web.py.

`GET /api/v1/outages/{id}/annotations` reads an event's annotations (null: none).
`POST /api/v1/outages/{id}/annotations` writes annotations, and only when the configuration
names a token file (`api.annotation_token_file`): without it the route answers 403 (it
exists, so that the OpenAPI document stays the same whatever the configuration, and says
how to turn it on). With it, `Authorization: Bearer <token>` is required (compared in
constant time; 401 otherwise), the body is capped at MAX_BODY (413), and the change is the
one `dprk-monitor annotate` makes. The token is read per request from the running
configuration: a reload that changes or removes it takes effect at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from aiohttp import web

from monitor.annotations import MAX_BODY, AnnotationError, AnnotationUpdate, bearer_ok
from monitor.config import Config
from monitor.events import EventStore, Renderer, StoreError
from monitor.feeds import AtomFeed, CodfExport, location_of

ANNOTATIONS_PATH = "/api/v1/outages/{id:.+}/annotations"
DISABLED = (
    "annotation writes over HTTP are off: name a token file in the configuration "
    "(api.annotation_token_file) to turn them on"
)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def renderer(fmt: str, request: web.Request, config: Config | None) -> str | Renderer:
    """What renders `format=fmt` of /api/v1/outages: json and csv by name (the store knows
    them), Atom and CODF as renderers built for this request."""
    if fmt == "atom":
        base = config.api.base_url if config is not None else None
        if base is None:
            base = f"{request.scheme}://{request.host}"
        return AtomFeed(base, base + str(request.rel_url))
    if fmt == "codf":
        locations = {}
        if config is not None:
            locations = {e.name: location_of(e.asn, e.prefixes) for e in config.entities}
        return CodfExport(locations)
    return fmt


def add_routes(
    app: web.Application, store: EventStore, config: Callable[[], Config] | None
) -> None:
    async def post_annotations(request: web.Request) -> web.Response:
        cfg = config() if config is not None else None
        token = cfg.api.annotation_token if cfg is not None else None
        if token is None:
            return _error(403, DISABLED)
        if not bearer_ok(request.headers.get("Authorization"), token):
            return _error(
                401,
                "a valid `Authorization: Bearer <token>` header is needed",
                {"WWW-Authenticate": 'Bearer realm="dprk-monitor"'},
            )
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _error(413, f"the body is larger than {MAX_BODY} bytes")
        parts, size = [], 0
        async for data in request.content.iter_chunked(16_384):
            size += len(data)
            if size > MAX_BODY:  # chunked, without a length: counted as it comes
                return _error(413, f"the body is larger than {MAX_BODY} bytes")
            parts.append(data)
        try:
            doc = json.loads(b"".join(parts))
        except (ValueError, UnicodeDecodeError) as e:
            return _error(400, f"the body is not JSON: {e}")
        try:
            update = AnnotationUpdate.from_json(doc)
        except AnnotationError as e:
            return _error(400, str(e))
        event_id = request.match_info["id"]
        try:
            # One small transaction on the daemon's writer, like the detector's saves.
            done = store.annotate(event_id, lambda old: update.apply(old, time.time()))
        except AnnotationError as e:
            return _error(400, str(e))
        except StoreError as e:
            return _error(503, str(e))
        if done is None:
            return _error(404, f"no event with id {event_id!r}")
        try:
            ev = await store.get_async(event_id)
        except StoreError as e:
            return _error(503, str(e))
        if ev is None:  # cannot be: it was there a moment ago, and nothing is deleted
            return _error(404, f"no event with id {event_id!r}")
        return web.json_response(ev.to_api(time.time()))

    async def get_annotations(request: web.Request) -> web.Response:
        event_id = request.match_info["id"]
        try:
            ev = await store.get_async(event_id)
        except StoreError as e:
            return _error(503, str(e))
        if ev is None:
            return _error(404, f"no event with id {event_id!r}")
        doc = None if ev.annotations is None else ev.annotations.to_json()
        return web.json_response({"id": ev.id, "annotations": doc})

    # Registered before GET /api/v1/outages/{id:.+}, which would take these paths whole.
    app.router.add_get(ANNOTATIONS_PATH, get_annotations)
    app.router.add_post(ANNOTATIONS_PATH, post_annotations)
