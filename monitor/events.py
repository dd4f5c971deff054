"""The durable outage log: SQLite in WAL mode at `<state_dir>/events.sqlite3`.

Writing
- One row per event, written whole (`save` is an upsert): the detector's `EventOpened`,
  `EventUpdated` and `EventClosed` all carry the complete event, so a later write never needs
  an earlier one to have succeeded, and a retry is idempotent.
- Every accepted change is committed at once (WAL, `synchronous=NORMAL`): a committed event
  survives `kill -9` of the daemon (only a power cut can lose the last commits).
- A full, read-only or failing disk never raises to the caller: the event is kept in memory
  (latest version per id), `healthy` turns False with `last_error` set, and every later write
  (or `flush()`, which the daemon calls on each tick) retries; queries include the pending
  events, so the API keeps showing them. An accepted event is never dropped: what is still
  pending at `close()` goes to a spool file (`<state_dir>/events.spool.jsonl`, else
  $RUNTIME_DIRECTORY or the temporary directory, said in the log), merged at the next open.
- Writes are small (one row, one commit, no fsync with WAL + NORMAL): the daemon makes them on
  its event loop. Nothing is ever deleted.

Reading
- Every query is filtered, ordered and limited in SQL on an index (`events_start_id`,
  `events_entity_start`, the partial `events_open`), paged by a keyset cursor (an opaque
  string naming the last (start, id) returned): no call reads the whole table. "Overlapping
  [since, until]" is index ranges: events that began in the range, open events that began
  before it, and closed ones that began at most the longest duration of a closed event (kept
  by triggers in `meta`) before `since` and end after it.
- The `*_async` methods run the query (and the rendering) in a small thread pool, each
  thread with its own read-only connection, so that the event loop never waits on the disk
  or on a long export: `/`, `/api/v1/outages` and its exports use them.
- A row this version cannot read (a time that is not a finite number, JSON that is not an
  object, an unknown kind) is skipped, logged once and counted in `corrupt_rows`: one bad
  row never stops the daemon nor breaks a query.
- A log written by a newer schema (`PRAGMA user_version` above SCHEMA_VERSION) is refused
  (`SchemaError`) rather than written; schema 1 logs are migrated in place at the first open
  for writing (new indexes, same rows).

Annotations (monitor/annotations.py: cause, maintenance, notes, links) live in their own table
(schema 3), one JSON row per event id, written by `annotate` (the `annotate` command or the
HTTP write, in one transaction, safe while the daemon runs) and never by the detector's saves;
every query reads them with the event (a lookup on the table's primary key).

Importing (`dprk-monitor outages --import FILE`) reads a JSON export (the `--format json`
output, or the API's list), validates every entry first (an error names the entry's index and
nothing is written), then upserts by id in small transactions (the daemon may be running: WAL
plus a busy timeout). An event already stored is replaced only when the imported version is
different and not older; see `import_events`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import csv
import hashlib
import heapq
import io
import itertools
import json
import math
import os
import sqlite3
import stat
import tempfile
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog

from monitor import pools, sqlitefile
from monitor.annotations import AnnotationError, Annotations, merge_imported
from monitor.annotations import stored as stored_annotations
from monitor.detect.evidence import Evidence
from monitor.detect.model import (
    JSON,
    Change,
    EventClosed,
    EventKind,
    EventOpened,
    EventRecord,
    EventUpdated,
    parse_time,
)

log = structlog.get_logger("monitor.events")

FILENAME = "events.sqlite3"
SPOOL_NAME = "events.spool.jsonl"
SCHEMA_VERSION = 3
DEFAULT_LIMIT = 1000  # the API's page when none is asked for
# Events per piece of a streamed export. A piece is read and rendered in a reader thread, but
# rendering holds the GIL in long C calls: with 1,000 events (~1.3 MB) the loop waited up to
# 68 ms behind it (bench/bench_longlife.py). And a piece is all alive at once, rows, records,
# their API dicts and text: ~19 KiB of Python objects per event with the evidence a soak's
# events carry, so at 200 a poll of the whole list took ~3.8 MiB for a moment, a peak that
# Python's allocator keeps mapped and that rose with the log up to the first 200 events (the
# soak's RSS). At 50 an export is about as fast (20,000 small events: 0.70-0.75 s, against
# 0.63-0.74 s at 200).
STREAM_CHUNK = 50
MAX_LIMIT = 10_000  # the largest page `limit` may ask for
LATEST = 20  # events on the status page
# The last second `iso()` can write (9999-12-31T23:59:59Z): a stored time past it is corrupt.
MAX_TIME = 253_402_300_799.0
IMPORT_BATCH = 200  # rows per import transaction: the daemon's writer never waits long
READERS = 2  # threads reading for the API

_TABLE = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    entity TEXT NOT NULL,
    kind TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL,
    signals TEXT NOT NULL,
    evidence TEXT NOT NULL,
    updated REAL NOT NULL
)"""
# Schema 2: the indexes the queries walk, and the longest duration of a closed event (kept by
# triggers, so that any writer keeps it: an upper bound, it never shrinks). "Began before
# `since` and still running at it" is then a bounded range of the start index: a closed event
# running across `since` began at most that long before it. Schema 1 had `events_start
# (start)` and `events_open ("end") WHERE "end" IS NULL`; both are replaced (ordering by
# (start, id) needs id in them).
_NUMERIC = "typeof(NEW.start) IN ('integer', 'real') AND typeof(NEW.\"end\") IN ('integer', 'real')"
_SCHEMA_V2 = (
    "DROP INDEX IF EXISTS events_start",
    "DROP INDEX IF EXISTS events_open",
    "CREATE INDEX IF NOT EXISTS events_start_id ON events (start, id)",
    "CREATE INDEX IF NOT EXISTS events_entity_start ON events (entity, start, id)",
    'CREATE INDEX IF NOT EXISTS events_open ON events (start, id) WHERE "end" IS NULL',
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL)",
    "INSERT OR IGNORE INTO meta (key, value) SELECT 'max_duration', "
    'coalesce(max(max("end" - start), 0), 0) FROM events '
    "WHERE typeof(start) IN ('integer', 'real') AND typeof(\"end\") IN ('integer', 'real')",
    "CREATE TRIGGER IF NOT EXISTS events_max_duration_insert AFTER INSERT ON events "
    f'WHEN {_NUMERIC} BEGIN UPDATE meta SET value = max(value, NEW."end" - NEW.start) '
    "WHERE key = 'max_duration'; END",
    'CREATE TRIGGER IF NOT EXISTS events_max_duration_update AFTER UPDATE OF start, "end" '
    f"ON events WHEN {_NUMERIC} BEGIN UPDATE meta SET value = max(value, "
    "NEW.\"end\" - NEW.start) WHERE key = 'max_duration'; END",
)
# Schema 3: people's annotations, apart from the detector's rows (which it rewrites whole).
_ANNOTATIONS = (
    "CREATE TABLE IF NOT EXISTS annotations (id TEXT PRIMARY KEY, doc TEXT NOT NULL, "
    "updated REAL NOT NULL)"
)
_SCHEMA_V3 = (_ANNOTATIONS,)
_NAMES = ("id", "entity", "kind", "start", "end", "signals", "evidence")
_COLUMNS = 'id, entity, kind, start, "end", signals, evidence'
# What a query reads: the columns and the event's annotations (NULL: none).
_READ = _COLUMNS + ", (SELECT doc FROM annotations a WHERE a.id = events.id)"
_UPSERT = (
    f"INSERT INTO events ({_COLUMNS}, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(id) DO UPDATE SET entity=excluded.entity, kind=excluded.kind, "
    'start=excluded.start, "end"=excluded."end", signals=excluded.signals, '
    "evidence=excluded.evidence, updated=excluded.updated"
)
_UPSERT_ANNOTATIONS = (
    "INSERT INTO annotations (id, doc, updated) VALUES (?, ?, ?) "
    "ON CONFLICT(id) DO UPDATE SET doc=excluded.doc, updated=excluded.updated"
)
CSV_FIELDS = (
    "id",
    "entity",
    "kind",
    "start",
    "end",
    "duration_seconds",
    "signals",
    "evidence",
    "annotations",
)
# The keys of an exported event (`EventRecord.to_api`), the only ones an import accepts.
API_KEYS = frozenset(CSV_FIELDS)

