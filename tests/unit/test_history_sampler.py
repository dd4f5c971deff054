"""The pure half of the history: a step's point from what the daemon saw, downsampling, the
choice of a step for a range, the point's codec."""

from __future__ import annotations

import pytest

from monitor.detect.model import State
from monitor.history.point import MAX_BLOCKS, HistoryPoint
from monitor.history.sampler import (
    EntitySnapshot,
    Sampler,
    Snapshot,
    bucket,
    choose_step,
    downsample,
    regroup,
)

T0 = 1_750_000_200.0  # a multiple of 600


def snap(state: State = State.UP, vantage: bool = True, **kw: object) -> Snapshot:
    return Snapshot([EntitySnapshot("star-jv", state, **kw)], vantage)  # type: ignore[arg-type]


def point(t: float, state: State = State.UP, **kw: object) -> HistoryPoint:
    base: dict[str, object] = {
        "targets": {"icmp": 4},
        "up": {"icmp": 4},
        "answered": {"icmp": 4},
        "loss": 0.0,
        "rtt_median": 0.3,
        "blocks": {"198.18.176.0/24": 1.0},
        "bgp": {"198.18.176.0/22": 1.0},
    }
    base.update(kw)
    return HistoryPoint("star-jv", t, 10, state, **base)  # type: ignore[arg-type]


def test_a_short_blackout_inside_a_step_shows_as_the_steps_state() -> None:
    """State is the worst held in the step: up -> down -> up within 10 s gives down."""
    s = Sampler(10)
    s.state_changed("star-jv", State.UP)
    s.close(T0 - 10, snap())
    s.state_changed("star-jv", State.DOWN)
    s.state_changed("star-jv", State.UP)
    (p,) = s.close(T0, snap(State.UP))
    assert p.state is State.DOWN and p.t == T0 and p.step == 10
    (q,) = s.close(T0 + 10, snap(State.UP))
    assert q.state is State.UP, "the next step starts from the state held at its start"


def test_state_held_from_an_earlier_step_counts() -> None:
    """A state entered in an earlier step and still held is the next step's state."""
    s = Sampler(10)
    s.state_changed("star-jv", State.DOWN)
    s.close(T0, snap(State.DOWN))
    (p,) = s.close(T0 + 10, snap(State.DOWN))
    assert p.state is State.DOWN


def test_answered_counts_distinct_targets_per_kind() -> None:
    """Answered is distinct targets per kind that answered at least once; configured kinds
    without an answer are 0."""
    s = Sampler(10)
    for _ in range(3):
        s.observe("star-jv", "icmp", "a", True, 0.2)
    s.observe("star-jv", "icmp", "b", True, 0.4)
    s.observe("star-jv", "icmp", "c", False)
    (p,) = s.close(T0, snap(targets={"icmp": 3, "dns": 1}, up={"icmp": 2, "dns": 0}))
    assert p.answered == {"icmp": 2, "dns": 0}
    assert p.targets == {"icmp": 3, "dns": 1} and p.up == {"icmp": 2, "dns": 0}


def test_loss_counts_only_targets_that_ever_answered() -> None:
    """A configured address that never answers is not loss; a responsive one that stops is."""
    s = Sampler(10)
    s.observe("star-jv", "icmp", "silent", False)
    (p,) = s.close(T0, snap())
    assert p.loss is None, "no probe of a responsive target: no loss figure"
    s.observe("star-jv", "icmp", "a", True, 0.1)
    s.observe("star-jv", "icmp", "silent", False)
    (p,) = s.close(T0 + 10, snap())
    assert p.loss == 0.0
    for _ in range(3):
        s.observe("star-jv", "icmp", "a", False)
    s.observe("star-jv", "icmp", "a", True, 0.1)
    (p,) = s.close(T0 + 20, snap())
    assert p.loss == 0.75


def test_rtt_is_the_median_of_the_steps_answers() -> None:
    """rtt_median is the median of the step's answered ICMP round trips; None without one."""
    s = Sampler(10)
    for rtt in (0.3, 0.1, 0.9):
        s.observe("star-jv", "icmp", "a", True, rtt)
    (p,) = s.close(T0, snap())
    assert p.rtt_median == 0.3
    (p,) = s.close(T0 + 10, snap())
    assert p.rtt_median is None


def test_vantage_unhealthy_at_any_time_in_the_step() -> None:
    """vantage_healthy is False if the vantage was unhealthy at any time in the step."""
    s = Sampler(10)
    s.vantage_changed(False)
    s.vantage_changed(True)
    (p,) = s.close(T0, snap(vantage=True))
    assert p.vantage_healthy is False
    (p,) = s.close(T0 + 10, snap(vantage=True))
    assert p.vantage_healthy is True


