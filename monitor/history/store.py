"""The history database: SQLite in WAL mode at `<state_dir>/history.db`.

Tiers: points of the finest step (10 s by default) are written as the daemon closes each step;
the coarser tiers (6x and 60x: 1 min and 10 min) are made by the writer from the finer points
of each bucket once the bucket is over (`sampler.downsample`: the worst of each field). Each
tier keeps its points for its own retention (`history.retention`); older ones are deleted in
bounded chunks. A range of a coarse tier whose buckets are not yet aggregated (the current
10 minutes) is completed from the finer tier at read time.

Writing never happens on the event loop: `add()` hands a batch to one writer thread through a
bounded queue (never blocks; a full queue drops the batch and counts it). The writer commits
each batch in one transaction (WAL, `synchronous=NORMAL`: a committed point survives kill -9;
only a power cut can lose the last commits). A full, read-only or failing disk drops the batch,
counts its points (`dropped["disk"]`), logs once until writes succeed again, and never raises:
the daemon keeps probing.

Reading runs in reader threads, each with its own read-only connection (`query`, from any
thread; `render_async` from the loop). A row that cannot be read is skipped, logged once and
counted (`corrupt_rows`). The API's body (`render`) is made from the rows without building
points (each layout a JSON template; a row that is not plainly the writer's is decided by
the validated path), in short pieces with a sleep between: a reader never holds the GIL for
long (bench/bench_history.py). A database written by a newer schema is refused
(`SchemaError`), never written.

Rows: `series` names each entity once; `layouts` holds the key lists of a point (kinds, blocks,
prefixes), which change only with the configuration; a point's row is its values as a compact
JSON array in that layout's order, keyed by (series, step, t) in a WITHOUT ROWID table (the
primary key is the only index). See `monitor/history/__init__.py` for the sizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from monitor import pools, sqlitefile
from monitor.detect.model import State
from monitor.detect.times import iso
from monitor.history.point import HistoryPoint
from monitor.history.sampler import bucket, choose_step, downsample, regroup

log = structlog.get_logger("monitor.history")

FILENAME = "history.db"
SCHEMA_VERSION = 1
READERS = 2
QUEUE_BATCHES = 360  # an hour of 10 s steps waiting for a stuck disk, then batches are dropped
MAX_POINTS = 2000  # an automatic step answers a range in at most this many points
# The most points one answer may hold. Reading and encoding them runs in a reader thread, but
# a thread busy in Python makes the loop wait for the GIL at each of its wake-ups, for as long
# as the answer takes (17,000 points: ~2 s; bench/bench_history.py): each answer's work is
# bounded. Longer ranges: a coarser step, or several requests.
MAX_ASKED_POINTS = 5000
PRUNE_EVERY = 60.0  # seconds between retention passes
PRUNE_CHUNK = 5000  # points deleted per statement (one transaction each)
# Serving: the answer is read and encoded in pieces of this many points with a real sleep
# between (a sleep hands the GIL to the waiting loop; `sleep(0)` need not): a reader thread
# never holds the GIL for long, and a piece's few objects die young (no full collections).
API_CHUNK = 100
BREATHE = 0.001

T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, entity TEXT NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS layouts (id INTEGER PRIMARY KEY, keys TEXT NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS points (series INTEGER NOT NULL, step INTEGER NOT NULL, "
    "t INTEGER NOT NULL, layout INTEGER NOT NULL, data TEXT NOT NULL, "
    "PRIMARY KEY (series, step, t)) WITHOUT ROWID",
)
_INSERT = "INSERT OR REPLACE INTO points (series, step, t, layout, data) VALUES (?, ?, ?, ?, ?)"


class HistoryError(Exception):
    """The history cannot be used (unreadable, refused)."""


class SchemaError(HistoryError, sqlitefile.NewerSchema):
    """The database was written by a newer version: refused, never written."""


@dataclass(frozen=True, slots=True)
class Tier:
    step: int  # seconds
    retention: float  # seconds


# --- the row codec ------------------------------------------------------------------------


def _layout(p: HistoryPoint) -> str:
    keys = [list(p.targets), list(p.up), list(p.answered), list(p.blocks), list(p.bgp)]
    return json.dumps(keys, separators=(",", ":"))


def _values(p: HistoryPoint) -> str:
    rtt = None if p.rtt_median is None else round(p.rtt_median, 6)
    loss = None if p.loss is None else round(p.loss, 6)
    vals = [
        p.state.value,
        loss,
        rtt,
        1 if p.vantage_healthy else 0,
        list(p.targets.values()),
        list(p.up.values()),
        list(p.answered.values()),
        list(p.blocks.values()),
        list(p.bgp.values()),
    ]
    return json.dumps(vals, separators=(",", ":"))


_DECODER = json.JSONDecoder(parse_constant=lambda _: None)


def _point(entity: str, step: int, t: object, keys: list[list[str]], data: object) -> HistoryPoint:
    """A stored row as a point; ValueError says what is wrong with it."""
    if not isinstance(data, str):
        raise ValueError("data: not text")
    vals = _DECODER.decode(data)
    if not isinstance(vals, list) or len(vals) != 9:
        raise ValueError("data: not a point's values")
    state, loss, rtt, vh, *maps = vals
    doc: dict[str, Any] = {
        "entity": entity,
        "t": t,
        "step": step,
        "state": state,
        "loss": loss,
        "rtt_median": rtt,
        "vantage_healthy": vh == 1,
    }
    if vh not in (0, 1):
        raise ValueError(f"vantage_healthy: {vh!r}")
    for name, k, v in zip(("targets", "up", "answered", "blocks", "bgp"), keys, maps, strict=True):
        if not isinstance(v, list) or len(v) != len(k):
            raise ValueError(f"{name}: does not match its layout")
        doc[name] = dict(zip(k, v, strict=True))
    return HistoryPoint.from_json(doc)


def _keys(text: object) -> list[list[str]]:
    keys = json.loads(text) if isinstance(text, str) else None
    if not isinstance(keys, list) or len(keys) != 5 or not all(isinstance(k, list) for k in keys):
        raise ValueError("layout: not five key lists")
    return keys


_STATES = frozenset(s.value for s in State)
_END_OF_TIME = 253_402_300_800  # 10000-01-01: `iso` cannot name it


def _template(keys: list[list[str]]) -> str | None:
    """The `%` template of the API's JSON of a point (`HistoryPoint.to_api`, compact) of this
    layout, the values left as `%s` (a float's str is its repr, as json writes it); None when
    the keys are not the writer's (a key not a string, or twice in a list: the dict would
    keep one), and the validated path serves the layout's rows."""
    if not all(type(k) is str for ks in keys for k in ks) or any(
        len(set(ks)) != len(ks) for ks in keys
    ):
        return None

    def obj(ks: list[str]) -> str:
        return "{" + ",".join(json.dumps(k).replace("%", "%%") + ":%s" for k in ks) + "}"

    targets, up, answered, blocks, bgp = map(obj, keys)
    return (
        f'{{"t":"%s","state":"%s","targets":{targets},"up":{up},"answered":{answered},'
        f'"loss":%s,"rtt_median":%s,"blocks":{blocks},"bgp":{bgp},"vantage_healthy":%s}}'
    )