TimeArg = str | float | datetime | None
Row = tuple[str, str, str, float, float | None, str, str]
# A position in (start, id) order as SQLite sorts it: numbers before text (a corrupt start).
SortKey = tuple[int, float | str, str]
T = TypeVar("T")


class StoreError(Exception):
    """The event log cannot be used (unreadable, unwritable for an import, newer schema)."""


class SchemaError(StoreError, sqlitefile.NewerSchema):
    """The log was written by a newer version: refused, never written."""


class CorruptRow(ValueError):
    """A stored row this version cannot read."""


class Page(list[T]):
    """One page of results, oldest first; `next_cursor` asks for the next one (None: done)."""

    def __init__(self, items: Iterable[T] = (), next_cursor: str | None = None) -> None:
        super().__init__(items)
        self.next_cursor = next_cursor


@dataclass(frozen=True, slots=True)
class CloseResult:
    """What `close()` could not write to the database: `pending` events, spooled to
    `spool` (None: nowhere writable, they are lost)."""

    pending: int = 0
    spool: Path | None = None

    @property
    def lost(self) -> int:
        return self.pending if self.spool is None else 0

    @property
    def spooled(self) -> int:
        return self.pending if self.spool is not None else 0


@dataclass(frozen=True, slots=True)
class ImportResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: int = 0  # the stored version is further along than the imported one

    def __str__(self) -> str:
        return (
            f"{self.added} added, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.kept} kept (the stored version is further along)"
        )


# --- queries -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    """Events overlapping [since, until] (open events run on), of one entity if given, after
    the cursor position `after` in (start, id) order."""

    since: float | None = None
    until: float | None = None
    entity: str | None = None
    after: tuple[float | str, str] | None = None

    @classmethod
    def parse(
        cls,
        since: TimeArg = None,
        until: TimeArg = None,
        entity: str | None = None,
        cursor: str | None = None,
    ) -> Query:
        """From user input; ValueError names the parameter. Empty strings mean "no filter"."""
        lo = None if since is None or since == "" else _time("since", since)
        hi = None if until is None or until == "" else _time("until", until)
        if lo is not None and hi is not None and hi < lo:
            raise ValueError("until: before since")
        after = None if cursor is None or cursor == "" else decode_cursor(cursor)
        return cls(lo, hi, entity or None, after)

    def matches(self, ev: EventRecord) -> bool:
        """The SQL's selection, for the events not yet on disk."""
        if self.entity is not None and ev.entity != self.entity:
            return False
        if self.until is not None and ev.start > self.until:
            return False
        # Began before `since` and over by then.
        lo = self.since
        if lo is not None and ev.start < lo and ev.end is not None and ev.end < lo:
            return False
        return self.after is None or _key(ev.start, ev.id) > _key(*self.after)


