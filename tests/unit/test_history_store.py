"""The history database: tiers and downsampling, retention, restart, bounded size, kill -9, a
full disk, corrupt rows, a newer schema, a stuck writer."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pytest

import monitor.history.store as store_module
from monitor.detect.model import State
from monitor.detect.times import iso
from monitor.history.point import HistoryPoint
from monitor.history.store import (
    FILENAME,
    QUEUE_BATCHES,
    HistoryStore,
    SchemaError,
    Tier,
)

ROOT = Path(__file__).parents[2]
T0 = 1_750_000_200  # a multiple of 600
TIERS = [Tier(10, 2 * 86400.0), Tier(60, 30 * 86400.0), Tier(600, 730 * 86400.0)]
# Like the default configuration's star-jv: four kinds, four /24s, one prefix.
KINDS = {"icmp": 27, "tcp": 5, "http": 8, "dns": 4}
BLOCKS = {f"175.45.{176 + i}.0/24": 0.9987 for i in range(4)}


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def point(t: float, state: State = State.UP, entity: str = "star-jv", **kw: object) -> HistoryPoint:
    base: dict[str, object] = {
        "targets": KINDS,
        "up": KINDS,
        "answered": KINDS,
        "loss": 0.013,
        "rtt_median": 0.312456,
        "blocks": BLOCKS,
        "bgp": {"175.45.176.0/22": 1.0},
    }
    base.update(kw)
    return HistoryPoint(entity, float(t), 10, state, **base)  # type: ignore[arg-type]


def fill(store: HistoryStore, n: int, start: int = T0, down: Collection[int] = ()) -> None:
    for i in range(n):
        store.add([point(start + 10 * i, State.DOWN if i in down else State.UP)])
    assert store.flush()


def stored(path: Path, step: int) -> list[tuple[int, str]]:
    with sqlite3.connect(path / FILENAME) as c:
        return c.execute("SELECT t, data FROM points WHERE step = ? ORDER BY t", (step,)).fetchall()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 3600.0)


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[HistoryStore]:
    s = HistoryStore(tmp_path, TIERS, clock=clock)
    yield s
    s.close()


def test_points_are_downsampled_into_minutes_and_ten_minutes(
    store: HistoryStore, tmp_path: Path
) -> None:
    """13 minutes of 10 s points with one down step: 1-minute points keep it in its minute,
    the 10-minute tier stores the finished bucket and the open one is made at read time."""
    fill(store, 78, down={7})
    fine = store.query("star-jv", T0, T0 + 780, step=10)
    assert len(fine) == 78 and fine[7].state is State.DOWN
    minutes = store.query("star-jv", T0, T0 + 780, step=60)
    assert [p.t for p in minutes] == [T0 + 60 * i for i in range(13)]
    assert [p.state for p in minutes][:3] == [State.UP, State.DOWN, State.UP]
    assert all(p.step == 60 for p in minutes)
    assert [t for t, _ in stored(tmp_path, 60)] == [T0 + 60 * i for i in range(12)], (
        "the minute still open is not stored"
    )
    coarse = store.query("star-jv", T0, T0 + 780, step=600)
    assert [(p.t, p.state) for p in coarse] == [(T0, State.DOWN), (T0 + 600, State.UP)]
    assert [t for t, _ in stored(tmp_path, 600)] == [T0], "the open 10 minutes come from finer"
    assert store.written == 78 and store.dropped == {}


def test_query_without_a_step_picks_the_finest_tier_that_fits(store: HistoryStore) -> None:
    """An hour is answered at 10 s, a day at 1 min (within the 2,000 points)."""
    fill(store, 12)
    assert {p.step for p in store.query("star-jv", T0, T0 + 3600)} == {10}
    assert {p.step for p in store.query("star-jv", T0, T0 + 86400)} == {60}
    with pytest.raises(ValueError, match="step: must be one of 10, 60, 600"):
        store.query("star-jv", T0, T0 + 60, step=30)
    with pytest.raises(ValueError, match="more than 5000 points"):
        store.query("star-jv", T0, T0 + 30 * 86400, step=10)
    assert store.query("nobody", T0, T0 + 60) == []


def test_retention_deletes_each_tier_after_its_own_time(
    store: HistoryStore, clock: Clock, tmp_path: Path
) -> None:
    """Three days later, the 10 s points of then are gone (kept 2 days); the 1 and 10 minute
    points are kept."""
    fill(store, 78)
    clock.t = T0 + 3 * 86400.0
    store.add([point(clock.t)])
    assert store.flush()
    assert [t for t, _ in stored(tmp_path, 10)] == [T0 + 3 * 86400]
    assert len(stored(tmp_path, 60)) == 13 and len(stored(tmp_path, 600)) == 2
    clock.t = T0 + 40 * 86400.0
    store.add([point(clock.t)])
    assert store.flush()
    assert stored(tmp_path, 60) == [] and len(stored(tmp_path, 600)) == 3


def test_an_open_bucket_survives_a_restart(tmp_path: Path, clock: Clock) -> None:
    """Points written before a restart count in the minute finished after it."""
    s = HistoryStore(tmp_path, TIERS, clock=clock)
    fill(s, 3, down={1})
    s.close()
    s = HistoryStore(tmp_path, TIERS, clock=clock)
    try:
        fill(s, 4, start=T0 + 30)
        ((t, data),) = stored(tmp_path, 60)
        assert t == T0 and json.loads(data)[0] == "down"
    finally:
        s.close()


def test_size_per_point_is_bounded(store: HistoryStore, tmp_path: Path) -> None:
    """A day of 10 s points of a star-jv-sized entity, with its 1 and 10 minute tiers, takes
    under 150 bytes per 10 s point on disk (the keys are stored once per layout)."""
    n = 8640
    for i in range(0, n, 60):
        store.add([point(T0 + 10 * (i + j)) for j in range(60)])
    assert store.flush()
    with sqlite3.connect(tmp_path / FILENAME) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = c.execute("PRAGMA page_count").fetchone()[0]
        free = c.execute("PRAGMA freelist_count").fetchone()[0]
        size = (pages - free) * c.execute("PRAGMA page_size").fetchone()[0]
        (layouts,) = c.execute("SELECT count(*) FROM layouts").fetchone()
    assert layouts == 1
    assert size / n < 150, size / n


def test_committed_points_survive_kill_9(tmp_path: Path) -> None:
    """A writer killed with SIGKILL after its points were committed: a new store reads them
    all and the database is intact."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from tests.unit.test_history_store import TIERS, T0, point
        from monitor.history.store import HistoryStore
        s = HistoryStore({str(tmp_path)!r}, TIERS, clock=lambda: T0 + 3600.0)
        for i in range(100):
            s.add([point(T0 + 10 * i)])
        assert s.flush()
        print("flushed", flush=True)
        while True:
            s.add([point(T0 + 1000 + 10 * i)])
            time.sleep(0.01)
            i += 1
    """)
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "flushed"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert (tmp_path / (FILENAME + "-wal")).stat().st_size > 0, "read back through the WAL"
    s = HistoryStore(tmp_path, TIERS, clock=Clock(T0 + 3600.0))
    try:
        pts = s.query("star-jv", T0, T0 + 990, step=10)
        assert [p.t for p in pts] == [T0 + 10 * i for i in range(100)]
        with sqlite3.connect(tmp_path / FILENAME) as c:
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        s.close()


def test_a_full_disk_drops_points_logs_once_and_recovers(tmp_path: Path) -> None:
    """With the file size limit reached (RLIMIT_FSIZE, as a full disk: EFBIG), points are
    dropped and counted, one error is logged, add() never raises; once space is back, writes
    resume (in a subprocess: the limit is per process)."""
    script = textwrap.dedent(f"""
        import json, resource, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        import structlog
        from structlog.testing import capture_logs
        from tests.unit.test_history_store import TIERS, T0, point
        from monitor.history.store import HistoryStore
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        big = {{f"10.{{i // 256}}.{{i % 256}}.0/24": 0.5 for i in range(1000)}}
        with capture_logs() as logs:
            s = HistoryStore({str(tmp_path)!r}, TIERS, clock=lambda: T0 + 3600.0)
            s.add([point(T0)])
            assert s.flush()
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))
            for i in range(1, 240):  # ~1 MB: past the limit however the writer batches
                s.add([point(T0 + 10 * i, blocks=big)])
                if i % 8 == 0:
                    # Flushed as it goes: on a loaded machine the writer thread lagged, its
                    # queue overflowed (points dropped as "queue") and the limit was never hit.
                    assert s.flush()
            assert s.flush()
            full = dict(
                written=s.written,
                dropped=dict(s.dropped),
                healthy=s.healthy,
                spells=s.failure_spells,
            )
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            s.add([point(T0 + 10 * 300)])
            assert s.flush()
            after = dict(written=s.written, healthy=s.healthy)
            s.close()
        errors = [e for e in logs if e["log_level"] == "error"]
        print(json.dumps(dict(full=full, after=after, errors=len(errors))))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    full, after = res["full"], res["after"]
    assert full["healthy"] is False and full["dropped"]["disk"] > 0
    assert full["written"] + full["dropped"]["disk"] == 240
    # Logged once per spell of failures, not per batch (a write that fits in a page freed by a
    # rolled-back one succeeds in between and ends the spell): as many error lines as spells.
    assert res["errors"] == full["spells"] >= 1, res
    assert full["spells"] < full["dropped"]["disk"], res
    assert after["healthy"] is True and after["written"] == full["written"] + 1


