"""Fusion of one entity's signals into a state and the issues behind it (pure)."""

from __future__ import annotations

import pytest

from monitor.detect.belief import BlockState
from monitor.detect.fusion import (
    BlockView,
    FusionInputs,
    KindView,
    LossView,
    PrefixView,
    fuse,
    loss_is_high,
    state_of,
)
from monitor.detect.model import EventKind, State
from monitor.detect.params import DetectionParams
from monitor.probes.base import Kind

P = DetectionParams()
NOW = 10_000.0
UP, DOWN, UNC, UNK = BlockState.UP, BlockState.DOWN, BlockState.UNCERTAIN, BlockState.UNKNOWN


def blk(i: int, state: BlockState, since: float = 0.0, fail: float | None = None) -> BlockView:
    belief = {UP: 0.999, DOWN: 0.01, UNC: 0.5, UNK: 0.999}[state]
    return BlockView(f"198.18.{176 + i}.0/24", state, belief, since, fail)


HEALTHY_KINDS = {
    Kind.ICMP: KindView(27, 27, 0),
    Kind.TCP: KindView(5, 5, 0),
    Kind.HTTP: KindView(5, 5, 0),
    Kind.DNS: KindView(4, 4, 0),
}


def inputs(**kw: object) -> FusionInputs:
    base: dict[str, object] = {
        "now": NOW,
        "vantage_healthy": True,
        "blocks": [blk(i, UP) for i in range(4)],
        "kinds": HEALTHY_KINDS,
    }
    base.update(kw)
    return FusionInputs(**base)  # type: ignore[arg-type]


def test_all_up_is_up() -> None:
    """Every block up and every kind answering: up, no issue."""
    r = fuse(inputs(), P)
    assert r.state is State.UP and r.issues == {}
    assert r.signals["blocks"]["up"] == 4 and r.signals["issues"] == []
    assert r.signals["targets"]["http"] == {"up": 5, "down": 0, "never_answered": 0}


def test_vantage_unhealthy_is_unknown() -> None:
    """Our own vantage offline: unknown, whatever the entity's signals say."""
    r = fuse(inputs(vantage_healthy=False, blocks=[blk(i, DOWN) for i in range(4)]), P)
    assert r.state is State.UNKNOWN and r.issues == {}
    assert r.signals["vantage_healthy"] is False


def test_nothing_ever_answered_is_unknown() -> None:
    """No block known and no target ever answered: unknown, not down."""
    kinds = {Kind.ICMP: KindView(3, 0, 0)}
    r = fuse(inputs(blocks=[blk(0, UNK)], kinds=kinds), P)
    assert r.state is State.UNKNOWN and r.issues == {}


def test_all_known_blocks_down_is_a_blackout_from_the_first_failure() -> None:
    """Every known block down: down/blackout starting at the earliest first failure."""
    blocks = [blk(0, DOWN, 120, 101), blk(1, DOWN, 125, 99), blk(2, DOWN, 130, 105), blk(3, UNK)]
    r = fuse(inputs(blocks=blocks), P)
    assert r.state is State.DOWN
    assert r.issues == {EventKind.BLACKOUT: 99}
    assert set(r.signals["blocks_not_up"]) == {
        "198.18.176.0/24",
        "198.18.177.0/24",
        "198.18.178.0/24",
    }


def test_uncertain_blocks_change_nothing() -> None:
    """Blocks being re-probed (uncertain) do not make an issue by themselves."""
    blocks = [blk(0, DOWN, 100, 90), blk(1, UNC, 100, 95), blk(2, UNC), blk(3, UNC)]
    r = fuse(inputs(blocks=blocks), P)
    assert r.state is State.UP and r.issues == {}


def test_one_block_down_long_enough_is_partial() -> None:
    """A block down for partial_after while others answer: partial from its first failure."""
    blocks = [blk(0, UP), blk(1, DOWN, NOW - 61, NOW - 70), blk(2, UP), blk(3, UP)]
    r = fuse(inputs(blocks=blocks), P)
    assert r.state is State.PARTIAL and r.issues == {EventKind.PARTIAL: NOW - 70}
    young = [blk(0, UP), blk(1, DOWN, NOW - 30, NOW - 40), blk(2, UP), blk(3, UP)]
    assert fuse(inputs(blocks=young), P).issues == {}


def test_blocks_coming_back_one_by_one_are_not_partial() -> None:
    """After a blackout the first block back does not make the others a partial outage."""
    blocks = [blk(0, UP, NOW - 5), blk(1, DOWN, NOW - 600, NOW - 610), blk(2, DOWN, NOW - 600)]
    r = fuse(inputs(blocks=blocks), P)
    assert r.state is State.UP and r.issues == {}


