"""The notifier the daemon wires: a fan-out consumer that turns the detector's changes into
notifications (policy.py), writes them to the outbox (outbox.py) before anything is sent, and
a supervised task that delivers them (sender.py) with retries and backoff.

- `on_change` runs on the event loop inside the fan-out: pure decisions and one small SQLite
  commit; it never waits on a receiver.
- `run` (the daemon's `notify` task) attempts, per receiver, the oldest pending message once it
  is due, one attempt per receiver at a time, at most `Sender.threads` at once; a failed
  attempt is retried after `retry_initial` doubling up to `retry_max`, and given up once the
  message is older than `max_age` (counted as dropped, reason `expired`, logged).
- Receivers are named in logs and metrics by their `name`, never by their URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable

import structlog

from monitor.config import Config
from monitor.detect.model import Change, EventRecord
from monitor.metrics import Metrics
from monitor.notify.format import FormatOptions
from monitor.notify.outbox import Outbox, Row, backoff
from monitor.notify.params import NotifyReceiver
from monitor.notify.policy import Decisions, Policy
from monitor.notify.sender import Sender

log = structlog.get_logger("monitor.notify")

IDLE = 5.0  # seconds between looks at the outbox when nothing is due sooner
THREADS = 4


class Notifier:
    def __init__(
        self, cfg: Config, metrics: Metrics, clock: Callable[[], float] = time.time
    ) -> None:
        self.metrics = metrics
        self.clock = clock
        self.state_dir = cfg.state_dir
        # Opened at the first receiver: a daemon without `notify:` makes no notify.sqlite3.
        self._outbox: Outbox | None = None
        self.receivers: dict[str, NotifyReceiver] = {}
        self.policy = Policy((), FormatOptions())
        self.sender = Sender(THREADS)
        self._wake = asyncio.Event()
        self._attempts: set[asyncio.Task[None]] = set()
        # Receivers with an attempt started and not yet marked: the sender's `busy` ends when
        # the attempt's thread does, a moment before the row is marked sent, and a wake-up in
        # that moment sent the same row again (a live receiver got one message twice).
        self._inflight: set[str] = set()
        self._write_errors = 0
        self.configure(cfg)

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            self._outbox = Outbox(self.state_dir, self.clock)
        return self._outbox

    def configure(self, cfg: Config) -> None:
        """At start and on a reload: receivers by name (a renamed one is a new one)."""
        gone = set(self.receivers) - {r.name for r in cfg.notify}
        self.receivers = {r.name: r for r in cfg.notify}
        if self.receivers:
            _ = self.outbox
            self.sender.prestart()
        self.policy.configure(cfg.notify, FormatOptions(base_url=cfg.api.base_url))
        m = self.metrics
        for name in gone:
            for metric in (m.notifications_sent, m.notifications_failed, m.notifications_queued):
                with contextlib.suppress(KeyError):
                    metric.remove(name)
            for reason in ("rate_limited", "expired"):
                with contextlib.suppress(KeyError):
                    m.notifications_dropped.remove(name, reason)
        for name in self.receivers:
            m.notifications_sent.labels(name)
            m.notifications_failed.labels(name)
            for reason in ("rate_limited", "expired"):
                m.notifications_dropped.labels(name, reason)
        self._publish_state()
        self._wake.set()

    # --- the fan-out consumer -----------------------------------------------------------------

    def on_change(self, change: Change) -> None:
        if not self.receivers:
            return
        self._queue(self.policy.on_change(change, self.clock()))

    def resume(self, events: Iterable[EventRecord]) -> None:
        """The events the detector resumed at start (see policy.resume)."""
        if self.receivers:
            self._queue(self.policy.resume(events, self.clock()))

    def _queue(self, d: Decisions) -> None:
        for drop in d.dropped:
            self.metrics.notifications_dropped.labels(drop.receiver, drop.reason).inc()
            log.warning(
                "notification dropped", receiver=drop.receiver, key=drop.key, reason=drop.reason
            )
        if not d.notifications:
            return
        for n in self.outbox.add(d.notifications):
            log.info("notification queued", receiver=n.receiver, key=n.key, transition=n.transition)
        self._publish_state()
        self._wake.set()

    # --- delivery -----------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            self._wake.clear()
            if self._outbox is None:
                await self._wake.wait()  # no receiver yet (a reload may add some)
                continue
            now = self.clock()
            self.outbox.flush()
            self.outbox.prune(now)
            free = [
                n for n in self.receivers if n not in self.sender.busy and n not in self._inflight
            ]
            heads = self.outbox.heads(free) if free else {}
            wait = IDLE
            for name, row in heads.items():
                if len(self.sender.busy | self._inflight) >= self.sender.threads:
                    break
                if row.next_at <= now:
                    self._inflight.add(name)
                    task = asyncio.get_running_loop().create_task(
                        self._attempt(self.receivers[name], row), name=f"notify-{name}"
                    )
                    self._attempts.add(task)
                    task.add_done_callback(self._attempts.discard)
                else:
                    wait = min(wait, row.next_at - now)
            self._publish_state()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.05, wait))

    async def _attempt(self, r: NotifyReceiver, row: Row) -> None:
        try:
            outcome = await self.sender.send(r, row.note)
            now = self.clock()
            if outcome.ok:
                self.outbox.mark_sent(row)
                self.metrics.notifications_sent.labels(r.name).inc()
                log.info(
                    "notification sent",
                    receiver=r.name,
                    key=row.note.key,
                    attempts=row.attempts + 1,
                )
                return
            self.metrics.notifications_failed.labels(r.name).inc()
            if now - row.note.created >= r.max_age:
                self.outbox.mark_expired(row, outcome.reason)
                self.metrics.notifications_dropped.labels(r.name, "expired").inc()
                log.error(
                    "notification given up",
                    receiver=r.name,
                    key=row.note.key,
                    attempts=row.attempts + 1,
                    reason=outcome.reason,
                )
                return
            delay = backoff(row.attempts + 1, r.retry_initial, r.retry_max)
            self.outbox.mark_failed(row, now + delay, outcome.reason)
            log.warning(
                "notification failed, will retry",
                receiver=r.name,
                key=row.note.key,
                attempts=row.attempts + 1,
                retry_in=round(delay, 3),
                reason=outcome.reason,
            )
        finally:
            self._inflight.discard(r.name)
            self._publish_state()
            self._wake.set()

    def _publish_state(self) -> None:
        m, ob = self.metrics, self._outbox
        if ob is None:
            return
        queued = ob.queued()
        for name in self.receivers:
            m.notifications_queued.labels(name).set(queued.get(name, 0))
        m.notify_outbox_healthy.set(1 if ob.healthy else 0)
        if ob.write_errors > self._write_errors:
            m.notify_outbox_write_errors.inc(ob.write_errors - self._write_errors)
            self._write_errors = ob.write_errors

    async def close(self) -> None:
        for task in list(self._attempts):
            task.cancel()
        await asyncio.gather(*self._attempts, return_exceptions=True)
        self.sender.close()
        if self._outbox is None:
            return
        unwritten = self._outbox.close()
        if unwritten:
            log.error("notification outbox: rows not on disk at stop", rows=unwritten)
