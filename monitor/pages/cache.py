"""Reading the history for the pages, in short pieces and once.

Why: the pages run in a worker thread, but a thread busy in Python holds the GIL, and the
event loop then waits for it at each of its wake-ups: a status page that read 3,500 points
(30 days of history, three entities) stalled /healthz by 80 ms (bench/bench_pages.py). So:

- a chart asks for no more points than it has pixels (`pick_step`: the finest tier that
  covers the range in at most `width` points, and that still holds its start);
- the points are read in pieces of `CHUNK_POINTS`, with a short sleep between (`breathe`:
  a sleep hands the GIL to a waiting loop; `sleep(0)` need not);
- each entity's points are kept, as small `Sample`s, once they are final (`Reader`): a
  point followed by a later one will not change (the history writes in time order), so a
  refresh reads only from the newest point on, a handful of rows instead of a week's;
- a drawn timeline is kept with everything it was drawn from (`StripCache`): a refresh with
  no new point and no change in the current point draws nothing.

Thread-safe: the pages' requests run in the default executor's threads.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.pages.chart import Sample, sample
from monitor.pages.model import History, Point

CHUNK_POINTS = 240  # points per history read: each read holds the GIL ~10 ms at most
BREATHE = 0.001  # seconds slept between pieces of work
# Samples kept in all (about 0.5 KB each: ~30 MB at most), least recently used dropped first;
# a status page keeps a week per entity (1,008 10-minute samples), an event page its chart's.
KEPT_SAMPLES = 60_000
MAX_SPAN = 5_000  # samples in one span: more is not kept (read again next time)
STRIPS = 256  # drawn timelines kept (the latest of each: two per entity)


def breathe() -> None:
    """Let the event loop have the GIL: a real sleep, however short, hands it over."""
    time.sleep(BREATHE)


def pick_step(history: History, since: float, until: float, width: float, now: float) -> int | None:
    """The step to read [since, until] at for a chart `width` pixels wide: the finest tier that
    holds `since` (its retention) and covers the range in at most `width` points; the coarsest
    when none does. None when the store does not say its tiers (it then picks)."""
    tiers: Any = getattr(history, "tiers", None)
    if not tiers:
        return None
    try:
        pairs = [(int(t.step), float(t.retention)) for t in tiers]
    except (AttributeError, TypeError, ValueError):
        return None
    for step, keep in pairs:
        if since >= now - keep and (until - since) / step <= width:
            return step
    return pairs[-1][0]


def fetch(
    history: History, entity: str, since: float, until: float, step: int | None
) -> tuple[list[Sample], Point | None]:
    """The samples of [since, until] (oldest first; the first may begin up to a step before
    `since`) and the newest point as read, in pieces of CHUNK_POINTS with a breath between."""
    if step is None:
        pts: Sequence[Any] = history.query(entity, since, until)
        return [sample(p) for p in pts], (pts[-1] if pts else None)
    out: list[Sample] = []
    last: Point | None = None
    a = since
    while True:
        b = min(until, a + CHUNK_POINTS * step)
        newest = out[-1].t if out else -math.inf
        for p in history.query(entity, a, b, step):
            if p.t > newest:  # a piece's first point can be the previous piece's last
                out.append(sample(p))
                last = p
        if b >= until:
            return out, last
        a = b
        breathe()


@dataclass(frozen=True, slots=True)
class _Span:
    history: object  # the store read (a reload may bring another)
    since: float  # the range asked last
    done: tuple[Sample, ...]  # final samples, oldest first
    fin: float  # where the next read starts: the first sample not known final


class Reader:
    """Samples per (purpose, entity, step): final ones kept, the rest read each time."""

    def __init__(self, budget: int = KEPT_SAMPLES) -> None:
        self._spans: OrderedDict[Hashable, _Span] = OrderedDict()
        self._budget = budget
        self._kept = 0  # samples in self._spans
        self._lock = threading.Lock()
        self.rows_read = 0  # samples read from the history (for the tests and the bench)

    def samples(
        self,
        history: History,
        purpose: str,
        entity: str,
        since: float,
        until: float,
        step: int | None,
    ) -> tuple[list[Sample], Point | None]:
        """The samples of [since, until] as `fetch` gives them, and the newest point read
        (None when nothing new was read)."""
        if step is None:  # the store picks the step per range: nothing comparable to keep
            got, last = fetch(history, entity, since, until, None)
            self.rows_read += len(got)
            return got, last
        key = (purpose, entity, step)
        with self._lock:
            span = self._spans.get(key)
        if span is not None and (
            span.history is not history or until < span.since or since > span.fin + step
        ):
            span = None  # another store, or a range apart from the one kept: read it whole
        head: list[Sample] = []
        if span is None:
            tail, last = fetch(history, entity, since, until, step)
            done: list[Sample] = []
            fin = since
        else:
            done = list(span.done)
            fin = span.fin
            if since < span.since:  # the range grew back in time: read what is missing
                first = done[0].t if done else fin
                got, _ = fetch(history, entity, since, span.since, step)
                head = [s for s in got if s.t < first]
            tail, last = [], None
            if until >= fin:
                tail, last = fetch(history, entity, fin, until, step)
                tail = [s for s in tail if s.t >= fin]
        self.rows_read += len(head) + len(tail)
        # Every sample read but the newest is final: a later one exists.
        known = head + done + tail[:-1]
        if tail:
            fin = tail[-1].t
        lo = since - step
        known = [s for s in known if s.t > lo]
        if len(known) <= MAX_SPAN:
            with self._lock:
                old = self._spans.pop(key, None)
                self._kept -= len(old.done) if old is not None else 0
                self._spans[key] = _Span(history, since, tuple(known), fin)
                self._kept += len(known)
                while self._kept > self._budget:
                    self._kept -= len(self._spans.popitem(last=False)[1].done)
        out = [s for s in known + tail[-1:] if lo < s.t <= until]
        return out, last


class StripCache:
    """The latest drawing of each timeline (`slot`), with everything it was drawn from (`key`,
    the samples included): a refresh whose newest point has not changed finds it."""

    def __init__(self, size: int = STRIPS) -> None:
        self._kept: OrderedDict[Hashable, tuple[Hashable, str]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()
        self.drawn = 0  # timelines drawn (not found)

    def get(self, slot: Hashable, key: Hashable, draw: Callable[[], str]) -> str:
        with self._lock:
            got = self._kept.get(slot)
            if got is not None and got[0] == key:
                self._kept.move_to_end(slot)
                return got[1]
        svg = draw()
        with self._lock:
            self.drawn += 1
            self._kept[slot] = (key, svg)
            self._kept.move_to_end(slot)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return svg