def test_corrupt_rows_are_skipped_and_counted(store: HistoryStore, tmp_path: Path) -> None:
    """A row with unreadable values and one with an unknown layout are skipped, counted once,
    the others served."""
    fill(store, 6)
    with sqlite3.connect(tmp_path / FILENAME) as c:
        c.execute("UPDATE points SET data = 'not json' WHERE step = 10 AND t = ?", (T0 + 10,))
        c.execute("UPDATE points SET data = '[1,2]' WHERE step = 10 AND t = ?", (T0 + 20,))
        c.execute("UPDATE points SET layout = 999 WHERE step = 10 AND t = ?", (T0 + 30,))
    for _ in range(2):
        pts = store.query("star-jv", T0, T0 + 50, step=10)
        assert [p.t for p in pts] == [T0, T0 + 40, T0 + 50]
    assert store.corrupt_rows == 3


def test_a_database_of_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    """user_version above ours: SchemaError, and the file is not written."""
    path = tmp_path / FILENAME
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE future (x)")
        c.execute("PRAGMA user_version=7")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(SchemaError, match=r"newer dprk-monitor .*schema 7"):
        HistoryStore(tmp_path, TIERS)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not (tmp_path / (FILENAME + "-wal")).exists()


def test_a_stuck_writer_never_blocks_add(store: HistoryStore) -> None:
    """With the writer stuck (a hung disk), add() returns at once: batches past the queue's
    bound are dropped and counted."""
    release, entered = threading.Event(), threading.Event()
    real = store._write

    def stuck(points: list[HistoryPoint]) -> None:
        entered.set()
        release.wait(30)
        real(points)

    store._write = stuck  # type: ignore[method-assign]
    store.add([point(T0)])
    assert entered.wait(10)
    for i in range(1, QUEUE_BATCHES + 11):
        store.add([point(T0 + 10 * i)])
    assert store.dropped == {"queue": 10}
    release.set()
    assert store.flush()
    assert store.written == QUEUE_BATCHES + 1


