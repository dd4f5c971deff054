"""The detector judging sampled blocks (E(b) from a census, no configured target there)."""

from __future__ import annotations

import ipaddress

from monitor.detect.belief import BlockState
from monitor.detect.detector import Detector, EntitySpec
from monitor.detect.model import Change, EventKind, EventOpened, State
from monitor.probes.base import IcmpTarget, ProbeResult, Reason

T0 = 1_700_000_000.0
NET = ipaddress.IPv4Network("198.18.176.0/24")
NET2 = ipaddress.IPv4Network("198.18.177.0/24")


def ip(s: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(s)


HOSTS = [ip("198.18.176.1"), ip("198.18.176.8"), ip("198.18.176.9")]
HOSTS2 = [ip("198.18.177.1"), ip("198.18.177.10"), ip("198.18.177.20")]


def prefixes_only() -> Detector:
    spec = EntitySpec("star-jv", (ipaddress.IPv4Network("198.18.176.0/22"),), ())
    det = Detector(entities=[spec], now=T0)
    det.set_samples("star-jv", {NET: HOSTS, NET2: HOSTS2}, T0)
    return det


def feed(
    det: Detector, addr: ipaddress.IPv4Address, ok: bool, t: float, entity: str = "star-jv"
) -> list[Change]:
    target = IcmpTarget(addr)
    r = (
        ProbeResult.success(target, t, 0.01)
        if ok
        else ProbeResult.failure(target, t, Reason.TIMEOUT)
    )
    return det.observe(entity, r, t + (0.01 if ok else 1.0))


def warm_up(det: Detector) -> float:
    t = T0
    for _ in range(30):
        for a in (*HOSTS, *HOSTS2):
            feed(det, a, True, t)
        det.tick(t)
        t += 1.0
    return t


def test_prefix_only_entity_is_judged_per_sampled_block() -> None:
    """Answers of sampled addresses make their blocks known and the entity up."""
    det = prefixes_only()
    assert det.block_beliefs() == []
    t = warm_up(det)
    det.tick(t)
    assert {b for _, b, _ in det.block_beliefs()} == {str(NET), str(NET2)}
    assert det.entity_state("star-jv") is State.UP


def test_sampled_blocks_going_silent_open_a_blackout() -> None:
    """Every sampled address silent: the blocks go down and a blackout event opens."""
    det = prefixes_only()
    t = warm_up(det)
    changes: list[Change] = []
    for _ in range(40):
        for a in (*HOSTS, *HOSTS2):
            changes += feed(det, a, False, t)
        changes += det.tick(t + 1.0)
        t += 1.0
    opened = [c for c in changes if isinstance(c, EventOpened)]
    assert len(opened) == 1 and opened[0].event.kind is EventKind.BLACKOUT
    block = det.block_state("star-jv", NET)
    assert block is not None and block.state is BlockState.DOWN


def test_unsampled_address_says_nothing() -> None:
    """A probe of an address outside E(b) (and not configured) is ignored."""
    det = prefixes_only()
    assert feed(det, ip("198.18.176.200"), True, T0) == []
    assert det.block_beliefs() == []


def test_addresses_that_left_e_b_are_forgotten() -> None:
    """After a census without an address, its block forgets it; a new one is sampled."""
    det = prefixes_only()
    t = warm_up(det)
    moved = [HOSTS[0], HOSTS[1], ip("198.18.176.42")]
    det.set_samples("star-jv", {NET: moved, NET2: HOSTS2}, t)
    block = det.block_state("star-jv", NET)
    assert block is not None
    assert HOSTS[2] not in block.responsive()
    feed(det, ip("198.18.176.42"), True, t)
    assert ip("198.18.176.42") in block.responsive()
    # the old address's silence no longer counts
    assert not block.observe(HOSTS[2], False, t + 1.0)
    assert block.fail_start is None


def test_unmonitorable_block_is_no_longer_judged() -> None:
    """A block left out of the samples (unmonitorable) is dropped, not judged down."""
    det = prefixes_only()
    t = warm_up(det)
    det.set_samples("star-jv", {NET: HOSTS}, t)
    assert det.block_state("star-jv", NET2) is None
    assert {b for _, b, _ in det.block_beliefs()} == {str(NET)}
    det.tick(t + 1.0)
    assert det.entity_state("star-jv") is State.UP


def test_reconfigure_keeps_the_samples() -> None:
    """A reload (reconfigure) keeps the sampled blocks and their beliefs."""
    det = prefixes_only()
    t = warm_up(det)
    spec = EntitySpec("star-jv", (ipaddress.IPv4Network("198.18.176.0/22"),), ())
    det.reconfigure(det.params, [spec], [], t)
    block = det.block_state("star-jv", NET)
    assert block is not None and block.state is BlockState.UP
    assert feed(det, HOSTS[0], True, t) == [] and block.is_responsive(HOSTS[0])


def warm_up_one_sample(det: Detector) -> float:
    """Like the daemon with one sample per block per round: only the first address of each
    block answers before the fault (the others were not drawn since the start)."""
    t = T0
    for _ in range(10):
        feed(det, HOSTS[0], True, t)
        feed(det, HOSTS2[0], True, t + 0.5)
        det.tick(t + 1.0)
        t += 30.0
    return t


def test_failures_of_census_addresses_count_before_they_answered() -> None:
    """E(b) from the census reaches the block: a failure of a census address that has not
    answered since the start starts the block's failure run (it was dropped as not in E(b))."""
    det = prefixes_only()
    t = warm_up_one_sample(det)
    block = det.block_state("star-jv", NET)
    assert block is not None and block.state is BlockState.UP
    assert set(block.responsive()) == set(HOSTS)
    feed(det, HOSTS[1], False, t)
    assert block.fail_start == t and block.run_count == 1


def test_census_alone_does_not_judge_a_block() -> None:
    """A block seeded from the census stays unknown until one of its addresses answers: no
    outage is judged on silence alone after a start."""
    det = prefixes_only()
    changes: list[Change] = []
    for k in range(60):
        for a in HOSTS:
            changes += feed(det, a, False, T0 + k)
        changes += det.tick(T0 + k + 1.0)
    block = det.block_state("star-jv", NET)
    assert block is not None and block.state is BlockState.UNKNOWN
    assert not [c for c in changes if isinstance(c, EventOpened)]


def test_census_answer_times_bound_e_b() -> None:
    """An address whose census answer is older than `responsive_ttl` before the block's
    latest answer is not in E(b): its silence says nothing."""
    det = Detector(entities=[EntitySpec("star-jv", (NET,), ())], now=T0)
    ttl = det.params.responsive_ttl
    last = {HOSTS[0]: T0 - 60.0, HOSTS[1]: T0 - 60.0, HOSTS[2]: T0 - 2 * ttl}
    det.set_samples("star-jv", {NET: HOSTS}, T0, answered=last)
    feed(det, HOSTS[0], True, T0)
    block = det.block_state("star-jv", NET)
    assert block is not None
    assert set(block.responsive()) == {HOSTS[0], HOSTS[1]}
    feed(det, HOSTS[2], False, T0 + 1.0)
    assert block.fail_start is None
