"""The durable outage log: SQLite in WAL mode at `<state_dir>/events.sqlite3`.

- One row per event, written whole (`save` is an upsert): the detector's `EventOpened`,
  `EventUpdated` and `EventClosed` all carry the complete event, so a later write never needs
  an earlier one to have succeeded, and a retry is idempotent.
- Every accepted change is committed at once (WAL, `synchronous=NORMAL`): a committed event
  survives `kill -9` of the daemon (only a power cut can lose the last commits).
- A full, read-only or failing disk never raises to the caller: the event is kept in memory
  (latest version per id), `healthy` turns False with `last_error` set, and every later write
  (or `flush()`, which the daemon calls on each tick) retries; queries include the pending
  events, so the API keeps showing them. An accepted event is never dropped.
- Writes are small (one row, one commit, no fsync with WAL + NORMAL): calling them on the event
  loop is fine. The connection allows use from another thread, one at a time, if the daemon
  prefers an executor.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

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

FILENAME = "events.sqlite3"
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    entity TEXT NOT NULL,
    kind TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL,
    signals TEXT NOT NULL,
    evidence TEXT NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_start ON events (start);
CREATE INDEX IF NOT EXISTS events_open ON events ("end") WHERE "end" IS NULL;
"""
_COLUMNS = 'id, entity, kind, start, "end", signals, evidence'
CSV_FIELDS = ("id", "entity", "kind", "start", "end", "duration_seconds", "signals", "evidence")

TimeArg = str | float | datetime | None


