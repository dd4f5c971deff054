"""Delivery of notifications to real receivers on loopback: Apprise's json:// to an aiohttp
server and mailto:// to an aiosmtpd server; receivers that answer 500, garbage or never; the
outbox across restarts and kill -9; the daemon's notifier (retries, metrics, no URL in logs
or metrics); `notify-test`."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from monitor.config import Config
from monitor.detect.model import EventClosed, EventKind, EventOpened, EventRecord
from monitor.metrics import Metrics
from monitor.notify.cli import run as notify_test
from monitor.notify.model import KEY_HEADER, Notification
from monitor.notify.outbox import SENT, Outbox, backoff
from monitor.notify.params import NotifyReceiver, Transition
from monitor.notify.sender import Sender
from monitor.notify.service import Notifier
from tests.notify_receivers import Inbox, start_garbage, start_http, start_smtp

SECRET = "s3cretTOKENvalue"
ROOT = str(Path(__file__).resolve().parents[2])


def note(
    receiver: str = "r", key: str = "ev1/opened", created: float | None = None
) -> Notification:
    return Notification(
        receiver,
        key,
        Transition.OPENED,
        time.time() if created is None else created,
        "[dprk-monitor] star-jv: blackout started",
        f"star-jv: blackout.\nKey: {key}",
        "star-jv",
        "blackout",
        key.split("/")[0],
    )


def json_url(port: int) -> str:
    return f"json://127.0.0.1:{port}/{SECRET}"


def mail_url(port: int) -> str:
    return f"mailto://127.0.0.1:{port}?from=monitor@example.org&to=oncall@example.org"


@pytest.fixture
async def http() -> AsyncIterator[tuple[Inbox, int]]:
    inbox = Inbox()
    close, port = await start_http(inbox)
    yield inbox, port
    await close()


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Inbox, int]]:
    inbox = Inbox()
    close, port = await start_smtp(inbox)
    yield inbox, port
    await close()


async def until(pred: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


# --- the sender -----------------------------------------------------------------------------


async def test_json_receiver_gets_title_body_and_key(http: tuple[Inbox, int]) -> None:
    """json:// posts the title and the body, the idempotency key in the body."""
    inbox, port = http
    sender = Sender(2)
    try:
        out = await sender.send(NotifyReceiver(json_url(port), "hook"), note())
    finally:
        sender.close()
    assert out.ok, out.reason
    (m,) = inbox.messages
    assert m["title"] == "[dprk-monitor] star-jv: blackout started"
    assert m["key"] == "ev1/opened" and m["content_type"] == "application/json"


async def test_mail_receiver_gets_key_in_header_and_body(smtp: tuple[Inbox, int]) -> None:
    """mailto:// on a plain SMTP port: the subject is the title, the plain body keeps its
    lines, and the key is in the X-Dprk-Monitor-Key header and the body."""
    inbox, port = smtp
    sender = Sender(2)
    try:
        out = await sender.send(NotifyReceiver(mail_url(port), "mail"), note())
    finally:
        sender.close()
    assert out.ok, out.reason
    (m,) = inbox.messages
    assert m["to"] == ["oncall@example.org"] and m["title"].startswith("[dprk-monitor]")
    assert m["header_key"] == "ev1/opened" and m["key"] == "ev1/opened"
    assert m["message"].splitlines()[0] == "star-jv: blackout."
    assert KEY_HEADER == "X-Dprk-Monitor-Key"


async def test_hanging_receiver_is_abandoned_and_others_proceed(http: tuple[Inbox, int]) -> None:
    """A receiver that never answers fails at its deadline with a reason; meanwhile another
    receiver's message is delivered (the hang holds one thread, not the loop or the rest)."""
    hang_inbox = Inbox(mode="hang")
    close, hang_port = await start_http(hang_inbox)
    _, port = http
    sender = Sender(2)
    try:
        slow = asyncio.ensure_future(
            sender.send(NotifyReceiver(json_url(hang_port), "stuck", timeout=0.5), note())
        )
        await until(lambda: hang_inbox.hits == 1)
        fast = await sender.send(NotifyReceiver(json_url(port), "fine"), note())
        assert fast.ok and not slow.done(), "delivered while the other receiver hangs"
        out = await slow
        assert not out.ok and out.reason
        assert SECRET not in out.reason
    finally:
        sender.close()
        await close()


