"""The event log's queries: filtered, ordered and paged in SQL on its indexes, bounded work,
pending events merged, the schema 1 -> 2 migration, a newer schema refused."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from monitor.detect.model import EventKind, EventRecord
from monitor.events import (
    _COLUMNS,
    FILENAME,
    MAX_LIMIT,
    SCHEMA_VERSION,
    EventStore,
    Query,
    SchemaError,
    StoreError,
    _row,
)
from tests.unit.test_events import T0, event

ENTITIES = ("star-jv", "kptc", "satgate")


def fill(store: EventStore, n: int, step: float = 600.0, open_last: int = 2) -> list[EventRecord]:
    """n events `step` apart, each lasting a tenth of that (the last `open_last` open), written
    in one transaction as the daemon would have written them one by one."""
    events = [
        event(
            f"ev{i:06d}",
            ENTITIES[i % len(ENTITIES)],
            start=T0 + i * step,
            end=None if i >= n - open_last else T0 + i * step + step / 10,
        )
        for i in range(n)
    ]
    conn = store._connect()
    assert conn is not None
    conn.execute("BEGIN")
    conn.executemany(
        'INSERT INTO events (id, entity, kind, start, "end", signals, evidence, updated) '
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(*_row(ev), T0) for ev in events],
    )
    conn.execute("COMMIT")
    return events


def pages(store: EventStore, limit: int, **kw: Any) -> Iterator[list[EventRecord]]:
    cursor = None
    while True:
        page = store.records(limit=limit, cursor=cursor, **kw)
        yield list(page)
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def overlapping(
    events: list[EventRecord], since: float | None, until: float | None, entity: str | None = None
) -> list[str]:
    """The reference: what [since, until] selects, by brute force."""
    return [
        e.id
        for e in sorted(events, key=lambda e: (e.start, e.id))
        if (entity is None or e.entity == entity)
        and (until is None or e.start <= until)
        and (since is None or e.start >= since or e.end is None or e.end >= since)
    ]


FILTERS: list[dict[str, Any]] = [
    {},
    {"since": T0 + 100 * 600 + 30},  # inside ev000100
    {"since": T0 + 100 * 600 + 59.9, "until": T0 + 120 * 600},
    {"until": T0 + 5 * 600},
    {"entity": "kptc"},
    {"entity": "satgate", "since": T0 + 200 * 600},
    {"since": T0 + 10**7},  # only the open ones
    {"since": T0 - 10**7, "until": T0 - 1},  # nothing
]


@pytest.mark.parametrize("kw", FILTERS)
def test_pages_together_are_the_whole_selection(tmp_path: Path, kw: dict[str, Any]) -> None:
    """Paging by limit and cursor returns the filter's events once each, in (start, id) order,
    whatever the page size; the last page has no next cursor."""
    store = EventStore(tmp_path)
    events = fill(store, 300)
    want = overlapping(events, kw.get("since"), kw.get("until"), kw.get("entity"))
    assert [e.id for e in store.records(**kw)] == want
    for limit in (1, 7, 100, 1000):
        got = [e.id for page in pages(store, limit, **kw) for e in page]
        assert got == want, limit
    store.close()


def test_a_long_event_is_found_across_since(tmp_path: Path) -> None:
    """An event that began long before `since` and ended after it is selected: the longest
    duration seen bounds the search, kept by the schema's triggers for every writer."""
    store = EventStore(tmp_path)
    fill(store, 50)
    long = event("long", start=T0 - 86400 * 90, end=T0 + 49 * 600 + 1)
    store.save(long)
    assert [e.id for e in store.records(since=T0 + 49 * 600, limit=10)][:2] == ["long", "ev000048"]
    # A writer that is not this code (sqlite3 shell, an older version) keeps the bound too.
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE events SET \"end\" = ? WHERE id = 'ev000000'", (T0 + 10**6,))
    assert "ev000000" in [e.id for e in store.records(since=T0 + 10**6 - 1)]
    store.close()