@pytest.mark.parametrize(("kind", "issue"), [(Kind.HTTP, EventKind.WEB), (Kind.DNS, EventKind.DNS)])
def test_service_down_with_network_up(kind: Kind, issue: EventKind) -> None:
    """Network up but every web (DNS) target down: partial with a web (dns) issue."""
    kinds = dict(HEALTHY_KINDS)
    kinds[kind] = KindView(5, 4, 4, fail_start=NOW - 90, down_fresh=4)
    r = fuse(inputs(kinds=kinds), P)
    assert r.state is State.PARTIAL and r.issues == {issue: NOW - 90}
    kinds[kind] = KindView(5, 4, 3, fail_start=NOW - 90)  # one still answers
    assert fuse(inputs(kinds=kinds), P).issues == {}


def test_services_still_down_from_a_blackout_are_settling_not_an_issue() -> None:
    """Web targets down only since the blackout, not yet re-probed: settling, no web issue."""
    kinds = dict(HEALTHY_KINDS)
    kinds[Kind.HTTP] = KindView(5, 5, 5, fail_start=NOW - 600, down_fresh=1, unsettled=4)
    r = fuse(inputs(kinds=kinds), P)
    assert r.issues == {} and r.settling
    kinds[Kind.HTTP] = KindView(5, 5, 5, fail_start=NOW - 600, down_fresh=1, unsettled=0)
    r = fuse(inputs(kinds=kinds), P)  # one answered since: the web works
    assert r.issues == {} and not r.settling


def test_services_are_not_judged_while_the_network_is_down() -> None:
    """In a blackout the web and DNS issues give way to the blackout."""
    kinds = {
        k: KindView(v.configured, v.answered, v.answered, NOW - 100)
        for k, v in HEALTHY_KINDS.items()
    }
    r = fuse(inputs(blocks=[blk(i, DOWN, NOW - 50, NOW - 60) for i in range(4)], kinds=kinds), P)
    assert r.issues == {EventKind.BLACKOUT: NOW - 60}


def test_without_blocks_all_answered_targets_down_is_a_blackout() -> None:
    """An entity without addressable targets is down when every answering target is down."""
    kinds = {Kind.HTTP: KindView(3, 2, 2, fail_start=NOW - 80)}
    r = fuse(inputs(blocks=[], kinds=kinds), P)
    assert r.state is State.DOWN and r.issues == {EventKind.BLACKOUT: NOW - 80}


def test_degraded_needs_high_loss_for_degraded_after() -> None:
    """Loss high for degraded_after: degraded from the first lost probe of that window."""
    lv = LossView(100, 0.8, 0.3, 0.02, 0.3, 0.0, high_since=NOW - 61, high_start=NOW - 150)
    r = fuse(inputs(loss=lv), P)
    assert r.state is State.DEGRADED and r.issues == {EventKind.DEGRADED: NOW - 150}
    assert r.signals["loss"] == 0.8
    young = LossView(100, 0.8, 0.3, 0.02, 0.3, 0.0, high_since=NOW - 10, high_start=NOW - 100)
    assert fuse(inputs(loss=young), P).issues == {}


@pytest.mark.parametrize(
    ("view", "high"),
    [
        (LossView(100, 0.3, None, 0.0, None, 0.0), False),  # 30 % loss is survivable
        (LossView(100, 0.55, None, 0.0, None, 0.0), False),  # 30 % per packet each way
        (LossView(100, 0.75, None, 0.0, None, 0.0), True),
        (LossView(100, 0.75, None, 0.5, None, 0.0), False),  # normal is lossy: not 0.3 above
        (LossView(100, 0.85, None, 0.5, None, 0.0), True),
        (LossView(10, 0.9, None, 0.0, None, 0.0), False),  # too few samples
        (LossView(100, 0.9, None, 0.0, None, 0.5), False),  # our controls lose too
        (LossView(100, 0.0, 1.2, 0.0, 0.3, 0.0), True),  # RTT 4x normal
        (LossView(100, 0.0, 0.5, 0.0, 0.3, 0.0), False),
        (LossView(100, 0.0, 0.12, 0.0, 0.01, 0.0), False),  # 12x but only +0.11 s
    ],
)
def test_loss_is_high_rules(view: LossView, high: bool) -> None:
    """Loss must be >= degraded_loss and margin above normal, or RTT factor and +increase."""
    assert loss_is_high(view, P) is high


