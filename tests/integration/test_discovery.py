"""Discovery end to end: the real daemon censuses the simulated DPRK and samples its blocks.

Time-scaled like test_detection (DETECTION_TIME_SCALE, default 0.2: a 30 s interval runs as
6 s, max_rate 100/s for the default 20/s). The census interval is set per test in seconds of
the scaled clock; a census of the /22 takes about 1,024 / (share x max_rate) seconds.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.sim import scenarios
from monitor.sim.daemonproc import DaemonProcess, Metrics
from monitor.sim.world import World

pytestmark = pytest.mark.netns

SCALE = float(os.environ.get("DETECTION_TIME_SCALE", "0.2"))
INTERVAL = scenarios.DEFAULT_INTERVAL * SCALE
STAR = ["198.18.176.0/24", "198.18.177.0/24", "198.18.178.0/24", "198.18.179.0/24"]


def config_text(
    world: World,
    state_dir: Path,
    *,
    discover: dict[str, bool],
    prefixes_only: tuple[str, ...] = (),
    keep: tuple[str, ...] | None = None,
    census_interval: float = 3600.0,
    share: float = 0.5,
) -> str:
    """The world's scaled config, with `discover` per entity, the entities of `prefixes_only`
    stripped of their targets, only the entities of `keep` (default: all)."""
    doc: dict[str, Any] = yaml.safe_load(
        world.daemon_config(state_dir=str(state_dir), **scenarios.scaled_config(SCALE))
    )
    entities = []
    for ent in doc["entities"]:
        if keep is not None and ent["name"] not in keep:
            continue
        if ent["name"] in prefixes_only:
            ent = {k: v for k, v in ent.items() if k in ("name", "asn", "prefixes")}
        if ent["name"] in discover:
            ent["discover"] = discover[ent["name"]]
        entities.append(ent)
    doc["entities"] = entities
    doc["discovery"] = {"interval": f"{census_interval:g}s", "share": share}
    return yaml.safe_dump(doc, sort_keys=False)


def wait(d: DaemonProcess, pred: Callable[[Metrics], bool], within: float, what: str) -> Metrics:
    deadline = time.time() + within
    while True:
        m = d.metrics()
        if pred(m):
            return m
        if time.time() > deadline:
            raise AssertionError(f"{what}: not within {within:.0f}s\n{d.log_tail(3000)}")
        time.sleep(0.2)


def census_time(m: Metrics, entity: str) -> float | None:
    return m.value("dprk_monitor_census_last_timestamp_seconds", None, entity=entity)


def hosts_per_block(world: World) -> dict[str, int]:
    out: dict[str, int] = {}
    for addr in world.hosts:
        for b in STAR:
            if ipaddress.IPv4Address(addr) in ipaddress.IPv4Network(b):
                out[b] = out.get(b, 0) + 1
    return out


def discovery_doc(d: DaemonProcess, entity: str) -> dict[str, Any]:
    doc: dict[str, Any] = d.status()["discovery"]["entities"][entity]
    return doc


def test_prefix_only_entity_judged_per_block_and_follows_renumbered_hosts(
    world: World, daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    """star-jv with prefixes only: after its first census each /24 is judged (belief, entity
    up) from its answering hosts, and the first census is re-checked early (interval / 24);
    two hosts renumbered inside a block are followed after the next census (joined, left)
    with no config change and no event at all."""
    census_every = 60.0
    text = config_text(
        world,
        tmp_path / "var",
        discover={"star-jv": True},
        prefixes_only=("star-jv",),
        keep=("star-jv",),
        census_interval=census_every,
    )
    d = daemon(config=text)
    m = wait(d, lambda m: census_time(m, "star-jv") is not None, 120, "first census")
    first = census_time(m, "star-jv")
    assert m.total("dprk_monitor_probes_total", entity="star-jv", kind="census") >= 1024
    expected = hosts_per_block(world)
    for b in STAR:
        assert (
            m.value("dprk_monitor_block_responsive_addresses", entity="star-jv", block=b)
            == expected[b]
        ), b
        assert m.value("dprk_monitor_block_monitorable", entity="star-jv", block=b) == 1
    m = wait(
        d,
        lambda m: (
            {lb["block"] for lb, _ in m.values("dprk_monitor_block_belief", entity="star-jv")}
            == set(STAR)
            and m.one_hot("dprk_monitor_entity_state", "state", entity="star-jv") == "up"
        ),
        10 * INTERVAL,
        "every block judged, entity up",
    )
    assert m.total("dprk_monitor_probes_total", entity="star-jv", kind="icmp") > 0
    # the first census's re-check comes long before the interval; nothing changes in it
    m = wait(
        d,
        lambda m: (census_time(m, "star-jv") or 0) > (first or 0),
        census_every / 24 + 120,
        "the first census's re-check",
    )
    first = census_time(m, "star-jv")
    recheck = next(b for b in discovery_doc(d, "star-jv")["blocks"] if b["block"] == STAR[0])
    assert recheck["joined"] == [] and recheck["left"] == []

    world.move_host("198.18.176.1", "198.18.176.201")
    world.move_host("198.18.176.8", "198.18.176.202")
    m = wait(
        d,
        lambda m: (census_time(m, "star-jv") or 0) > (first or 0),
        census_every + 120,
        "second census",
    )
    block = next(b for b in discovery_doc(d, "star-jv")["blocks"] if b["block"] == STAR[0])
    assert block["joined"] == ["198.18.176.201", "198.18.176.202"]
    assert block["left"] == ["198.18.176.1", "198.18.176.8"]
    assert block["responsive"] == expected[STAR[0]] and block["monitorable"]
    # the new hosts are sampled: the block keeps being judged up, nothing opens
    time.sleep(3 * INTERVAL)
    m = d.metrics()
    assert m.one_hot("dprk_monitor_entity_state", "state", entity="star-jv") == "up"
    assert d.outages() == []


def test_block_whose_hosts_all_left_is_unmonitorable_not_down(
    world: World, daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    """kptc-unicom's hosts are all gone: the census reports its block unmonitorable; the
    block is never judged, so nothing is down and no event opens."""
    block = "198.19.109.0/24"
    for addr in [a for a, b in world.hosts.items() if b == block]:
        world.host_down(addr)
    text = config_text(
        world,
        tmp_path / "var",
        discover={"kptc-unicom": True},
        prefixes_only=("kptc-unicom",),
        keep=("kptc-unicom", "satgate"),
    )
    d = daemon(config=text)
    m = wait(d, lambda m: census_time(m, "kptc-unicom") is not None, 60, "census")
    assert m.value("dprk_monitor_block_monitorable", entity="kptc-unicom", block=block) == 0
    assert (
        m.value("dprk_monitor_block_responsive_addresses", entity="kptc-unicom", block=block) == 0
    )
    assert discovery_doc(d, "kptc-unicom")["unmonitorable"] == [block]
    time.sleep(3 * INTERVAL)
    m = d.metrics()
    assert m.one_hot("dprk_monitor_entity_state", "state", entity="kptc-unicom") not in (
        "down",
        "partial",
    )
    assert not m.values("dprk_monitor_block_belief", entity="kptc-unicom")
    assert d.outages() == []


def test_blackout_during_a_census_is_detected_as_fast_as_without(
    world: World, daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    """The same blackout, first with no census, then while a census of the /22 takes half
    of max_rate: flagged about as fast (within half an interval, or 1.5 times, of the run
    without a census)."""
    plain = config_text(world, tmp_path / "var-a", discover={}, keep=("star-jv",))
    d1 = daemon(config=plain)
    o1 = scenarios.blackout(scenarios.Runner(world, d1, SCALE))
    d1.stop()
    assert o1.detect_delay is not None
    wait_quiet = time.time() + 2 * INTERVAL
    while time.time() < wait_quiet:
        time.sleep(0.2)

    busy = config_text(world, tmp_path / "var-b", discover={"star-jv": True}, keep=("star-jv",))
    d2 = daemon(config=busy)
    runner = scenarios.Runner(world, d2, SCALE)
    o = scenarios.Outcome("blackout_during_census", SCALE)
    runner.warm()
    assert discovery_doc(d2, "star-jv")["running"], "the census is still running"
    cut = world.blackout()
    runner.measure_open(o, cut.at)
    assert discovery_doc(d2, "star-jv")["running"] or census_time(d2.metrics(), "star-jv")
    runner.hold(2)
    rep = world.repair_blackout()
    runner.measure_close(o, rep.at)
    assert o.detect_delay is not None
    assert o.detect_delay <= max(1.5 * o1.detect_delay, o1.detect_delay + INTERVAL / 2), (
        o.detect_delay,
        o1.detect_delay,
    )
    assert len(runner.events()) == 1
