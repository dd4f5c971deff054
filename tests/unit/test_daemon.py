"""The daemon end to end on loopback: metrics series, hysteresis, reload, signals, CLI."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor import config
from monitor.daemon import Daemon

ROOT = Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: str, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


@pytest.fixture
async def tcp_server() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def write_config(path: Path, open_port: int, closed_port: int, extra_target: str = "") -> None:
    path.write_text(
        textwrap.dedent(f"""\
        listen: 127.0.0.1:0
        state_dir: {path.parent}/var
        probing: {{interval: 300ms, timeout: 200ms, max_rate: 100, reprobes: 1}}
        detection: {{down_after: 2, up_after: 2}}
        entities:
          - name: loop
            tcp: ["127.0.0.1:{open_port}", "127.0.0.1:{closed_port}"{extra_target}]
        controls:
          tcp: ["127.0.0.1:{open_port}"]
        bgp: {{enabled: false}}
        """)
    )


async def scrape(d: Daemon) -> str:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{d.listen_port}/metrics", timeout=5) as r:
            body: bytes = r.read()
            return body.decode()

    return await asyncio.to_thread(get)


async def scrape_until(d: Daemon, cond: Callable[[str], bool], what: str) -> str:
    """Scrape until `cond(metrics)` holds and return those metrics. Waiting for a count of
    rounds rather than sleeping a fixed time: a loaded machine only makes it slower, never
    fails it (up to 30 s, far beyond the few rounds of 300-500 ms waited for)."""
    deadline = time.monotonic() + 30
    while True:
        m = await scrape(d)
        if cond(m):
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"never reached: {what}")
        await asyncio.sleep(0.1)


async def test_daemon_probes_and_reports_hysteresis(
    tmp_path: Path, tcp_server: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Series exist at load, target_up 0 (never answered, not an optimistic 1); the open port
    is up at its first answer; a refused port never answered: target_up stays 0 but it is
    counted never_answered, not down, and no "target down" line is logged for it."""
    closed = free_port()
    cfg_path = tmp_path / "c.yaml"
    write_config(cfg_path, tcp_server, closed)
    d = Daemon(config.load(cfg_path), str(cfg_path))
    await d.start()
    try:
        m = await scrape(d)
        up_closed = dict(entity="loop", kind="tcp", target=f"127.0.0.1:{closed}")
        assert value(m, "dprk_monitor_target_up", **up_closed) == 0, "created at load, not up"
        loop_tcp = dict(entity="loop", kind="tcp")
        never = value(m, "dprk_monitor_targets", state="never_answered", **loop_tcp)
        up = value(m, "dprk_monitor_targets", state="up", **loop_tcp)
        assert never is not None and up is not None and never >= 1 and never + up == 2
        assert value(m, "dprk_monitor_targets", state="down", **loop_tcp) == 0
        assert value(m, "dprk_monitor_probes_total", entity="loop", kind="tcp") is not None
        assert value(m, "dprk_monitor_config_last_reload_successful") == 1
        assert value(m, "dprk_monitor_build_info", version=__import__("monitor").__version__) == 1
        open_up = dict(entity="loop", kind="tcp", target=f"127.0.0.1:{tcp_server}")
        m = await scrape_until(
            d,
            lambda m: (
                (value(m, "dprk_monitor_probe_failures_total", reason="refused", **loop_tcp) or 0)
                >= 4
                and (value(m, "dprk_monitor_probes_total", entity="_controls", kind="tcp") or 0)
                >= 2
                and (value(m, "dprk_monitor_probe_rtt_seconds_count", **loop_tcp) or 0) >= 2
                and value(m, "dprk_monitor_target_up", **open_up) == 1
            ),
            "two rounds of every target",
        )
        assert value(m, "dprk_monitor_target_up", **up_closed) == 0
        assert (
            value(
                m,
                "dprk_monitor_target_up",
                entity="loop",
                kind="tcp",
                target=f"127.0.0.1:{tcp_server}",
            )
            == 1
        )
        assert value(m, "dprk_monitor_targets", state="never_answered", **loop_tcp) == 1
        assert value(m, "dprk_monitor_targets", state="up", **loop_tcp) == 1
        assert value(m, "dprk_monitor_targets", state="down", **loop_tcp) == 0
        ctl = dict(entity="_controls", kind="tcp")
        assert value(m, "dprk_monitor_targets", state="up", **ctl) == 1
        refused = value(
            m, "dprk_monitor_probe_failures_total", entity="loop", kind="tcp", reason="refused"
        )
        assert refused is not None and refused >= 4, "each round: the probe and its re-probe"
        assert (
            value(m, "dprk_monitor_probe_rtt_seconds_count", entity="loop", kind="tcp") or 0
        ) >= 2
        assert (value(m, "dprk_monitor_probes_total", entity="_controls", kind="tcp") or 0) >= 2
        entities = d.status()["entities"]
        assert isinstance(entities, list)
        (ent,) = entities
        assert ent["targets"]["tcp"] == {"up": 1, "down": 0, "never_answered": 1}
        assert ent["targets_never_answered"] == {"tcp": [f"127.0.0.1:{closed}"]}
    finally:
        await d.stop()
    out = capsys.readouterr().out
    assert "target down" not in out and "target up" not in out
    (summary,) = [line for line in out.splitlines() if "targets never answered" in line]
    assert "count=1" in summary and f"127.0.0.1:{closed}" in summary


