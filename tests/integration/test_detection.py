"""Outage detection end to end: the real daemon against the simulated DPRK, one test per case.

Time-scaled (DETECTION_TIME_SCALE, default 0.2: a 30 s interval runs as 6 s with every detection
duration scaled alike), so the contract's figures (flagged within 40 s, closed within 40 s of the
repair, start within one interval) are checked at the same ratios. The full-length runs at the
defaults are `bench/bench_detection.py` (docs/BENCHMARKS.md, "Detection").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from monitor.detect.model import parse_time
from monitor.sim import scenarios
from monitor.sim.daemonproc import DaemonProcess
from monitor.sim.world import World

pytestmark = pytest.mark.netns

SCALE = float(os.environ.get("DETECTION_TIME_SCALE", "0.2"))
INTERVAL = scenarios.DEFAULT_INTERVAL * SCALE
DETECT = scenarios.DETECT_WITHIN * SCALE
CLOSE = scenarios.CLOSE_WITHIN * SCALE


@pytest.fixture
def runner(world: World, daemon: Callable[..., DaemonProcess]) -> scenarios.Runner:
    d = daemon(**scenarios.scaled_config(SCALE))
    return scenarios.Runner(world, d, SCALE)


def only_event(o: scenarios.Outcome) -> dict[str, Any]:
    assert len(o.events) == 1, f"exactly one event, got {o.events}"
    return o.events[0]


def test_blackout_flagged_and_closed_in_time(runner: scenarios.Runner) -> None:
    """Full blackout: a blackout event within 40 s (scaled), start within one interval, closed
    within 40 s of the repair with the end near the repair."""
    o = scenarios.blackout(runner)
    ev = only_event(o)
    assert ev["kind"] == "blackout"
    assert o.detect_delay is not None and o.detect_delay <= DETECT
    assert o.start_error is not None and abs(o.start_error) <= INTERVAL
    assert o.close_delay is not None and o.close_delay <= CLOSE
    assert o.end_error is not None and abs(o.end_error) <= INTERVAL
    ev_doc = ev["evidence"]
    assert ev_doc["failure_order"], "what failed first is recorded"
    assert {b["block"] for b in ev_doc["blocks"]} >= {"198.18.176.0/24", "198.18.177.0/24"}


def test_silent_blackout_flagged_and_closed_in_time(runner: scenarios.Runner) -> None:
    """A blackout whose routers drop silently (no ICMP error, only timeouts): one blackout
    event flagged within a third of the contract's 40 s (scaled: the goal is 10 s at the
    defaults), start within 1 s (scaled), closed within 40 s of the repair."""
    o = scenarios.blackout_silent(runner)
    ev = only_event(o)
    assert ev["kind"] == "blackout" and o.notes["mode"] == "blackhole"
    assert o.detect_delay is not None and o.detect_delay <= DETECT / 3, o.detect_delay
    assert o.start_error is not None and abs(o.start_error) <= SCALE, o.start_error
    assert o.close_delay is not None and o.close_delay <= CLOSE
    # Every entity goes down with the country, the small ones (one /24, three addresses)
    # included, within the contract's 40 s (scaled).
    flagged = o.notes["entity_flagged"]
    assert set(flagged) == set(runner.world_entities()), flagged
    assert max(flagged.values()) <= DETECT, flagged


def test_ddos_like_loss_then_drop_is_one_event(runner: scenarios.Runner) -> None:
    """Loss ramping up then the routers dropping (Jan 2022) ends as one blackout event."""
    o = scenarios.ddos(runner)
    ev = only_event(o)
    assert ev["kind"] == "blackout"
    assert o.close_delay is not None and o.close_delay <= CLOSE


def test_dns_first_then_everything_escalates_one_event(runner: scenarios.Runner) -> None:
    """DNS first, then all routes (Nov 2022): one event, kind blackout, DNS as its first phase."""
    o = scenarios.dns_first(runner)
    ev = only_event(o)
    assert ev["kind"] == "blackout"
    phases = [p["kind"] for p in ev["signals"]["phases"]]
    assert phases[0] == "dns" and "blackout" in phases
    assert ev["evidence"]["failure_order"][0] == "dns", "DNS failed first"
    assert o.notes["blackout_detect_delay"] <= DETECT


def test_web_only_outage(runner: scenarios.Runner) -> None:
    """Web sites down with the network up (May 2021): a web event, the entity partial, not down."""
    o = scenarios.web_only(runner)
    ev = only_event(o)
    assert ev["kind"] == "web"
    assert o.notes["state"] == "partial"


def test_one_block_lost_is_partial(runner: scenarios.Runner) -> None:
    """One /24 blackholed: a partial event naming that block, not a blackout."""
    o = scenarios.partial_block(runner)
    ev = only_event(o)
    assert ev["kind"] == "partial"
    assert o.notes["state"] == "partial"
    assert [b["block"] for b in ev["evidence"]["blocks"]] == ["198.18.177.0/24"]


def test_one_upstream_lost_is_partial(runner: scenarios.Runner) -> None:
    """TransTelecom withdraws (.177 and .178 unreachable): partial, with both blocks named."""
    o = scenarios.partial_upstream(runner)
    ev = only_event(o)
    assert ev["kind"] == "partial"
    assert {b["block"] for b in ev["evidence"]["blocks"]} == {"198.18.177.0/24", "198.18.178.0/24"}


def test_flapping_gives_one_event_not_dozens(runner: scenarios.Runner) -> None:
    """Routes toggling every ~45 s, four times (Oct 2017): at most two events."""
    o = scenarios.flapping(runner)
    assert 1 <= len(o.events) <= 2, o.events
    assert all(e["kind"] == "blackout" for e in o.events)
    assert o.start_error is not None and abs(o.start_error) <= INTERVAL


def test_random_loss_opens_no_outage(runner: scenarios.Runner) -> None:
    """30% random loss for 10 minutes (scaled): no event, the entity never down."""
    o = scenarios.random_loss(runner)
    assert o.events == []
    assert "active_seen" not in o.notes
    assert "down" not in o.notes["states"]


def test_vantage_uplink_cut_is_not_a_dprk_outage(runner: scenarios.Runner) -> None:
    """Our own uplink cut for 5 minutes (scaled): vantage_healthy 0, states unknown, no event."""
    o = scenarios.vantage_uplink(runner)
    assert o.events == []
    assert "active_seen" not in o.notes
    assert "unknown" in o.notes["states"] and "down" not in o.notes["states"]
    assert o.notes["vantage_offline_delay"] <= DETECT


def test_kill9_mid_outage_keeps_one_event(runner: scenarios.Runner) -> None:
    """kill -9 during a blackout, restart, repair: one event with the right start and end."""
    o = scenarios.kill9_midoutage(runner)
    ev = only_event(o)
    assert ev["kind"] == "blackout"
    assert ev["end"] is not None
    assert o.start_error is not None and abs(o.start_error) <= INTERVAL
    assert o.end_error is not None and abs(o.end_error) <= INTERVAL
    assert parse_time(ev["end"]) > parse_time(ev["start"])
    assert o.notes["resumed_active"], "the open event was resumed at restart"
