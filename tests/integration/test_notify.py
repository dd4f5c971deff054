"""Notifications end to end: the real daemon in the simulated world (time-scaled as
test_detection.py), with real receivers on loopback in its vantage namespace: an HTTP receiver
(Apprise's json://, aiohttp) and an SMTP server (aiosmtpd) for e-mail (mailto:// on a plain
port). What a person on call would see: one opened and one closed message per outage and
receiver with what to act on, nothing lost while a receiver or the daemon is down, nothing
sent for our own uplink's trouble, one pair for a flapping outage."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.sim import scenarios
from monitor.sim.daemonproc import PROJECT_ROOT, DaemonProcess
from monitor.sim.world import World

pytestmark = pytest.mark.netns

SCALE = float(os.environ.get("DETECTION_TIME_SCALE", "0.2"))
HTTP_PORT, SMTP_PORT = 18080, 10025
SECRET = "hook-s3cretTOKEN"
BASE_URL = "https://monitor.example.org"
HOOK = {
    "url": f"json://127.0.0.1:{HTTP_PORT}/{SECRET}",
    "name": "hook",
    # The world's blackout darkens its three entities: the messages of one are checked.
    "entities": ["star-jv"],
    "timeout": "2s",
    "retry_initial": "500ms",
    "retry_max": "2s",
}
MAIL = {
    "url": f"mailto://127.0.0.1:{SMTP_PORT}?from=monitor@example.org&to=oncall@example.org",
    "name": "mail",
    "entities": ["star-jv"],
    "timeout": "2s",
    "retry_initial": "500ms",
    "retry_max": "2s",
}


class Receivers:
    """tests/notify_receivers.py running in the vantage namespace, writing what it receives
    to a JSON-lines file; stopped and started again to play a receiver that is down."""

    def __init__(self, world: World, out: Path) -> None:
        self.world, self.out = world, out
        self.proc: Any = None

    def start(self) -> None:
        ready = Path(str(self.out) + ".ready")
        ready.unlink(missing_ok=True)
        env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
        argv = [sys.executable, "-m", "tests.notify_receivers", "--http", str(HTTP_PORT)]
        argv += ["--smtp", str(SMTP_PORT), "--out", str(self.out)]
        self.proc = self.world.popen(0, argv, env=env, cwd=str(PROJECT_ROOT))
        deadline = time.time() + 30
        while not ready.exists():
            assert self.proc.poll() is None, "the receivers exited"
            assert time.time() < deadline, "the receivers did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.world.stop_process(self.proc)
            self.proc = None

    def messages(self, via: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        msgs = [json.loads(line) for line in self.out.read_text().splitlines() if line]
        return [
            m
            for m in msgs
            if (via is None or m["via"] == via) and (path is None or m.get("path") == path)
        ]

    def keys(self, via: str, path: str | None = None) -> list[str]:
        return [m["key"] for m in self.messages(via, path)]

    def wait(self, pred: Callable[[], bool], within: float, what: str) -> None:
        deadline = time.time() + within
        while not pred():
            if time.time() > deadline:
                raise AssertionError(f"{what}: not within {within}s; got {self.messages()}")
            time.sleep(0.1)


@pytest.fixture
def receivers(world: World, tmp_path: Path) -> Iterator[Receivers]:
    r = Receivers(world, tmp_path / "received.jsonl")
    yield r
    r.stop()


def notify_config(world: World, tmp_path: Path, notify: list[dict[str, Any]]) -> str:
    doc = yaml.safe_load(
        world.daemon_config(**scenarios.scaled_config(SCALE), state_dir=str(tmp_path / "var"))
    )
    doc["notify"] = notify
    doc["api"] = {"base_url": BASE_URL}
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.fixture
def make_runner(
    world: World, daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> Callable[[list[dict[str, Any]]], scenarios.Runner]:
    def make(notify: list[dict[str, Any]]) -> scenarios.Runner:
        d = daemon(config=notify_config(world, tmp_path, notify))
        return scenarios.Runner(world, d, SCALE)

    return make


def queued(r: scenarios.Runner, name: str) -> float:
    return r.metrics().value("dprk_monitor_notifications_queued", 0.0, receiver=name) or 0.0


def test_blackout_gives_one_opened_and_one_closed_per_receiver(
    make_runner: Callable[..., scenarios.Runner], receivers: Receivers
) -> None:
    """A blackout: each receiver gets one opened and one closed message naming the entity,
    the kind, the start (UTC), what failed first, the blocks, the event's page and the key;
    the closed one says how long it lasted; e-mail carries the key in a header and the long
    form; no URL secret in the daemon's log or metrics."""
    receivers.start()
    r = make_runner([HOOK, MAIL])
    o = scenarios.blackout(r)
    (ev,) = o.events
    eid = ev["id"]
    want = [f"{eid}/opened", f"{eid}/closed"]
    receivers.wait(
        lambda: receivers.keys("http") == want and receivers.keys("smtp") == want,
        30,
        "opened and closed at both receivers",
    )
    for via in ("http", "smtp"):
        opened, closed = receivers.messages(via)
        assert opened["title"] == "[dprk-monitor] star-jv: blackout started"
        body = opened["message"]
        assert "star-jv: blackout (nothing answers)." in body
        assert "Start: " in body and " UTC" in body
        assert "First failed: " in body
        assert "Blocks down: " in body and "198.18.176.0/24" in body
        assert f"{BASE_URL}/outages/{eid}" in body
        assert closed["title"].startswith("[dprk-monitor] star-jv: blackout over after ")
        assert "End: " in closed["message"] and "lasted " in closed["message"]
    mail_open, _ = receivers.messages("smtp")
    assert mail_open["header_key"] == f"{eid}/opened"
    assert "Story:" in mail_open["message"], "e-mail gets the long form"
    assert "Story:" not in receivers.messages("http")[0]["message"], "chat gets the short form"
    m = r.metrics()
    assert m.value("dprk_monitor_notifications_sent_total", receiver="hook") == 2
    assert m.value("dprk_monitor_notifications_sent_total", receiver="mail") == 2
    assert SECRET not in r.daemon.log_tail(10**7)
    assert SECRET not in r.daemon.get("/metrics").text