async def test_a_target_that_answered_then_fails_goes_down(tmp_path: Path, tcp_server: int) -> None:
    """A port that answered and then refuses goes down after down_after rounds: counted down."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg_path = tmp_path / "c.yaml"
    write_config(cfg_path, tcp_server, port)
    d = Daemon(config.load(cfg_path), str(cfg_path))
    await d.start()

    async def until(name: str, want: float, **labels: str) -> str:
        for _ in range(100):  # rounds of 0.3 s; at most 10 s on a loaded machine
            m = await scrape(d)
            if value(m, name, **labels) == want:
                return m
            await asyncio.sleep(0.1)
        raise AssertionError(f"{name}{labels} never became {want}")

    try:
        target = dict(entity="loop", kind="tcp", target=f"127.0.0.1:{port}")
        loop_tcp = dict(entity="loop", kind="tcp")
        await until("dprk_monitor_targets", 2, state="up", **loop_tcp)
        server.close()
        await server.wait_closed()
        m = await until("dprk_monitor_targets", 1, state="down", **loop_tcp)
        assert value(m, "dprk_monitor_target_up", **target) == 0
        assert value(m, "dprk_monitor_targets", state="never_answered", **loop_tcp) == 0
    finally:
        server.close()
        await d.stop()


async def test_reload_bad_config_keeps_old_and_good_config_removes_series(
    tmp_path: Path, tcp_server: int
) -> None:
    """A bad reload is refused (metric 0, old targets kept); a good one drops gone series and
    keeps the state of the targets that stay (up stays up: not reset to never answered)."""
    closed = free_port()
    cfg_path = tmp_path / "c.yaml"
    write_config(cfg_path, tcp_server, closed)
    d = Daemon(config.load(cfg_path), str(cfg_path))
    await d.start()
    try:
        for _ in range(50):  # until the open port answered (its first round)
            m = await scrape(d)
            open_up = dict(entity="loop", kind="tcp", target=f"127.0.0.1:{tcp_server}")
            if value(m, "dprk_monitor_target_up", **open_up) == 1:
                break
            await asyncio.sleep(0.1)
        cfg_path.write_text("entities: [\n")
        assert d.reload() is False
        m = await scrape(d)
        assert value(m, "dprk_monitor_config_last_reload_successful") == 0
        assert (
            value(
                m, "dprk_monitor_target_up", entity="loop", kind="tcp", target=f"127.0.0.1:{closed}"
            )
            is not None
        )
        cfg_path.write_text(f"""\
listen: 127.0.0.1:0
probing: {{interval: 300ms, timeout: 200ms}}
entities:
  - name: loop
    tcp: ["127.0.0.1:{tcp_server}"]
""")
        assert d.reload() is True
        m = await scrape(d)
        assert value(m, "dprk_monitor_config_last_reload_successful") == 1
        assert (
            value(
                m, "dprk_monitor_target_up", entity="loop", kind="tcp", target=f"127.0.0.1:{closed}"
            )
            is None
        ), "series of a removed target go"
        assert (
            value(
                m,
                "dprk_monitor_target_up",
                entity="loop",
                kind="tcp",
                target=f"127.0.0.1:{tcp_server}",
            )
            == 1
        )
    finally:
        await d.stop()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_check_config_ok_and_error() -> None:
    """check-config says OK for the default and PATH:LINE: key: reason with exit 1 for a bad one."""
    ok = run_cli("check-config", "config/dprk.yaml")
    assert ok.returncode == 0 and "OK (3 entities" in ok.stdout


def test_check_config_error_line(tmp_path: Path) -> None:
    """A bad file: exactly one line on stderr; check-config exits 1, run exits 78 (EX_CONFIG)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("probing:\n  interval: soon\nentities: [{name: e, icmp: [198.18.176.1]}]\n")
    r = run_cli("check-config", str(bad))
    assert r.returncode == 1
    assert r.stderr == (
        f"{bad}:2: probing.interval: expected a duration like 500ms, 30s or 5m, got 'soon'\n"
    )
    r = run_cli("run", "--config", str(bad))
    assert r.returncode == 78 and r.stderr.count("\n") == 1, "EX_CONFIG: systemd won't restart"


