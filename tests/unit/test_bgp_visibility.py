"""BGP visibility state (monitor/bgp/visibility.py, pure): ratios, the recent window, peer-down,
withdrawal episodes, snapshots, and (below) the incremental counts against a full tally.

Prefixes are 198.18.0.0/15 stand-ins for DPRK's 175.45.176.0/22 and its four /24s.
"""

from __future__ import annotations

import pytest

from monitor.bgp import (
    PeerState,
    SeedRoute,
    Update,
    Visibility,
    parse_prefix,
    parse_ris_message,
)
from tests.unit.rislive_server import update

WATCHED = "198.18.176.0/22"
SLASH24 = [f"198.18.{n}.0/24" for n in (176, 177, 178, 179)]
PEERS = [f"192.0.2.{n}" for n in range(1, 11)]
T0 = 1_700_000_000.0


def key(peer: str, host: str = "rrc00") -> tuple[str, str]:
    return (host, peer)


# --- Visibility (pure) ----------------------------------------------------------------------


def test_ratio_is_none_when_no_peer_known() -> None:
    """Before any route is heard of, the ratio is unknown (None), not 0."""
    vis = Visibility([WATCHED])
    assert vis.ratio(WATCHED, T0) is None
    assert vis.withdrawal_time(WATCHED) is None


def test_min_peers_keeps_ratio_unknown_on_thin_evidence() -> None:
    """With min_peers, one peer's withdrawal at start-up is unknown, not "withdrawn"."""
    vis = Visibility([WATCHED], min_peers=3)
    vis.withdraw(key(PEERS[0]), SLASH24[0], T0)
    assert vis.ratio(WATCHED, T0) is None and vis.withdrawal(WATCHED) is None
    vis.announce(key(PEERS[1]), SLASH24[0], T0 + 1)
    vis.announce(key(PEERS[2]), SLASH24[0], T0 + 2)
    assert vis.ratio(WATCHED, T0 + 3) == pytest.approx(2 / 3)


def test_announcements_and_withdrawals_in_one_update() -> None:
    """One UPDATE withdrawing one /24 and announcing another applies both."""
    vis = Visibility([WATCHED])
    p = key(PEERS[0])
    vis.announce(p, SLASH24[0], T0)
    msg = parse_ris_message(
        update(PEERS[0], announce=[SLASH24[1]], withdraw=[SLASH24[0]], ts=T0 + 1)["data"]
    )
    assert isinstance(msg, Update)
    vis.apply(msg)
    route0, route1 = vis.route(p, SLASH24[0]), vis.route(p, SLASH24[1])
    assert route0 is not None and not route0.announced and route0.since == T0 + 1
    assert route1 is not None and route1.announced
    assert vis.ratio(WATCHED, T0 + 2) == 1.0  # the peer still has a route into the /22


def test_as_set_origin_recorded_as_set() -> None:
    """A path ending in an AS-set (nested list) records the set as the origin."""
    vis = Visibility([WATCHED])
    msg = parse_ris_message(
        update(PEERS[0], announce=[SLASH24[0]], path=[64500, 4837, [131279, 64496]])["data"]
    )
    assert isinstance(msg, Update) and msg.origin == frozenset({131279, 64496})
    vis.apply(msg)
    assert vis.origins(WATCHED) == {frozenset({131279, 64496}): 1}


def test_prefix_maps_to_every_containing_watched_prefix() -> None:
    """A /24 counts for the watched /22 and a watched /24 alike; outside prefixes are ignored."""
    vis = Visibility([WATCHED, SLASH24[2]])
    touched = vis.announce(key(PEERS[0]), SLASH24[2], T0)
    assert {str(w) for w in touched} == {WATCHED, SLASH24[2]}
    assert {str(w) for w in vis.announce(key(PEERS[1]), SLASH24[0], T0)} == {WATCHED}
    assert vis.announce(key(PEERS[2]), "203.0.113.0/24", T0) == set()
    assert vis.ratio(SLASH24[2], T0) == 1.0
    assert vis.counts(WATCHED, T0) == (2, 2, 2)
    assert [str(s) for s in vis.subscriptions()] == [WATCHED]


def test_recent_window_ages_out_old_withdrawals() -> None:
    """Peers that withdrew longer than `recent` ago leave the denominator; all gone -> 0.0."""
    vis = Visibility([WATCHED], recent=3600.0)
    vis.announce(key(PEERS[0]), SLASH24[0], T0)
    vis.announce(key(PEERS[1]), SLASH24[0], T0)
    vis.withdraw(key(PEERS[1]), SLASH24[0], T0 + 10)
    assert vis.ratio(WATCHED, T0 + 20) == 0.5
    assert vis.ratio(WATCHED, T0 + 4000) == 1.0  # PEERS[1] aged out
    vis.withdraw(key(PEERS[0]), SLASH24[0], T0 + 4000)
    assert vis.ratio(WATCHED, T0 + 9000) == 0.0  # known peers, none recent: still "down"