def test_blocks_are_capped_so_a_point_stays_bounded() -> None:
    """A point names at most MAX_BLOCKS blocks (the first in order): its size is bounded."""
    s = Sampler(10)
    blocks = {f"10.{i // 256}.{i % 256}.0/24": 0.5 for i in range(MAX_BLOCKS + 50)}
    (p,) = s.close(T0, snap(blocks=blocks))
    assert len(p.blocks) == MAX_BLOCKS
    assert list(p.blocks) == sorted(blocks)[:MAX_BLOCKS]


def test_entities_removed_are_forgotten() -> None:
    """An entity no longer in the snapshot gets no point and its state is dropped."""
    s = Sampler(10)
    s.state_changed("gone", State.DOWN)
    s.observe("gone", "icmp", "a", True)
    points = s.close(T0, snap())
    assert [p.entity for p in points] == ["star-jv"]
    assert "gone" not in s._state and "gone" not in s._responsive


def test_downsample_keeps_the_worst_of_the_bucket() -> None:
    """Coarse point: worst state, min up/answered/beliefs/visibility, max targets, mean loss,
    median of the RTT medians, vantage healthy only if it always was."""
    pts = [
        point(T0),
        point(
            T0 + 10,
            State.DOWN,
            up={"icmp": 0},
            answered={"icmp": 1},
            loss=1.0,
            rtt_median=None,
            blocks={"198.18.176.0/24": 0.01},
            bgp={"198.18.176.0/22": 0.2},
            vantage_healthy=True,
        ),
        point(T0 + 20, State.PARTIAL, targets={"icmp": 5}, loss=0.5, rtt_median=0.9),
        point(T0 + 30, loss=None, rtt_median=0.1, vantage_healthy=False),
    ]
    p = downsample(pts, T0, 60)
    assert (p.t, p.step, p.state) == (T0, 60, State.DOWN)
    assert p.targets == {"icmp": 5} and p.up == {"icmp": 0} and p.answered == {"icmp": 1}
    assert p.loss == 0.5 and p.rtt_median == 0.3
    assert p.blocks == {"198.18.176.0/24": 0.01} and p.bgp == {"198.18.176.0/22": 0.2}
    assert p.vantage_healthy is False


def test_unknown_does_not_hide_an_outage_nor_a_healthy_up() -> None:
    """Severity: down > partial > degraded > unknown > up."""
    assert downsample([point(T0), point(T0 + 10, State.UNKNOWN)], T0, 60).state is State.UNKNOWN
    d = downsample([point(T0, State.UNKNOWN), point(T0 + 10, State.DEGRADED)], T0, 60)
    assert d.state is State.DEGRADED


def test_regroup_makes_one_point_per_bucket() -> None:
    """Finer points regrouped into aligned buckets, one coarse point each."""
    pts = [point(T0 + 10 * i, State.DOWN if i == 7 else State.UP) for i in range(13)]
    out = regroup(pts, 60)
    assert [(p.t, p.state) for p in out] == [
        (T0, State.UP),
        (T0 + 60, State.DOWN),
        (T0 + 120, State.UP),
    ]
    assert bucket(T0 + 59.9, 60) == T0


def test_choose_step_picks_the_finest_tier_that_holds_the_range() -> None:
    """The finest tier whose retention holds `since` and gives at most max_points."""
    steps, keep = (10, 60, 600), (2 * 86400.0, 30 * 86400.0, 730 * 86400.0)
    now = T0
    assert choose_step(steps, keep, now - 3600, now, now, 2000) == 10
    assert choose_step(steps, keep, now - 86400, now, now, 2000) == 60  # 8640 points at 10 s
    assert choose_step(steps, keep, now - 3 * 86400, now - 3 * 86400 + 3600, now, 2000) == 60
    assert choose_step(steps, keep, now - 7 * 86400, now, now, 2000) == 600
    assert choose_step(steps, keep, now - 3000 * 86400, now, now, 2000) == 600


def test_the_codec_round_trips_and_names_bad_fields() -> None:
    """from_json(to_json(p)) == p; a bad field is a ValueError naming it."""
    p = point(T0, State.DOWN, loss=None, rtt_median=None, vantage_healthy=False)
    assert HistoryPoint.from_json(p.to_json()) == p
    api = p.to_api()
    assert api["t"] == "2025-06-15T15:10:00Z" and "entity" not in api and "step" not in api
    for field, value, message in [
        ("state", "sideways", "state: unknown"),
        ("loss", 1.5, "loss: out of range"),
        ("up", {"icmp": -1}, "up: not a count"),
        ("blocks", {"x": float("nan")}, "blocks.x: not a finite number"),
        ("step", 0, "step: not a positive integer"),
        ("vantage_healthy", 1, "vantage_healthy: not a boolean"),
    ]:
        with pytest.raises(ValueError, match=message):
            HistoryPoint.from_json({**p.to_json(), field: value})
