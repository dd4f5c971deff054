"""The OpenAPI 3 description of every /api/v1 route, served at `/api/v1/openapi.json`.

Kept true by tests/unit/test_openapi.py: every /api/v1 route of the app is described here and
every path described here is routed, real answers validate against these schemas, and
schemathesis drives the API of a daemon on loopback from this document. Pure data, no I/O.
"""

from __future__ import annotations

import copy
from typing import Any

from monitor import __version__
from monitor import annotations as annotations_api
from monitor.detect.model import EventKind, State
from monitor.events import DEFAULT_LIMIT, MAX_LIMIT
from monitor.feeds import CODF_SCHEMA, FORMATS
from monitor.history import api as history_api

JSON = dict[str, Any]

_TIME = {
    "type": "string",
    "description": "UTC ISO 8601 with a Z; milliseconds only when not zero",
    "examples": ["2025-06-06T17:00:00Z"],
}

_EVENT: JSON = {
    "type": "object",
    "description": "One outage event; `end` is null while it is open.",
    "required": [
        "id",
        "entity",
        "kind",
        "start",
        "end",
        "duration_seconds",
        "signals",
        "evidence",
    ],
    "properties": {
        "id": {"type": "string"},
        "entity": {"type": "string"},
        "kind": {"type": "string", "enum": [k.value for k in EventKind]},
        "start": {**_TIME, "description": "the first failed probe that led to the event"},
        "end": {"anyOf": [_TIME, {"type": "null"}]},
        "duration_seconds": {
            "type": ["number", "null"],
            "minimum": 0,
            "description": "to `end`, or to now while the event is open",
        },
        "signals": {"type": "object", "description": "the fused signals and the phases"},
        "evidence": {
            "type": "object",
            "description": "per kind the last good and first failed probe, failure order, "
            "blocks lost and back, targets down, the vantage's blind intervals, routing, path",
        },
        # Absent until the event is annotated (monitor/annotations.py).
        "annotations": {"$ref": "#/components/schemas/Annotations"},
    },
}

_ERROR: JSON = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "what was wrong, in one line"}},
}

_STATUS: JSON = {
    "type": "object",
    "required": ["vantage_healthy", "entities"],
    "properties": {
        "vantage_healthy": {
            "type": "boolean",
            "description": "false: the controls fail, our own uplink is the problem",
        },
        "entities": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "state", "since", "signals"],
                "properties": {
                    "name": {"type": "string"},
                    "state": {"type": "string", "enum": [s.value for s in State]},
                    "since": _TIME,
                    "signals": {"type": "object"},
                    "targets": {
                        "type": "object",
                        "description": "per kind, the targets up, down and never answered",
                        "additionalProperties": {
                            "type": "object",
                            "required": ["up", "down", "never_answered"],
                            "properties": {
                                k: {"type": "integer", "minimum": 0}
                                for k in ("up", "down", "never_answered")
                            },
                        },
                    },
                    "targets_never_answered": {
                        "type": "object",
                        "description": "per kind, the first 50 targets that never answered",
                        "additionalProperties": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
        "bgp": {"type": "object", "description": "the RIS Live client's health"},
        "event_log": {
            "type": "object",
            "required": ["healthy", "pending"],
            "properties": {
                "healthy": {"type": "boolean"},
                "pending": {"type": "integer", "minimum": 0},
                "error": {"type": ["string", "null"]},
                "corrupt_rows": {"type": "integer", "minimum": 0},
            },
        },
    },
}


def _ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: JSON, description: str) -> JSON:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _param(name: str, description: str, schema: JSON, example: str | None = None) -> JSON:
    p: JSON = {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }
    if example is not None:
        p["example"] = example
    return p


_UNREADABLE = _json(_ref("Error"), "the event log cannot be read")

