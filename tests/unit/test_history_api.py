"""`GET /api/v1/history`: the contract's shape (validated against the OpenAPI document), clear
400s, 404 for an unknown entity, 503 when history is off or refused, reads off the loop, and
a real daemon recording steps that the API serves."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from aiohttp.test_utils import TestClient, TestServer

from monitor import config
from monitor.config import HistoryConfig
from monitor.daemon import Daemon
from monitor.detect.detector import Detector, EntitySpec
from monitor.detect.model import State
from monitor.detect.times import iso
from monitor.history import HistoryRecorder
from monitor.history.store import FILENAME
from monitor.metrics import Metrics
from monitor.openapi import document
from monitor.web import make_app
from tests.unit.test_api import write_config as api_config
from tests.unit.test_history_store import T0, point


class Status:
    def status(self) -> dict[str, object]:
        return {"vantage_healthy": True, "entities": []}


def recorder(tmp: Path, cfg: HistoryConfig | None = None) -> HistoryRecorder:
    det = Detector(entities=[EntitySpec("star-jv")], now=T0)
    return HistoryRecorder(cfg or HistoryConfig(), tmp, det, None, lambda: ["star-jv"])


async def client_for(rec: HistoryRecorder) -> TestClient[Any, Any]:
    app = make_app(Metrics(), lambda: True, api=Status(), history=rec)
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    return client


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], HistoryRecorder]]:
    """A recorder holding ten minutes of star-jv (down from T0+300 to T0+420), served."""
    rec = recorder(tmp_path)
    assert rec.store is not None
    rec.store.clock = lambda: T0 + 3600.0
    for i in range(60):
        rec.store.add([point(T0 + 10 * i, State.DOWN if 30 <= i < 42 else State.UP)])
    rec.store.add([point(T0, entity="retired")])
    assert rec.store.flush()
    client = await client_for(rec)
    yield client, rec
    await client.close()
    rec.close()


def validate(doc: dict[str, Any], path: str, code: int, body: Any) -> None:
    schema = doc["paths"][path]["get"]["responses"][str(code)]["content"]["application/json"]
    jsonschema_rs.Draft202012Validator(
        {**schema["schema"], "components": doc["components"]}
    ).validate(body)


async def test_history_has_the_contract_shape_and_the_outage(
    served: tuple[TestClient[Any, Any], HistoryRecorder],
) -> None:
    """The answer names entity, step, since, until and the points; it validates against the
    OpenAPI document; the down steps are where they were recorded."""
    client, _ = served
    r = await client.get(
        "/api/v1/history", params={"entity": "star-jv", "since": iso(T0), "until": iso(T0 + 590)}
    )
    assert r.status == 200 and r.content_type == "application/json"
    body = await r.json()
    validate(document(), "/api/v1/history", 200, body)
    assert (body["entity"], body["step_seconds"]) == ("star-jv", 10)
    assert (body["since"], body["until"]) == (iso(T0), iso(T0 + 590))
    pts = body["points"]
    assert len(pts) == 60
    down = [p["t"] for p in pts if p["state"] == "down"]
    assert down == [iso(T0 + 10 * i) for i in range(30, 42)]
    assert set(pts[0]) == {
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
    }
    r = await client.get(
        "/api/v1/history",
        params={"entity": "star-jv", "since": iso(T0), "until": iso(T0 + 590), "step": "60"},
    )
    minutes = (await r.json())["points"]
    assert [p["state"] for p in minutes] == ["up"] * 5 + ["down", "down"] + ["up"] * 3


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "entity: required (the name of a configured entity)"),
        ("entity=star-jv&since=nan", "since: not a time: 'nan'"),
        ("entity=star-jv&until=yesterday", "until: not an ISO 8601 time: 'yesterday'"),
        ("entity=star-jv&since=2025-06-02&until=2025-06-01", "until: before since"),
        ("entity=star-jv&step=30", "step: must be one of 10, 60, 600"),
        ("entity=star-jv&step=1e1", "step: must be one of 10, 60, 600"),
        (
            "entity=star-jv&since=0",
            "since: the range needs more than 5000 points even at 600 s; ask a shorter range",
        ),
        (
            "entity=star-jv&since=2025-01-01&until=2025-06-01&step=10",
            "step: 10 s gives more than 5000 points for this range; ask a coarser step or a "
            "shorter range",
        ),
    ],
)
async def test_bad_parameters_are_400_with_a_clear_message(
    served: tuple[TestClient[Any, Any], HistoryRecorder], query: str, message: str
) -> None:
    """Each bad or missing parameter is a 400 whose message names it (and matches the doc)."""
    client, _ = served
    r = await client.get(f"/api/v1/history?{query}")
    assert r.status == 400
    body = await r.json()
    assert body == {"error": message}
    validate(document(), "/api/v1/history", 400, body)


async def test_unknown_entity_is_404_and_a_retired_one_is_served(
    served: tuple[TestClient[Any, Any], HistoryRecorder],
) -> None:
    """An entity neither configured nor stored: 404; one removed from the configuration but
    with a stored history: its points."""
    client, _ = served
    r = await client.get("/api/v1/history", params={"entity": "nowhere"})
    assert r.status == 404
    assert await r.json() == {"error": "entity: no entity 'nowhere' (not configured, no history)"}
    r = await client.get(
        "/api/v1/history", params={"entity": "retired", "since": iso(T0 - 60), "until": iso(T0)}
    )
    assert r.status == 200 and len((await r.json())["points"]) == 1


async def test_disabled_history_is_503(tmp_path: Path) -> None:
    """history.enabled false: no database is created, the route answers 503 saying why."""
    rec = recorder(tmp_path, HistoryConfig(enabled=False))
    client = await client_for(rec)
    try:
        r = await client.get("/api/v1/history", params={"entity": "star-jv"})
        assert r.status == 503
        assert "history.enabled: false" in (await r.json())["error"]
        assert not (tmp_path / FILENAME).exists()
    finally:
        await client.close()
        rec.close()


async def test_history_is_read_off_the_loop(
    served: tuple[TestClient[Any, Any], HistoryRecorder],
) -> None:
    """The query runs in a reader thread, never on the event loop's thread."""
    client, rec = served
    assert rec.store is not None
    threads: list[threading.Thread] = []
    real = rec.store._reader

    def spy(*a: Any, **kw: Any) -> Any:
        threads.append(threading.current_thread())
        return real(*a, **kw)

    rec.store._reader = spy  # type: ignore[method-assign]
    r = await client.get("/api/v1/history", params={"entity": "star-jv"})
    assert r.status == 200
    assert threads and threading.main_thread() not in threads