def test_limit_and_cursor_are_checked(tmp_path: Path) -> None:
    """A limit outside 1..MAX_LIMIT and a cursor this API did not give are errors."""
    store = EventStore(tmp_path)
    fill(store, 3)
    for bad in (0, -1, MAX_LIMIT + 1):
        with pytest.raises(ValueError, match="limit"):
            store.records(limit=bad)
    for cursor in ("garbage", "W10", "WyJ4Il0", "WzEsMl0", "e30"):
        with pytest.raises(ValueError, match="cursor: not one this API gave"):
            store.records(limit=5, cursor=cursor)
    store.close()


@pytest.mark.parametrize(
    "value", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", math.nan, math.inf]
)
def test_non_finite_times_are_refused(tmp_path: Path, value: object) -> None:
    """since/until that are not finite times are errors (they used to mean "no filter")."""
    store = EventStore(tmp_path)
    with pytest.raises(ValueError, match="since: not a"):
        store.query(since=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="until: not a"):
        Query.parse(until=value)  # type: ignore[arg-type]
    store.close()


def vm_steps(store: EventStore, fn: Callable[[], object]) -> int:
    """SQLite virtual-machine steps (in hundreds) that fn costs on the store's connection:
    a measure of the rows a query walks that no clock disturbs."""
    conn = store._connect()
    assert conn is not None
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    conn.set_progress_handler(tick, 100)
    try:
        fn()
    finally:
        conn.set_progress_handler(None, 0)
    return steps[0]


def test_queries_walk_only_what_they_return(tmp_path: Path) -> None:
    """With 20,000 events, each query shape (the status page's latest 20, a page, a filter
    that matches nothing, an entity's page, the open events, one id) costs a small fraction
    of one pass over the table: they read index ranges, not the log."""
    store = EventStore(tmp_path)
    fill(store, 20_000)
    conn = store._connect()
    assert conn is not None
    # The yardstick: reading every row once, as every query did before.
    whole = vm_steps(store, lambda: conn.execute(f"SELECT {_COLUMNS} FROM events").fetchall())
    assert whole > 1000
    shapes: dict[str, Callable[[], object]] = {
        "latest": lambda: store.latest(20),
        "page": lambda: store.records(limit=50),
        "page far on": lambda: store.records(limit=50, since=T0 + 15_000 * 600),
        "nothing ahead": lambda: store.records(since="2099-01-01"),
        "entity page": lambda: store.records(limit=50, entity="kptc", since=T0 + 9000 * 600),
        "until": lambda: store.records(until=T0 + 30 * 600),
        "open": store.open_events,
        "get": lambda: store.get("ev010000"),
    }
    for name, fn in shapes.items():
        assert vm_steps(store, fn) < whole / 50, name
    store.close()


def broken_connect(monkeypatch: pytest.MonkeyPatch, failing: dict[str, bool]) -> None:
    """sqlite3.connect whose writes fail with 'disk is full' while failing['on'] (reads work)."""
    real = sqlite3.connect

    class Broken:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def execute(self, sql: str, *a: Any) -> object:
            if failing["on"] and sql.startswith("BEGIN"):
                raise sqlite3.OperationalError("database or disk is full")
            return self.conn.execute(sql, *a)

        def __getattr__(self, name: str) -> object:
            return getattr(self.conn, name)

    monkeypatch.setattr(sqlite3, "connect", lambda *a, **kw: Broken(real(*a, **kw)))


