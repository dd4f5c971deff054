"""`GET /api/v1/history?entity=NAME[&since=ISO][&until=ISO][&step=10|60|600]`: the handler
(web.py routes it) and its OpenAPI description (openapi.py includes it).

`entity` is required (400 when missing, 404 when it is neither configured nor has a stored
history). `until` defaults to now, `since` to a day before `until`. Without `step`, the finest
tier that still holds `since` and answers the range in at most 2,000 points. The query and
the JSON encoding run in the store's reader threads, never on the loop.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from monitor.detect.model import State, parse_time
from monitor.detect.times import valid_time
from monitor.history.store import MAX_ASKED_POINTS, MAX_POINTS, HistoryError

DEFAULT_RANGE = 86_400.0


class HistorySource(Protocol):
    """What the route reads (the daemon's `HistoryRecorder`)."""

    @property
    def steps(self) -> tuple[int, ...]: ...

    @property
    def off_reason(self) -> str | None:
        """Why there is no history (disabled, refused database), or None."""
        ...

    async def render(
        self, entity: str, since: float, until: float, step: int | None
    ) -> bytes | None: ...


def _time(name: str, value: str) -> float:
    try:
        t = parse_time(value)
    except (ValueError, OverflowError) as e:
        raise ValueError(f"{name}: {e}") from None
    if not valid_time(t):
        raise ValueError(f"{name}: not a time: {value!r}")
    return t


def parse_params(
    q: Mapping[str, str], now: float, steps: tuple[int, ...]
) -> tuple[str, float, float, int | None]:
    """(entity, since, until, step) from the query; ValueError names the parameter."""
    entity = q.get("entity", "")
    if not entity:
        raise ValueError("entity: required (the name of a configured entity)")
    until = _time("until", q["until"]) if q.get("until") else now
    since = _time("since", q["since"]) if q.get("since") else max(0.0, until - DEFAULT_RANGE)
    if until < since:
        raise ValueError("until: before since")
    step = None
    raw = q.get("step")
    if raw:
        if not (raw.isascii() and raw.isdigit()) or int(raw) not in steps:
            raise ValueError(f"step: must be one of {', '.join(map(str, steps))}")
        step = int(raw)
    return entity, since, until, step


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def handle(request: web.Request, source: HistorySource | None) -> web.Response:
    if source is None or source.off_reason is not None:
        why = source.off_reason if source is not None else "history is not kept"
        return _error(503, f"no history: {why}")
    try:
        entity, since, until, step = parse_params(request.query, time.time(), source.steps)
    except ValueError as e:
        return _error(400, str(e))
    try:
        body = await source.render(entity, since, until, step)
    except ValueError as e:  # a range too long for the step asked
        return _error(400, str(e))
    except HistoryError as e:
        return _error(503, str(e))
    if body is None:
        return _error(404, f"entity: no entity {entity!r} (not configured, no history)")
    return web.Response(body=body, content_type="application/json")


# --- OpenAPI -------------------------------------------------------------------------------

_TIME = {"type": "string", "description": "UTC ISO 8601 with a Z"}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
_RATIOS = {"type": "object", "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1}}

POINT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One step of an entity: the worst state held, per kind the targets "
    "configured, up and answered, loss, RTT median, block beliefs, BGP visibility.",
    "required": [
        "t",
        "state",
        "targets",
        "up",
        "answered",
        "loss",
        "rtt_median",
        "blocks",
        "bgp",
        "vantage_healthy",
    ],
    "properties": {
        "t": {**_TIME, "description": "the start of the step"},
        "state": {"type": "string", "enum": [s.value for s in State]},
        "targets": {**_COUNTS, "description": "per kind, targets configured"},
        "up": {**_COUNTS, "description": "per kind, targets up (after hysteresis)"},
        "answered": {**_COUNTS, "description": "per kind, targets that answered in the step"},
        "loss": {
            "type": ["number", "null"],
            "minimum": 0,
            "maximum": 1,
            "description": "unanswered share of the probes of responsive targets",
        },
        "rtt_median": {
            "type": ["number", "null"],
            "minimum": 0,
            "description": "median ICMP round trip, seconds",
        },
        "blocks": {**_RATIOS, "description": "/24 block -> belief that it is up"},
        "bgp": {**_RATIOS, "description": "prefix -> share of route-collector peers seeing it"},
        "vantage_healthy": {"type": "boolean"},
    },
}

HISTORY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["entity", "step_seconds", "since", "until", "points"],
    "properties": {
        "entity": {"type": "string"},
        "step_seconds": {"type": "integer", "minimum": 1},
        "since": _TIME,
        "until": _TIME,
        "points": {"type": "array", "items": {"$ref": "#/components/schemas/HistoryPoint"}},
    },
}


def _param(name: str, description: str, schema: dict[str, Any], required: bool = False) -> Any:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


PATH: dict[str, Any] = {
    "get": {
        "operationId": "getHistory",
        "summary": "An entity's embedded history over [since, until], oldest first",
        "description": (
            "Points at a fixed step: the finest tier (10 s by default) for recent data, 1 min "
            "and 10 min for older data. Without `step`, the finest tier that still holds "
            f"`since` and answers the range in at most {MAX_POINTS} points. Coarse points "
            "keep the worst of their bucket (state, up, answered, beliefs)."
        ),
        "parameters": [
            _param("entity", "a configured entity", {"type": "string"}, required=True),
            _param(
                "since",
                "ISO 8601 or epoch seconds (default: a day before `until`)",
                {"type": "string"},
            ),
            _param("until", "ISO 8601 or epoch seconds (default: now)", {"type": "string"}),
            _param(
                "step",
                f"seconds, one of the tiers' steps; at most {MAX_ASKED_POINTS} points",
                {"type": "integer", "minimum": 1},
            ),
        ],
        "responses": {
            "200": {
                "description": "the points",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/History"}}
                },
            },
            "400": _error_response("a parameter is missing or not valid (the message names it)"),
            "404": _error_response("no such entity"),
            "503": _error_response("history is disabled or cannot be read"),
        },
    }
}

SCHEMAS: dict[str, Any] = {"History": HISTORY_SCHEMA, "HistoryPoint": POINT_SCHEMA}