class EventStore:
    """The event log. `readonly=True` (the `outages` command) never creates or writes."""

    def __init__(self, state_dir: str | os.PathLike[str], readonly: bool = False) -> None:
        self.path = Path(state_dir) / FILENAME
        self.readonly = readonly
        self.healthy = True
        self.last_error: str | None = None
        self._conn: sqlite3.Connection | None = None
        self._pending: dict[str, EventRecord] = {}
        if not readonly:
            self._connect()

    def _connect_readonly(self) -> None:
        if self._conn is not None or not self.path.exists():
            return
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        try:
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        except sqlite3.Error as e:
            raise ValueError(f"cannot read {self.path}: {e}") from None

    # --- connection --------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=2000")
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version < SCHEMA_VERSION:
                    conn.executescript(_SCHEMA)
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            except BaseException:
                conn.close()
                raise
        except (sqlite3.Error, OSError) as e:
            self._fail(e)
            return None
        self._conn = conn
        return conn

    def _fail(self, e: BaseException) -> None:
        self.healthy = False
        self.last_error = f"{type(e).__name__}: {e}"
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.rollback()
            # After an I/O error the connection may be unusable: start afresh on the retry.
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

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
        rows = [_row(ev) for ev in self._pending.values()]
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                f"INSERT INTO events ({_COLUMNS}, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET entity=excluded.entity, kind=excluded.kind, "
                'start=excluded.start, "end"=excluded."end", signals=excluded.signals, '
                "evidence=excluded.evidence, updated=excluded.updated",
                [(*r, time.time()) for r in rows],
            )
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            self._fail(e)
            return False
        self._pending.clear()
        self.healthy = True
        self.last_error = None
        return True

    @property
    def pending(self) -> int:
        """Events accepted but not yet on disk."""
        return len(self._pending)

    # --- reading -----------------------------------------------------------------------------

    def _rows(self, where: str = "", args: tuple[Any, ...] = ()) -> list[EventRecord]:
        out: dict[str, EventRecord] = {}
        sql = f"SELECT {_COLUMNS} FROM events {where} ORDER BY start, id"
        if self.readonly:
            self._connect_readonly()
            if self._conn is not None:
                try:
                    rows = self._conn.execute(sql, args).fetchall()
                except sqlite3.Error as e:
                    raise ValueError(f"cannot read {self.path}: {e}") from None
                out.update((ev.id, ev) for ev in map(_from_row, rows))
            return list(out.values())
        conn = self._connect()
        try:
            if conn is not None:
                rows = conn.execute(sql, args).fetchall()
            else:  # cannot write (full or read-only disk): read what is there
                rows = self._read_only(sql, args)
            out.update((ev.id, ev) for ev in map(_from_row, rows))
        except sqlite3.Error as e:
            self._fail(e)
        out.update(self._pending)  # the newest version of what is not yet on disk
        return list(out.values())

    def _read_only(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        if not self.path.exists():
            return []
        base = self.path.resolve().as_uri()
        # On a read-only file system a WAL database cannot get its shared-memory file: read it
        # as immutable then (nothing can write it meanwhile).
        for query in ("mode=ro", "immutable=1"):
            try:
                conn = sqlite3.connect(f"{base}?{query}", uri=True)
                try:
                    return conn.execute(sql, args).fetchall()
                finally:
                    conn.close()
            except sqlite3.Error:
                continue
        return []

    def open_events(self) -> list[EventRecord]:
        """Events left open (end NULL): hand them to `Detector.resume` at start."""
        return sorted((e for e in self._rows() if e.end is None), key=lambda e: e.start)

    def get(self, event_id: str) -> EventRecord | None:
        return next((e for e in self._rows("WHERE id = ?", (event_id,)) if e.id == event_id), None)

    def records(
        self, since: TimeArg = None, until: TimeArg = None, entity: str | None = None
    ) -> list[EventRecord]:
        """Events overlapping [since, until] (open events run to now), oldest first."""
        lo = None if since is None or since == "" else _time("since", since)
        hi = None if until is None or until == "" else _time("until", until)
        if lo is not None and hi is not None and hi < lo:
            raise ValueError("until: before since")
        out = []
        for ev in self._rows():
            if entity and ev.entity != entity:
                continue
            if hi is not None and ev.start > hi:
                continue
            if lo is not None and ev.end is not None and ev.end < lo:
                continue
            out.append(ev)
        return sorted(out, key=lambda e: (e.start, e.id))

    def query(
        self,
        since: TimeArg = None,
        until: TimeArg = None,
        entity: str | None = None,
        now: float | None = None,
    ) -> list[JSON]:
        """The `/api/v1/outages` list: {"id","entity","kind","start","end","duration_seconds",
        "signals","evidence"}, UTC ISO 8601 times; an open event's duration runs to `now`."""
        t = time.time() if now is None else now
        return [ev.to_api(t) for ev in self.records(since, until, entity)]


# --- rendering -----------------------------------------------------------------------------


def render_json(events: list[JSON]) -> str:
    return json.dumps(events, indent=2) + "\n"


def render_csv(events: list[JSON]) -> str:
    """One row per event; signals and evidence as JSON text in their cells."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for ev in events:
        row = []
        for f in CSV_FIELDS:
            v = ev.get(f)
            if isinstance(v, dict | list):
                v = json.dumps(v, separators=(",", ":"), sort_keys=True)
            row.append("" if v is None else v)
        w.writerow(row)
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


# --- rows ----------------------------------------------------------------------------------


def _time(name: str, value: str | float | datetime) -> float:
    try:
        return parse_time(value)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def _row(ev: EventRecord) -> tuple[str, str, str, float, float | None, str, str]:
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
    id_, entity, kind, start, end, signals, evidence = r
    sig = _json(signals)
    try:
        k = EventKind(kind)
    except ValueError:  # written by a newer version: keep the row readable, say so
        k = EventKind.BLACKOUT
        sig = dict(sig, stored_kind=str(kind))
    return EventRecord(
        str(id_),
        str(entity),
        k,
        float(start),
        None if end is None else float(end),
        sig,
        Evidence.from_json(_json(evidence)),
    )


def _json(text: object) -> JSON:
    try:
        value = json.loads(str(text))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
