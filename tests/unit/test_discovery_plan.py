"""The census and sampling logic (monitor.discovery.plan), with plain inputs."""

from __future__ import annotations

import ipaddress
import math
import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from monitor.discovery.plan import (
    EMPTY_CENSUSES_DOWN,
    AddressStats,
    SampleState,
    apply_census,
    availability,
    census_blocks,
    census_order,
    census_size,
    choose_sample,
    probes_per_round,
    recovery_probes,
    retry_order,
)

A = ipaddress.IPv4Address
N = ipaddress.ip_network
BLOCK = ipaddress.IPv4Network("198.18.176.0/24")


def addrs(*last: int) -> list[ipaddress.IPv4Address]:
    return [A(f"198.18.176.{x}") for x in last]


def census(
    previous: dict[ipaddress.IPv4Address, AddressStats],
    answering: list[ipaddress.IPv4Address],
    *,
    trusted: bool = True,
    siblings: bool = True,
    streak: int = 0,
    at: float = 1000.0,
    min_responsive: int = 2,
) -> Any:
    probes = {a: 1 for a in BLOCK}
    return apply_census(
        BLOCK,
        previous,
        probes,
        dict.fromkeys(answering, at),
        trusted=trusted,
        siblings_answered=siblings,
        empty_streak=streak,
        min_responsive=min_responsive,
    )


def test_census_order_covers_every_address_once_blocks_interleaved() -> None:
    """A census of a /22 probes its 1,024 addresses once each, one of each /24 in turn."""
    order = census_order([N("198.18.176.0/22")])
    assert len(order) == 1024 == len(set(order)) == census_size([N("198.18.176.0/22")])
    assert [str(a) for a in order[:5]] == [
        "198.18.176.0",
        "198.18.177.0",
        "198.18.178.0",
        "198.18.179.0",
        "198.18.176.1",
    ]


def test_census_never_leaves_the_prefixes_and_skips_ipv6() -> None:
    """Every address a census probes lies in the entity's IPv4 prefixes; IPv6 is never censused."""
    prefixes = [N("198.19.35.0/28"), N("2001:db8::/120"), N("198.19.109.0/24")]
    order = census_order(prefixes)
    assert len(order) == 16 + 256
    assert all(any(a in p for p in prefixes) for a in order)
    assert census_blocks(prefixes) == [N("198.19.35.0/24"), N("198.19.109.0/24")]


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(22, 32)), min_size=1, max_size=6))
def test_census_order_inside_prefixes_property(specs: list[tuple[int, int]]) -> None:
    """For any prefixes, the census probes exactly their addresses, each once."""
    prefixes = [
        ipaddress.IPv4Network((int(A("198.18.0.0")) + (i << 8), plen), strict=False)
        for i, plen in specs
    ]
    order = census_order(prefixes)
    expected = {a for p in prefixes for a in p}
    assert len(order) == len(set(order)) and set(order) == expected


def test_first_census_makes_e_b_and_availability() -> None:
    """The first census: E(b) is what answered, every host joins, availability 1.0."""
    summary, stats = census({}, addrs(1, 8, 9))
    assert summary.responsive == tuple(addrs(1, 8, 9))
    assert summary.joined == tuple(addrs(1, 8, 9)) and summary.left == ()
    assert summary.availability == 1.0 and summary.monitorable
    assert stats[A("198.18.176.8")] == AddressStats(A("198.18.176.8"), 1000.0, 1, 1, True)


def test_renumbered_hosts_leave_and_join() -> None:
    """A host that moved inside the block: the old address leaves E(b), the new one joins."""
    _, stats = census({}, addrs(1, 8, 9))
    summary, stats = census(stats, addrs(1, 8, 42), at=2000.0)
    assert summary.joined == (A("198.18.176.42"),)
    assert summary.left == (A("198.18.176.9"),)
    assert summary.responsive == tuple(addrs(1, 8, 42))
    # the old address is remembered (its counts), just not responsive
    assert not stats[A("198.18.176.9")].responsive
    assert stats[A("198.18.176.9")].availability == 0.5


def test_untrusted_census_only_adds() -> None:
    """A census while the block was down (or our vantage blind) removes nobody from E(b)."""
    _, stats = census({}, addrs(1, 8, 9))
    summary, _ = census(stats, addrs(1, 42), trusted=False)
    assert summary.responsive == tuple(addrs(1, 8, 9, 42))
    assert summary.left == ()


def test_block_dark_during_an_outage_keeps_e_b() -> None:
    """A block answering nothing while it is down keeps E(b) (an outage is not a move)..."""
    _, stats = census({}, addrs(1, 8, 9))
    summary, stats = census(stats, [], trusted=False, siblings=True)
    assert summary.responsive == tuple(addrs(1, 8, 9)) and summary.monitorable
    assert summary.empty_streak == 1


def test_whole_entity_dark_keeps_e_b_even_when_trusted() -> None:
    """... and so does a block whose siblings are dark too (the network or our uplink)."""
    _, stats = census({}, addrs(1, 8, 9))
    summary, _ = census(stats, [], trusted=True, siblings=False)
    assert summary.responsive == tuple(addrs(1, 8, 9))


