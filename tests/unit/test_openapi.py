"""The OpenAPI document at /api/v1/openapi.json is true: it describes exactly the /api/v1
routes the app has, real answers validate against its schemas, and schemathesis, driving a
daemon on loopback from it, finds no 5xx and no answer outside it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from aiohttp import web

from monitor.metrics import Metrics
from monitor.openapi import document
from monitor.web import make_app
from tests.unit.test_api import fetch, many, started

# Keep the run inside a unit test's time; `make test` raises it (ST_MAX_EXAMPLES).
MAX_EXAMPLES = int(os.environ.get("ST_MAX_EXAMPLES", "25"))


class Status:
    def status(self) -> dict[str, object]:
        return {"vantage_healthy": True, "entities": []}


def routed(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every /api/v1 route; aiohttp's automatic HEAD left out."""
    out = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api/v1") and route.method != "HEAD":
            out.add((route.method.lower(), path))
    return out


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, ops in doc["paths"].items() for method in ops}


def test_every_api_route_is_documented_and_every_documented_path_is_routed(
    tmp_path: Path,
) -> None:
    """The router's /api/v1 routes and the document's paths are the same set."""
    from monitor.events import EventStore

    store = EventStore(tmp_path)
    app = make_app(Metrics(), lambda: True, api=Status(), events=store)
    assert routed(app) == documented(document())
    assert ("get", "/api/v1/outages/{id}") in routed(app)
    store.close()


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A JSON Schema validator for a schema of the document (its $refs resolved in it)."""
    return jsonschema_rs.Draft202012Validator({**schema, "components": doc["components"]})


def response_schema(doc: dict[str, Any], path: str, code: int, ctype: str) -> dict[str, Any]:
    response = doc["paths"][path]["get"]["responses"][str(code)]
    schema: dict[str, Any] = response["content"][ctype]["schema"]
    return schema


async def test_real_answers_match_the_documented_schemas(tmp_path: Path) -> None:
    """Status, a page, the whole list, one event, a 404 and a 400, as served, validate
    against the document served at /api/v1/openapi.json; the documented headers are there."""
    many(tmp_path, 12)
    d = await started(tmp_path)
    try:
        code, _, body = await fetch(d, "/api/v1/openapi.json")
        doc = json.loads(body)
        assert code == 200 and doc == document() and doc["openapi"].startswith("3.1")
        cases = [
            ("/api/v1/status", "/api/v1/status", 200),
            ("/api/v1/outages?limit=5", "/api/v1/outages", 200),
            ("/api/v1/outages", "/api/v1/outages", 200),
            ("/api/v1/outages/ev00003", "/api/v1/outages/{id}", 200),
            ("/api/v1/outages/none", "/api/v1/outages/{id}", 404),
            ("/api/v1/outages?since=nan", "/api/v1/outages", 400),
            ("/api/v1/outages?format=xml", "/api/v1/outages", 400),
        ]
        for url, path, want in cases:
            code, headers, body = await fetch(d, url)
            assert code == want, url
            schema = response_schema(doc, path, code, "application/json")
            validator(doc, schema).validate(json.loads(body))
            documented_headers = doc["paths"][path]["get"]["responses"][str(code)].get("headers")
            if "limit=" in url:
                assert set(documented_headers) <= set(headers)
        (event,) = json.loads((await fetch(d, "/api/v1/outages?limit=1"))[2])
        assert set(event) == set(doc["components"]["schemas"]["Event"]["required"])
    finally:
        await d.stop()


@pytest.mark.timeout(600)
async def test_schemathesis_finds_no_server_error_nor_schema_violation(tmp_path: Path) -> None:
    """schemathesis (`st run`, every check but positive_data_acceptance) against a daemon on
    127.0.0.1 with stored events: no 5xx, every answer within the document."""
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[test]'")
    many(tmp_path, 40)
    d = await started(tmp_path)
    try:
        # positive_data_acceptance is left out: a schema-valid string is not always a valid
        # time or cursor (and `until` before `since` is refused), which JSON Schema cannot say.
        proc = await asyncio.create_subprocess_exec(
            st,
            "run",
            f"http://127.0.0.1:{d.listen_port}/api/v1/openapi.json",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "1",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--no-color",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(os.environ, SCHEMATHESIS_HOOKS=""),
        )
        out, _ = await proc.communicate()
        text = out.decode(errors="replace")
        assert proc.returncode == 0, text[-6000:]
        # Every documented operation but the document's own route (schemathesis leaves it).
        n = len(documented(document())) - 1
        assert f"{n} selected" in text or f"Tested: {n}" in text, text[-3000:]
    finally:
        await d.stop()
