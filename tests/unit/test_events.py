"""The durable event log: SQLite WAL, API shape, survival of kill -9, full and read-only disks."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from monitor.detect.detector import DetectionParams, Detector, EntitySpec
from monitor.detect.evidence import Evidence
from monitor.detect.model import (
    EventClosed,
    EventKind,
    EventOpened,
    EventRecord,
    State,
    StateChanged,
    iso,
    parse_time,
)
from monitor.events import FILENAME, EventStore, Query, render_csv, render_json, render_table
from monitor.probes.base import IcmpTarget, ProbeResult

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
REPO = Path(__file__).resolve().parents[2]


def event(
    id_: str = "e1",
    entity: str = "star-jv",
    start: float = T0,
    end: float | None = None,
    kind: EventKind = EventKind.BLACKOUT,
) -> EventRecord:
    return EventRecord(
        id_,
        entity,
        kind,
        start,
        end,
        {"phases": [{"kind": kind.value, "start": iso(start), "end": None}]},
        Evidence.from_json(
            {
                "failure_order": ["icmp"],
                "blocks": [
                    {"block": "198.18.176.0/24", "first_failed": iso(start), "recovered": None}
                ],
            }
        ),
    )


def test_iso_times_are_utc_with_z() -> None:
    """Times render as UTC ISO 8601 with Z, milliseconds only when present, and parse back."""
    assert iso(T0) == "2023-11-14T22:13:20Z"
    assert iso(T0 + 0.25) == "2023-11-14T22:13:20.250Z"
    assert parse_time("2023-11-14T22:13:20.250Z") == T0 + 0.25
    assert parse_time("2023-11-15T07:13:20+09:00") == T0
    assert parse_time("2023-11-14T22:13:20") == T0  # naive is UTC
    assert parse_time("2023-11-14") == T0 - (22 * 3600 + 13 * 60 + 20)
    with pytest.raises(ValueError, match="not an ISO 8601 time: 'yesterday'"):
        parse_time("yesterday")


def test_store_uses_wal_at_the_documented_path(tmp_path: Path) -> None:
    """The log is <state_dir>/events.sqlite3 in WAL mode, created with its directory."""
    store = EventStore(tmp_path / "var")
    assert store.path == tmp_path / "var" / FILENAME and store.path.exists()
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_open_update_close_and_reopen(tmp_path: Path) -> None:
    """An event saved open, escalated and closed reads back the same after reopening."""
    store = EventStore(tmp_path)
    ev = event()
    assert store.save(ev)
    store.close()
    store = EventStore(tmp_path)
    assert store.open_events() == [ev]
    escalated = replace(ev, kind=EventKind.BLACKOUT, signals={"phases": [], "note": "x"})
    store.save(escalated)
    closed = replace(escalated, end=T0 + 3600)
    store.save(closed)
    store.close()
    store = EventStore(tmp_path)
    assert store.open_events() == []
    assert store.get("e1") == closed
    store.close()


def test_apply_saves_only_event_changes(tmp_path: Path) -> None:
    """apply() stores the events of EventOpened/Updated/Closed and ignores other changes."""
    store = EventStore(tmp_path)
    ev = event()
    store.apply([StateChanged("star-jv", State.UP, State.DOWN, T0, T0, {}), EventOpened(ev)])
    store.apply([EventClosed(replace(ev, end=T0 + 60))])
    assert [e.end for e in store.records()] == [T0 + 60]
    store.close()


def test_query_has_the_api_shape(tmp_path: Path) -> None:
    """query() returns the /api/v1/outages objects with ISO times and durations."""
    store = EventStore(tmp_path)
    store.save(event("a", end=T0 + 90.5))
    store.save(event("b", start=T0 + 100))
    (a, b) = store.query(now=T0 + 160)
    assert a == {
        "id": "a",
        "entity": "star-jv",
        "kind": "blackout",
        "start": "2023-11-14T22:13:20Z",
        "end": "2023-11-14T22:14:50.500Z",
        "duration_seconds": 90.5,
        "signals": event().signals,
        "evidence": event().evidence.to_json(),
    }
    assert b["end"] is None and b["duration_seconds"] == 60.0
    json.dumps([a, b])  # serialisable as is
    store.close()


def test_query_filters_by_time_overlap_and_entity(tmp_path: Path) -> None:
    """since/until select events overlapping the range (open ones run on); entity filters."""
    store = EventStore(tmp_path)
    store.save(event("old", start=T0, end=T0 + 100))
    store.save(event("mid", start=T0 + 1000, end=T0 + 2000, kind=EventKind.DNS))
    store.save(event("open", start=T0 + 5000, entity="satgate"))

    def ids(**kw: Any) -> list[str]:
        return [e["id"] for e in store.query(**kw)]

    assert ids() == ["old", "mid", "open"]
    assert ids(since=iso(T0 + 500)) == ["mid", "open"]
    assert ids(since=iso(T0 + 1500), until=iso(T0 + 1600)) == ["mid"]
    assert ids(until=iso(T0 + 50)) == ["old"]
    assert ids(since=iso(T0 + 9999)) == ["open"]
    assert ids(entity="satgate") == ["open"]
    assert ids(since=T0 + 1999.0) == ["mid", "open"]
    with pytest.raises(ValueError, match="since: not an ISO 8601 time"):
        store.query(since="last tuesday")
    with pytest.raises(ValueError, match="until: before since"):
        store.query(since=iso(T0 + 10), until=iso(T0))
    store.close()


def test_csv_json_and_table_rendering(tmp_path: Path) -> None:
    """CSV has the API columns with JSON cells; the table and JSON render every event."""
    store = EventStore(tmp_path)
    store.save(event("a", end=T0 + 3725))
    store.save(event("b", start=T0 + 4000))
    events = store.query(now=T0 + 4010)
    rows = list(csv.DictReader(io.StringIO(render_csv(events))))
    assert list(rows[0]) == [
        "id",
        "entity",
        "kind",
        "start",
        "end",
        "duration_seconds",
        "signals",
        "evidence",
        "annotations",
    ]
    assert rows[0]["end"] == "2023-11-14T23:15:25Z" and rows[1]["end"] == ""
    assert json.loads(rows[0]["evidence"]) == event().evidence.to_json()
    table = render_table(events)
    assert "1h02m05s" in table and "(open)" in table
    assert render_table([]) == "no outage events\n"
    assert json.loads(render_json(events)) == events
    store.close()


def test_readonly_store_reads_and_never_writes(tmp_path: Path) -> None:
    """A read-only store (the outages command) reads the log and refuses to write."""
    assert EventStore(tmp_path / "none", readonly=True).query() == []
    assert not (tmp_path / "none").exists()
    w = EventStore(tmp_path)
    w.save(event())
    ro = EventStore(tmp_path, readonly=True)
    assert [e["id"] for e in ro.query()] == ["e1"]
    with pytest.raises(RuntimeError):
        ro.save(event("x"))
    ro.close()
    w.close()


def test_unwritable_state_dir_keeps_events_pending(tmp_path: Path) -> None:
    """A state dir that cannot be created: no exception, unhealthy, events kept and flushed
    once it can be."""
    blocker = tmp_path / "var"
    blocker.write_text("not a directory")
    store = EventStore(blocker / "sub")
    assert not store.healthy and store.last_error
    assert store.save(event()) is False
    assert store.pending == 1 and [e["id"] for e in store.query()] == ["e1"]
    assert [e.id for e in store.open_events()] == ["e1"]
    blocker.unlink()
    assert store.flush() is True
    assert store.healthy and store.last_error is None and store.pending == 0
    store.close()
    assert [e.id for e in EventStore(blocker / "sub").open_events()] == ["e1"]


def test_write_error_is_caught_and_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OperationalError on write (e.g. disk full) is kept from the caller and retried."""
    store = EventStore(tmp_path)
    real = sqlite3.connect
    failing = {"on": True}

    class Broken:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def execute(self, sql: str, *a: Any) -> object:
            if failing["on"] and sql.startswith("BEGIN"):
                raise sqlite3.OperationalError("database or disk is full")
            return self.conn.execute(sql, *a)

        def __getattr__(self, name: str) -> object:
            return getattr(self.conn, name)

    store.close()
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **kw: Broken(real(*a, **kw)))
    assert store.save(event()) is False
    assert not store.healthy and "disk is full" in (store.last_error or "")
    store.save(replace(event(), end=T0 + 10))  # a later version replaces the pending one
    assert store.pending == 1
    failing["on"] = False
    assert store.flush() and store.healthy
    monkeypatch.undo()
    assert EventStore(tmp_path).get("e1") == replace(event(), end=T0 + 10)