def write_config(tmp: Path) -> Path:
    return api_config(tmp, "history: {resolution: 1s}\n")


def get(port: int | None, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode()


async def test_the_daemon_records_steps_and_serves_them(tmp_path: Path) -> None:
    """A real daemon with 1 s steps: its points are served by /api/v1/history (the refused
    TCP port is an answer: answered 1), counted in history_points_written, and what is queued
    at stop is written."""
    cfg_path = write_config(tmp_path)
    d = Daemon(config.load(cfg_path), str(cfg_path))
    await d.start()
    try:
        for _ in range(100):
            await asyncio.sleep(0.1)
            since = iso(time.time() - 60)
            code, body = await asyncio.to_thread(
                get, d.listen_port, f"/api/v1/history?entity=star-jv&since={since}"
            )
            pts = json.loads(body)["points"] if code == 200 else []
            if len(pts) >= 3 and pts[-1]["answered"] == {"tcp": 1}:
                break
        assert code == 200, body
        assert len(pts) >= 3, pts
        assert pts[-1]["targets"] == {"tcp": 1} and pts[-1]["answered"] == {"tcp": 1}
        assert pts[-1]["vantage_healthy"] is True
        code, text = await asyncio.to_thread(get, d.listen_port, "/metrics")
        written = [
            float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("dprk_monitor_history_points_written_total ")
        ]
        assert written and written[0] >= 3
    finally:
        await d.stop()
    with sqlite3.connect(tmp_path / "var" / FILENAME) as c:
        (n,) = c.execute("SELECT count(*) FROM points WHERE step = 1").fetchone()
    assert n >= len(pts)


async def test_a_history_of_a_newer_schema_leaves_the_daemon_probing(tmp_path: Path) -> None:
    """history.db from a newer version: refused and left alone, the daemon runs and is ready,
    /api/v1/history says why with a 503."""
    cfg_path = write_config(tmp_path)
    (tmp_path / "var").mkdir()
    with sqlite3.connect(tmp_path / "var" / FILENAME) as c:
        c.execute("PRAGMA user_version=9")
    d = Daemon(config.load(cfg_path), str(cfg_path))
    await d.start()
    try:
        assert d.ready
        code, body = await asyncio.to_thread(get, d.listen_port, "/api/v1/history?entity=star-jv")
        assert code == 503 and "newer dprk-monitor" in json.loads(body)["error"]
    finally:
        await d.stop()