_OUTAGES: JSON = {
    "get": {
        "operationId": "listOutages",
        "summary": "Outage events overlapping [since, until], oldest first",
        "description": (
            "Without `limit`, every matching event (streamed). With `limit`, one page; the next "
            'page is at the URL of the `Link: <...>; rel="next"` header (the same query with '
            "`cursor` set to `X-Next-Cursor`), absent on the last page. Open events run on "
            "to now."
        ),
        "parameters": [
            _param(
                "since",
                "events still running at or after this time: ISO 8601 (a date, or a time with "
                "Z or an offset; naive means UTC) or epoch seconds; finite",
                {"type": "string"},
                "2025-01-01",
            ),
            _param("until", "events that began at or before this time", {"type": "string"}),
            _param("entity", "only this entity's events", {"type": "string"}, "star-jv"),
            _param(
                "format",
                "json (a list of events) or csv (one row per event; signals, evidence and "
                "annotations as JSON text; text cells that a spreadsheet would run as a formula "
                "start with '), atom (an Atom 1.0 feed, one entry per event) or codf (a list "
                "of Common Outage Data Format records); see docs/FORMATS.md",
                {"type": "string", "enum": list(FORMATS), "default": "json"},
            ),
            _param(
                "limit",
                f"events per page (at most {MAX_LIMIT}); absent: all, streamed in chunks of "
                f"{DEFAULT_LIMIT}",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            ),
            _param(
                "cursor",
                "where the page starts: the X-Next-Cursor of the previous page",
                {"type": "string"},
            ),
        ],
        "responses": {
            "200": {
                "description": "the events",
                "headers": {
                    "X-Next-Cursor": {
                        "description": "the cursor of the next page (paged and not the last)",
                        "schema": {"type": "string"},
                    },
                    "Link": {
                        "description": 'the next page: `<URL>; rel="next"`',
                        "schema": {"type": "string"},
                    },
                },
                "content": {
                    "application/json": {
                        "schema": {
                            "anyOf": [
                                {"type": "array", "items": _ref("Event")},
                                {"type": "array", "items": _ref("CodfRecord")},
                            ]
                        },
                    },
                    "text/csv": {"schema": {"type": "string"}},
                    "application/atom+xml": {"schema": {"type": "string"}},
                },
            },
            "400": _json(_ref("Error"), "a parameter is not valid (the message names it)"),
            "503": _UNREADABLE,
        },
    }
}

_OUTAGE: JSON = {
    "get": {
        "operationId": "getOutage",
        "summary": "One outage event by id",
        "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
        ],
        "responses": {
            "200": _json(_ref("Event"), "the event"),
            "404": _json(_ref("Error"), "no event has this id"),
            "503": _UNREADABLE,
        },
    }
}

_DOCUMENT: JSON = {
    "openapi": "3.1.0",
    "info": {
        "title": "dprk-outage-monitor",
        "version": __version__,
        "description": (
            "Outages of North Korea's external Internet as seen from one vantage point. "
            "Times are UTC ISO 8601. /metrics (Prometheus), /healthz, /readyz and the status "
            "page / are not part of this API."
        ),
    },
    "paths": {
        "/api/v1/status": {
            "get": {
                "operationId": "getStatus",
                "summary": "Each entity's state now, and the vantage's health",
                "responses": {"200": _json(_ref("Status"), "the status")},
            }
        },
        "/api/v1/outages": _OUTAGES,
        "/api/v1/outages/{id}": _OUTAGE,
        "/api/v1/outages/{id}/annotations": annotations_api.OPENAPI_PATH,
        "/api/v1/history": history_api.PATH,
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "the OpenAPI 3 document")},
            }
        },
    },
    "components": {
        "schemas": {"Event": _EVENT, "Error": _ERROR, "Status": _STATUS, **history_api.SCHEMAS}
        | annotations_api.OPENAPI_SCHEMAS
        | {"CodfRecord": CODF_SCHEMA},
    },
}


def document() -> JSON:
    """The document (a copy: callers may change it)."""
    return copy.deepcopy(_DOCUMENT)