# --- a real small disk (root: tmpfs) ---------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted afterwards (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> None:
    with contextlib.suppress(OSError), path.open("wb") as f:
        while True:
            f.write(b"\0" * 65536)
            f.flush()


def test_full_disk_does_not_lose_accepted_events(tiny_disk: Path) -> None:
    """Disk full: no exception, healthy False, the event pending; written once space returns."""
    store = EventStore(tiny_disk)
    store.save(event("before"))
    big = replace(event("big"), evidence=Evidence(other={"blob": "x" * 300_000}))
    fill(tiny_disk / "filler")
    assert store.save(big) is False
    assert not store.healthy and store.last_error
    assert store.pending == 1
    assert {e["id"] for e in store.query()} == {"before", "big"}
    assert store.flush() is False  # still full
    (tiny_disk / "filler").unlink()
    assert store.flush() is True and store.healthy
    store.close()
    again = EventStore(tiny_disk)
    assert {e.id for e in again.open_events()} == {"before", "big"}
    again.close()


def test_read_only_disk_does_not_lose_accepted_events(tiny_disk: Path) -> None:
    """A disk remounted read-only: no exception, healthy False; written after remount rw."""
    store = EventStore(tiny_disk)
    store.save(event("a"))
    store.save(event("z", end=T0 + 1))
    store.close()  # Linux refuses to remount read-only under open writers (the kernel does it
    # on I/O errors); the store reopens on the next write and finds the disk read-only.
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    try:
        assert store.save(event("b")) is False
        assert not store.healthy and store.last_error
        assert store.save(replace(event("a"), end=T0 + 5)) is False
        assert store.pending == 2
        assert {e.id: e.end for e in store.records()} == {"a": T0 + 5, "b": None, "z": T0 + 1}
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tiny_disk)], check=True)
    assert store.flush() is True and store.healthy
    store.close()
    again = EventStore(tiny_disk)
    assert {e.id: e.end for e in again.records()} == {"a": T0 + 5, "b": None, "z": T0 + 1}
    again.close()


