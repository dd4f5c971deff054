"""Routing signals end to end: the real daemon in the simulated world, time-scaled like
test_detection.py (DETECTION_TIME_SCALE, default 0.2: a 30 s interval runs as 6 s).

- Path localisation: an upstream's link into DPRK cut -> the outage's `path` evidence names that
  upstream (name and AS) as the last answering hop; our own uplink cut -> no event, no trace.
- BGP: a RIS Live look-alike inside the vantage namespace (monitor/sim/rislive.py) announces the
  world's /24s from five collector peers, then withdraws them: the visibility gauge, the
  `routing` and `blackout` events with the withdrawal in their evidence, and partial visibility
  (some peers keep the route) reported as partial, never as a blackout.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from monitor.detect.model import parse_time
from monitor.sim import scenarios
from monitor.sim.daemonproc import DaemonProcess, Metrics
from monitor.sim.rislive import RisLiveSim, make_peers, world_routes
from monitor.sim.world import World

pytestmark = pytest.mark.netns

SCALE = float(os.environ.get("DETECTION_TIME_SCALE", "0.2"))
INTERVAL = scenarios.DEFAULT_INTERVAL * SCALE
STAR = "198.18.176.0/22"
STAR_24S = ["198.18.176.0/24", "198.18.177.0/24", "198.18.178.0/24", "198.18.179.0/24"]
PEERS = make_peers(5)


def visibility(m: Metrics, prefix: str = STAR, entity: str = "star-jv") -> float | None:
    return m.value("dprk_monitor_bgp_prefix_visibility_ratio", entity=entity, prefix=prefix)


def wait_evidence(r: scenarios.Runner, key: str, within: float) -> dict[str, Any]:
    """The latest event of the runner's entity once its evidence has `key`."""
    deadline = time.time() + within
    while True:
        evs = r.events()
        if evs and key in evs[-1]["evidence"]:
            ev: dict[str, Any] = evs[-1]
            return ev
        if time.time() > deadline:
            raise AssertionError(f"no event with evidence {key!r}: {evs}\n{r.daemon.log_tail()}")
        time.sleep(r.poll)


def only_kinds(r: scenarios.Runner) -> list[str]:
    return [e["kind"] for e in r.events()]


# --- path localisation --------------------------------------------------------------------------


@pytest.fixture
def runner(world: World, daemon: Callable[..., DaemonProcess]) -> scenarios.Runner:
    return scenarios.Runner(world, daemon(**scenarios.scaled_config(SCALE)), SCALE)


@pytest.mark.parametrize("upstream", ["unicom", "ttk"])
def test_cut_upstream_link_names_that_upstream_as_the_last_answer(
    runner: scenarios.Runner, upstream: str
) -> None:
    """An upstream's link into DPRK cut: `path` names that upstream (name, AS) as last answer."""
    world = runner.world
    up = world.spec.upstream(upstream)
    carried = [
        ipaddress.ip_network(p)
        for p, (ent, via) in world.blocks.items()
        if ent == "star-jv" and via == upstream
    ]
    runner.warm()
    cut = world.cut_link(upstream, "dprk")
    t = runner.wait(runner.active, 4 * scenarios.DETECT_WITHIN * SCALE + 60 * SCALE, "outage")
    ev = wait_evidence(runner, "path", 4 * INTERVAL)
    path = ev["evidence"]["path"]
    assert ev["kind"] == "partial", "the other upstream still carries the rest"
    assert any(ipaddress.ip_address(path["target"]) in n for n in carried), path["target"]
    last = path["last_answer"]
    assert last["owner"]["name"] == up.name and last["owner"]["asn"] == up.asn, path
    assert world.upstream_routers[last["address"]] == (up.name, up.asn)
    assert f"last answer: {up.name} AS{up.asn} router {last['address']}" in path["summary"]
    assert last["answer"] == "unreachable" and last["note"] == "!H"
    on_path = set(world.expected_path(path["target"]))
    # A hop may be silent: the upstream router rate-limits its ICMP errors toward us and the
    # ordinary probes of the dead blocks take its tokens (seen in CI: TTL 2 silent, TTL 3
    # answered "unreachable"). Every hop that answered is on the path.
    answered = {h["address"] for h in path["hops"] if h["address"] is not None}
    assert answered <= on_path, "every traced hop is on the path"
    assert not path["reached"]
    assert parse_time(path["started"]) >= cut.at and t >= cut.at


def test_vantage_uplink_cut_opens_no_event_and_traces_nothing(runner: scenarios.Runner) -> None:
    """Our own uplink cut (the vantage offline): no DPRK event at all, so no traceroute."""
    o = scenarios.vantage_uplink(runner, minutes=2)
    assert o.events == []
    assert "active_seen" not in o.notes
    assert "down" not in o.notes["states"]
    log = runner.daemon.log_path.read_text(errors="replace")
    assert '"event": "traceroute"' not in log


# --- BGP through a RIS Live look-alike ---------------------------------------------------------


@pytest.fixture
def ris(world: World) -> Iterator[RisLiveSim]:
    srv = RisLiveSim(world, 0).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def bgp_runner(
    world: World, daemon: Callable[..., DaemonProcess], ris: RisLiveSim
) -> scenarios.Runner:
    """The daemon subscribed to the sim's RIS Live; every block announced by five peers;
    visibility 1 and the entity up."""
    d = daemon(**scenarios.scaled_config(SCALE), bgp={"enabled": True, "ris_live_url": ris.url})
    r = scenarios.Runner(world, d, SCALE)
    # The client subscribes prefix by prefix: wait for every block's, or some announcements
    # reach no subscriber (seen under load: 20 frames of 30).
    for block in world.blocks:
        ris.wait_subscribed(str(block))
    assert ris.announce(world_routes(world), PEERS) == len(PEERS) * len(world.blocks)
    r.wait(lambda m: visibility(m) == 1.0, 10, "visibility 1 after the announcements")
    r.warm()
    return r


