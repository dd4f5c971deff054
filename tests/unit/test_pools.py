"""pools.prestart: a pool starts all its threads at once, each running its init once; the event
log and the history start their reader threads with a connection each."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from monitor import pools
from monitor.events import READERS, EventStore


def _named(prefix: str) -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(prefix))


def test_prestart_starts_every_thread_of_the_pool() -> None:
    seen: list[str] = []
    pool = ThreadPoolExecutor(3, thread_name_prefix="prestart-test")
    try:
        assert _named("prestart-test") == 0  # lazily started: none yet
        assert pools.prestart(pool, 3, lambda: seen.append(threading.current_thread().name)) == 3
        assert _named("prestart-test") == 3
        assert len(set(seen)) == 3  # once in each thread
    finally:
        pool.shutdown()


def test_event_log_readers_are_started_with_their_connections(tmp_path: Path) -> None:
    store = EventStore(tmp_path)
    try:
        assert store.prestart_readers() == READERS
        assert _named("event-log-read") >= READERS
        assert len(store._readers) == READERS  # one read connection per thread, kept
    finally:
        store.close()


def test_a_failing_init_does_not_hold_the_others() -> None:
    """An init that raises still meets the others at the barrier (no wait of pools.WAIT)."""
    calls: list[int] = []
    lock = threading.Lock()

    def init() -> None:
        with lock:
            calls.append(1)
            first = len(calls) == 1
        if first:
            raise RuntimeError("first one fails")

    pool = ThreadPoolExecutor(2, thread_name_prefix="prestart-fail")
    try:
        assert pools.prestart(pool, 2, init) == 1
        assert _named("prestart-fail") == 2
    finally:
        pool.shutdown()
