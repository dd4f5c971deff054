"""The event log at its edges: corrupt rows, a disk that fails at shutdown (the spool), a
read-only disk under `dprk-monitor outages`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog

from monitor import cli
from monitor.detect.model import EventKind
from monitor.events import FILENAME, SPOOL_NAME, EventStore, _row
from tests.unit.test_eventlog_queries import broken_connect
from tests.unit.test_events import T0, event, tiny_disk  # noqa: F401 (a fixture)

CORRUPT: list[tuple[str, dict[str, Any]]] = [
    ("text start", {"start": "abc"}),
    ("huge start", {"start": 1e300}),
    ("infinite start", {"start": float("inf")}),
    ("negative infinite end", {"end": float("-inf")}),
    ("text end", {"end": "soon"}),
    ("evidence not JSON", {"evidence": "{not json"}),
    ("signals not an object", {"signals": "[1, 2]"}),
    ("unknown kind", {"kind": "meteor"}),
    ("blob entity", {"entity": b"\x00"}),
]


def insert_raw(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows as a broken disk, a bad edit or a bug could leave them."""
    with sqlite3.connect(path / FILENAME) as conn:
        for r in rows:
            conn.execute(
                'INSERT INTO events (id, entity, kind, start, "end", signals, evidence, updated) '
                "VALUES (:id, :entity, :kind, :start, :end, :signals, :evidence, 0)",
                r,
            )
    conn.close()


def good_row(id_: str, **kw: Any) -> dict[str, Any]:
    names = ("id", "entity", "kind", "start", "end", "signals", "evidence")
    return {**dict(zip(names, _row(event(id_, start=T0 + len(id_))), strict=True)), **kw}


def test_corrupt_rows_are_skipped_logged_once_and_counted(tmp_path: Path) -> None:
    """Each kind of unreadable row is skipped by every query (the good rows still come, in
    order), logged once with its id and counted once in `corrupt_rows`."""
    EventStore(tmp_path).close()
    insert_raw(tmp_path, [good_row("good1"), good_row("good22", end=T0 + 99)])
    insert_raw(tmp_path, [good_row(f"bad{i}", **kw) for i, (_, kw) in enumerate(CORRUPT)])
    with structlog.testing.capture_logs() as logs:
        store = EventStore(tmp_path)
        assert [e.id for e in store.open_events()] == ["good1"]
        for _ in range(2):
            assert [e.id for e in store.records()] == ["good1", "good22"]
            assert [e.id for e in store.latest(5)] == ["good22", "good1"]
            assert [e.id for e in store.records(since=T0, until=T0 + 10)] == ["good1", "good22"]
            assert store.get("bad0") is None
    assert store.corrupt_rows == len(CORRUPT)
    skipped = [entry for entry in logs if "cannot read" in entry["event"]]
    assert sorted(e["row"] for e in skipped) == sorted(f"bad{i}" for i in range(len(CORRUPT)))
    store.close()


def test_corrupt_rows_do_not_break_paging(tmp_path: Path) -> None:
    """Pages over a log with corrupt rows between the good ones (a text start sorts after
    every number) still carry on to the end, one good event per page at most."""
    EventStore(tmp_path).close()
    insert_raw(tmp_path, [good_row(f"g{i:02d}", start=T0 + 2 * i) for i in range(5)])
    insert_raw(
        tmp_path, [good_row(f"x{i:02d}", start=T0 + 2 * i + 1, kind="meteor") for i in range(5)]
    )
    insert_raw(tmp_path, [good_row("zz", start="abc")])
    store = EventStore(tmp_path)
    got, cursor = [], None
    while True:
        page = store.records(limit=1, cursor=cursor)
        got += [e.id for e in page]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert got == [f"g{i:02d}" for i in range(5)]
    store.close()


def test_shutdown_with_a_failing_disk_spools_the_pending_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() with writes failing puts the pending events in <state_dir>/events.spool.jsonl
    and says so; the next open writes them to the log (newest version) and removes it."""
    store = EventStore(tmp_path)
    store.save(event("a"))
    store.close()
    failing = {"on": True}
    broken_connect(monkeypatch, failing)
    store.save(replace(event("a"), end=T0 + 60))
    store.save(event("b", start=T0 + 5))
    with structlog.testing.capture_logs() as logs:
        result = store.close()
    spool = tmp_path / SPOOL_NAME
    assert (result.pending, result.spooled, result.lost, result.spool) == (2, 2, 0, spool)
    assert any(e.get("spool") == str(spool) and e["log_level"] == "error" for e in logs)
    assert len(spool.read_text().splitlines()) == 2
    monkeypatch.undo()
    again = EventStore(tmp_path)
    assert {e.id: e.end for e in again.records()} == {"a": T0 + 60, "b": None}
    assert again.pending == 0 and not spool.exists()
    again.close()
    # Reopened once more: nothing left to merge, nothing changes.
    third = EventStore(tmp_path)
    assert {e.id: e.end for e in third.records()} == {"a": T0 + 60, "b": None}
    third.close()


def test_a_spool_merged_while_the_disk_still_fails_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opened while the disk still fails, the store shows the spooled events and keeps the
    spool (rewritten whole at close); once a write succeeds it is gone, and a later version
    written meanwhile is never replaced by the spooled one."""
    failing = {"on": True}
    broken_connect(monkeypatch, failing)
    store = EventStore(tmp_path)
    store.save(event("a"))
    assert store.close().spooled == 1
    store = EventStore(tmp_path)
    assert [e.id for e in store.records()] == ["a"]
    store.save(event("b"))
    assert store.close().spooled == 2
    store = EventStore(tmp_path)
    failing["on"] = False
    assert store.save(replace(event("a"), end=T0 + 1))
    assert not (tmp_path / SPOOL_NAME).exists()
    store.close()
    monkeypatch.undo()
    final = EventStore(tmp_path)
    assert {e.id: e.end for e in final.records()} == {"a": T0 + 1, "b": None}
    final.close()


