"""The HTTP API, the status page and `dprk-monitor outages`, on a daemon with a stored event."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import sqlite3
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import structlog

from monitor import config
from monitor import events as events_mod
from monitor.daemon import Daemon
from monitor.detect.evidence import Evidence
from monitor.detect.model import EventKind, EventRecord, iso, parse_time
from monitor.events import SPOOL_NAME, EventStore, SchemaError, encode_cursor
from tests.unit.test_eventlog_queries import broken_connect

ROOT = Path(__file__).parents[2]
START = parse_time("2025-06-06T17:00:00Z")


def write_config(tmp: Path, extra: str = "") -> Path:
    """A one-target daemon config on loopback; `extra`: more top-level YAML lines."""
    path = tmp / "c.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        listen: 127.0.0.1:0
        state_dir: {tmp}/var
        probing: {{interval: 1s, timeout: 200ms}}
        entities:
          - name: star-jv
            tcp: ["127.0.0.1:9"]
        bgp: {{enabled: false}}
        """)
        + extra
    )
    return path


def seed(tmp: Path) -> None:
    store = EventStore(tmp / "var")
    store.save(
        EventRecord(
            "closed1",
            "star-jv",
            EventKind.BLACKOUT,
            START,
            START + 34200,
            {"phases": []},
            Evidence.from_json({"failure_order": ["dns", "icmp"]}),
        )
    )
    store.save(
        EventRecord(
            "old1",
            "star-jv",
            EventKind.WEB,
            START - 86400 * 400,
            START - 86400 * 400 + 60,
            {},
            Evidence(),
        )
    )
    store.close()


async def get(d: Daemon, path: str) -> tuple[int, str, str]:
    def fetch() -> tuple[int, str, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{d.listen_port}{path}", timeout=5) as r:
                return r.status, r.headers.get("Content-Type", ""), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type", ""), e.read().decode()

    return await asyncio.to_thread(fetch)


async def test_status_and_outages_api(tmp_path: Path) -> None:
    """/api/v1/status has the contract's shape; /api/v1/outages filters and renders json/csv."""
    cfg_path = write_config(tmp_path)
    seed(tmp_path)
    d = Daemon(config.load(cfg_path), str(cfg_path))
    await d.start()
    try:
        code, ctype, body = await get(d, "/api/v1/status")
        doc = json.loads(body)
        assert code == 200 and ctype.startswith("application/json")
        assert doc["vantage_healthy"] is True
        (ent,) = doc["entities"]
        assert ent["name"] == "star-jv" and ent["state"] in ("up", "unknown", "down")
        assert {"since", "signals"} <= ent.keys()

        code, _, body = await get(d, "/api/v1/outages")
        events = json.loads(body)
        assert [e["id"] for e in events] == ["old1", "closed1"]
        ev = events[1]
        assert ev == {
            **ev,
            "entity": "star-jv",
            "kind": "blackout",
            "start": "2025-06-06T17:00:00Z",
            "end": "2025-06-07T02:30:00Z",
            "duration_seconds": 34200,
        }
        assert ev["evidence"]["failure_order"] == ["dns", "icmp"]

        code, _, body = await get(d, "/api/v1/outages?since=2025-01-01&entity=star-jv")
        assert [e["id"] for e in json.loads(body)] == ["closed1"]
        code, _, body = await get(d, "/api/v1/outages?entity=other")
        assert json.loads(body) == []
        code, ctype, body = await get(d, "/api/v1/outages?format=csv&since=2025-01-01")
        assert code == 200 and ctype.startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(body)))
        assert [r["id"] for r in rows] == ["closed1"] and rows[0]["kind"] == "blackout"

        code, _, body = await get(d, "/api/v1/outages?since=yesterday")
        assert code == 400 and "yesterday" in body
        code, _, _ = await get(d, "/api/v1/outages?format=xml")
        assert code == 400

        code, ctype, body = await get(d, "/")
        assert code == 200 and ctype.startswith("text/html")
        assert "star-jv" in body and "blackout" in body
    finally:
        await d.stop()


