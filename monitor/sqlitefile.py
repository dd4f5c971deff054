"""What every SQLite file of the daemon does alike (the event log, the history, the
notification outbox, the census): open a writer that never touches a file written by a newer
version, create or migrate the schema under one `PRAGMA user_version`, and drop a connection
that failed (after an I/O error it may be unusable; the store opens a fresh one on retry).

The stores differ in their schema, migrations and messages; those stay with them.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

# Another connection of the same process (a reader thread) or an `annotate`/`outages` process
# may hold the lock for a moment; writes wait this long before failing (and being retried).
BUSY_TIMEOUT_MS = 2000

# Each connection's page cache, in KiB. SQLite's default is 2 MiB per connection, and a
# connection keeps every page it touched until the cap: as the files grow over months, the
# daemon's half-dozen connections crept up by about 1 MiB an hour toward 12 MiB, and the
# long-lived pages, scattered between short-lived allocations, kept glibc's heap from shrinking
# (the soak's RSS slope). An insert or an indexed read touches a handful of hot pages per
# table and index (root, interior pages, the newest leaves); anything else comes from the OS
# page cache for a pread. At 256 KiB the writers' caches still filled for most of an hour
# (SQLite's memory +0.7 MiB from minute 5 to 45 of a soak, nine connections); 64 KiB (16
# pages) still holds the path of an insert through a table and its indexes. A reader's cache
# is dropped whenever another connection has written since its last read (WAL), so a bigger
# one gains it nothing.
CACHE_KIB = 64


def configure(conn: sqlite3.Connection) -> None:
    """What every connection of the daemon sets first, writer or reader."""
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")


class NewerSchema(ValueError):
    """The file was written by a newer version: refused, never written. Each store raises its
    own subclass (with its own wording) through `newer`."""


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def refuse_newer(conn: sqlite3.Connection, known: int, newer: Callable[[int], NewerSchema]) -> int:
    """The file's schema version; raises `newer(version)` when it is above `known`."""
    version = user_version(conn)
    if version > known:
        raise newer(version)
    return version


def open_writer(
    path: Path,
    known: int,
    newer: Callable[[int], NewerSchema],
    migrate: Callable[[sqlite3.Connection, int], None],
) -> sqlite3.Connection:
    """A writer connection in WAL mode (autocommit: the store runs its own transactions).
    The version is checked before anything writes (setting the journal mode does), so a
    newer file is left exactly as it was. `migrate(conn, version)` runs inside one
    `BEGIN IMMEDIATE` transaction when the file is below `known` (re-read under the lock:
    another process may have migrated it meanwhile) and must create or upgrade the schema;
    `user_version` is then set to `known`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        configure(conn)
        refuse_newer(conn, known, newer)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if user_version(conn) < known:
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = refuse_newer(conn, known, newer)
                if version < known:
                    migrate(conn, version)
                    conn.execute(f"PRAGMA user_version={known}")
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
    except BaseException:
        conn.close()
        raise
    return conn


def discard(conn: sqlite3.Connection | None) -> None:
    """Roll back and close a connection that failed, whatever state it is in."""
    if conn is None:
        return
    with contextlib.suppress(sqlite3.Error):
        conn.rollback()
    with contextlib.suppress(sqlite3.Error):
        conn.close()