@pytest.mark.parametrize("mode", ["500", "garbage"])
async def test_bad_answers_are_failures_with_a_redacted_reason(mode: str) -> None:
    """A 500 or bytes that are not HTTP is a failed attempt; the reason never holds the URL's
    secret parts."""
    inbox = Inbox(mode="500")
    if mode == "500":
        close, port = await start_http(inbox)
    else:
        server, port = await start_garbage()

        async def close() -> None:
            server.close()
            await server.wait_closed()

    sender = Sender(1)
    try:
        out = await sender.send(NotifyReceiver(json_url(port), "bad", timeout=2.0), note())
    finally:
        sender.close()
        await close()
    assert not out.ok
    assert out.reason and SECRET not in out.reason


# --- backoff and the outbox -----------------------------------------------------------------


def test_backoff_schedule() -> None:
    """30 s doubling to 30 min: 30, 60, 120, ..., 1800, 1800."""
    got = [backoff(n, 30, 1800) for n in range(1, 10)]
    assert got == [30, 60, 120, 240, 480, 960, 1800, 1800, 1800]
    assert backoff(0, 30, 1800) == 0


@given(st.integers(1, 5000), st.floats(0.01, 3600), st.floats(0.01, 86400))
def test_backoff_never_exceeds_cap_and_never_shrinks(n: int, initial: float, cap: float) -> None:
    """Any attempt count waits at most the cap and no less than the attempt before."""
    cap = max(cap, initial)
    assert backoff(n, initial, cap) <= cap
    assert backoff(n + 1, initial, cap) >= backoff(n, initial, cap)


def test_outbox_keeps_rows_across_restart_and_dedupes_keys(tmp_path: Path) -> None:
    """A queued notification is there after a reopen; the same key is queued once, also
    after it was sent."""
    ob = Outbox(tmp_path)
    assert len(ob.add([note(), note()])) == 1
    ob.close()
    ob = Outbox(tmp_path)
    assert ob.queued() == {"r": 1}
    (row,) = ob.heads(["r"]).values()
    ob.mark_sent(row)
    assert ob.add([note()]) == []
    ob.close()
    ob = Outbox(tmp_path)
    assert [r.status for r in ob.rows()] == [SENT] and ob.queued().get("r", 0) == 0
    ob.close()


def test_outbox_heads_keep_order_per_receiver(tmp_path: Path) -> None:
    """A receiver's closed message waits behind its opened one, even when the opened is
    waiting for its retry."""
    ob = Outbox(tmp_path)
    ob.add([note(key="e/opened", created=100.0), note(key="e/closed", created=200.0)])
    (head,) = ob.heads(["r"]).values()
    ob.mark_failed(head, next_at=10_000.0, error="down")
    (head,) = ob.heads(["r"]).values()
    assert head.note.key == "e/opened" and head.next_at == 10_000.0
    ob.close()


class FullOutbox(Outbox):
    """An outbox whose disk refuses writes while `full` is set (SQLite's `query_only`: every
    write fails with an OperationalError, as on a full or read-only disk; we run as root, so
    file modes cannot make a real one)."""

    full = False

    def _connect(self):  # type: ignore[no-untyped-def]
        conn = super()._connect()
        if conn is not None:
            conn.execute(f"PRAGMA query_only={'ON' if self.full else 'OFF'}")
        return conn