def test_a_spool_not_ours_is_ignored(tmp_path: Path) -> None:
    """A spool file others may write (mode 0666) is not merged: a shared temporary
    directory must not be a way to plant events."""
    spool = tmp_path / SPOOL_NAME
    spool.write_text(json.dumps(good_row("planted")) + "\n")
    spool.chmod(0o666)
    store = EventStore(tmp_path)
    assert store.records() == [] and spool.exists()
    store.close()


def test_shutdown_spools_elsewhere_when_the_state_dir_is_read_only(
    tiny_disk: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the state directory's disk read-only, the spool goes to $RUNTIME_DIRECTORY (the
    log line names it); once the disk is writable again the next open merges and removes it."""
    runtime = tmp_path / "run"
    runtime.mkdir()
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(runtime))
    store = EventStore(tiny_disk)
    store.save(event("a"))
    store.close()
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    try:
        assert store.save(event("b", start=T0 + 1)) is False
        with structlog.testing.capture_logs() as logs:
            result = store.close()
        assert result.spooled == 1 and result.spool is not None
        assert result.spool.parent == runtime and result.spool.name.endswith(SPOOL_NAME)
        assert any(e.get("spool") == str(result.spool) for e in logs)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tiny_disk)], check=True)
    again = EventStore(tiny_disk)
    assert [e.id for e in again.records()] == ["a", "b"]
    assert not result.spool.exists()
    again.close()


def test_outages_reads_a_wal_log_on_a_read_only_disk(
    tiny_disk: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`dprk-monitor outages` lists a WAL log on a read-only disk whose -shm file is gone
    (the last writer closed cleanly, and none can be created)."""
    store = EventStore(tiny_disk)
    store.save(event("a", end=T0 + 60))
    store.save(event("b", start=T0 + 100, kind=EventKind.DNS))
    store.close()
    assert not (tiny_disk / (FILENAME + "-shm")).exists()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        textwrap.dedent(f"""\
        state_dir: {tiny_disk}
        entities:
          - name: star-jv
            tcp: ["127.0.0.1:9"]
        """)
    )
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    try:
        rc = cli.main(["outages", "--config", str(cfg), "--format", "json"])
        out, err = capsys.readouterr()
        assert rc == 0, err
        assert [e["id"] for e in json.loads(out)] == ["a", "b"]
        assert cli.main(["outages", "--config", str(cfg), "--since", "2023-11-14T22:14"]) == 0
        assert "dns" in capsys.readouterr().out
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tiny_disk)], check=True)


def test_open_events_include_a_recovering_latest_event(tmp_path: Path) -> None:
    """At start the store hands back, with the open events, each entity's latest event when it
    was recovering (its end provisional), and no older or properly closed one."""
    from monitor.detect.evidence import Evidence
    from monitor.detect.model import EventKind, EventRecord

    def ev(id_: str, entity: str, start: float, end: float | None, last: str) -> EventRecord:
        phases = [{"kind": "blackout", "start": "x", "end": None}]
        if last == "recovered":
            phases.append({"kind": "recovered", "start": "y", "end": None})
        return EventRecord(
            id_, entity, EventKind.BLACKOUT, start, end, {"phases": phases}, Evidence()
        )

    store = EventStore(tmp_path)
    t = 1_700_000_000.0
    store.save(ev("old-recovering", "a", t, t + 10, "recovered"))  # not the latest of a
    store.save(ev("a-latest", "a", t + 100, t + 110, "recovered"))
    store.save(ev("b-closed", "b", t + 100, t + 110, "blackout"))
    store.save(ev("c-open", "c", t + 100, None, "blackout"))
    store.close()
    again = EventStore(tmp_path)
    try:
        got = [e.id for e in again.open_events(["a", "b", "c", "gone"])]
        assert got == ["a-latest", "c-open"]
        assert [e.id for e in again.open_events()] == ["c-open"]
    finally:
        again.close()