async def test_pending_events_are_merged_into_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events not yet on disk show in every page, get and latest (sync and off the loop): a
    newer version replaces the stored one in place, a new one takes its place in order, and
    nothing shows twice or goes missing across pages."""
    store = EventStore(tmp_path)
    events = fill(store, 30, open_last=0)
    store.close()
    failing = {"on": True}
    broken_connect(monkeypatch, failing)
    newer = replace(events[10], kind=EventKind.PARTIAL)
    fresh = event("fresh", start=events[20].start + 1)
    later = event("later", start=T0 + 10**6)
    for ev in (newer, fresh, later):
        assert store.save(ev) is False
    assert store.pending == 3
    want = [e.id for e in events[:21]] + ["fresh"] + [e.id for e in events[21:]] + ["later"]
    for limit in (1, 4, 10, 100):
        got = [e for p in pages(store, limit) for e in p]
        assert [e.id for e in got] == want, limit
        assert got[10].kind is EventKind.PARTIAL
    got = []
    cursor = None
    while True:
        page = await store.page_async(Query.parse(cursor=cursor), 4)
        got += page
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert [e.id for e in got] == want
    assert store.get("ev000010") == newer and await store.get_async("fresh") == fresh
    assert [e.id for e in await store.latest_async(3)] == ["later", "ev000029", "ev000028"]
    failing["on"] = False
    assert store.flush()
    store.close()


def write_v1(path: Path, rows: list[tuple[Any, ...]]) -> None:
    """A log as schema 1 (the first release) left it."""
    path.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path / FILENAME)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(
        """
        CREATE TABLE events (id TEXT PRIMARY KEY, entity TEXT NOT NULL, kind TEXT NOT NULL,
            start REAL NOT NULL, "end" REAL, signals TEXT NOT NULL, evidence TEXT NOT NULL,
            updated REAL NOT NULL);
        CREATE INDEX events_start ON events (start);
        CREATE INDEX events_open ON events ("end") WHERE "end" IS NULL;
        PRAGMA user_version=1;
        """
    )
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()


def test_schema_1_log_is_migrated_in_place(tmp_path: Path) -> None:
    """A schema 1 log opened for writing becomes schema 2 (its indexes replaced, the longest
    duration recorded), every row kept; a read-only store reads a schema 1 log as it is."""
    evs = [
        event("a", end=T0 + 7200),
        event("b", start=T0 + 10),
        event("c", start=T0 + 20, end=T0 + 30),
    ]
    write_v1(tmp_path, [(*_row(e), T0) for e in evs])
    ro = EventStore(tmp_path, readonly=True)
    assert [e.id for e in ro.records(since=T0 + 100)] == ["a", "b"]
    ro.close()
    store = EventStore(tmp_path)
    assert [e.id for e in store.records()] == ["a", "b", "c"]
    assert [e.id for e in store.records(since=T0 + 100, limit=10)] == ["a", "b"]
    store.close()
    conn = sqlite3.connect(tmp_path / FILENAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    indexes = dict(
        conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        ).fetchall()
    )
    assert set(indexes) == {"events_start_id", "events_entity_start", "events_open"}
    assert 'WHERE "end" IS NULL' in indexes["events_open"]
    assert conn.execute("SELECT value FROM meta WHERE key = 'max_duration'").fetchone() == (7200,)
    conn.close()


def test_newer_schema_is_refused_and_not_written(tmp_path: Path) -> None:
    """A log whose user_version is above SCHEMA_VERSION is refused with a message saying so,
    by the daemon's store and by the read-only one, and left as it was."""
    conn = sqlite3.connect(tmp_path / FILENAME)
    conn.executescript("CREATE TABLE events (id TEXT PRIMARY KEY); PRAGMA user_version=4;")
    conn.close()
    before = (tmp_path / FILENAME).read_bytes()
    with pytest.raises(
        SchemaError,
        match=r"newer dprk-monitor \(event log schema 4, this "
        r"version reads up to 3\)",
    ):
        EventStore(tmp_path)
    ro = EventStore(tmp_path, readonly=True)
    with pytest.raises(StoreError, match="newer dprk-monitor"):
        ro.query()
    assert (tmp_path / FILENAME).read_bytes() == before
    assert not (tmp_path / (FILENAME + "-wal")).exists()