def test_hosts_all_left_makes_block_unmonitorable() -> None:
    """Nothing answers in a block while its siblings do: its hosts left, it is unmonitorable."""
    _, stats = census({}, addrs(1, 8, 9))
    summary, _ = census(stats, [], trusted=True, siblings=True)
    assert summary.responsive == () and not summary.monitorable
    assert summary.left == tuple(addrs(1, 8, 9))


def test_block_dark_for_several_censuses_gives_up() -> None:
    """A block dark (and believed down) census after census leaves judgement in the end."""
    _, stats = census({}, addrs(1, 8, 9))
    streak = 0
    for _ in range(EMPTY_CENSUSES_DOWN - 1):
        summary, stats = census(stats, [], trusted=False, streak=streak)
        streak = summary.empty_streak
        assert summary.responsive
    summary, _ = census(stats, [], trusted=False, streak=streak)
    assert summary.responsive == () and not summary.monitorable


def test_too_few_responsive_is_unmonitorable() -> None:
    """One answering address is not enough to judge a block on (min_responsive 2)."""
    summary, _ = census({}, addrs(1))
    assert summary.size == 1 and not summary.monitorable
    summary, _ = census({}, addrs(1), min_responsive=1)
    assert summary.monitorable


def test_retry_only_previously_responsive_silent_addresses() -> None:
    """Only addresses of E(b) that stayed silent get a second probe."""
    _, stats = census({}, addrs(1, 8, 9))
    probed = list(BLOCK)
    assert retry_order(probed, {A("198.18.176.1")}, stats) == addrs(8, 9)


def test_availability_is_mean_answer_share_over_e_b() -> None:
    """A(E(b)) averages the responsive addresses' answer shares, ignoring the others."""
    stats = [
        AddressStats(A("198.18.176.1"), 1.0, 4, 4, True),
        AddressStats(A("198.18.176.2"), 1.0, 2, 4, True),
        AddressStats(A("198.18.176.3"), 1.0, 0, 4, False),
    ]
    assert availability(stats) == 0.75
    assert availability([]) == 0.0


def test_recovery_probes_formula() -> None:
    """ceil(log 0.2 / log(1-A)): 1 probe at A=0.9, 2 at A=0.6, 5 at A=0.3, 16 at A=0.1."""
    assert recovery_probes(0.9) == 1
    assert recovery_probes(0.6) == 2
    assert recovery_probes(0.3) == 5
    assert recovery_probes(0.1) == 16
    assert recovery_probes(1.0) == 1  # clamped, no division by zero


@given(st.floats(0.0, 1.0))
def test_recovery_probes_reach_the_confidence(a: float) -> None:
    """All recovery probes fail with chance at most 0.2 while the block is up."""
    k = recovery_probes(a)
    clamped = min(0.95, max(0.05, a))
    assert (1 - clamped) ** k <= 0.2 + 1e-9
    assert k == 1 or (1 - clamped) ** (k - 1) > 0.2 - 1e-9


def test_more_probes_while_uncertain() -> None:
    """A certain block gets `base` probes a round; an uncertain one more, capped by |E(b)|."""
    assert probes_per_round(0.5, SampleState.CERTAIN, 10, 1, 15) == 1
    assert probes_per_round(0.5, SampleState.UNCERTAIN, 10, 1, 15) == 3
    assert probes_per_round(0.2, SampleState.UNCERTAIN, 4, 1, 15) == 4
    assert probes_per_round(0.2, SampleState.UNCERTAIN, 40, 1, 6) == 6
    assert probes_per_round(0.9, SampleState.UNCERTAIN, 0, 1, 15) == 0


def test_sample_rotates_over_e_b() -> None:
    """Drawing one address a round, every address of E(b) is probed within a few rounds."""
    cands = [(a, 1.0) for a in addrs(1, 8, 9, 15, 16)]
    rng = random.Random(7)
    last: dict[ipaddress.IPv4Address, int] = {}
    seen: set[ipaddress.IPv4Address] = set()
    for r in range(15):
        (a,) = choose_sample(cands, 1, last, r, rng)
        last[a] = r
        seen.add(a)
    assert seen == set(addrs(1, 8, 9, 15, 16))


def test_sample_prefers_available_hosts() -> None:
    """A host answering 90 % of the time is drawn more often than one answering 10 %."""
    good, bad = A("198.18.176.1"), A("198.18.176.2")
    rng = random.Random(1)
    counts = {good: 0, bad: 0}
    for _ in range(2000):
        (a,) = choose_sample([(good, 0.9), (bad, 0.1)], 1, {}, 0, rng)
        counts[a] += 1
    assert counts[good] > 3 * counts[bad]


@given(st.integers(0, 20), st.integers(0, 10), st.integers(0, 2**32))
def test_sample_is_distinct_and_from_candidates(n: int, k: int, seed: int) -> None:
    """A sample holds min(k, |E(b)|) distinct addresses of E(b)."""
    cands = [(a, 0.5) for a in addrs(*range(1, n + 1))]
    out = choose_sample(cands, k, {}, 3, random.Random(seed))
    assert len(out) == len(set(out)) == min(k, n)
    assert set(out) <= {a for a, _ in cands}
    assert math.isfinite(len(out))