def encode_cursor(key: SortKey) -> str:
    raw = json.dumps([key[1], key[2]], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float | str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        start, id_ = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise ValueError("cursor: not one this API gave") from None
    ok_start = isinstance(start, str) or (
        isinstance(start, int | float) and not isinstance(start, bool) and not math.isnan(start)
    )
    if not ok_start or not isinstance(id_, str):
        raise ValueError("cursor: not one this API gave")
    return (float(start) if not isinstance(start, str) else start), id_


def _key(start: object, id_: object) -> SortKey:
    if isinstance(start, int | float) and not isinstance(start, bool):
        return (0, float(start), str(id_))
    return (1, str(start), str(id_))


def _max_duration(conn: sqlite3.Connection) -> float | None:
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'max_duration'").fetchone()
    except sqlite3.OperationalError:  # a schema 1 log read as it is (read-only)
        return None
    return None if row is None else float(row[0])


def _select(conn: sqlite3.Connection, q: Query, n: int) -> list[tuple[Any, ...]]:
    """Up to n raw rows matching q in (start, id) order, each part a range of an index: those
    that began before `since` and still run at it (the open ones on the partial index, the
    closed ones among those that began at most `max_duration` before it), then those that
    began in [since, until] (on `events_start_id`, or `events_entity_start` with an entity).
    The first set sorts wholly before the second."""
    args: dict[str, object] = {"lo": q.since, "hi": q.until, "entity": q.entity, "n": n}
    ent = " AND entity = :entity" if q.entity is not None else ""
    aft = ""
    if q.after is not None:
        aft = " AND (start, id) > (:a_start, :a_id)"
        args["a_start"], args["a_id"] = q.after
    rows: list[tuple[Any, ...]] = []
    if q.since is not None and (q.after is None or _key(*q.after) < _key(q.since, "")):
        longest = _max_duration(conn)
        bound = ""
        if longest is not None and math.isfinite(longest):
            bound = " AND start >= :earliest"
            args["earliest"] = q.since - max(longest, 0.0)
        # `+entity`: the few open events, on the partial index, rather than the entity's all.
        open_ent = " AND +entity = :entity" if q.entity is not None else ""
        running = conn.execute(
            f'SELECT {_READ} FROM events WHERE "end" IS NULL AND start < :lo{open_ent}{aft} '
            "ORDER BY start, id LIMIT :n",
            args,
        ).fetchall()
        # `+"end"`: walk the start range; an end index would hold every later event too.
        spanning = conn.execute(
            f'SELECT {_READ} FROM events WHERE start < :lo{bound} AND +"end" >= :lo'
            f"{ent}{aft} ORDER BY start, id LIMIT :n",
            args,
        ).fetchall()
        merged = heapq.merge(running, spanning, key=lambda r: _key(r[3], r[0]))
        rows = list(itertools.islice(merged, n))
    if len(rows) < n:
        where = []
        if q.since is not None:
            where.append("start >= :lo")
        if q.until is not None:
            where.append("start <= :hi")
        cond = " AND ".join(where) or "1"
        sql = f"SELECT {_READ} FROM events WHERE {cond}{ent}{aft} ORDER BY start, id LIMIT :n"
        rows += conn.execute(sql, {**args, "n": n - len(rows)}).fetchall()
    return rows


# What a reader does with a row it cannot read: (row id, reason).
OnCorrupt = Callable[[str, str], None]


def _decode(rows: Iterable[tuple[Any, ...]], on_corrupt: OnCorrupt) -> Iterator[EventRecord]:
    for r in rows:
        try:
            yield _from_row(r)
        except CorruptRow as e:
            on_corrupt(str(r[0]), str(e))


def _select_page(
    conn: sqlite3.Connection | None,
    pending: Mapping[str, EventRecord],
    q: Query,
    limit: int,
    on_corrupt: OnCorrupt,
) -> Page[EventRecord]:
    """One page: the stored rows after the cursor, with the pending (newer) versions merged
    in. At most len(pending) stored rows are replaced, so limit + len(pending) rows from disk
    hold the page; a pending event past the last row read waits for a later page."""
    n = limit + len(pending)
    raw = _select(conn, q, n + 1) if conn is not None else []
    more = len(raw) > n
    raw = raw[:n]
    bound = _key(raw[-1][3], raw[-1][0]) if more else None
    cands = [(_key(ev.start, ev.id), ev) for ev in _decode(raw, on_corrupt) if ev.id not in pending]
    for ev in pending.values():
        k = _key(ev.start, ev.id)
        if q.matches(ev) and (bound is None or k <= bound):
            cands.append((k, ev))
    cands.sort(key=lambda c: c[0])
    page = cands[:limit]
    if len(cands) > limit:
        nxt: SortKey | None = page[-1][0]
    else:
        nxt = bound
    return Page((ev for _, ev in page), None if nxt is None else encode_cursor(nxt))


def _select_latest(
    conn: sqlite3.Connection | None,
    pending: Mapping[str, EventRecord],
    n: int,
    on_corrupt: OnCorrupt,
) -> list[EventRecord]:
    """The n latest events (by start), newest first: ORDER BY start DESC LIMIT on the index."""
    out: dict[str, EventRecord] = {}
    before: tuple[object, object] | None = None
    want = n + len(pending)
    while conn is not None:
        sql = f"SELECT {_READ} FROM events"
        args: tuple[object, ...] = ()
        if before is not None:
            sql += " WHERE (start, id) < (?, ?)"
            args = before
        rows = conn.execute(sql + " ORDER BY start DESC, id DESC LIMIT ?", (*args, want)).fetchall()
        out.update((ev.id, ev) for ev in _decode(rows, on_corrupt) if ev.id not in pending)
        # Short only when corrupt rows were skipped: read on until n are found or none is left.
        if len(rows) < want or len(out) >= n:
            break
        before = (rows[-1][3], rows[-1][0])
    evs = [*out.values(), *pending.values()]
    evs.sort(key=lambda e: _key(e.start, e.id), reverse=True)
    return evs[:n]


def _select_open(
    conn: sqlite3.Connection | None, on_corrupt: OnCorrupt, entities: Sequence[str] = ()
) -> list[EventRecord]:
    if conn is None:
        return []
    sql = f'SELECT {_READ} FROM events WHERE "end" IS NULL ORDER BY start, id'
    out = list(_decode(conn.execute(sql).fetchall(), on_corrupt))
    # An entity has at most one event open or recovering, and it is its latest: one indexed
    # lookup per entity (events_entity_start), not a scan of the closed events.
    latest = f"SELECT {_READ} FROM events WHERE entity = ? ORDER BY start DESC, id DESC LIMIT 1"
    for name in entities:
        out += [
            ev
            for ev in _decode(conn.execute(latest, (name,)).fetchall(), on_corrupt)
            if ev.recovering
        ]
    return out


def _select_one(
    conn: sqlite3.Connection | None, event_id: str, on_corrupt: OnCorrupt
) -> EventRecord | None:
    if conn is None:
        return None
    rows = conn.execute(f"SELECT {_READ} FROM events WHERE id = ?", (event_id,)).fetchall()
    return next(_decode(rows, on_corrupt), None)


# --- connections ---------------------------------------------------------------------------


def _newer(path: Path) -> Callable[[int], SchemaError]:
    def refuse(version: int) -> SchemaError:
        return SchemaError(
            f"{path}: written by a newer dprk-monitor (event log schema {version}, this version "
            f"reads up to {SCHEMA_VERSION}); refusing to use it: upgrade dprk-monitor, or point "
            "state_dir elsewhere"
        )

    return refuse


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Create the log, or bring a schema 1 or 2 log to schema 3 in place."""
    conn.execute(_TABLE)
    if version < 2:  # schema 2's statements rebuild an index: once is enough
        for stmt in _SCHEMA_V2:
            conn.execute(stmt)
    for stmt in _SCHEMA_V3:
        conn.execute(stmt)


def _open_writer(path: Path) -> sqlite3.Connection:
    return sqlitefile.open_writer(path, SCHEMA_VERSION, _newer(path), _migrate)


def _open_reader(path: Path) -> tuple[sqlite3.Connection, bool] | None:
    """(a read-only connection, whether it is `immutable`), or None when there is no log.
    A WAL database needs its -shm file even to read; on a read-only disk where it is missing
    (the last writer closed cleanly), `mode=ro` fails and the file is read as immutable:
    nothing can be writing it there."""
    if not path.exists():
        return None
    base = path.resolve().as_uri()
    error: sqlite3.Error | None = None
    for mode, immutable in (("mode=ro", False), ("immutable=1", True)):
        try:
            conn = sqlite3.connect(f"{base}?{mode}", uri=True, check_same_thread=False)
        except sqlite3.Error as e:
            error = e
            continue
        try:
            sqlitefile.configure(conn)
            sqlitefile.refuse_newer(conn, SCHEMA_VERSION, _newer(path))
            has_table = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
            ).fetchone()
        except sqlite3.Error as e:
            conn.close()
            error = e
            continue
        except BaseException:
            conn.close()
            raise
        if has_table is None:  # created, never written
            conn.close()
            return None
        try:
            # A log of schema 1 or 2 read as it is (never migrated read-only): an empty
            # annotations table of this connection's own (TEMP: the file is not written), so
            # that the queries read alike. Only then: a TEMP table would hide the log's own.
            if not conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'annotations'"
            ).fetchone():
                conn.execute(_ANNOTATIONS.replace("TABLE IF NOT", "TEMP TABLE IF NOT"))
        except sqlite3.Error as e:
            conn.close()
            raise StoreError(f"cannot read {path}: {e}") from None
        return conn, immutable
    raise StoreError(f"cannot read {path}: {error}")


# --- the store -----------------------------------------------------------------------------


class EventStore:
    """The event log. `readonly=True` (the `outages` command) never creates or writes.

    Raises SchemaError when the log was written by a newer version."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        readonly: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(state_dir) / FILENAME
        self.readonly = readonly
        self.clock = clock
        self.healthy = True
        self.last_error: str | None = None
        self._conn: sqlite3.Connection | None = None
        self._ro_immutable = False
        self._pending: dict[str, EventRecord] = {}
        self._corrupt_seen: set[str] = set()
        self._corrupt_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._spools: list[Path] = []  # spool files whose events are in _pending
        self._refused: BaseException | None = None  # why the log cannot be opened for writing
        self._load_spools()
        if not readonly:
            self._connect()
            if isinstance(self._refused, SchemaError):
                raise self._refused
            if self._pending and self._conn is not None:
                self.flush()

    @property
    def corrupt_rows(self) -> int:
        """Rows (and spool lines) skipped because they cannot be read, each counted once."""
        return len(self._corrupt_seen)

    def _corrupt(self, where: str, reason: str) -> None:
        with self._corrupt_lock:
            if where in self._corrupt_seen:
                return
            self._corrupt_seen.add(where)
        log.error(
            "event log: skipping a row it cannot read",
            path=str(self.path),
            row=where,
            reason=reason,
        )

    # --- connection --------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        try:
            conn = _open_writer(self.path)
        except (sqlite3.Error, OSError, SchemaError) as e:
            self._refused = e
            self._fail(e)
            return None
        self._refused = None
        self._conn = conn
        return conn

    def _fail(self, e: BaseException) -> None:
        self.healthy = False
        self.last_error = f"{type(e).__name__}: {e}"
        sqlitefile.discard(self._conn)
        self._conn = None

    def close(self) -> CloseResult:
        """Flush, then close. Events that still cannot be written go to a spool file, merged
        at the next open; the result says how many, and where (None: lost, logged)."""
        self._close_readers()
        result = CloseResult()
        if not self.readonly and not self.flush():
            n = len(self._pending)
            path = self._write_spool()
            result = CloseResult(n, path)
            if path is not None:
                log.error(
                    "event log not writable at shutdown: pending events spooled, merged at the "
                    "next start",
                    events=n,
                    spool=str(path),
                    error=self.last_error,
                )
            else:
                log.critical(
                    "event log not writable at shutdown and no spool location writable: "
                    "events lost",
                    events=n,
                    error=self.last_error,
                    tried=[str(p) for p in self._spool_candidates()],
                )
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        return result

    def _close_readers(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()

    # --- writing -----------------------------------------------------------------------------

    def save(self, event: EventRecord) -> bool:
        """Record an event (new or changed). Returns True if it is on disk now; on a disk error
        it is kept and retried (never raises for the disk)."""
        if self.readonly:
            raise RuntimeError("the event store was opened read-only")
        self._pending[event.id] = event
        return self.flush()

    def apply(self, changes: Iterable[Change]) -> None:
        """Save the events of the detector's changes (other changes are ignored)."""
        for c in changes:
            if isinstance(c, EventOpened | EventUpdated | EventClosed):
                self._pending[c.event.id] = c.event
        if self._pending:
            self.flush()

    def flush(self) -> bool:
        """Write what is pending (all in one transaction). True when nothing is left."""
        if not self._pending:
            return True
        if self.readonly:
            return False
        conn = self._connect()
        if conn is None:
            return False
        now = self.clock()
        rows = [(*_row(ev), now) for ev in self._pending.values()]
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_UPSERT, rows)
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            self._fail(e)
            return False
        self._pending.clear()
        self.healthy = True
        self.last_error = None
        if self._spools:  # what they held is in the database now
            self._remove_spools()
        return True

    @property
    def pending(self) -> int:
        """Events accepted but not yet on disk."""
        return len(self._pending)

    def import_events(self, events: Sequence[EventRecord]) -> ImportResult:
        """Upsert imported events by id, IMPORT_BATCH per transaction. A stored event is
        replaced only when the imported version differs and is not older: an event only moves
        forward (phases are added, it closes, a relapse reopens it with one more phase), so an
        import never rolls a stored event back to an earlier state of itself; see `_progress`.
        Equal up to the export's millisecond times counts as unchanged, so importing the same
        file again writes nothing. Raises StoreError when the log cannot be written."""
        if self.readonly:
            raise RuntimeError("the event store was opened read-only")
        conn = self._connect()
        if conn is None:
            raise StoreError(f"cannot write {self.path}: {self.last_error}")
        added = updated = unchanged = kept = 0
        for i in range(0, len(events), IMPORT_BATCH):
            batch = events[i : i + IMPORT_BATCH]
            try:
                conn.execute("BEGIN IMMEDIATE")
                now = self.clock()
                for ev in batch:
                    stored = None
                    rows = conn.execute(
                        f"SELECT {_READ} FROM events WHERE id = ?", (ev.id,)
                    ).fetchall()
                    if rows:
                        try:
                            stored = _from_row(rows[0])
                        except CorruptRow:  # the import repairs it
                            stored = None
                    # Annotations apart: the newer version (by `updated`) wins, whatever
                    # becomes of the event's own row.
                    notes = merge_imported(
                        None if stored is None else stored.annotations, ev.annotations
                    )
                    if notes is not None:
                        conn.execute(_UPSERT_ANNOTATIONS, (ev.id, notes.dumps(), now))
                    if rows and stored is not None:
                        if _same(stored, ev, annotations=False):
                            if notes is None:
                                unchanged += 1
                            else:
                                updated += 1
                            continue
                        if _progress(ev) < _progress(stored):
                            if notes is None:
                                kept += 1
                            else:
                                updated += 1
                            continue
                        updated += 1
                    elif rows:
                        updated += 1
                    else:
                        added += 1
                    conn.execute(_UPSERT, (*_row(ev), now))
                conn.execute("COMMIT")
            except (sqlite3.Error, OSError) as e:
                self._fail(e)
                raise StoreError(
                    f"cannot write {self.path}: {e} (the first {i} entries are imported; "
                    "importing the file again is safe)"
                ) from None
        return ImportResult(added, updated, unchanged, kept)

    def annotate(
        self, event_id: str, change: Callable[[Annotations | None], Annotations]
    ) -> Annotations | None:
        """Read, change and write an event's annotations in one write transaction (another
        process may be writing: WAL and the busy timeout); None when no event has this id.
        `change` may raise (AnnotationError): nothing is written then. Raises StoreError
        when the log cannot be written."""
        if self.readonly:
            raise RuntimeError("the event store was opened read-only")
        conn = self._connect()
        if conn is None:
            raise StoreError(f"cannot write {self.path}: {self.last_error}")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                known = (
                    event_id in self._pending
                    or conn.execute("SELECT 1 FROM events WHERE id = ?", (event_id,)).fetchone()
                )
                if not known:
                    conn.execute("ROLLBACK")
                    return None
                row = conn.execute(
                    "SELECT doc FROM annotations WHERE id = ?", (event_id,)
                ).fetchone()
                new = change(stored_annotations(row[0]) if row else None)
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            conn.execute(_UPSERT_ANNOTATIONS, (event_id, new.dumps(), self.clock()))
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            self._fail(e)
            raise StoreError(f"cannot write {self.path}: {e}") from None
        return new

    # --- spool -------------------------------------------------------------------------------

    def _spool_candidates(self) -> list[Path]:
        """Where pending events go at a shutdown that cannot write them: the state directory,
        else systemd's RuntimeDirectory, else the temporary directory (names there carry a
        hash of the state directory: several daemons may share it)."""
        tag = hashlib.sha256(str(self.path.parent.resolve()).encode()).hexdigest()[:12]
        name = f"dprk-monitor-{tag}.{SPOOL_NAME}"
        out = [self.path.parent / SPOOL_NAME]
        runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
        if runtime:
            out.append(Path(runtime) / name)
        out.append(Path(tempfile.gettempdir()) / name)
        return list(dict.fromkeys(out))

    def _write_spool(self) -> Path | None:
        text = "".join(
            json.dumps(dict(zip(_NAMES, _row(ev), strict=True)), separators=(",", ":")) + "\n"
            for ev in self._pending.values()
        )
        for path in self._spool_candidates():
            tmp: str | None = None
            try:
                # A fresh private file renamed over the old one: never half written, and no
                # file planted in a shared directory is followed.
                fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except OSError as e:
                log.warning("cannot write the event spool here", spool=str(path), error=str(e))
                if tmp is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                continue
            # The new file holds everything pending, those merged from older spools included.
            self._remove_spools(keep=path)
            self._spools = [path]
            return path
        return None

    def _load_spools(self) -> None:
        files = []
        for path in self._spool_candidates():
            try:
                st = path.lstat()
            except OSError:
                continue
            # Ours only: a regular file of this user that nobody else can write (the fallback
            # lives in a shared directory; a planted file must not become events).
            if (
                not stat.S_ISREG(st.st_mode)
                or st.st_uid != os.getuid()
                or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            ):
                log.warning("ignoring a spool file that is not ours", spool=str(path))
                continue
            files.append((st.st_mtime, path))
        merged = 0
        for _, path in sorted(files):  # oldest first: the newest version of an event wins
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                log.error("cannot read the event spool", spool=str(path), error=str(e))
                continue
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                    ev = _from_row(tuple(doc[k] for k in _NAMES))
                except (ValueError, KeyError, TypeError) as e:
                    self._corrupt(f"{path}:{n}", str(e))
                    continue
                self._pending[ev.id] = ev
                merged += 1
            self._spools.append(path)
        if self._spools:
            log.warning(
                "merging events spooled at the last shutdown",
                spools=[str(p) for p in self._spools],
                events=merged,
            )

    def _remove_spools(self, keep: Path | None = None) -> None:
        if self.readonly:
            return
        for path in self._spools:
            if path != keep:
                try:
                    path.unlink(missing_ok=True)
                except OSError as e:
                    log.warning("cannot remove a merged event spool", spool=str(path), error=str(e))
        self._spools = [keep] if keep is not None else []

    # --- reading (here) ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection | None]:
        """A connection to read on in this thread (None: no log yet). Read-only stores keep
        one; the daemon's uses its writer, or a transient reader when it cannot write."""
        if self.readonly:
            if self._conn is None:
                opened = _open_reader(self.path)
                if opened is not None:
                    self._conn, self._ro_immutable = opened
            yield self._conn
            return
        conn = self._connect()
        if conn is not None:
            yield conn
            return
        try:
            opened = _open_reader(self.path)
        except StoreError:
            opened = None
        if opened is None:
            yield None
            return
        try:
            yield opened[0]
        finally:
            opened[0].close()

    def _read(self, fn: Callable[[sqlite3.Connection | None], T]) -> T:
        """Run a query here: a read-only store reports errors (StoreError: the CLI prints
        them); the daemon's falls back to what is pending, as when its disk fails."""
        try:
            with self._reading() as conn:
                return fn(conn)
        except sqlite3.Error as e:
            if self.readonly:
                raise StoreError(f"cannot read {self.path}: {e}") from None
            self._fail(e)
            return fn(None)

    def records(
        self,
        since: TimeArg = None,
        until: TimeArg = None,
        entity: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[EventRecord]:
        """Events overlapping [since, until] (open events run to now), oldest first: `limit`
        of them and the cursor of the next page, or all of them (read page by page)."""
        q = Query.parse(since, until, entity, cursor)
        if limit is not None:
            _check_limit(limit)
            pending = dict(self._pending)
            return self._read(lambda c: _select_page(c, pending, q, limit, self._corrupt))
        out: Page[EventRecord] = Page()
        while True:
            page = self.records(since, until, entity, DEFAULT_LIMIT, cursor)
            out.extend(page)
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    def query(
        self,
        since: TimeArg = None,
        until: TimeArg = None,
        entity: str | None = None,
        now: float | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[JSON]:
        """The `/api/v1/outages` list: {"id","entity","kind","start","end","duration_seconds",
        "signals","evidence"}, UTC ISO 8601 times; an open event's duration runs to `now`."""
        t = self.clock() if now is None else now
        page = self.records(since, until, entity, limit, cursor)
        return Page((ev.to_api(t) for ev in page), page.next_cursor)

    def open_events(self, entities: Iterable[str] = ()) -> list[EventRecord]:
        """Events left open (end NULL, on the partial index) and, for each of `entities`, its
        latest event if it was recovering (its end provisional: stopped within merge_gap of
        it), pending versions included: hand them to `Detector.resume` at start."""
        names = list(entities)
        stored = self._read(lambda c: _select_open(c, self._corrupt, names))
        out = {e.id: e for e in stored if e.id not in self._pending}
        out.update((i, e) for i, e in self._pending.items() if e.end is None or e.recovering)
        return sorted(out.values(), key=lambda e: _key(e.start, e.id))

    def get(self, event_id: str) -> EventRecord | None:
        if event_id in self._pending:
            return self._pending[event_id]
        return self._read(lambda c: _select_one(c, event_id, self._corrupt))

    def latest(self, n: int = LATEST) -> list[EventRecord]:
        """The n latest events by start, newest first."""
        pending = dict(self._pending)
        return self._read(lambda c: _select_latest(c, pending, n, self._corrupt))

    # --- reading (off the loop) ----------------------------------------------------------------

    def _thread_reader(self) -> tuple[sqlite3.Connection | None, bool]:
        """This worker thread's read-only connection, and whether the caller must close it (an
        immutable one is never kept: the disk may turn writable again)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, False
        opened = _open_reader(self.path)
        if opened is None:
            return None, False
        conn, immutable = opened
        if immutable:
            return conn, True
        self._local.conn = conn
        with self._readers_lock:
            self._readers.append(conn)
        return conn, False

    def _in_thread(self, fn: Callable[[sqlite3.Connection | None], T]) -> T:
        try:
            conn, owned = self._thread_reader()
        except sqlite3.Error as e:
            raise StoreError(f"cannot read {self.path}: {e}") from None
        try:
            return fn(conn)
        except sqlite3.Error as e:
            raise StoreError(f"cannot read {self.path}: {e}") from None
        finally:
            if owned and conn is not None:
                conn.close()

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(READERS, thread_name_prefix="event-log-read")
        return self._executor

    def prestart_readers(self) -> int:
        """Start the reader threads and open their connections now (monitor/pools.py: why);
        an unreadable log is left to the first query to report."""

        def open_reader() -> None:
            with contextlib.suppress(StoreError):
                self._in_thread(lambda c: None)

        return pools.prestart(self._pool(), READERS, open_reader)

    async def _off_loop(self, fn: Callable[[sqlite3.Connection | None], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), self._in_thread, fn)

    async def page_async(self, q: Query, limit: int) -> Page[EventRecord]:
        """`records(...)` with `limit`, in a reader thread. Raises StoreError if unreadable."""
        _check_limit(limit)
        pending = dict(self._pending)  # the loop's view now; the thread reads this copy
        return await self._off_loop(lambda c: _select_page(c, pending, q, limit, self._corrupt))

    async def get_async(self, event_id: str) -> EventRecord | None:
        if event_id in self._pending:
            return self._pending[event_id]
        return await self._off_loop(lambda c: _select_one(c, event_id, self._corrupt))

    async def latest_async(self, n: int = LATEST) -> list[EventRecord]:
        pending = dict(self._pending)
        return await self._off_loop(lambda c: _select_latest(c, pending, n, self._corrupt))

    async def render_page(
        self, q: Query, limit: int, fmt: str | Renderer, now: float
    ) -> tuple[str, str | None]:
        """One page rendered as a whole JSON list or CSV document, and the next cursor; the
        query and the rendering both run in a reader thread."""
        _check_limit(limit)
        pending = dict(self._pending)

        def work(conn: sqlite3.Connection | None) -> tuple[str, str | None]:
            page = _select_page(conn, pending, q, limit, self._corrupt)
            return _render_chunk(page, fmt, now, first=True, last=True, after=False), (
                page.next_cursor
            )

        return await self._off_loop(work)

    async def render_all(
        self, q: Query, fmt: str | Renderer, now: float, chunk: int = STREAM_CHUNK
    ) -> AsyncGenerator[bytes, None]:
        """Every matching event after q's cursor as one JSON list or CSV document, in pieces
        of `chunk` events, each read and rendered in a reader thread: a 100,000-event export
        costs the loop only the writes."""
        pending = dict(self._pending)
        first, emitted = True, False
        while True:

            def work(
                conn: sqlite3.Connection | None,
                q: Query = q,
                first: bool = first,
                emitted: bool = emitted,
            ) -> tuple[bytes, str | None, int]:
                page = _select_page(conn, pending, q, chunk, self._corrupt)
                last = page.next_cursor is None
                # Encoded here too: a megabyte encoded on the loop is a stall of its own.
                text = _render_chunk(page, fmt, now, first, last, emitted).encode()
                return text, page.next_cursor, len(page)

            text, nxt, count = await self._off_loop(work)
            emitted = emitted or count > 0
            first = False
            yield text
            if nxt is None:
                return
            q = Query(q.since, q.until, q.entity, decode_cursor(nxt))


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit: must be from 1 to {MAX_LIMIT}")


# --- rendering -----------------------------------------------------------------------------


def _dump(ev: JSON) -> str:
    return json.dumps(ev, separators=(",", ":"), ensure_ascii=False)


class Renderer(Protocol):
    """Another export format (monitor/feeds.py: Atom, CODF), rendered piece by piece in the
    reader threads like json and csv; the arguments are those of `_render_chunk`."""

    def chunk(
        self, page: Sequence[EventRecord], now: float, first: bool, last: bool, after: bool
    ) -> str: ...


def _render_chunk(
    page: Sequence[EventRecord],
    fmt: str | Renderer,
    now: float,
    first: bool,
    last: bool,
    after: bool,
) -> str:
    """A piece of one JSON list or CSV document: `first` opens it, `last` closes it, `after`
    says events came before (a comma goes first)."""
    if not isinstance(fmt, str):
        return fmt.chunk(page, now, first, last, after)
    if fmt == "csv":
        return render_csv((ev.to_api(now) for ev in page), header=first)
    # One event's dict at a time (csv too): only the texts of the piece are alive together.
    body = ",\n".join(_dump(ev.to_api(now)) for ev in page)
    head = "[\n" if first else ""
    if body and after:
        head += ",\n"
    return head + body + ("\n]\n" if last else "")


def render_json(events: list[JSON]) -> str:
    return json.dumps(events, indent=2) + "\n"


# Spreadsheets run a cell that starts with these as a formula (OWASP "CSV injection"): such a
# text cell is written with a leading apostrophe. Numbers (a duration) are left alone.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(v: object) -> object:
    if isinstance(v, dict | list):
        v = json.dumps(v, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    if v is None:
        return ""
    if isinstance(v, str) and v.startswith(_FORMULA_START):
        return "'" + v
    return v


def render_csv(events: Iterable[JSON], header: bool = True) -> str:
    """One row per event; signals and evidence as JSON text in their cells."""
    buf = io.StringIO()
    # RFC 4180's CRLF: with it the writer also quotes a cell holding a lone CR, which a
    # "\n" terminator leaves bare (and readers then split the row).
    w = csv.writer(buf, lineterminator="\r\n")
    if header:
        w.writerow(CSV_FIELDS)
    for ev in events:
        w.writerow([_csv_cell(ev.get(f)) for f in CSV_FIELDS])
    return buf.getvalue()


def render_table(events: list[JSON]) -> str:
    """A plain table for a terminal."""
    if not events:
        return "no outage events\n"
    head = ("start", "end", "duration", "entity", "kind", "id")
    rows = [
        (
            str(ev["start"]),
            str(ev["end"] or "(open)"),
            _human(ev.get("duration_seconds")),
            str(ev["entity"]),
            str(ev["kind"]),
            str(ev["id"]),
        )
        for ev in events
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [head, *rows]
    ]
    return "\n".join(lines) + "\n"


def _human(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


# --- import --------------------------------------------------------------------------------


def parse_export(text: str, name: str = "input") -> list[EventRecord]:
    """The events of a JSON export (a list of `/api/v1/outages` objects). Every entry is
    checked; the first bad one raises ValueError naming its index (counted from 0)."""
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except ValueError as e:
        raise ValueError(f"{name}: not JSON: {e}") from None
    if not isinstance(doc, list):
        raise ValueError(
            f"{name}: not a JSON list of events (the output of `dprk-monitor outages "
            "--format json` or of GET /api/v1/outages)"
        )
    out: dict[str, tuple[int, EventRecord]] = {}
    for i, item in enumerate(doc):
        try:
            ev = record_from_api(item)
        except ValueError as e:
            raise ValueError(f"{name}: entry {i}: {e}") from None
        seen = out.get(ev.id)
        if seen is not None and not _same(seen[1], ev):
            raise ValueError(
                f"{name}: entry {i}: id {ev.id!r} already given, differently, by entry {seen[0]}"
            )
        out.setdefault(ev.id, (i, ev))
    return [ev for _, ev in out.values()]


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def record_from_api(doc: object) -> EventRecord:
    """An event from its API form (the inverse of `EventRecord.to_api`, `duration_seconds`
    being derived); ValueError names the field."""
    if not isinstance(doc, dict):
        raise ValueError("not an object")
    unknown = sorted(set(doc) - API_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}")
    for k in ("id", "entity", "kind", "start"):
        if k not in doc:
            raise ValueError(f"{k}: missing")
    id_, entity = doc["id"], doc["entity"]
    if not isinstance(id_, str) or not id_:
        raise ValueError("id: not a non-empty string")
    if not isinstance(entity, str) or not entity:
        raise ValueError("entity: not a non-empty string")
    try:
        kind = EventKind(doc["kind"])
    except ValueError:
        raise ValueError(
            f"kind: {doc['kind']!r} is not one of {', '.join(k.value for k in EventKind)}"
        ) from None
    start = _import_time("start", doc["start"])
    end = None if doc.get("end") is None else _import_time("end", doc["end"])
    if end is not None and end < start:
        raise ValueError("end: before start")
    signals = doc.get("signals", {})
    evidence = doc.get("evidence", {})
    for k, v in (("signals", signals), ("evidence", evidence)):
        if not isinstance(v, dict):
            raise ValueError(f"{k}: not an object")
    annotations = None
    if doc.get("annotations") is not None:
        try:
            annotations = Annotations.from_json(doc["annotations"])
        except AnnotationError as e:
            raise ValueError(f"annotations: {e}") from None
    return EventRecord(
        id_, entity, kind, start, end, signals, Evidence.from_json(evidence), annotations
    )


def _import_time(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{name}: not a time: {value!r}")
    t = _time(name, value)
    if not 0 <= t <= MAX_TIME:
        raise ValueError(f"{name}: out of range: {value!r}")
    return t


def _same(a: EventRecord, b: EventRecord, annotations: bool = True) -> bool:
    """Equal as exported (times to the millisecond); the annotations compared or not."""
    da, db = a.to_api(), b.to_api()
    for d in (da, db):
        d.pop("duration_seconds")
        if not annotations:
            d.pop("annotations", None)
    return _dump(da) == _dump(db)


def _progress(ev: EventRecord) -> tuple[int, int, float]:
    """How far an event has come: its phases (a relapse adds one), then closed over open,
    then a later end."""
    phases = ev.signals.get("phases")
    dropped = ev.signals.get("phases_dropped")
    n = (len(phases) if isinstance(phases, list) else 0) + (
        dropped if isinstance(dropped, int) and not isinstance(dropped, bool) else 0
    )
    return (n, 0 if ev.end is None else 1, ev.end or 0.0)


# --- rows: the one codec between EventRecord and the table ---------------------------------


def _time(name: str, value: str | float | datetime) -> float:
    """A time given by a user; non-finite numbers ("nan", "inf") are refused, not ignored."""
    try:
        t = parse_time(value)
    except (ValueError, OverflowError) as e:
        raise ValueError(f"{name}: {e}") from None
    if not math.isfinite(t):
        raise ValueError(f"{name}: not a finite time: {value!r}")
    return t


def _row(ev: EventRecord) -> Row:
    return (
        ev.id,
        ev.entity,
        ev.kind.value,
        ev.start,
        ev.end,
        json.dumps(ev.signals, separators=(",", ":"), sort_keys=True, default=str),
        json.dumps(ev.evidence.to_json(), separators=(",", ":"), sort_keys=True, default=str),
    )


def _from_row(r: tuple[Any, ...]) -> EventRecord:
    """The event of a stored row (or spool line); CorruptRow says what is wrong with it. A
    query's row has the annotations last (a spool line has none): unreadable ones are left
    out, the event is kept."""
    id_, entity, kind, start, end, signals, evidence, *rest = r
    if not isinstance(id_, str) or not id_:
        raise CorruptRow(f"id: {id_!r}")
    if not isinstance(entity, str):
        raise CorruptRow(f"entity: {entity!r}")
    try:
        k = EventKind(kind)
    except ValueError:
        raise CorruptRow(f"kind: unknown {kind!r}") from None
    return EventRecord(
        id_,
        entity,
        k,
        _stored_time("start", start),
        None if end is None else _stored_time("end", end),
        _stored_json("signals", signals),
        Evidence.from_json(_stored_json("evidence", evidence)),
        stored_annotations(rest[0]) if rest else None,
    )


def _stored_time(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CorruptRow(f"{name}: not a number: {value!r}")
    if not (math.isfinite(value) and 0 <= value <= MAX_TIME):
        raise CorruptRow(f"{name}: out of range: {value!r}")
    return float(value)


# NaN/Infinity (which json.dumps writes) would make the API's JSON invalid: read as null.
_DECODER = json.JSONDecoder(parse_constant=lambda _: None)


def _stored_json(name: str, text: object) -> JSON:
    if not isinstance(text, str):
        raise CorruptRow(f"{name}: not JSON text")
    try:
        value = _DECODER.decode(text)
    except ValueError:
        raise CorruptRow(f"{name}: not JSON") from None
    if not isinstance(value, dict):
        raise CorruptRow(f"{name}: not a JSON object")
    return value