def validated_body(
    store: HistoryStore, entity: str, since: float, until: float, step: int
) -> bytes:
    """The API's body as it was built before the fast path: validated points, one by one."""
    head = {"entity": entity, "step_seconds": step, "since": iso(since), "until": iso(until)}
    points = store.query(entity, since, until, step)
    body = ",".join(json.dumps(p.to_api(), separators=(",", ":")) for p in points)
    return (json.dumps(head, separators=(",", ":"))[:-1] + ',"points":[' + body + "]}").encode()


def test_the_api_fast_path_answers_as_the_validated_points(
    store: HistoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`render` (rows straight to JSON) gives the validated path's bytes at every tier, odd but
    readable rows served alike, corrupt ones skipped and counted, a huge number too."""
    fill(store, 100, down={13, 14})
    row = stored(tmp_path, 10)[0][1]
    assert row.startswith('["up",0.013,0.312456,1,') and row.endswith(",[1.0]]")
    edits = {
        10: "not json",  # skipped
        20: "[1,2]",  # skipped
        40: row.replace("0.013", "0", 1),  # an int loss: served as 0.0
        50: row.replace("0.312456", "1" + "0" * 400),  # too big for a float: skipped
        60: row.replace(",1,[", ",true,[", 1),  # served
        70: row.replace("0.9987", "NaN", 1),  # skipped
        80: row.replace("[27,", "[-1,", 1),  # skipped
        90: row.replace('"up"', '"sideways"', 1),  # skipped
        100: row.replace("[1.0]]", "[1]]"),  # an int ratio: served as 1.0
    }
    with sqlite3.connect(tmp_path / FILENAME) as c:
        for dt, data in edits.items():
            c.execute("UPDATE points SET data = ? WHERE step = 10 AND t = ?", (data, T0 + dt))
        c.execute("UPDATE points SET layout = 999 WHERE step = 10 AND t = ?", (T0 + 30,))
        keys = json.loads(c.execute("SELECT keys FROM layouts").fetchone()[0])
        for lid, k in ((500, [*keys[:4], [176]]), (501, [["icmp"] * 4, *keys[1:]])):
            c.execute("INSERT INTO layouts (id, keys) VALUES (?, ?)", (lid, json.dumps(k)))
        c.execute("UPDATE points SET layout = 500 WHERE step = 10 AND t = ?", (T0 + 110,))
        c.execute("UPDATE points SET layout = 501 WHERE step = 10 AND t = ?", (T0 + 120,))
    validated = 0
    real = store_module._point

    def counted(*a: Any) -> HistoryPoint:
        nonlocal validated
        validated += 1
        return real(*a)

    monkeypatch.setattr(store_module, "_point", counted)
    body = store.render("star-jv", T0, T0 + 990, 10)
    assert store.corrupt_rows == 7
    assert validated == 11, "only the rows that are not the writer's are validated"
    monkeypatch.setattr(store_module, "_point", real)
    assert body == validated_body(store, "star-jv", T0, T0 + 990, 10)
    assert store.corrupt_rows == 7
    doc = json.loads(body)
    assert len(doc["points"]) == 100 - 7
    by_t = {p["t"]: p for p in doc["points"]}
    assert by_t[iso(T0 + 40)]["loss"] == 0.0 and by_t[iso(T0 + 100)]["bgp"] == {
        "175.45.176.0/22": 1.0
    }
    assert by_t[iso(T0 + 110)]["bgp"] == {"176": 1.0}
    assert [by_t[iso(T0 + dt)]["state"] for dt in (0, 130, 140, 150)] == [
        "up",
        "down",
        "down",
        "up",
    ]
    for since, until, step in ((T0, T0 + 990, 60), (T0, T0 + 990, 600), (T0 + 5, T0 + 595, 60)):
        assert store.render("star-jv", since, until, step) == validated_body(
            store, "star-jv", since, until, step
        )
    assert store.render("nobody", T0, T0 + 990, 10) == validated_body(
        store, "nobody", T0, T0 + 990, 10
    )