def test_signals_reload_and_graceful_stop(tmp_path: Path, tcp_server_sync: int) -> None:
    """The real process: SIGHUP with a bad file keeps running (metric 0); SIGTERM exits 0."""
    port = free_port()
    cfg_path = tmp_path / "c.yaml"
    write_config(cfg_path, tcp_server_sync, free_port())
    cfg_path.write_text(cfg_path.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(cfg_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        cfg_path.write_text("nonsense: [")
        proc.send_signal(signal.SIGHUP)
        for _ in range(300):  # until the reload was handled: 30 s at most on a loaded machine
            with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
                m = r.read().decode()
            if value(m, "dprk_monitor_config_last_reload_successful") != 1:
                break
            time.sleep(0.1)
        assert value(m, "dprk_monitor_config_last_reload_successful") == 0
        assert proc.poll() is None, "still running"
        with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0
        assert '"reload rejected' in out and '"stopped"' in out, "structlog JSON lines"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def tcp_server_sync() -> object:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    yield srv.getsockname()[1]
    srv.close()


async def test_daemon_survives_bad_servers(tmp_path: Path) -> None:
    """Garbage DNS answers, a hanging HTTP server and an endless body: each fails with its reason
    and the daemon keeps probing and serving."""
    from tests.unit.dnsserver import running

    released = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read(1024)
        await released.wait()  # accept, read the request, never answer (until the test ends)
        writer.close()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read(1024)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        try:
            while True:
                writer.write(b"x" * 65536)
                await writer.drain()
        except (ConnectionError, OSError):
            pass

    hanging = await asyncio.start_server(hang, "127.0.0.1", 0)
    flood = await asyncio.start_server(endless, "127.0.0.1", 0)
    hport = hanging.sockets[0].getsockname()[1]
    fport = flood.sockets[0].getsockname()[1]
    async with running(mode="garbage") as dns_srv:
        cfg_path = tmp_path / "c.yaml"
        cfg_path.write_text(
            textwrap.dedent(f"""\
            listen: 127.0.0.1:0
            state_dir: {tmp_path}/var
            probing: {{interval: 500ms, timeout: 300ms, max_rate: 100, reprobes: 0}}
            entities:
              - name: bad
                http:
                  - {{url: "http://www.kcna.kp:{hport}/", address: 127.0.0.1}}
                  - {{url: "http://rodong.rep.kp:{fport}/", address: 127.0.0.1, max_body: 64KiB}}
                dns:
                  - {{server: 127.0.0.1, port: {dns_srv.port}, name: kp, type: SOA}}
            bgp: {{enabled: false}}
            """)
        )
        d = Daemon(config.load(cfg_path), str(cfg_path))
        await d.start()
        try:
            fails = "dprk_monitor_probe_failures_total"
            m = await scrape_until(
                d,
                lambda m: (
                    (value(m, fails, entity="bad", kind="dns", reason="dns_error") or 0) >= 2
                    and (value(m, fails, entity="bad", kind="http", reason="timeout") or 0) >= 2
                    # The endless body is cut at max_body: a success, with bounded reads.
                    and (
                        value(m, "dprk_monitor_probe_rtt_seconds_count", entity="bad", kind="http")
                        or 0
                    )
                    >= 2
                ),
                "two rounds of each bad server failing with its reason (the body cut: a success)",
            )
            probes = value(m, "dprk_monitor_probes_total", entity="bad", kind="dns") or 0
            await scrape_until(
                d,
                lambda m2: (
                    (value(m2, "dprk_monitor_probes_total", entity="bad", kind="dns") or 0) > probes
                ),
                "probing goes on",
            )
        finally:
            await d.stop()
            # Server.close() leaves accepted connections open (Python 3.11): close them, or
            # their sockets are left for the garbage collector (a ResourceWarning).
            released.set()
            for w in writers:
                w.close()
            for srv in (hanging, flood):
                srv.close()
                await srv.wait_closed()
            await asyncio.sleep(0)


async def test_heap_is_frozen_at_start_and_through_the_first_round(
    tmp_path: Path, tcp_server: int
) -> None:
    """The live set is moved out of the collector's reach at start, what the first round adds
    is frozen as it comes (so full collections do not walk it), and nothing after it."""
    cfg_path = tmp_path / "c.yaml"
    write_config(cfg_path, tcp_server, free_port())
    gc.unfreeze()
    d = Daemon(config.load(cfg_path), str(cfg_path))
    await d.start()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        assert d._freeze_at is not None
        grown = [[i] for i in range(1000)]  # state the first round learns
        d.tick(d._freeze_at - 0.01)
        # (frozen objects can still be freed by refcounting: the count may shrink a little)
        assert gc.get_freeze_count() >= frozen + len(grown), "frozen as the round goes"
        assert d._freeze_at is not None
        d.tick(d._freeze_at + 0.01)
        assert d._freeze_at is None
        after = gc.get_freeze_count()
        later = [[i] for i in range(1000)]  # garbage of normal operation stays collectable
        d.tick(time.time() + 3600)
        assert gc.get_freeze_count() < after + len(later)
    finally:
        await d.stop()
        gc.unfreeze()