def test_peer_session_down_removes_peer_from_both_counts() -> None:
    """RIS_PEER_STATE down forgets the peer: not a withdrawal, out of numerator and denominator."""
    vis = Visibility([WATCHED])
    for p in PEERS[:3]:
        vis.announce(key(p), SLASH24[0], T0)
    vis.withdraw(key(PEERS[1]), SLASH24[0], T0 + 1)
    assert vis.counts(WATCHED, T0 + 2) == (2, 3, 3)
    vis.apply(PeerState(T0 + 3, key(PEERS[0]), "down"))
    assert vis.counts(WATCHED, T0 + 4) == (1, 2, 2)
    vis.apply(PeerState(T0 + 5, key(PEERS[2]), "connected"))  # not down: no change
    assert vis.ratio(WATCHED, T0 + 6) == 0.5
    assert vis.route(key(PEERS[0]), SLASH24[0]) is None


def test_withdrawal_storm_sets_time_and_peer_count() -> None:
    """All peers withdraw within seconds: ratio 0, episode starts at the threshold crossing."""
    vis = Visibility([WATCHED], threshold=0.5)
    for p in PEERS:
        vis.apply(
            Update(
                T0, key(p), 64500, (64500, 131279), 131279, tuple(map(parse_prefix, SLASH24)), ()
            )
        )
    assert vis.ratio(WATCHED, T0) == 1.0
    for i, p in enumerate(PEERS):
        vis.apply(
            Update(
                T0 + 10 + i * 0.5, key(p), 64500, (), None, (), tuple(map(parse_prefix, SLASH24))
            )
        )
    assert vis.ratio(WATCHED, T0 + 20) == 0.0
    ep = vis.withdrawal(WATCHED)
    assert ep is not None
    assert ep.time == T0 + 10 + 5 * 0.5  # the 6th of 10 withdrawals takes it below 0.5
    assert ep.first == T0 + 10
    assert ep.peers == 10
    assert vis.withdrawal_time(WATCHED) == (T0 + 12.5, 10)
    for p in PEERS[:6]:  # routes come back: the episode closes
        vis.announce(key(p), SLASH24[0], T0 + 100)
    assert vis.withdrawal_time(WATCHED) is None


def test_partial_withdrawal_ratio_between_zero_and_one() -> None:
    """Some peers drop the /24s (RPKI-style), others keep them: ratio strictly between 0 and 1."""
    vis = Visibility([WATCHED])
    for p in PEERS:
        for s in SLASH24:
            vis.announce(key(p), s, T0)
    for p in PEERS[:7]:
        vis.withdraw(key(p), SLASH24[1], T0 + 5)
        vis.withdraw(key(p), SLASH24[2], T0 + 5)
    assert vis.ratio(WATCHED, T0 + 10) == 1.0  # everyone still has .176 and .179
    detail = vis.detail(WATCHED, T0 + 10)
    assert [(d.prefix, d.seeing, d.recent) for d in detail.values()] == [
        (SLASH24[0], 10, 10),
        (SLASH24[1], 3, 10),
        (SLASH24[2], 3, 10),
        (SLASH24[3], 10, 10),
    ]
    for p in PEERS[:7]:
        for s in (SLASH24[0], SLASH24[3]):
            vis.withdraw(key(p), s, T0 + 6)
    r = vis.ratio(WATCHED, T0 + 10)
    assert r is not None and 0.0 < r < 1.0 and r == pytest.approx(0.3)
    ep = vis.withdrawal(WATCHED)
    assert ep is not None and ep.peers == 7 and ep.ratio == pytest.approx(0.3)


def test_seed_never_overrides_live_state() -> None:
    """A snapshot only fills in peers the live feed has not spoken about."""
    vis = Visibility([WATCHED])
    vis.withdraw(key(PEERS[0]), SLASH24[0], T0)
    net = parse_prefix(SLASH24[0])
    vis.seed(
        [SeedRoute(key(PEERS[0]), net, (1, 131279)), SeedRoute(key(PEERS[1]), net, (2, 131279))],
        T0 + 1,
    )
    assert vis.counts(WATCHED, T0 + 2) == (1, 2, 2)
    assert vis.origins(WATCHED) == {131279: 1}
