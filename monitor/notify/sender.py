"""Delivery through Apprise: one blocking `notify()` per attempt, in a bounded thread pool,
with a deadline. The event loop only ever awaits the attempt's future with a timeout, so a
receiver that hangs, answers slowly or answers garbage costs a thread for a while and a failed
attempt, never a stall of probing or detection.

- Apprise's own socket timeouts (connect and read) are set to the attempt's timeout, so the
  thread normally ends by itself; one that does not (a plugin without a timeout) keeps its
  receiver busy (no second attempt to it meanwhile) and is counted in `stuck`; other
  receivers keep their threads as long as the pool has some.
- The reason of a failure is what Apprise logged at WARNING or above during the attempt,
  redacted of every secret part of the receiver's URL (params.redact), then cut short.
- Apprise (~1.5 s and ~25 MB at its first URL) is imported on the first send only.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from monitor import pools
from monitor.notify.model import KEY_HEADER, Notification, Outcome
from monitor.notify.params import NotifyReceiver, redact

MAX_REASON = 200
# Seconds beyond the receiver's timeout before the loop stops waiting on an attempt (Apprise's
# connect and read timeouts are separate: an answer may take both).
GRACE = 2.0


class _Capture(logging.Handler):
    """Apprise's log records, per thread: the reason of a failed attempt."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: dict[int, list[str]] = {}
        self.lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self.lock2:
            got = self.records.get(record.thread or 0)
            if got is not None and len(got) < 8:
                got.append(record.getMessage())

    def start(self) -> None:
        with self.lock2:
            self.records[threading.get_ident()] = []

    def stop(self) -> list[str]:
        with self.lock2:
            return self.records.pop(threading.get_ident(), [])


_capture = _Capture()
_lock = threading.Lock()
_apprise: Any = None


def _load() -> Any:
    """The apprise module, imported once with its plugins, Apprise's log captured."""
    global _apprise
    with _lock:
        if _apprise is not None:
            return _apprise
        lg = logging.getLogger("apprise")
        lg.addHandler(_capture)
        lg.setLevel(logging.WARNING)
        # Apprise's records never reach the daemon's log: they may hold URLs (secrets).
        lg.propagate = False
        # Loading its plugins imports `imghdr` (PGP support), deprecated since Python 3.11:
        # a warning about a library's import is not ours to show (and is an error in tests).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import apprise

            apprise.Apprise.instantiate("json://localhost/")  # loads every plugin module now
        _apprise = apprise
        return apprise


def validate_url(url: str) -> bool:
    """Whether Apprise accepts `url` (config validation)."""
    apprise = _load()
    return bool(apprise.Apprise().add(url))


def deliver_blocking(receiver: NotifyReceiver, note: Notification) -> Outcome:
    """One attempt, in the calling thread (a worker of the pool, or the CLI)."""
    apprise = _load()
    _capture.start()
    ok = False
    error: str | None = None
    try:
        plugin: Any = apprise.Apprise.instantiate(receiver.url)
        if plugin is None:
            error = "Apprise does not accept this URL"
        else:
            t = float(receiver.timeout)
            for attr in ("socket_connect_timeout", "socket_read_timeout"):
                cur = getattr(plugin, attr, None)
                if isinstance(cur, int | float):
                    setattr(plugin, attr, min(float(cur), t) if cur > 0 else t)
            headers = getattr(plugin, "headers", None)
            if isinstance(headers, dict) and receiver.scheme in ("mailto", "mailtos"):
                headers[KEY_HEADER] = note.key
            ok = bool(
                plugin.notify(
                    body=note.body, title=note.title, body_format=apprise.NotifyFormat.TEXT
                )
            )
    except Exception as e:  # a plugin bug must be a failed attempt, not a dead thread
        error = f"{type(e).__name__}: {e}"
    finally:
        logged = _capture.stop()
    if ok:
        return Outcome(True)
    reason = error or "; ".join(logged) or "the receiver did not accept the message"
    reason = " ".join(redact(reason, receiver.url).split())
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 3] + "..."
    return Outcome(False, reason)


class Sender:
    """Attempts in a bounded pool; `send` never waits longer than the receiver's timeout plus
    GRACE. `busy`: receivers with an attempt's thread still running (abandoned ones too),
    to which no other attempt is started."""

    def __init__(self, threads: int = 4) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="notify")
        self.busy: set[str] = set()
        self.stuck = 0  # attempts the loop stopped waiting for while their thread still ran
        self._prestarted = False

    def prestart(self) -> int:
        """Start the attempts' threads now (monitor/pools.py: why); once, while the pool is
        idle: on a later reload an attempt may hold a thread, and the others would wait."""
        if self._prestarted:
            return 0
        self._prestarted = True
        return pools.prestart(self._pool, self.threads)

    async def send(self, receiver: NotifyReceiver, note: Notification) -> Outcome:
        loop = asyncio.get_running_loop()
        name = receiver.name
        self.busy.add(name)
        fut = loop.run_in_executor(self._pool, deliver_blocking, receiver, note)
        fut.add_done_callback(lambda f: self._done(name, f))
        try:
            return await asyncio.wait_for(asyncio.shield(fut), receiver.timeout + GRACE)
        except TimeoutError:
            self.stuck += 1
            return Outcome(False, f"no answer within {receiver.timeout:g}s")

    def _done(self, name: str, fut: asyncio.Future[Outcome]) -> None:
        self.busy.discard(name)
        if not fut.cancelled():
            fut.exception()  # retrieved: deliver_blocking returns outcomes, never raises

    def close(self) -> None:
        # Attempts still running are not waited for (each ends at its socket timeouts).
        self._pool.shutdown(wait=False, cancel_futures=True)
