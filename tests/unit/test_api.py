"""The HTTP API, the status page and `dprk-monitor outages`, on a daemon with a stored event."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

from monitor import config
from monitor.daemon import Daemon
from monitor.detect.evidence import Evidence
from monitor.detect.model import EventKind, EventRecord, parse_time
from monitor.events import EventStore

ROOT = Path(__file__).parents[2]
START = parse_time("2025-06-06T17:00:00Z")


def write_config(tmp: Path) -> Path:
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