def test_receivers_down_and_kill9_lose_nothing_and_duplicate_nothing(
    make_runner: Callable[..., scenarios.Runner], receivers: Receivers
) -> None:
    """Receivers down through a whole blackout, and the daemon killed (-9) while its opened
    messages wait in the outbox: once the receivers are back, each gets the opened and the
    closed message exactly once."""
    r = make_runner([HOOK, MAIL])
    o = scenarios.Outcome("notify_down", SCALE)
    r.warm()
    cut = r.world.blackout()
    r.measure_open(o, cut.at)
    r.wait(
        lambda m: bool(
            m.value("dprk_monitor_notifications_failed_total", 0.0, receiver="hook")
            and m.value("dprk_monitor_notifications_failed_total", 0.0, receiver="mail")
        ),
        30,
        "failed attempts to both receivers",
    )
    assert queued(r, "hook") == 1 and queued(r, "mail") == 1
    r.daemon.kill9()  # written, not sent
    r.daemon.start()
    r.hold(1)
    assert queued(r, "hook") == 1 and queued(r, "mail") == 1, "kept, and not queued twice"
    rep = r.world.repair_blackout()
    r.measure_close(o, rep.at)
    r.wait(lambda m: queued(r, "hook") == 2 and queued(r, "mail") == 2, 30, "closed queued")
    (ev,) = r.events()
    receivers.start()
    want = [f"{ev['id']}/opened", f"{ev['id']}/closed"]
    receivers.wait(
        lambda: receivers.keys("http") == want and receivers.keys("smtp") == want,
        30,
        "both messages once the receivers are back",
    )
    r.wait(lambda m: queued(r, "hook") == 0 and queued(r, "mail") == 0, 30, "outbox empty")
    time.sleep(3)  # a retry or a duplicate would come within retry_max
    assert receivers.keys("http") == want and receivers.keys("smtp") == want


def test_uplink_cut_sends_nothing(
    make_runner: Callable[..., scenarios.Runner], receivers: Receivers
) -> None:
    """Our own uplink cut: no outage message to anyone; a receiver with `vantage: true`
    gets `vantage offline` and `vantage back`, nothing else."""
    receivers.start()
    vantage = dict(HOOK, name="hook-v", url=f"json://127.0.0.1:{HTTP_PORT}/vantage", vantage=True)
    r = make_runner([HOOK, MAIL, vantage])
    o = scenarios.vantage_uplink(r)
    assert o.events == []
    receivers.wait(
        lambda: len(receivers.keys("http", "/vantage")) == 2, 30, "vantage offline and back"
    )
    time.sleep(2)
    offline, back = receivers.messages("http", "/vantage")
    assert offline["title"] == "[dprk-monitor] vantage offline"
    assert back["title"].startswith("[dprk-monitor] vantage back after ")
    assert receivers.messages("smtp") == [] and receivers.messages("http", f"/{SECRET}") == []


def test_flapping_outage_gives_one_pair_per_event(
    make_runner: Callable[..., scenarios.Runner], receivers: Receivers
) -> None:
    """Routes toggling four times (one event, or at most two, as the detector keeps them):
    each receiver gets exactly one opened and one closed message per event, not dozens."""
    receivers.start()
    r = make_runner([HOOK, MAIL])
    o = scenarios.flapping(r)
    ids = [e["id"] for e in o.events]
    assert 1 <= len(ids) <= 2
    want = sorted([f"{i}/opened" for i in ids] + [f"{i}/closed" for i in ids])
    receivers.wait(
        lambda: sorted(receivers.keys("http")) == want and sorted(receivers.keys("smtp")) == want,
        30,
        "one pair per event at both receivers",
    )
    time.sleep(2)
    assert sorted(receivers.keys("http")) == want and sorted(receivers.keys("smtp")) == want