def test_withdrawal_storm_with_data_plane_up_is_a_routing_event(
    bgp_runner: scenarios.Runner, ris: RisLiveSim
) -> None:
    """A withdrawal storm with hosts answering: visibility 0, a routing event with BGP evidence."""
    r = bgp_runner
    storm = time.time()
    ris.withdraw(STAR_24S, PEERS)
    r.wait(lambda m: visibility(m) == 0.0, 10, "visibility 0 after the storm")
    r.wait(r.active, 4 * scenarios.DETECT_WITHIN * SCALE, "routing event")
    ev = wait_evidence(r, "bgp", 2 * INTERVAL)
    assert ev["kind"] == "routing"
    assert abs(parse_time(ev["start"]) - storm) <= 1.0, "starts at the withdrawal"
    assert r.state() == "partial", "the data plane still answers"
    bgp = ev["evidence"]["bgp"][STAR]
    assert bgp["visibility_ratio"] == 0.0 and bgp["peers_seeing"] == 0
    w = bgp["withdrawal"]
    assert w["peers_withdrawn"] == len(PEERS)
    assert abs(parse_time(w["first"]) - storm) <= 1.0
    assert parse_time(w["confirmed"]) >= parse_time(w["first"])
    path = wait_evidence(r, "path", 2 * INTERVAL)["evidence"]["path"]
    assert path["reached"], "the data plane answers: the trace reaches the target"
    m = r.metrics()
    assert m.value("dprk_monitor_ris_live_connected") == 1
    assert m.total("dprk_monitor_ris_live_messages_total") >= len(PEERS) * (len(STAR_24S) + 1)
    assert m.total("dprk_monitor_ris_live_junk_frames_total") == 0
    assert only_kinds(r) == ["routing"]


def test_withdrawal_storm_with_data_plane_cut_is_a_blackout_with_bgp_evidence(
    bgp_runner: scenarios.Runner, ris: RisLiveSim
) -> None:
    """A withdrawal storm with the data plane cut: one blackout event with the BGP evidence."""
    r = bgp_runner
    storm = time.time()
    ris.withdraw(STAR_24S, PEERS)
    r.world.blackout()
    r.wait(r.active, 4 * scenarios.DETECT_WITHIN * SCALE, "blackout event")
    ev = wait_evidence(r, "bgp", 2 * INTERVAL)
    assert ev["kind"] == "blackout"
    assert r.state() == "down"
    w = ev["evidence"]["bgp"][STAR]["withdrawal"]
    assert w is not None and w["peers_withdrawn"] == len(PEERS)
    assert abs(parse_time(w["first"]) - storm) <= 1.0
    assert visibility(r.metrics()) == 0.0
    assert only_kinds(r) == ["blackout"]


def test_partial_visibility_is_partial_not_a_blackout(
    bgp_runner: scenarios.Runner, ris: RisLiveSim
) -> None:
    """Three of five peers drop the routes: visibility in (0, 1), partial, never a blackout."""
    r = bgp_runner
    ris.withdraw(STAR_24S, PEERS[:3])
    r.wait(lambda m: visibility(m) == pytest.approx(0.4), 10, "visibility 0.4")
    r.wait(r.active, 4 * scenarios.DETECT_WITHIN * SCALE, "partial event")
    states: set[str] = set()

    def check(m: Metrics) -> None:
        states.add(r.state(m) or "?")
        v = visibility(m)
        assert v is not None and 0.0 < v < 1.0

    r.hold(2, check)
    assert states == {"partial"}, states
    assert only_kinds(r) == ["partial"]
    ev = r.events()[-1]
    bgp = ev["evidence"]["bgp"][STAR]
    assert bgp["peers_seeing"] == 2 and bgp["peers_recent"] == len(PEERS)
    assert bgp["withdrawal"]["peers_withdrawn"] == 3
    assert bgp["more_specifics_missing"] == {
        p: {"visibility_ratio": pytest.approx(0.4), "peers_seeing": 2} for p in STAR_24S
    }


def test_one_upstream_lost_in_bgp_and_data_plane_names_its_blocks_and_router(
    bgp_runner: scenarios.Runner, ris: RisLiveSim
) -> None:
    """TransTelecom lost in BGP and data plane: evidence names its /24s and its router."""
    r = bgp_runner
    ttk = [p for p, (ent, via) in r.world.blocks.items() if ent == "star-jv" and via == "ttk"]
    r.world.cut_link("ttk", "dprk")
    ris.withdraw(ttk, PEERS)
    r.wait(r.active, 4 * scenarios.DETECT_WITHIN * SCALE + 60 * SCALE, "partial event")
    ev = wait_evidence(r, "path", 4 * INTERVAL)
    assert ev["kind"] == "partial"
    bgp = ev["evidence"]["bgp"][STAR]
    assert bgp["visibility_ratio"] == 1.0 and bgp["withdrawal"] is None
    assert bgp["more_specifics_missing"] == {
        p: {"visibility_ratio": 0.0, "peers_seeing": 0} for p in sorted(ttk)
    }
    last = ev["evidence"]["path"]["last_answer"]
    assert (last["owner"]["name"], last["owner"]["asn"]) == ("TransTelecom", 20485)
    assert visibility(r.metrics()) == 1.0