@functools.lru_cache(maxsize=64)
def _day(d: int) -> str:
    return iso(d * 86_400)[: -len("T00:00:00Z")]


def _iso_seconds(t: int) -> str:
    """`iso(t)` for whole seconds, without a datetime per point (the day's part is kept)."""
    d, s = divmod(t, 86_400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{_day(d)}T{h:02d}:{m:02d}:{s:02d}Z"


def _api_json(t: object, keys: list[list[str]], template: str, data: object) -> str | None:
    """The API's JSON of a stored row (as `json.dumps(_point(...).to_api())`), straight from
    its values with its layout's `_template`: no validated point, no dicts, no encoder. None
    unless the row is exactly what the writer writes (counts ints, ratios and seconds floats,
    all in range: `from_json`'s checks reduced to the writer's shapes); `_point` then decides,
    serving the row the same or refusing it."""
    if type(t) is not int or not 0 <= t < _END_OF_TIME or type(data) is not str:
        return None
    try:
        vals = _DECODER.decode(data)
    except ValueError:
        return None
    if type(vals) is not list or len(vals) != 9:
        return None
    state, loss, rtt, vh, *maps = vals
    if type(state) is not str or state not in _STATES or type(vh) is not int or vh not in (0, 1):
        return None
    if loss is None:
        loss = "null"
    elif type(loss) is not float or not 0.0 <= loss <= 1.0:
        return None
    if rtt is None:
        rtt = "null"
    elif type(rtt) is not float or not 0.0 <= rtt < math.inf:
        return None
    for i, (k, v) in enumerate(zip(keys, maps, strict=True)):
        if type(v) is not list or len(v) != len(k):
            return None
        if i < 3:  # counts
            for n in v:
                if type(n) is not int or n < 0:
                    return None
        else:  # ratios
            for r in v:
                if type(r) is not float or not 0.0 <= r <= 1.0:
                    return None
    targets, up, answered, blocks, bgp = maps
    return template % (
        _iso_seconds(t),
        state,
        *targets,
        *up,
        *answered,
        loss,
        rtt,
        *blocks,
        *bgp,
        "true" if vh else "false",
    )


def _layout_of(
    conn: sqlite3.Connection, lid: object, cache: dict[object, tuple[list[list[str]], str | None]]
) -> tuple[list[list[str]], str | None]:
    """A layout's keys and its `_template`, read once per query; ValueError when it is
    missing or not a layout."""
    got = cache.get(lid)
    if got is None:
        row = conn.execute("SELECT keys FROM layouts WHERE id = ?", (lid,)).fetchone()
        if row is None:
            raise ValueError(f"layout {lid!r}: missing")
        keys = _keys(row[0])
        got = cache[lid] = (keys, _template(keys))
    return got


# --- connections ---------------------------------------------------------------------------


def _newer(path: Path) -> Callable[[int], SchemaError]:
    def refuse(version: int) -> SchemaError:
        return SchemaError(
            f"{path}: written by a newer dprk-monitor (history schema {version}, this version "
            f"reads up to {SCHEMA_VERSION}); refusing to use it: upgrade dprk-monitor, or "
            "move the file away"
        )

    return refuse


def _create(conn: sqlite3.Connection, version: int) -> None:
    for stmt in _SCHEMA:
        conn.execute(stmt)


def _open_writer(path: Path) -> sqlite3.Connection:
    return sqlitefile.open_writer(path, SCHEMA_VERSION, _newer(path), _create)


def _open_reader(path: Path) -> sqlite3.Connection | None:
    if not path.exists():
        return None
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    try:
        sqlitefile.configure(conn)
        if sqlitefile.refuse_newer(conn, SCHEMA_VERSION, _newer(path)) < SCHEMA_VERSION:
            # created, never written
            conn.close()
            return None
    except BaseException:
        conn.close()
        raise
    return conn


# --- the store -----------------------------------------------------------------------------

_STOP = object()


class HistoryStore:
    """The history of every entity. `add` from the loop (never blocks), `query` from any
    thread, `render_async` from the loop. Raises SchemaError for a newer database, and
    HistoryError (or sqlite3/OS errors) when it cannot be opened at all."""

    def __init__(
        self,
        state_dir: str | Path,
        tiers: Sequence[Tier],
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not tiers:
            raise ValueError("at least one tier")
        self.path = Path(state_dir) / FILENAME
        self.tiers = tuple(tiers)
        self.steps = tuple(t.step for t in tiers)
        self.clock = clock
        self.written = 0
        self.dropped: dict[str, int] = {}
        self.healthy = True
        self.failure_spells = 0  # times the store turned unwritable (one error line each)
        self.last_error: str | None = None
        self._corrupt_seen: set[tuple[int, int, int]] = set()
        self._corrupt_lock = threading.Lock()
        self._conn: sqlite3.Connection | None = _open_writer(self.path)
        self._series: dict[str, int] = {}
        self._layouts: dict[str, int] = {}
        # (entity, tier index >= 1) -> (bucket start, the finer points of it so far)
        self._acc: dict[tuple[str, int], tuple[int, list[HistoryPoint]]] = {}
        self._queue: queue.Queue[object] = queue.Queue(QUEUE_BATCHES)
        self._idle = threading.Condition()
        self._busy = 0  # batches taken but not yet written
        self._last_prune = -math.inf
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._thread = threading.Thread(target=self._writer, name="history-writer", daemon=True)
        self._thread.start()

    # --- writing (the writer thread) ---------------------------------------------------------

    def add(self, points: Sequence[HistoryPoint]) -> None:
        """Queue points of the finest tier for writing; never blocks, never raises."""
        if not points:
            return
        try:
            with self._idle:
                self._busy += 1
            self._queue.put_nowait(list(points))
        except queue.Full:
            with self._idle:
                self._busy -= 1
            self._drop("queue", len(points), "history writer queue full: points dropped")

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued point is written (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def _writer(self) -> None:
        try:
            self._restore()
        except (sqlite3.Error, OSError, ValueError) as e:
            self._failed(e, 0)
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batches = [item]
            while True:  # whatever else waits: one transaction
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    self._queue.put(_STOP)
                    break
                batches.append(more)
            points = [p for b in batches for p in b]  # type: ignore[attr-defined]
            try:
                self._write(points)
                self._prune()
            except Exception as e:  # a bug must not kill the writer: the points are lost
                log.exception("history writer failed", error=str(e))
                self._count("error", len(points))
            finally:
                with self._idle:
                    self._busy -= len(batches)
                    self._idle.notify_all()

    def _write(self, points: list[HistoryPoint]) -> None:
        conn = self._writer_conn()
        if conn is None:
            self._count("disk", len(points))
            return
        rows: list[tuple[int, int, int, int, str]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for p in points:
                rows.append(self._row(conn, p))
                rows += [self._row(conn, q) for q in self._aggregate(p)]
            conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as e:
            self._failed(e, len(points))
            return
        self.written += len(points)
        if not self.healthy:
            log.warning("history writes resumed", path=str(self.path), dropped=self.dropped)
        self.healthy, self.last_error = True, None

    def _aggregate(self, p: HistoryPoint) -> list[HistoryPoint]:
        """The coarser points that the finest point `p` completes, each fed to the tier above.
        Points come in time order, so a bucket is over once `p` is at or past its end (after
        a gap too: a restart does not leave the last buckets open until the next one fills)."""
        out: list[HistoryPoint] = []
        feed = [p]
        for i in range(1, len(self.tiers)):
            step, key = self.steps[i], (p.entity, i)
            done: list[HistoryPoint] = []
            for q in feed:
                b = bucket(q.t, step)
                cur = self._acc.get(key)
                if cur is not None and cur[0] > b:
                    continue  # a bucket already done (the clock went back): finest tier only
                if cur is not None and cur[0] < b:
                    done.append(downsample(cur[1], cur[0], step))
                    cur = None
                if cur is None:
                    self._acc[key] = (b, [q])
                else:
                    cur[1].append(q)
            cur = self._acc.get(key)
            if cur is not None and p.t >= cur[0] + step:
                done.append(downsample(cur[1], cur[0], step))
                del self._acc[key]
            out += done
            feed = done
        return out

    def _row(self, conn: sqlite3.Connection, p: HistoryPoint) -> tuple[int, int, int, int, str]:
        sid = self._series.get(p.entity)
        if sid is None:
            conn.execute("INSERT OR IGNORE INTO series (entity) VALUES (?)", (p.entity,))
            sid = conn.execute("SELECT id FROM series WHERE entity = ?", (p.entity,)).fetchone()[0]
            self._series[p.entity] = sid
        keys = _layout(p)
        lid = self._layouts.get(keys)
        if lid is None:
            conn.execute("INSERT OR IGNORE INTO layouts (keys) VALUES (?)", (keys,))
            lid = conn.execute("SELECT id FROM layouts WHERE keys = ?", (keys,)).fetchone()[0]
            self._layouts[keys] = lid
        return (sid, p.step, int(p.t), lid, _values(p))

    def _writer_conn(self) -> sqlite3.Connection | None:
        if self._conn is None:
            try:
                self._conn = _open_writer(self.path)
            except (sqlite3.Error, OSError, SchemaError) as e:
                self.last_error = f"{type(e).__name__}: {e}"
                return None
        return self._conn

    def _failed(self, e: BaseException, n: int) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        # Ids handed out inside the rolled-back transaction are gone: ask again.
        self._series.clear()
        self._layouts.clear()
        if self.healthy:
            self.failure_spells += 1
            log.error(
                "history not writable: points are dropped (probing goes on) until it is",
                path=str(self.path),
                error=f"{type(e).__name__}: {e}",
            )
        self.healthy = False
        self.last_error = f"{type(e).__name__}: {e}"
        self._count("disk", n)

    def _count(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def _drop(self, reason: str, n: int, message: str) -> None:
        first = reason not in self.dropped
        self._count(reason, n)
        if first:
            log.error(message, path=str(self.path), points=n)

    def _restore(self) -> None:
        """Rebuild the coarser tiers' open buckets from the finer points stored after their
        last point (and aggregate whole buckets missed while the daemon was stopped)."""
        conn = self._writer_conn()
        if conn is None or len(self.tiers) < 2:
            return
        for sid, entity in conn.execute("SELECT id, entity FROM series").fetchall():
            for i in range(1, len(self.tiers)):
                step, finer = self.steps[i], self.steps[i - 1]
                last = conn.execute(
                    "SELECT max(t) FROM points WHERE series = ? AND step = ?", (sid, step)
                ).fetchone()[0]
                lo = 0 if last is None else int(last) + step
                pts = self._decode_rows(conn, sid, entity, finer, lo, None)
                groups = regroup(pts, step)
                if not pts:
                    continue
                # Every bucket but the latest is over: write it; the latest stays open.
                done = groups[:-1]
                b = bucket(pts[-1].t, step)
                self._acc[(entity, i)] = (b, [p for p in pts if bucket(p.t, step) == b])
                if done:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(_INSERT, [self._row(conn, q) for q in done])
                    conn.execute("COMMIT")

    def _prune(self) -> None:
        now = self.clock()
        if now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        conn = self._writer_conn()
        if conn is None:
            return
        sids = [r[0] for r in conn.execute("SELECT id FROM series").fetchall()]
        for tier in self.tiers:
            cutoff = int(now - tier.retention)
            for sid in sids:
                while True:
                    oldest = conn.execute(
                        "SELECT min(t) FROM points WHERE series = ? AND step = ?",
                        (sid, tier.step),
                    ).fetchone()[0]
                    if oldest is None or oldest >= cutoff:
                        break
                    upto = min(cutoff, int(oldest) + PRUNE_CHUNK * tier.step)
                    try:
                        conn.execute(
                            "DELETE FROM points WHERE series = ? AND step = ? AND t < ?",
                            (sid, tier.step, upto),
                        )
                    except (sqlite3.Error, OSError) as e:
                        self._failed(e, 0)
                        return

    def close(self) -> None:
        """Write what is queued, stop the writer, close every connection."""
        self._queue.put(_STOP)
        self._thread.join(timeout=30)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for c in readers:
            with contextlib.suppress(sqlite3.Error):
                c.close()
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    # --- reading (any thread but the loop) ------------------------------------------------------

    @property
    def corrupt_rows(self) -> int:
        return len(self._corrupt_seen)

    def _corrupt(self, key: tuple[int, int, int], reason: str) -> None:
        with self._corrupt_lock:
            if key in self._corrupt_seen:
                return
            self._corrupt_seen.add(key)
        log.error(
            "history: skipping a row it cannot read",
            path=str(self.path),
            series=key[0],
            step=key[1],
            t=key[2],
            reason=reason,
        )

    def _reader(self) -> sqlite3.Connection | None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _open_reader(self.path)
            if conn is None:
                return None
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _decode_rows(
        self,
        conn: sqlite3.Connection,
        sid: int,
        entity: str,
        step: int,
        lo: int,
        hi: int | None,
    ) -> list[HistoryPoint]:
        layouts: dict[object, tuple[list[list[str]], str | None]] = {}
        out = []
        for t, lid, data in self._rows(conn, sid, step, lo, hi):
            try:
                keys = _layout_of(conn, lid, layouts)[0]
                out.append(_point(entity, step, t, keys, data))
            except (ValueError, TypeError, OverflowError) as e:
                self._corrupt((sid, step, t if isinstance(t, int) else -1), str(e))
        return out

    @staticmethod
    def _rows(
        conn: sqlite3.Connection, sid: int, step: int, lo: int, hi: int | None
    ) -> sqlite3.Cursor:
        sql = "SELECT t, layout, data FROM points WHERE series = ? AND step = ? AND t >= ?"
        args: tuple[object, ...] = (sid, step, lo)
        if hi is not None:
            sql += " AND t <= ?"
            args += (hi,)
        return conn.execute(sql + " ORDER BY t", args)

    def _read(
        self, conn: sqlite3.Connection, sid: int, entity: str, i: int, lo: int, hi: int
    ) -> list[HistoryPoint]:
        step = self.steps[i]
        pts = self._decode_rows(conn, sid, entity, step, bucket(lo, step), hi)
        if i > 0:
            tail = int(pts[-1].t) + step if pts else bucket(lo, step)
            if tail <= hi:
                pts += regroup(self._read(conn, sid, entity, i - 1, tail, hi), step)
        return pts

    def resolve_step(self, since: float, until: float, step: int | None, now: float) -> int:
        """The step a query answers with: `step` (ValueError when it is not a tier's or the
        range needs too many points), else the finest that fits (`choose_step`)."""
        if step is None:
            step = choose_step(
                self.steps, [t.retention for t in self.tiers], since, until, now, MAX_POINTS
            )
            # Nothing is kept before the coarsest tier's horizon: a range reaching further
            # back is answered from there.
            since = max(since, now - self.tiers[-1].retention)
            if (until - since) / step > MAX_ASKED_POINTS:
                raise ValueError(
                    f"since: the range needs more than {MAX_ASKED_POINTS} points even at "
                    f"{step} s; ask a shorter range"
                )
            return step
        if step not in self.steps:
            raise ValueError(f"step: must be one of {', '.join(map(str, self.steps))}")
        if (until - since) / step > MAX_ASKED_POINTS:
            raise ValueError(
                f"step: {step} s gives more than {MAX_ASKED_POINTS} points for this range; "
                "ask a coarser step or a shorter range"
            )
        return step

    def query(
        self, entity: str, since: float, until: float, step: int | None = None
    ) -> list[HistoryPoint]:
        """The points of `entity` whose step begins in [since, until] (the first one may begin
        up to a step before `since`), oldest first, at `step` (None: chosen as in
        `resolve_step`). Thread-safe: each thread reads on its own connection. Raises
        HistoryError when the database cannot be read, ValueError for a bad step."""
        return self._query(
            entity, since, until, self.resolve_step(since, until, step, self.clock())
        )

    def _query(self, entity: str, since: float, until: float, st: int) -> list[HistoryPoint]:
        try:
            conn = self._reader()
            if conn is None:
                return []
            row = conn.execute("SELECT id FROM series WHERE entity = ?", (entity,)).fetchone()
            if row is None:
                return []
            pts = self._read(conn, row[0], entity, self.steps.index(st), int(since), int(until))
        except sqlite3.Error as e:
            raise HistoryError(f"cannot read {self.path}: {e}") from None
        return [p for p in pts if since - st < p.t <= until]

    def entities(self) -> list[str]:
        """The entities that have a history."""
        try:
            conn = self._reader()
            if conn is None:
                return []
            return [r[0] for r in conn.execute("SELECT entity FROM series ORDER BY entity")]
        except sqlite3.Error as e:
            raise HistoryError(f"cannot read {self.path}: {e}") from None

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(READERS, thread_name_prefix="history-read")
        return self._executor

    def prestart_readers(self) -> int:
        """Start the reader threads and open their connections now (monitor/pools.py: why)."""

        def open_reader() -> None:
            with contextlib.suppress(sqlite3.Error, OSError):
                self._reader()

        return pools.prestart(self._pool(), READERS, open_reader)

    async def _off_loop(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool(), fn)

    async def render_async(
        self, entity: str, since: float, until: float, step: int | None, known: bool
    ) -> bytes | None:
        """The `GET /api/v1/history` body (query and JSON encoding in a reader thread); None
        when the entity is neither `known` (configured) nor has a history."""

        def work() -> bytes | None:
            if not known and entity not in self.entities():
                return None
            return self.render(
                entity, since, until, self.resolve_step(since, until, step, self.clock())
            )

        return await self._off_loop(work)

    def render(self, entity: str, since: float, until: float, st: int) -> bytes:
        """The `GET /api/v1/history` body of `query(entity, since, until, st)`: the same points
        (a corrupt row skipped and counted alike), encoded from the stored rows without
        building validated points (`_api_json`), in pieces of `API_CHUNK` points with a
        `BREATHE` between. Not on the loop. Raises HistoryError when it cannot read."""
        head = {"entity": entity, "step_seconds": st, "since": iso(since), "until": iso(until)}
        pieces: list[str] = []
        try:
            conn = self._reader()
            row = None
            if conn is not None:
                row = conn.execute("SELECT id FROM series WHERE entity = ?", (entity,)).fetchone()
            if conn is not None and row is not None:
                self._encode(conn, row[0], entity, self.steps.index(st), since, until, pieces)
        except sqlite3.Error as e:
            raise HistoryError(f"cannot read {self.path}: {e}") from None
        return (
            json.dumps(head, separators=(",", ":"))[:-1] + ',"points":[' + ",".join(pieces) + "]}"
        ).encode()

    def _encode(
        self,
        conn: sqlite3.Connection,
        sid: int,
        entity: str,
        i: int,
        since: float,
        until: float,
        pieces: list[str],
    ) -> None:
        """`_query`'s points as JSON pieces: tier `i`'s rows, then (a coarse tier) the buckets
        not yet aggregated, from the finer tier as `_read` does."""
        st, lo, hi = self.steps[i], int(since), int(until)
        layouts: dict[object, tuple[list[list[str]], str | None]] = {}
        last: float | None = None  # the last point read: the finer tier completes after it
        rows = self._rows(conn, sid, st, bucket(lo, st), hi)
        while chunk := rows.fetchmany(API_CHUNK):
            out: list[str] = []
            for t, lid, data in chunk:
                try:
                    keys, template = _layout_of(conn, lid, layouts)
                    doc = None if template is None else _api_json(t, keys, template, data)
                    if doc is None:  # not the writer's plain row: decide the validated way
                        p = _point(entity, st, t, keys, data)
                        t, doc = p.t, json.dumps(p.to_api(), separators=(",", ":"))
                except (ValueError, TypeError, OverflowError, OSError) as e:  # OSError: `iso`
                    self._corrupt((sid, st, t if isinstance(t, int) else -1), str(e))
                    continue
                last = t
                if since - st < t <= until:
                    out.append(doc)
            if out:
                pieces.append(",".join(out))
            time.sleep(BREATHE)
        if i > 0:
            tail = int(last) + st if last is not None else bucket(lo, st)
            if tail <= hi:
                finer = regroup(self._read(conn, sid, entity, i - 1, tail, hi), st)
                pieces += [
                    json.dumps(p.to_api(), separators=(",", ":"))
                    for p in finer
                    if since - st < p.t <= until
                ]