def test_routes_withdrawn_while_data_plane_unknown_is_routing_down() -> None:
    """Every prefix withdrawn for routing_after, blocks still settling: down, routing issue."""
    bgp = {
        "198.18.176.0/24": PrefixView(0.0, NOW - 40, NOW - 40),
        "198.18.177.0/24": PrefixView(0.05, NOW - 35, NOW - 35),
    }
    blocks = [blk(0, UNC, NOW - 5, NOW - 8), blk(1, DOWN, NOW - 3, NOW - 9)]
    r = fuse(inputs(blocks=blocks, bgp=bgp), P)
    assert r.state is State.DOWN and r.issues == {EventKind.ROUTING: NOW - 40}
    assert r.signals["bgp_visibility"] == {"198.18.176.0/24": 0.0, "198.18.177.0/24": 0.05}


def test_routes_withdrawn_while_blocks_answer_is_routing_partial() -> None:
    """Routes gone from the collectors but our vantage still reaches the blocks: partial."""
    bgp = {"198.18.176.0/22": PrefixView(0.0, NOW - 40, NOW - 40)}
    r = fuse(inputs(bgp=bgp), P)
    assert r.state is State.PARTIAL and r.issues == {EventKind.ROUTING: NOW - 40}


def test_routes_withdrawn_and_blocks_down_is_a_blackout_from_the_withdrawal() -> None:
    """Withdrawal before the data plane failed: the blackout starts with the withdrawal."""
    bgp = {"198.18.176.0/22": PrefixView(0.0, NOW - 90, NOW - 90)}
    r = fuse(inputs(blocks=[blk(i, DOWN, NOW - 10, NOW - 20) for i in range(4)], bgp=bgp), P)
    assert r.issues == {EventKind.BLACKOUT: NOW - 90}


def test_some_prefixes_lost_is_partial() -> None:
    """Some prefixes seen by under half the peers (RPKI-invalid, 2025): partial."""
    bgp = {"198.18.176.0/24": PrefixView(0.3, NOW - 100), "198.18.177.0/24": PrefixView(0.95)}
    r = fuse(inputs(bgp=bgp), P)
    assert r.state is State.PARTIAL and r.issues == {EventKind.PARTIAL: NOW - 100}


def test_most_severe_issue_decides_the_state() -> None:
    """Several issues at once: the state of the most severe; issues listed by severity."""
    kinds = dict(HEALTHY_KINDS)
    kinds[Kind.DNS] = KindView(4, 4, 4, fail_start=NOW - 200)
    lv = LossView(100, 0.8, None, 0.0, None, 0.0, high_since=NOW - 100, high_start=NOW - 220)
    blocks = [blk(0, UP), blk(1, DOWN, NOW - 100, NOW - 110), blk(2, UP), blk(3, UP)]
    r = fuse(inputs(kinds=kinds, loss=lv, blocks=blocks), P)
    assert r.state is State.PARTIAL
    assert r.signals["issues"] == ["partial", "dns", "degraded"]


def test_state_of_maps_issues_to_states() -> None:
    """Each issue kind's state: blackout down, routing down or partial, degraded, others partial."""
    assert state_of({}, True) is State.UP
    assert state_of({EventKind.BLACKOUT: 0}, False) is State.DOWN
    assert state_of({EventKind.ROUTING: 0}, False) is State.DOWN
    assert state_of({EventKind.ROUTING: 0}, True) is State.PARTIAL
    assert state_of({EventKind.DEGRADED: 0}, True) is State.DEGRADED
    for k in (EventKind.PARTIAL, EventKind.WEB, EventKind.DNS):
        assert state_of({k: 0}, True) is State.PARTIAL


def test_blackout_starts_after_the_latest_answer_of_any_block() -> None:
    """A block whose run began with a lost probe before another block's latest answer did not
    fail with the network: the blackout starts with the first failure after that answer."""
    blocks = [
        BlockView("198.18.176.0/24", DOWN, 0.01, NOW - 5, NOW - 10, NOW - 10.5),
        BlockView("198.18.177.0/24", DOWN, 0.01, NOW - 4, NOW - 13, NOW - 20),  # lost at -13
        BlockView("198.18.178.0/24", DOWN, 0.01, NOW - 4, NOW - 9.8, NOW - 11),
    ]
    r = fuse(inputs(blocks=blocks), P)
    assert r.issues == {EventKind.BLACKOUT: NOW - 10}


def test_withdrawal_dates_a_blackout_seen_before_routing_after() -> None:
    """Every prefix withdrawn, then every block down within `routing_after`: the blackout
    starts with the withdrawal (the data plane confirms it)."""
    bgp = {"198.18.176.0/22": PrefixView(0.0, NOW - 12, NOW - 12)}
    r = fuse(inputs(blocks=[blk(i, DOWN, NOW - 2, NOW - 6) for i in range(4)], bgp=bgp), P)
    assert r.issues == {EventKind.BLACKOUT: NOW - 12}