# --- kill -9 -------------------------------------------------------------------------------------

_WRITER = """
import sys, time
from monitor.events import EventStore
from monitor.detect.evidence import Evidence
from monitor.detect.model import EventRecord, EventKind
store = EventStore(sys.argv[1])
store.save(EventRecord("k9", "box", EventKind.BLACKOUT, {start}, None,
    {{"phases": [{{"kind": "blackout", "start": "{start_iso}", "end": None}}]}},
    Evidence.from_json({{"blocks": [{{"block": "198.18.180.0/24", "first_failed": "{start_iso}",
                                      "recovered": None}}]}})))
print("saved", flush=True)
time.sleep(60)
"""


def test_committed_event_survives_kill_9_and_is_resumed(tmp_path: Path) -> None:
    """An event committed by a process killed with SIGKILL is there, open, at the next start;
    the detector resumes it and closes it (same id) when the entity answers again."""
    code = textwrap.dedent(_WRITER).format(start=T0, start_iso=iso(T0))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, env=env
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"saved"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    store = EventStore(tmp_path)
    (stored,) = store.open_events()
    assert stored.id == "k9" and stored.end is None

    targets = [
        IcmpTarget(__import__("ipaddress").IPv4Address(f"198.18.180.{i}")) for i in (1, 2, 3)
    ]
    det = Detector(
        DetectionParams(merge_gap=0), [EntitySpec("box", (), tuple(targets))], (), now=T0 + 100
    )
    store.apply(det.resume(store.open_events(), T0 + 100))
    store.flush()
    # The restart's mark is on disk before anything else happens: a second kill -9 now
    # must not lose it (the soak's two kills 13 s apart did on the old code).
    peek = EventStore(tmp_path)
    (resumed,) = peek.open_events()
    assert resumed.evidence.resumed_at == (T0 + 100,)
    peek.close()
    changes = det.observe("box", ProbeResult.success(targets[0], T0 + 101, 0.05), T0 + 101)
    store.apply(changes)
    assert not any(isinstance(c, EventOpened) for c in changes)
    (closed,) = [c.event for c in changes if isinstance(c, EventClosed)]
    assert closed.id == "k9" and closed.end == T0 + 101
    store.close()
    again = EventStore(tmp_path)
    assert again.open_events() == []
    assert [(e.id, e.end) for e in again.records()] == [("k9", T0 + 101)]
    again.close()