def test_full_disk_is_contained_counted_and_logged_once(tmp_path: Path) -> None:
    """On a full disk, notifications are kept in memory (still due), each failed write is
    counted, the failure is logged once; they are written once the disk has room."""
    ob = FullOutbox(tmp_path)
    ob.full = True
    ob._conn = None  # reconnect with the page limit
    with structlog.testing.capture_logs() as logs:
        for i in range(5):
            ob.add([note(key=f"e{i}/opened")])
    assert not ob.healthy and ob.write_errors >= 5
    assert sum(1 for e in logs if "not writable" in e["event"]) == 1
    assert len(ob.heads(["r"])) == 1 and ob.queued() == {"r": 5}
    ob.full = False
    ob._conn = None
    assert ob.flush() and ob.healthy
    ob.close()
    assert len(Outbox(tmp_path).rows()) == 5


_KILLED = """
import os, signal, sys, time
sys.path.insert(0, {root!r})
from monitor.notify.outbox import Outbox
from monitor.notify.model import Notification
from monitor.notify.params import Transition
ob = Outbox({dir!r})
ob.add([Notification("hook", "ev9/opened", Transition.OPENED, time.time(), "t", "b\\nKey: ev9/opened")])
os.kill(os.getpid(), signal.SIGKILL)
"""


async def test_kill9_between_write_and_send_loses_nothing(
    tmp_path: Path, http: tuple[Inbox, int]
) -> None:
    """A process killed (-9) right after writing a notification, before sending it: the next
    notifier delivers it, once."""
    code = _KILLED.format(root=ROOT, dir=str(tmp_path))
    p = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    assert await asyncio.wait_for(p.wait(), 60) == -signal.SIGKILL
    inbox, port = http
    cfg = Config(state_dir=tmp_path, notify=(NotifyReceiver(json_url(port), "hook"),))
    n = Notifier(cfg, Metrics(CollectorRegistry()))
    task = asyncio.ensure_future(n.run())
    try:
        await until(lambda: inbox.keys() == ["ev9/opened"])
        await until(lambda: n.outbox.queued() == {"hook": 0})
    finally:
        task.cancel()
        await n.close()
    assert inbox.keys() == ["ev9/opened"]


# --- the notifier ---------------------------------------------------------------------------


def _event(end: float | None = None, ev_id: str = "ev1") -> EventRecord:
    return EventRecord(ev_id, "star-jv", EventKind.BLACKOUT, time.time() - 60, end)


def _metric(reg: CollectorRegistry, name: str, receiver: str) -> float | None:
    v = reg.get_sample_value(f"dprk_monitor_{name}", {"receiver": receiver})
    return v


async def test_receiver_down_gets_messages_once_back_without_duplicates(tmp_path: Path) -> None:
    """A receiver down while an outage opens and closes gets both messages, in order, once it
    is back; failed attempts and the queue show in metrics by name, never by URL, and no log
    line holds the URL's secret."""
    probe = Inbox()
    close, port = await start_http(probe)
    await close()  # the port is free: connection refused until the receiver starts again
    reg = CollectorRegistry()
    r = NotifyReceiver(json_url(port), "hook", retry_initial=0.05, retry_max=0.2, timeout=2.0)
    n = Notifier(Config(state_dir=tmp_path, notify=(r,)), Metrics(reg))
    task = asyncio.ensure_future(n.run())
    inbox = Inbox()
    out = io.StringIO()
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(out),
    )
    try:
        n.on_change(EventOpened(_event()))
        n.on_change(EventClosed(_event(end=time.time())))
        await until(lambda: (_metric(reg, "notifications_failed_total", "hook") or 0) >= 3)
        assert _metric(reg, "notifications_queued", "hook") == 2
        close, _ = await start_http(inbox, port=port)
        await until(lambda: len(inbox.messages) == 2)
        await until(lambda: _metric(reg, "notifications_queued", "hook") == 0)
        n.on_change(EventOpened(_event()))  # the same event again: the key is known
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
        await n.close()
        await close()
        structlog.reset_defaults()
    assert inbox.keys() == ["ev1/opened", "ev1/closed"]
    assert _metric(reg, "notifications_sent_total", "hook") == 2
    text = generate_latest(reg).decode()
    assert SECRET not in text and "json://" not in text
    logs = out.getvalue()
    assert "notification failed, will retry" in logs and SECRET not in logs
    assert all(json.loads(line).get("receiver") in (None, "hook") for line in logs.splitlines())


