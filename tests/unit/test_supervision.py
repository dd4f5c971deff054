"""Failures are contained and visible: a dead daemon task, a failing reload, a broken consumer
of the detector's changes (the daemon on loopback, systemd's notify socket for real)."""

from __future__ import annotations

import asyncio
import socket
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor import cli
from monitor import config as config_mod
from monitor.daemon import Daemon, DaemonFailed
from monitor.detect.model import State, StateChanged, VantageChanged
from monitor.fanout import FanOut
from monitor.metrics import Metrics


def write_config(path: Path) -> None:
    path.write_text(
        textwrap.dedent(f"""\
        listen: 127.0.0.1:0
        state_dir: {path.parent}/var
        probing: {{interval: 300ms, timeout: 200ms, max_rate: 100, reprobes: 1}}
        entities:
          - name: loop
            tcp: ["127.0.0.1:9"]
        bgp: {{enabled: false}}
        """)
    )


class NotifySocket:
    """A real sd_notify receiver: a unix datagram socket the daemon finds in $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    def drain(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    path = tmp_path / "notify.sock"
    n = NotifySocket(path)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping every 50 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield n
    n.sock.close()


def get(port: int | None, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            status: int = r.status
            return status
    except urllib.error.HTTPError as e:
        return e.code


async def test_a_dead_task_stops_readiness_and_the_watchdog(
    tmp_path: Path, notify: NotifySocket
) -> None:
    """When the ticker dies (a detector bug), /readyz turns 503, WATCHDOG=1 stops and systemd
    hears why; before, /readyz said 200 and the watchdog was fed while nothing was judged."""
    cfg_path = tmp_path / "c.yaml"
    write_config(cfg_path)
    d = Daemon(config_mod.load(cfg_path), str(cfg_path))
    await d.start()
    try:
        await asyncio.sleep(0.3)
        assert await asyncio.to_thread(get, d.listen_port, "/readyz") == 200
        assert "WATCHDOG=1" in notify.drain()
        assert d.detector is not None

        def broken(now: float) -> list[object]:
            raise ZeroDivisionError("a detector bug")

        d.detector.tick = broken  # type: ignore[method-assign,assignment]
        await asyncio.sleep(0.3)
        assert d.failed is not None and "tick" in d.failed and "ZeroDivisionError" in d.failed
        assert await asyncio.to_thread(get, d.listen_port, "/readyz") == 503
        sent = notify.drain()
        assert any(m.startswith("STATUS=failed: task tick died") for m in sent), sent
        notify.drain()
        await asyncio.sleep(0.3)
        assert "WATCHDOG=1" not in notify.drain(), "the watchdog starves: systemd restarts us"
    finally:
        await d.stop()


async def test_run_raises_after_a_clean_stop_when_a_task_died(tmp_path: Path) -> None:
    """`run` stops everything, then raises DaemonFailed naming the dead task."""
    cfg_path = tmp_path / "c.yaml"
    write_config(cfg_path)
    d = Daemon(config_mod.load(cfg_path), str(cfg_path))

    async def kill_the_scheduler() -> None:
        for _ in range(200):
            if d.scheduler is not None and d.ready:
                break
            await asyncio.sleep(0.05)

        async def dead() -> None:
            raise RuntimeError("scheduler bug")

        d._spawn(dead(), "scheduler")

    killer = asyncio.create_task(kill_the_scheduler())
    with pytest.raises(DaemonFailed, match="task scheduler died: RuntimeError: scheduler bug"):
        await asyncio.wait_for(d.run(), 10)
    await killer
    assert not d.ready and d.store is not None


def test_cli_run_exits_70_when_the_daemon_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dprk-monitor run` exits EX_SOFTWARE (70), which systemd's Restart=on-failure restarts,
    unlike 78 (a bad configuration)."""
    cfg_path = tmp_path / "c.yaml"
    write_config(cfg_path)

    async def failing_run(self: Daemon) -> None:
        raise DaemonFailed("task tick died: ZeroDivisionError: x")

    monkeypatch.setattr(Daemon, "run", failing_run)
    # Logging stays as the tests set it up (configure() would bind the captured stdout).
    monkeypatch.setattr("monitor.logs.configure", lambda *a, **k: None)
    assert cli.main(["run", "--config", str(cfg_path)]) == 70
    assert "task tick died" in capsys.readouterr().err


