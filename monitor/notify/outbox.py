"""The outbox: every notification is written here before it is sent, and stays until it is
delivered or given up. SQLite in WAL mode at `<state_dir>/notify.sqlite3`.

- One row per (receiver, idempotency key): adding a notification whose key the receiver
  already has (queued, sent or given up) does nothing, so a restart that re-offers what was
  already queued, or a change delivered twice, sends nothing twice.
- Committed at once (WAL, `synchronous=NORMAL`): a row survives `kill -9` of the daemon.
  A crash between the receiver's answer and `mark_sent` sends that one again at the next start
  (at least once; the key in the message lets a receiver tell).
- A full, read-only or failing disk never raises to the caller: the rows are kept in memory
  (latest state per row), still delivered from there, and written at the next `flush()` (every
  call retries); `healthy` turns False, `write_errors` counts the failed writes, and the
  failure is logged once until a write succeeds again.
- Rows delivered or given up are deleted after `KEEP` (they are what makes a key seen).
- Writes are one small transaction each, made on the daemon's event loop like the event log's.
- A row that cannot be read back is skipped, marked `corrupt` and logged once.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from monitor import sqlitefile
from monitor.notify.model import Notification

log = structlog.get_logger("monitor.notify.outbox")

FILENAME = "notify.sqlite3"
SCHEMA_VERSION = 1
KEEP = 30 * 86_400.0  # delivered / given-up rows are kept this long (their keys stay known)
PRUNE_EVERY = 3600.0

PENDING, SENT, EXPIRED, CORRUPT = "pending", "sent", "expired", "corrupt"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS outbox (
        receiver TEXT NOT NULL,
        key TEXT NOT NULL,
        doc TEXT NOT NULL,
        created REAL NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_at REAL NOT NULL,
        last_error TEXT,
        updated REAL NOT NULL,
        PRIMARY KEY (receiver, key)
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_head ON outbox (receiver, status, created, key)",
)
_UPSERT = (
    "INSERT INTO outbox (receiver, key, doc, created, status, attempts, next_at, last_error, "
    "updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (receiver, key) DO UPDATE SET "
    "status = excluded.status, attempts = excluded.attempts, next_at = excluded.next_at, "
    "last_error = excluded.last_error, updated = excluded.updated"
)
_COLS = "receiver, key, doc, created, status, attempts, next_at, last_error"


class OutboxError(RuntimeError, sqlitefile.NewerSchema):
    """The outbox cannot be used at all (written by a newer version)."""


def _create(conn: sqlite3.Connection, version: int) -> None:
    for stmt in _SCHEMA:
        conn.execute(stmt)


@dataclass(frozen=True, slots=True)
class Row:
    """A notification and its delivery state."""

    note: Notification
    status: str = PENDING
    attempts: int = 0
    next_at: float = 0.0
    last_error: str | None = None

    @property
    def id(self) -> tuple[str, str]:
        return (self.note.receiver, self.note.key)


def backoff(attempts: int, initial: float, cap: float) -> float:
    """Seconds to wait after the `attempts`-th failed attempt: initial, doubling, up to cap."""
    if attempts <= 0:
        return 0.0
    # 2**n overflows a float past ~1024 attempts: stop doubling once the cap is reached.
    delay = initial
    for _ in range(attempts - 1):
        delay *= 2
        if delay >= cap:
            return cap
    return min(delay, cap)


class Outbox:
    def __init__(self, state_dir: str | os.PathLike[str], clock: Callable[[], float] = time.time):
        self.path = Path(state_dir) / FILENAME
        self.clock = clock
        self.healthy = True
        self.last_error: str | None = None
        self.write_errors = 0
        self.corrupt_rows = 0
        self._conn: sqlite3.Connection | None = None
        # Rows whose latest state is not on disk yet (a failing disk): written at each flush.
        self._dirty: dict[tuple[str, str], Row] = {}
        self._queued: dict[str, int] = {}
        self._logged_failure = False
        self._pruned = 0.0
        self._connect()
        self._count()
        self.prune()

    # --- connection ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is not None:
            return self._conn
        try:
            self._conn = sqlitefile.open_writer(self.path, SCHEMA_VERSION, self._newer, _create)
        except (sqlite3.Error, OSError) as e:
            self._fail(e)
        return self._conn

    def _newer(self, version: int) -> OutboxError:
        return OutboxError(
            f"{self.path} was written by a newer version (schema {version}, this one knows "
            f"{SCHEMA_VERSION})"
        )

    def _fail(self, e: BaseException) -> None:
        self.healthy = False
        self.write_errors += 1
        self.last_error = f"{type(e).__name__}: {e}"
        if not self._logged_failure:
            self._logged_failure = True
            log.error(
                "notification outbox not writable: notifications kept in memory and retried",
                path=str(self.path),
                error=self.last_error,
            )
        sqlitefile.discard(self._conn)
        self._conn = None

    def close(self) -> int:
        """Flush and close; returns how many rows could not be written (lost at exit: their
        messages are re-offered for open events at the next start, see policy.resume)."""
        self.flush()
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        return len(self._dirty)

    # --- writing ------------------------------------------------------------------------------

    def flush(self) -> bool:
        """Write the rows not on disk yet, in one transaction. True when none is left."""
        if not self._dirty:
            return True
        conn = self._connect()
        if conn is None:
            return False
        now = self.clock()
        rows = [
            (
                r.note.receiver,
                r.note.key,
                json.dumps(r.note.to_json(), ensure_ascii=False),
                r.note.created,
                r.status,
                r.attempts,
                r.next_at,
                r.last_error,
                now,
            )
            for r in self._dirty.values()
        ]
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_UPSERT, rows)
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            self._fail(e)
            return False
        self._dirty.clear()
        if not self.healthy:
            log.info("notification outbox writable again", path=str(self.path))
        self.healthy = True
        self.last_error = None
        self._logged_failure = False
        return True

    def add(self, notes: Iterable[Notification]) -> list[Notification]:
        """Queue notifications; those whose (receiver, key) is known are ignored. Returns the
        ones queued. Never raises for the disk (kept in memory, see the module docstring)."""
        added = []
        for n in notes:
            rid = (n.receiver, n.key)
            if rid in self._dirty or self._stored(rid):
                continue
            self._dirty[rid] = Row(n, PENDING, 0, n.created, None)
            self._queued[n.receiver] = self._queued.get(n.receiver, 0) + 1
            added.append(n)
        if added:
            self.flush()
        return added

    def _stored(self, rid: tuple[str, str]) -> bool:
        conn = self._connect()
        if conn is None:
            return False
        try:
            row = conn.execute(
                "SELECT 1 FROM outbox WHERE receiver = ? AND key = ?", rid
            ).fetchone()
        except sqlite3.Error as e:
            self._fail(e)
            return False
        return row is not None

    def _update(self, row: Row) -> None:
        was = self._dirty.get(row.id)
        if row.status != PENDING and (was is None or was.status == PENDING):
            n = self._queued.get(row.note.receiver, 0)
            self._queued[row.note.receiver] = max(0, n - 1)
        self._dirty[row.id] = row
        self.flush()

    def mark_sent(self, row: Row) -> None:
        self._update(replace(row, status=SENT, attempts=row.attempts + 1, last_error=None))

    def mark_failed(self, row: Row, next_at: float, error: str) -> None:
        self._update(replace(row, attempts=row.attempts + 1, next_at=next_at, last_error=error))

    def mark_expired(self, row: Row, error: str | None) -> None:
        self._update(replace(row, status=EXPIRED, last_error=error))

    # --- reading ------------------------------------------------------------------------------

    def heads(self, receivers: Collection[str]) -> dict[str, Row]:
        """Each receiver's oldest pending row (memory's included): messages to one receiver
        go in the order they were made (an opened before its closed), so only the head is
        ever attempted; it is due when its `next_at` has come."""
        out: dict[str, Row] = {}
        conn = self._connect()
        for name in receivers:
            if conn is None:
                break
            try:
                raw = conn.execute(
                    f"SELECT {_COLS} FROM outbox WHERE receiver = ? AND status = ? "
                    "ORDER BY created, key LIMIT ?",
                    (name, PENDING, 1 + len(self._dirty)),
                ).fetchall()
            except sqlite3.Error as e:
                self._fail(e)
                conn = None
                break
            for r in raw:
                row = self._row(r)
                if row is None:
                    continue
                d = self._dirty.get(row.id)
                if d is not None and d.status != PENDING:
                    continue  # delivered, not yet on disk
                out[name] = d or row
                break
        for row in self._dirty.values():
            name = row.note.receiver
            if row.status != PENDING or name not in receivers:
                continue
            head = out.get(name)
            if head is None or (row.note.created, row.note.key) < (
                head.note.created,
                head.note.key,
            ):
                out[name] = row
        return out

    def _row(self, raw: tuple[object, ...]) -> Row | None:
        receiver, key, doc, _created, status, attempts, next_at, last_error = raw
        try:
            note = Notification.from_json(json.loads(str(doc)))
            if not isinstance(attempts, int) or not isinstance(next_at, int | float):
                raise ValueError("attempts or next_at is not a number")
        except (ValueError, TypeError) as e:
            self._corrupt(str(receiver), str(key), str(e))
            return None
        return Row(
            note,
            str(status),
            attempts,
            float(next_at),
            None if last_error is None else str(last_error),
        )

    def _corrupt(self, receiver: str, key: str, reason: str) -> None:
        self.corrupt_rows += 1
        log.error("notification outbox: skipping a row it cannot read", key=key, reason=reason)
        conn = self._connect()
        if conn is None:
            return
        try:
            conn.execute(
                "UPDATE outbox SET status = ? WHERE receiver = ? AND key = ?",
                (CORRUPT, receiver, key),
            )
        except sqlite3.Error as e:
            self._fail(e)

    def queued(self) -> dict[str, int]:
        """Pending rows per receiver."""
        return dict(self._queued)

    def _count(self) -> None:
        conn = self._connect()
        if conn is None:
            return
        try:
            rows = conn.execute(
                "SELECT receiver, count(*) FROM outbox WHERE status = ? GROUP BY receiver",
                (PENDING,),
            ).fetchall()
        except sqlite3.Error as e:
            self._fail(e)
            return
        self._queued = {str(r): int(n) for r, n in rows}

    def prune(self, now: float | None = None) -> None:
        """Delete delivered and given-up rows older than KEEP (at most once an hour)."""
        now = self.clock() if now is None else now
        if now - self._pruned < PRUNE_EVERY:
            return
        self._pruned = now
        conn = self._connect()
        if conn is None:
            return
        try:
            conn.execute(
                "DELETE FROM outbox WHERE status != ? AND updated < ?", (PENDING, now - KEEP)
            )
        except sqlite3.Error as e:
            self._fail(e)

    def rows(self) -> list[Row]:
        """Every row (tests and tools)."""
        conn = self._connect()
        out: dict[tuple[str, str], Row] = {}
        if conn is not None:
            for raw in conn.execute(f"SELECT {_COLS} FROM outbox ORDER BY created").fetchall():
                row = self._row(raw)
                if row is not None:
                    out[row.id] = row
        out.update(self._dirty)
        return list(out.values())