async def test_message_older_than_max_age_is_given_up(tmp_path: Path) -> None:
    """A notification still undelivered after max_age is dropped as expired (counted)."""
    reg = CollectorRegistry()
    r = NotifyReceiver(json_url(9), "gone", retry_initial=0.05, retry_max=0.05, max_age=0.3)
    n = Notifier(Config(state_dir=tmp_path, notify=(r,)), Metrics(reg))
    task = asyncio.ensure_future(n.run())
    try:
        n.on_change(EventOpened(_event()))
        await until(
            lambda: (
                reg.get_sample_value(
                    "dprk_monitor_notifications_dropped_total",
                    {"receiver": "gone", "reason": "expired"},
                )
                == 1
            )
        )
    finally:
        task.cancel()
        await n.close()
    assert n.outbox.queued() == {"gone": 0}


def test_notify_test_prints_each_outcome(tmp_path: Path) -> None:
    """notify-test sends to each receiver and prints `name: ok` / `name: failed: reason`
    (no URL), exit 1 when one failed."""

    loop = asyncio.new_event_loop()
    ready: asyncio.Future[tuple[Inbox, int]] = loop.create_future()
    stop = asyncio.Event()

    async def server() -> None:
        inbox = Inbox()
        close, port = await start_http(inbox)
        ready.set_result((inbox, port))
        await stop.wait()
        await close()

    import threading

    th = threading.Thread(target=loop.run_until_complete, args=(server(),))
    th.start()
    try:
        while not ready.done():
            time.sleep(0.01)
        inbox, port = ready.result()
        cfg = Config(
            state_dir=tmp_path,
            notify=(
                NotifyReceiver(json_url(port), "good"),
                NotifyReceiver(json_url(9), "bad", timeout=2.0),
            ),
        )
        out = io.StringIO()
        rc = notify_test(cfg, out)
    finally:
        loop.call_soon_threadsafe(stop.set)
        th.join(10)
        loop.close()
    lines = out.getvalue().splitlines()
    assert rc == 1
    assert lines[0] == "good: ok" and lines[1].startswith("bad: failed: ")
    assert SECRET not in out.getvalue()
    assert [m["title"] for m in inbox.messages] == ["[dprk-monitor] test message"]
    assert not (tmp_path / "notify.sqlite3").exists(), "notify-test queues nothing"


async def test_a_message_is_sent_once_while_other_receivers_wake_the_notifier(
    tmp_path: Path, http: tuple[Inbox, int]
) -> None:
    """An attempt's thread ends (its receiver no longer busy) a moment before the attempt
    marks the row sent; a wake-up in that moment (another receiver's failed attempt) started
    a second attempt of the same row: the soak's live receiver got one message twice. With a
    dead receiver failing every few ms beside it, each of 100 messages arrives once."""
    inbox, port = http
    live = NotifyReceiver(json_url(port), "hook", rate_limit=0, retry_initial=0.05, retry_max=0.2)
    dead = NotifyReceiver(json_url(9), "dead", rate_limit=0, retry_initial=0.001, retry_max=0.002)
    n = Notifier(Config(state_dir=tmp_path, notify=(live, dead)), Metrics(CollectorRegistry()))
    task = asyncio.ensure_future(n.run())
    try:
        for i in range(100):
            n.on_change(EventOpened(_event(ev_id=f"ev{i}")))
            await asyncio.sleep(0.005)
        await until(lambda: n.outbox.queued().get("hook") == 0)
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
        await n.close()
    keys = inbox.keys()
    assert len(keys) == len(set(keys)) == 100, [k for k in keys if keys.count(k) > 1]
