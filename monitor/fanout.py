"""One fan-out of what the detector decides to the consumers that act on it.

The detector returns typed `Change`s; each consumer (metrics, the event log, the log lines,
the path tracer, the routing annotator, and later history and notifications) subscribes to the
change types it needs, and the daemon only wires them: a new consumer is a new module and one
`subscribe` line, not a new branch in a hub.

- Changes are delivered in order. A consumer may publish more changes while handling one (the
  tracer annotating an event): they are queued behind the ones being delivered, so every
  consumer sees every change in the same order.
- A consumer that raises is contained: the error is logged (with its traceback the first
  time for that consumer), counted per consumer, and the other consumers still get the change.
  A broken consumer must not stop detection or the event log.
"""

from __future__ import annotations

import collections
import typing
from collections.abc import Callable, Iterable

import structlog

from monitor.detect.model import Change

log = structlog.get_logger("monitor.fanout")

Handler = Callable[[Change], None]


class FanOut:
    def __init__(self, on_error: Callable[[str], None] | None = None) -> None:
        self._subs: dict[type, list[tuple[str, Handler]]] = {}
        self._queue: collections.deque[Change] = collections.deque()
        self._delivering = False
        self._failed: set[str] = set()  # consumers whose first failure was logged in full
        self._on_error = on_error

    def subscribe(self, name: str, handler: Handler, *types: type) -> None:
        """Deliver changes of `types` (all of them when none is given) to `handler`."""
        for t in types or typing.get_args(Change):
            self._subs.setdefault(t, []).append((name, handler))

    def publish(self, changes: Iterable[Change]) -> None:
        self._queue.extend(changes)
        if self._delivering or not self._queue:
            return
        self._delivering = True
        try:
            while self._queue:
                c = self._queue.popleft()
                for name, handler in self._subs.get(type(c), ()):
                    try:
                        handler(c)
                    except Exception as e:
                        self._contain(name, c, e)
        finally:
            self._delivering = False

    def _contain(self, name: str, c: Change, e: Exception) -> None:
        first = name not in self._failed
        self._failed.add(name)
        log.error(
            "change consumer failed",
            consumer=name,
            change=type(c).__name__,
            error=f"{type(e).__name__}: {e}",
            exc_info=e if first else None,
        )
        if self._on_error is not None:
            self._on_error(name)