def test_outages_cli(tmp_path: Path) -> None:
    """`dprk-monitor outages` lists the log as a table, json or csv, with --since."""
    cfg_path = write_config(tmp_path)
    seed(tmp_path)

    def run(*args: str) -> str:
        p = subprocess.run(
            [sys.executable, "-m", "monitor", "outages", "--config", str(cfg_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert p.returncode == 0, p.stderr
        return p.stdout

    table = run()
    assert "closed1" in table and "old1" in table and "blackout" in table
    assert [e["id"] for e in json.loads(run("--format", "json", "--since", "2025-01-01"))] == [
        "closed1"
    ]
    assert run("--format", "csv", "--since", "2025-01-01").splitlines()[0].startswith("id,")


# --- the event log's routes at scale: pages, ids, streaming, off the loop ----------------------


async def fetch(d: Daemon, path: str) -> tuple[int, dict[str, str], str]:
    """Status, headers and body of a GET (errors included)."""

    def run() -> tuple[int, dict[str, str], str]:
        url = path if path.startswith("http") else f"http://127.0.0.1:{d.listen_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, dict(e.headers), e.read().decode()

    return await asyncio.to_thread(run)


def many(tmp: Path, n: int) -> list[EventRecord]:
    """n closed events a minute apart (one every 10th of another entity), saved."""
    store = EventStore(tmp / "var")
    evs = [
        EventRecord(
            f"ev{i:05d}",
            "satgate" if i % 10 == 0 else "star-jv",
            EventKind.DNS,
            START + 60 * i,
            START + 60 * i + 30,
            {"phases": []},
            Evidence(),
        )
        for i in range(n)
    ]
    for ev in evs:
        store.save(ev)
    store.close()
    return evs


async def started(tmp: Path) -> Daemon:
    cfg_path = write_config(tmp)
    d = Daemon(config.load(cfg_path), str(cfg_path))
    await d.start()
    return d


async def test_outages_pages_follow_the_link_header(tmp_path: Path) -> None:
    """`limit` gives one page (a plain list) with the next page's URL in `Link` and its cursor
    in `X-Next-Cursor`; following the links yields every event once, in order, filters kept;
    the last page has neither header; bad limits and cursors are 400 in JSON."""
    evs = many(tmp_path, 25)
    d = await started(tmp_path)
    try:
        path = "/api/v1/outages?limit=10&entity=star-jv"
        got: list[str] = []
        while True:
            code, headers, body = await fetch(d, path)
            assert code == 200 and headers["Content-Type"].startswith("application/json")
            page = json.loads(body)
            assert isinstance(page, list) and len(page) <= 10
            got += [e["id"] for e in page]
            if "Link" not in headers:
                assert "X-Next-Cursor" not in headers
                break
            link, rel = headers["Link"].split(";")
            assert rel.strip() == 'rel="next"' and link.startswith("</api/v1/outages?")
            path = link.strip()[1:-1]
            assert f"cursor={headers['X-Next-Cursor']}" in path and "entity=star-jv" in path
        assert got == [e.id for e in evs if e.entity == "star-jv"]
        code, headers, body = await fetch(d, "/api/v1/outages?limit=5&format=csv")
        assert code == 200 and len(list(csv.DictReader(io.StringIO(body)))) == 5
        assert "X-Next-Cursor" in headers
        for bad in ("limit=0", "limit=10001", "limit=abc", "limit=%2B5", "limit=", "cursor=x"):
            code, headers, body = await fetch(d, f"/api/v1/outages?{bad}")
            assert code == 400 and headers["Content-Type"].startswith("application/json"), bad
            assert json.loads(body)["error"].startswith(bad.split("=")[0]), bad
    finally:
        await d.stop()


async def test_outage_by_id(tmp_path: Path) -> None:
    """/api/v1/outages/{id} is the event as in the list; an unknown id (even one holding a
    slash) is 404 in JSON."""
    many(tmp_path, 3)
    d = await started(tmp_path)
    try:
        code, _, body = await fetch(d, "/api/v1/outages/ev00001")
        _, _, listed = await fetch(d, "/api/v1/outages")
        assert code == 200 and json.loads(body) == json.loads(listed)[1]
        for unknown in ("nope", "a%2Fb", "%00", "ev00001%20"):
            code, headers, body = await fetch(d, f"/api/v1/outages/{unknown}")
            assert code == 404 and headers["Content-Type"].startswith("application/json")
            assert "no event with id" in json.loads(body)["error"]
    finally:
        await d.stop()


async def test_non_finite_times_are_400(tmp_path: Path) -> None:
    """since/until of nan or inf are refused with 400 naming the parameter, not ignored."""
    many(tmp_path, 2)
    d = await started(tmp_path)
    try:
        for query in ("since=nan", "since=NaN", "until=inf", "since=-inf", "until=1e999"):
            code, _, body = await fetch(d, f"/api/v1/outages?{query}")
            assert code == 400 and json.loads(body)["error"].startswith(query[:5]), query
    finally:
        await d.stop()


async def test_whole_log_is_streamed_in_chunks(tmp_path: Path) -> None:
    """Without `limit`, the JSON list and the CSV export hold every event (more than one
    chunk's worth), once each and in order; an empty selection is an empty list."""
    evs = many(tmp_path, 2600)
    d = await started(tmp_path)
    try:
        code, headers, body = await fetch(d, "/api/v1/outages")
        assert code == 200 and headers.get("Transfer-Encoding") == "chunked"
        assert [e["id"] for e in json.loads(body)] == [e.id for e in evs]
        code, headers, body = await fetch(d, "/api/v1/outages?format=csv&since=2025-06-07")
        assert code == 200 and headers["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(body)))
        since = parse_time("2025-06-07")
        assert [r["id"] for r in rows] == [e.id for e in evs if (e.end or 0) >= since]
        code, _, body = await fetch(d, "/api/v1/outages?since=2099-01-01")
        assert code == 200 and json.loads(body) == []
    finally:
        await d.stop()


async def test_status_page_asks_only_for_the_latest_20(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`/` lists the 20 latest events, newest first, without reading the log (the full list
    is never asked for), and survives a corrupt row."""
    evs = many(tmp_path, 30)
    with sqlite3.connect(tmp_path / "var" / "events.sqlite3") as conn:
        conn.execute("UPDATE events SET start = 'abc' WHERE id = 'ev00029'")
    conn.close()
    d = await started(tmp_path)

    def refuse(*a: object, **kw: object) -> None:
        raise AssertionError("the status page read the whole log")

    monkeypatch.setattr(EventStore, "records", refuse)
    monkeypatch.setattr(EventStore, "query", refuse)
    try:
        code, _, body = await fetch(d, "/")
        assert code == 200
        shown = re.findall(r'<tr><td><a href="/outages/[^"]+"><time datetime="([^"]+)"', body)
        assert shown == [iso(e.start) for e in reversed(evs[8:29])][:20]
    finally:
        await d.stop()


async def test_event_log_queries_run_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every route that reads the log (/, a page, the whole list, the CSV export, one id)
    runs its query in a worker thread, never on the event loop's."""
    many(tmp_path, 5)
    d = await started(tmp_path)
    threads: list[int] = []
    for name in ("_select_page", "_select_latest", "_select_one"):
        real = getattr(events_mod, name)

        def spy(*a: Any, real: Any = real) -> Any:
            threads.append(threading.get_ident())
            return real(*a)

        monkeypatch.setattr(events_mod, name, spy)
    try:
        for path in (
            "/",
            "/api/v1/outages?limit=2",
            "/api/v1/outages",
            "/api/v1/outages?format=csv",
            "/api/v1/outages/ev00001",
        ):
            before = len(threads)
            code, _, _ = await fetch(d, path)
            assert code == 200 and len(threads) > before, path
        assert threading.get_ident() not in threads
    finally:
        await d.stop()


async def test_pending_events_show_in_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event the disk refused (pending) is in the list, its page, by id and on `/`."""
    many(tmp_path, 3)
    d = await started(tmp_path)
    try:
        assert d.store is not None
        d.store.close()
        broken_connect(monkeypatch, {"on": True})
        late = EventRecord("late", "star-jv", EventKind.WEB, START + 3600, None, {}, Evidence())
        assert d.store.save(late) is False
        _, _, body = await fetch(d, "/api/v1/outages")
        assert [e["id"] for e in json.loads(body)][-1] == "late"
        _, _, body = await fetch(
            d, "/api/v1/outages?limit=2&cursor=" + encode_cursor((0, START + 60, "ev00001"))
        )
        assert [e["id"] for e in json.loads(body)] == ["ev00002", "late"]
        code, _, body = await fetch(d, "/api/v1/outages/late")
        assert code == 200 and json.loads(body)["end"] is None
        _, _, page = await fetch(d, "/")
        assert ">web<" in page
        monkeypatch.undo()
    finally:
        await d.stop()


async def test_stop_with_a_failing_disk_spools_and_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's stop with the disk failing logs where the pending events went; the next
    start has them."""
    many(tmp_path, 1)
    d = await started(tmp_path)
    assert d.store is not None
    d.store.close()
    broken_connect(monkeypatch, {"on": True})
    d.store.save(EventRecord("late", "star-jv", EventKind.WEB, START + 3600, None, {}, Evidence()))
    with structlog.testing.capture_logs() as logs:
        await d.stop()
    (line,) = [e for e in logs if e["event"] == "event log: events not in the database at stop"]
    assert line["spooled"] == 1 and line["lost"] == 0 and line["spool"].endswith(SPOOL_NAME)
    monkeypatch.undo()
    d = await started(tmp_path)
    try:
        _, _, body = await fetch(d, "/api/v1/outages/late")
        assert json.loads(body)["id"] == "late"
    finally:
        await d.stop()


async def test_daemon_refuses_a_log_from_a_newer_schema(tmp_path: Path) -> None:
    """A log written by a newer schema stops the start with a message saying so."""
    (tmp_path / "var").mkdir()
    with sqlite3.connect(tmp_path / "var" / "events.sqlite3") as conn:
        conn.execute("PRAGMA user_version=9")
    conn.close()
    cfg_path = write_config(tmp_path)
    d = Daemon(config.load(cfg_path), str(cfg_path))
    with pytest.raises(SchemaError, match="newer dprk-monitor"):
        await d.start()
    await d.stop()