async def test_reload_survives_any_error_and_tells_systemd(
    tmp_path: Path, notify: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload that raises anything (a RecursionError from the YAML parser, a failure while
    applying) keeps the running configuration, reports 0 and follows RELOADING=1 with READY=1."""
    cfg_path = tmp_path / "c.yaml"
    write_config(cfg_path)
    d = Daemon(config_mod.load(cfg_path), str(cfg_path))
    await d.start()
    try:
        running = d.cfg
        notify.drain()

        def deep(path: str) -> config_mod.Config:
            raise RecursionError("maximum recursion depth exceeded")

        monkeypatch.setattr(config_mod, "load", deep)
        assert d.reload() is False
        assert d.cfg is running
        assert d.metrics.config_reload_ok._value.get() == 0
        sent = [m for m in notify.drain() if not m.startswith("WATCHDOG")]
        assert sent == ["RELOADING=1", "READY=1"], sent
        monkeypatch.undo()
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))

        # A configuration that loads but fails while being applied: the old one is restored.
        cfg_path.write_text(cfg_path.read_text().replace("127.0.0.1:9", "127.0.0.1:7"))
        calls = {"n": 0}
        real = d.metrics.apply_config

        def flaky(cfg: config_mod.Config) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise MemoryError("out of memory while applying")
            real(cfg)

        monkeypatch.setattr(d.metrics, "apply_config", flaky)
        assert d.reload() is False
        assert d.cfg is running and calls["n"] == 2
        assert d.metrics.config_reload_ok._value.get() == 0
        sent = [m for m in notify.drain() if not m.startswith("WATCHDOG")]
        assert sent == ["RELOADING=1", "READY=1"], sent
        assert d.ready
    finally:
        await d.stop()


def test_a_failing_consumer_is_contained_and_counted() -> None:
    """A consumer that raises is logged and counted; the others still get every change, in
    order, including changes published by a consumer while handling one."""
    metrics = Metrics()
    fan = FanOut(on_error=lambda name: metrics.consumer_errors.labels(name).inc())
    seen: list[str] = []

    def broken(c: object) -> None:
        raise KeyError("bug")

    def chatty(c: object) -> None:
        seen.append(f"chatty {type(c).__name__}")
        if isinstance(c, VantageChanged) and not c.healthy:
            fan.publish([VantageChanged(True, 2.0)])

    def quiet(c: object) -> None:
        seen.append(
            f"quiet {type(c).__name__}{'' if not isinstance(c, VantageChanged) else c.healthy}"
        )

    fan.subscribe("broken", broken)
    fan.subscribe("chatty", chatty, VantageChanged)
    fan.subscribe("quiet", quiet)
    state = StateChanged("e", State.UP, State.DOWN, 1.0, 1.0, {})
    fan.publish([VantageChanged(False, 1.0), state])
    assert seen == [
        "chatty VantageChanged",
        "quiet VantageChangedFalse",
        "quiet StateChanged",
        "chatty VantageChanged",
        "quiet VantageChangedTrue",
    ]
    errors = metrics.consumer_errors.labels("broken")._value.get()
    assert errors == 3


@pytest.mark.parametrize(
    ("filename", "extra"),
    [
        ("events.sqlite3", ""),
        # before: a traceback and exit 1, which systemd restarts forever
        ("notify.sqlite3", "notify:\n  - url: json://127.0.0.1:9/\n    name: hook\n"),
        ("census.sqlite3", ""),
    ],
    ids=["event_log", "notify_outbox", "census"],
)
def test_cli_run_refuses_a_database_from_a_newer_version(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    filename: str,
    extra: str,
) -> None:
    """An event log, notification outbox or census written by a newer schema is refused with one line
    and exit 78 (systemd does not restart on it: a restart cannot help), and the file is left
    as it was."""
    import sqlite3

    cfg_path = tmp_path / "c.yaml"
    write_config(cfg_path)
    with cfg_path.open("a") as f:
        f.write(extra)
    (tmp_path / "var").mkdir()
    db = tmp_path / "var" / filename
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version=99")
    before = db.read_bytes()
    monkeypatch.setattr("monitor.logs.configure", lambda *a, **k: None)
    assert cli.main(["run", "--config", str(cfg_path)]) == 78
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dprk-monitor: cannot start:") and "99" in err[0]
    assert db.read_bytes() == before