def test_sqlite_memory_stays_small_over_a_big_log(tmp_path: Path) -> None:
    """Every page a connection touches stays in its cache up to the cap (SQLite's default: 2 MiB
    a connection), so over months the daemon's connections grew with their files. Here a log of
    ~11 MiB is written and read whole, by the writer and a reader thread: SQLite's memory (the
    process's, all connections) stays near the caps of sqlitefile.CACHE_KIB. Run apart: the
    counter is process-wide."""
    script = textwrap.dedent(
        f"""
        import ctypes, ctypes.util, sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.unit.test_events import event, T0
        from monitor.events import EventStore
        from monitor.detect.model import EventKind
        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3"))
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        store = EventStore({str(tmp_path)!r})
        for k in range(30):
            batch = [event(f"e{{k}}-{{i}}", f"entity-{{i % 50}}", T0 + k * 1000 + i, T0 + k * 1000 + i + 1,
                           EventKind.BLACKOUT) for i in range(1000)]
            store.import_events(batch)
        n = len(store.records())
        print(n, store.path.stat().st_size, lib.sqlite3_memory_used())
        store.close()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert out.returncode == 0, out.stderr[-3000:]
    n, size, used = map(int, out.stdout.split())
    assert n == 30_000
    assert size > 8 * 2**20  # bigger than the caps of both connections many times over
    # two connections at 64 KiB of pages each, plus statements, schema and lookaside (0.18 MiB
    # here; 0.35 MiB with 256 KiB caches, 2.1 MiB with SQLite's default ones)
    assert used < 256 * 2**10, f"SQLite holds {used / 2**20:.1f} MiB ({size / 2**20:.0f} MiB log)"


async def test_a_streamed_export_holds_one_piece_of_the_log_at_a_time(tmp_path: Path) -> None:
    """`/api/v1/outages` without `limit` streams the log in pieces of STREAM_CHUNK events, and
    a piece's rows, records, dicts and text are alive together. The peak of Python memory
    while exporting must not grow with the log: polled every few seconds, a peak that rose with
    the log (200 events a piece, before) raised the daemon's RSS for its first hours."""

    async def peak(n: int) -> int:
        d = tmp_path / str(n)
        store = EventStore(d)
        store.import_events(
            [
                event(f"x{i}", f"entity-{i % 7}", T0 + i, T0 + i + 1, EventKind.BLACKOUT)
                for i in range(n)
            ]
        )
        store.close()
        reader = EventStore(d, readonly=True)
        q = Query.parse(None, None, None, None)
        got = [b async for b in reader.render_all(q, "json", T0 + n + 10)]  # warm the reader
        assert len(json.loads(b"".join(got))) == n
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            async for _ in reader.render_all(q, "json", T0 + n + 10):
                pass
            return tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
            reader.close()

    small, big = await peak(100), await peak(800)
    assert big < 1.5 * small, (
        f"export peak {small / 1024:.0f} KiB at 100 events, {big / 1024:.0f} at 800"
    )
