"""The census database: `<state_dir>/census.sqlite3`, a file of its own (not the event log).

Per entity and address that ever answered a census: when it last answered, census probes
answered and sent, and whether it is in E(b) now; per entity and block the silent-census
streak; per entity the censuses run (start, end, probes, answers, doubtful streak). Small (a
row per answering address), written once per census in one transaction, read at start: E(b)
and A(E(b)) survive restarts, and `dprk-monitor discover` and the daemon share it (WAL, busy
timeout).
"""

from __future__ import annotations

import ipaddress
import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from monitor import sqlitefile
from monitor.discovery.plan import AddressStats, BlockCensus, IPv4, IPv4Net, block_of

FILENAME = "census.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS address (
    entity TEXT NOT NULL,
    address TEXT NOT NULL,
    block TEXT NOT NULL,
    last_answer REAL,
    answers INTEGER NOT NULL,
    probes INTEGER NOT NULL,
    responsive INTEGER NOT NULL,
    PRIMARY KEY (entity, address)
);
CREATE TABLE IF NOT EXISTS block (
    entity TEXT NOT NULL,
    block TEXT NOT NULL,
    empty_streak INTEGER NOT NULL,
    census REAL NOT NULL,
    PRIMARY KEY (entity, block)
);
CREATE TABLE IF NOT EXISTS census (
    entity TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL NOT NULL,
    probes INTEGER NOT NULL,
    answered INTEGER NOT NULL,
    doubtful INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS census_entity ON census (entity, finished);
"""
# 1: PRAGMA user_version set (0: the first census databases, which had no `doubtful` column
# at first); a file above it was written by a newer version and is refused.
SCHEMA_VERSION = 1


class CensusSchemaError(sqlitefile.NewerSchema):
    """census.sqlite3 was written by a newer version: refused, never written."""


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    for stmt in _SCHEMA.split(";"):
        if stmt.strip():
            conn.execute(stmt)
    cols = {row[1] for row in conn.execute("PRAGMA table_info(census)")}
    if "doubtful" not in cols:  # a database from before the column: added, rows kept
        conn.execute("ALTER TABLE census ADD COLUMN doubtful INTEGER NOT NULL DEFAULT 0")


@dataclass(frozen=True, slots=True)
class CensusRun:
    entity: str
    started: float
    finished: float
    probes: int
    answered: int
    # Censuses in a row, this one included, that could not be trusted for some block (or an
    # entity's first census): 0 when trusted. It brings the next census forward
    # (plan.recensus_delay), also across a restart.
    doubtful: int = 0


@dataclass(frozen=True, slots=True)
class EntityCensus:
    """What is stored of an entity: its addresses per block, streaks, the latest census."""

    addresses: dict[IPv4Net, dict[IPv4, AddressStats]]
    streaks: dict[IPv4Net, int]
    last: CensusRun | None

    def responsive(self, block: IPv4Net) -> list[IPv4]:
        return sorted(a for a, s in self.addresses.get(block, {}).items() if s.responsive)


class CensusStore:
    """One SQLite connection (daemon: used from the event loop; one write per census)."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / FILENAME
        self._db = sqlitefile.open_writer(self.path, SCHEMA_VERSION, self._newer, _migrate)

    def _newer(self, version: int) -> CensusSchemaError:
        return CensusSchemaError(
            f"{self.path}: written by a newer dprk-monitor (census schema {version}, this "
            f"version reads up to {SCHEMA_VERSION}); refusing to use it: upgrade dprk-monitor, "
            "or move the file away"
        )

    def close(self) -> None:
        self._db.close()

    def load(self, entity: str) -> EntityCensus:
        addresses: dict[IPv4Net, dict[IPv4, AddressStats]] = {}
        rows = self._db.execute(
            "SELECT address, last_answer, answers, probes, responsive FROM address "
            "WHERE entity = ?",
            (entity,),
        )
        for addr_s, last, answers, probes, responsive in rows:
            try:
                addr = ipaddress.IPv4Address(addr_s)
            except ValueError:
                continue  # a row this version cannot read: skipped, the census rewrites it
            stats = AddressStats(addr, last, int(answers), int(probes), bool(responsive))
            addresses.setdefault(block_of(addr), {})[addr] = stats
        streaks: dict[IPv4Net, int] = {}
        for block_s, streak in self._db.execute(
            "SELECT block, empty_streak FROM block WHERE entity = ?", (entity,)
        ):
            try:
                streaks[ipaddress.IPv4Network(block_s)] = int(streak)
            except ValueError:
                continue
        row = self._db.execute(
            "SELECT started, finished, probes, answered, doubtful FROM census WHERE entity = ? "
            "ORDER BY finished DESC LIMIT 1",
            (entity,),
        ).fetchone()
        last = None if row is None else CensusRun(entity, *row)
        return EntityCensus(addresses, streaks, last)

    def save(
        self,
        run: CensusRun,
        blocks: Iterable[BlockCensus],
        stats: Mapping[IPv4Net, Mapping[IPv4, AddressStats]],
    ) -> None:
        """One census of an entity, in one transaction (all or nothing)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for b in blocks:
                db.execute(
                    "INSERT OR REPLACE INTO block (entity, block, empty_streak, census) "
                    "VALUES (?, ?, ?, ?)",
                    (run.entity, str(b.block), b.empty_streak, run.finished),
                )
            db.executemany(
                "INSERT OR REPLACE INTO address "
                "(entity, address, block, last_answer, answers, probes, responsive) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        run.entity,
                        str(s.address),
                        str(block),
                        s.last_answer,
                        s.answers,
                        s.probes,
                        int(s.responsive),
                    )
                    for block, by_addr in stats.items()
                    for s in by_addr.values()
                ],
            )
            db.execute(
                "INSERT INTO census (entity, started, finished, probes, answered, doubtful) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run.entity, run.started, run.finished, run.probes, run.answered, run.doubtful),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
