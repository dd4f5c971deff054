"""The embedded history end to end: the real daemon in the simulated world records a blackout,
and /api/v1/history shows the entity down over the interval it was down, nothing answering.

Time-scaled like test_detection.py (DETECTION_TIME_SCALE, default 0.2), with 1 s history steps.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import pytest

from monitor.detect.model import iso, parse_time
from monitor.sim import scenarios
from monitor.sim.daemonproc import DaemonProcess
from monitor.sim.world import World

pytestmark = pytest.mark.netns

SCALE = float(os.environ.get("DETECTION_TIME_SCALE", "0.2"))


def test_blackout_shows_in_history_as_down_over_the_right_interval(
    world: World, daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    """A blackout: the history's 1 s points are up before the cut, down from when the
    detector called it (within a step) until the repair was seen, with no ICMP answer and
    full loss inside; the 1-minute-like tier (6 s) shows the same interval down."""
    text = world.daemon_config(**scenarios.scaled_config(SCALE), state_dir=str(tmp_path / "var"))
    d = daemon(config=text + "history:\n  resolution: 1s\n")
    r = scenarios.Runner(world, d, SCALE)
    o = scenarios.blackout(r)
    (ev,) = o.events
    assert o.start_error is not None and o.end_error is not None
    assert o.detect_delay is not None and o.close_delay is not None
    cut = parse_time(ev["start"]) - o.start_error
    repair = parse_time(ev["end"]) - o.end_error

    def history(step: int) -> list[dict[str, object]]:
        q = {"entity": "star-jv", "since": iso(cut - 20), "until": iso(repair + 20), "step": step}
        doc = d.json("/api/v1/history?" + urlencode(q))
        assert doc["step_seconds"] == step
        points: list[dict[str, object]] = doc["points"]
        return points

    pts = history(1)
    down = [parse_time(str(p["t"])) for p in pts if p["state"] == "down"]
    assert down, pts
    first, last = down[0], down[-1]
    # Down from the confirmation (the detector's state, not the back-dated event start).
    assert cut - 1 <= first <= cut + o.detect_delay + 1, (cut, first, o.detect_delay)
    # The last down step [last, last + 1 s) ends about when the repair is seen.
    assert repair - 1 <= last + 1 <= repair + o.close_delay + 1, (repair, last, o.close_delay)
    inside = [p for p in pts if first <= parse_time(str(p["t"])) <= last]
    assert all(p["state"] == "down" for p in inside), [p["state"] for p in inside]
    before = [p for p in pts if parse_time(str(p["t"])) < cut - 1]
    # Up before the cut (the daemon's first steps may still be unknown), never down.
    assert before and before[-1]["state"] == "up"
    assert all(p["state"] in ("up", "unknown") for p in before)
    middle = [p for p in inside if first + 2 <= parse_time(str(p["t"])) <= last - 2]
    assert middle
    assert all(p["answered"].get("icmp") == 0 for p in middle)  # type: ignore[attr-defined]
    assert all(p["loss"] in (1.0, None) for p in middle)
    assert any(p["loss"] == 1.0 for p in middle)

    coarse = history(6)
    down6 = [parse_time(str(p["t"])) for p in coarse if p["state"] == "down"]
    assert down6 and down6[0] <= first < down6[0] + 6 and down6[-1] <= last < down6[-1] + 6
