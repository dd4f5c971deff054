"""BGP visibility state (monitor/bgp/visibility.py, pure): ratios, the recent window, peer-down,
withdrawal episodes, snapshots, and (below) the incremental counts against a full tally.

Prefixes are 198.18.0.0/15 stand-ins for DPRK's 175.45.176.0/22 and its four /24s.
"""

from __future__ import annotations

import builtins
import collections
import math
import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.bgp import (
    IPNetwork,
    Origin,
    PeerState,
    SeedRoute,
    Update,
    Visibility,
    Withdrawal,
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


# --- incremental counts: work per message, bounded state, and a full tally as the oracle ------


def _profile_events(fn: Callable[[], object]) -> int:
    """Python and C function calls made by fn(): a deterministic measure of work."""
    events = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal events
        events += 1

    sys.setprofile(count)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return events


def _storm_peers(n: int) -> list[tuple[str, str]]:
    return [(f"rrc{i % 25:02d}", f"198.19.{200 + i // 250}.{i % 250 + 1}") for i in range(n)]


def _work_of_one_withdrawal(n: int) -> int:
    """Calls needed for one peer's withdrawal (plus ratio and status, as the daemon asks) in the
    middle of a storm among n peers that announced the four /24s."""
    vis = Visibility([WATCHED], min_peers=3)
    nets = tuple(parse_prefix(s) for s in SLASH24)
    peers = _storm_peers(n)
    for p in peers:
        vis.apply(Update(T0, p, 64500, (64500, 131279), 131279, nets, ()))
    for i, p in enumerate(peers[: n * 3 // 4]):  # an episode is open
        vis.apply(Update(T0 + 10 + i * 0.01, p, 64500, (), None, (), nets))
    assert vis.withdrawal(WATCHED) is not None
    last = peers[-1]

    def one() -> None:
        vis.apply(Update(T0 + 100, last, 64500, (), None, (), nets))
        vis.ratio(WATCHED, T0 + 101)
        vis.status(WATCHED, T0 + 101)

    return _profile_events(one)


def test_withdrawal_work_does_not_grow_with_peers() -> None:
    """One message's work (apply, ratio, status) is the same with 200 or 1,600 peers: no re-tally."""
    small, big = _work_of_one_withdrawal(200), _work_of_one_withdrawal(1600)
    assert big <= small * 1.1 + 20, (small, big)


def test_churning_peers_leave_bounded_state() -> None:
    """Peers that come, withdraw and never return are evicted: state stays bounded, ratios exact.

    Each day 100 new peers announce the /24s and 100 of the previous day's withdraw for good,
    while 20 peers keep announcing throughout. A twin that never evicts (the reference) must
    give the same ratio and counts of seeing/recent peers at every step."""
    day = 86400.0
    vis = Visibility([WATCHED], recent=day, min_peers=3)
    ref = Visibility([WATCHED], recent=day, min_peers=3, forget_after=math.inf)
    nets = tuple(parse_prefix(s) for s in SLASH24)
    stable = [("rrc00", f"192.0.2.{i}") for i in range(1, 21)]
    for v in (vis, ref):
        for p in stable:
            v.apply(Update(T0, p, 1, (1, 131279), 131279, nets, ()))
    sizes: list[tuple[int, int]] = []
    previous: list[tuple[str, str]] = []
    for d in range(30):
        t = T0 + d * day
        fresh = [(f"rrc{d % 25:02d}", f"2001:db8:{d:x}::{i + 1:x}") for i in range(100)]
        for v in (vis, ref):
            for i, p in enumerate(fresh):
                v.apply(Update(t + i, p, 2, (2, 131279), 131279, nets, ()))
            for i, p in enumerate(previous):
                v.apply(Update(t + 200 + i, p, 2, (), None, (), nets))
        previous = fresh
        for step in range(0, int(day), 3 * 3600):
            now = t + step
            vis.refresh(now)
            ref.refresh(now)
            assert vis.ratio(WATCHED, now) == ref.ratio(WATCHED, now)
            assert vis.counts(WATCHED, now)[:2] == ref.counts(WATCHED, now)[:2]
            assert vis.withdrawal(WATCHED) == ref.withdrawal(WATCHED)
        sizes.append((vis.peers(), vis.stored()))
    # 20 stable + 100 announcing + at most three days of departed peers (recent, forget_after)
    assert max(p for p, _ in sizes[5:]) <= 20 + 100 + 3 * 100, sizes
    assert sizes[-1] == sizes[10], sizes  # flat: no growth with the days
    assert ref.peers() == 20 + 30 * 100  # the never-evicting twin grows with every peer


def test_withdrawn_routes_evicted_after_recent_but_still_remembered() -> None:
    """After `recent`, a withdrawn route's details go, its withdrawal time stays: a repeated
    withdrawal does not count as new, and a snapshot does not resurrect the route."""
    vis = Visibility([WATCHED], recent=100.0, forget_after=1000.0)
    a, b = key(PEERS[0]), key(PEERS[1])
    vis.announce(a, SLASH24[0], T0, path=(64500, 131279))
    vis.announce(b, SLASH24[0], T0)
    vis.withdraw(a, SLASH24[0], T0 + 1)
    stored = vis.stored()
    vis.refresh(T0 + 200)
    assert vis.stored() < stored  # the Route object of a is gone
    route = vis.route(a, SLASH24[0])
    assert route is not None and not route.announced and route.since == T0 + 1
    assert vis.counts(WATCHED, T0 + 200) == (1, 1, 2)
    vis.withdraw(a, SLASH24[0], T0 + 210)  # a duplicate withdrawal: nothing new
    assert vis.counts(WATCHED, T0 + 211) == (1, 1, 2)
    vis.seed([SeedRoute(a, parse_prefix(SLASH24[0]), (1, 131279))], T0 + 220)
    assert vis.counts(WATCHED, T0 + 221) == (1, 1, 2)
    vis.announce(a, SLASH24[0], T0 + 230)  # back for real
    assert vis.counts(WATCHED, T0 + 231) == (2, 2, 2)
    c = key(PEERS[2])
    vis.withdraw(c, SLASH24[1], T0 + 240)  # a withdrawal never preceded by an announcement
    before = vis.stored()
    vis.refresh(T0 + 400)
    assert vis.stored() < before and vis.counts(WATCHED, T0 + 400) == (2, 2, 3)


def test_long_total_outage_stays_zero_after_forgetting() -> None:
    """Every peer withdrew and weeks pass: old withdrawals are forgotten, yet the ratio stays
    0.0 (a few are kept so `min_peers` still holds), never unknown."""
    vis = Visibility([WATCHED], recent=3600.0, min_peers=3)
    for i in range(50):
        vis.announce(("rrc00", f"192.0.2.{i + 1}"), SLASH24[0], T0)
    for i in range(50):
        vis.withdraw(("rrc00", f"192.0.2.{i + 1}"), SLASH24[0], T0 + 10 + i)
    assert vis.withdrawal(WATCHED) is not None
    for h in range(1, 24 * 21):
        vis.refresh(T0 + h * 3600.0)
        assert vis.ratio(WATCHED, T0 + h * 3600.0) == 0.0
    assert vis.peers() == 3 and vis.counts(WATCHED, T0 + 21 * 86400.0) == (0, 0, 3)
    assert vis.withdrawal(WATCHED) is not None
    vis.announce(("rrc01", "192.0.2.200"), SLASH24[0], T0 + 22 * 86400.0)
    assert vis.ratio(WATCHED, T0 + 22 * 86400.0) == 1.0


# The oracle: the documented semantics as a from-scratch tally over every (peer, prefix) route,
# the way monitor/bgp.py computed every ratio before the counts became incremental.

_OWN_WATCHED = ("198.18.176.0/22", "198.18.178.0/24", "2001:db8::/32")
_OWN_PREFIXES = (
    *SLASH24,
    "198.18.176.0/22",
    "198.18.178.0/23",
    "203.0.113.0/24",
    "2001:db8:1::/48",
    "2001:db8::/32",
)
_OWN_PEERS = (
    ("rrc00", "192.0.2.1"),
    ("rrc00", "192.0.2.2"),
    ("rrc01", "192.0.2.1"),
    ("rrc01", "2001:db8::9"),
    ("rrc25", "192.0.2.5"),
)


class _Reference:
    def __init__(self, recent: float | None, threshold: float, storm: float, min_peers: int):
        self.watched = [parse_prefix(w) for w in _OWN_WATCHED]
        self.recent, self.threshold, self.storm, self.min_peers = (
            recent,
            threshold,
            storm,
            min_peers,
        )
        self.routes: dict[tuple[tuple[str, str], IPNetwork], list[Any]] = {}
        self.episodes: dict[IPNetwork, Withdrawal] = {}

    def owners(self, p: IPNetwork) -> list[IPNetwork]:
        return [w for w in self.watched if p.version == w.version and p.subnet_of(w)]  # type: ignore[arg-type]

    def set(
        self,
        peer: tuple[str, str],
        p: IPNetwork,
        t: float,
        ann: bool,
        origin: Origin | None,
        seed: bool = False,
    ) -> list[IPNetwork]:
        owners = self.owners(p)
        if not owners:
            return []
        r = self.routes.get((peer, p))
        if r is None:
            r = self.routes[(peer, p)] = [ann, t, None]
        elif seed:
            return []
        elif r[0] != ann:
            r[0], r[1] = ann, t
        if ann:
            r[2] = origin
        return owners

    def tally(
        self, ps: list[IPNetwork], now: float
    ) -> tuple[builtins.set[Any], builtins.set[Any], dict[Any, float]]:
        seeing: builtins.set[Any] = set()
        last: dict[Any, float] = {}
        for (peer, p), (ann, _since, _) in self.routes.items():
            if p in ps and ann:
                seeing.add(peer)
        for (peer, p), (_ann, since, _) in self.routes.items():
            if p in ps and peer not in seeing:
                last[peer] = max(last.get(peer, -math.inf), since)
        for peer in seeing:
            last[peer] = now
        horizon = -math.inf if self.recent is None else now - self.recent
        recent = {peer for peer, t in last.items() if peer in seeing or t >= horizon}
        return seeing, recent, last

    def inside(self, w: IPNetwork) -> list[IPNetwork]:
        return sorted(
            {p for (_, p) in self.routes if w in self.owners(p)},
            key=lambda n: (n.network_address, n.prefixlen),
        )

    def ratio_of(self, ps: list[IPNetwork], now: float) -> float | None:
        seeing, recent, last = self.tally(ps, now)
        if len(last) < max(1, self.min_peers):
            return None
        return len(seeing) / len(recent) if recent else 0.0

    def evaluate(self, w: IPNetwork, t: float) -> None:
        r = self.ratio_of(self.inside(w), t)
        if r is None:
            return
        if r >= self.threshold:
            self.episodes.pop(w, None)
            return
        seeing, recent, last = self.tally(self.inside(w), t)
        gone = recent - seeing
        ep = self.episodes.get(w)
        if ep is None:
            storm = [last[p] for p in gone if last[p] >= t - self.storm]
            self.episodes[w] = Withdrawal(t, min(storm, default=t), len(gone), r)
        else:
            self.episodes[w] = Withdrawal(ep.time, ep.first, len(gone), r)

    def down(self, peer: tuple[str, str]) -> builtins.set[IPNetwork]:
        touched: builtins.set[IPNetwork] = set()
        for k in [k for k in self.routes if k[0] == peer]:
            touched.update(self.owners(k[1]))
            del self.routes[k]
        return touched


_op = st.one_of(
    st.tuples(
        st.just("update"),
        st.integers(0, len(_OWN_PEERS) - 1),
        st.lists(st.sampled_from(_OWN_PREFIXES), max_size=3),  # withdrawn
        st.lists(st.sampled_from(_OWN_PREFIXES), max_size=3),  # announced
        st.sampled_from([131279, 4837, frozenset({1, 2}), None]),  # origin
        st.sampled_from([0.0, 0.0, 3.0, 60.0]),  # BGP time lags the clock
    ),
    st.tuples(st.just("down"), st.integers(0, len(_OWN_PEERS) - 1)),
    st.tuples(
        st.just("seed"),
        st.lists(
            st.tuples(st.integers(0, len(_OWN_PEERS) - 1), st.sampled_from(_OWN_PREFIXES)),
            max_size=4,
        ),
    ),
    st.tuples(
        st.just("wait"), st.sampled_from([0.0, 1.0, 7.0, 29.0, 50.0, 99.0, 100.0, 101.0, 250.0])
    ),
    st.tuples(st.just("refresh")),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(_op, max_size=40),
    recent=st.sampled_from([100.0, None]),
    min_peers=st.integers(1, 3),
    threshold=st.sampled_from([0.5, 0.75]),
)
def test_incremental_counts_match_a_full_tally(
    ops: list[tuple[Any, ...]], recent: float | None, min_peers: int, threshold: float
) -> None:
    """After any sequence of announcements, withdrawals, peer-downs, snapshots and time passing
    (with eviction of aged-out routes), every count, ratio, per-/24 view, origin tally and
    withdrawal episode equals a from-scratch tally of the documented semantics."""
    vis = Visibility(
        _OWN_WATCHED,
        recent=recent,
        threshold=threshold,
        storm_window=30.0,
        min_peers=min_peers,
        forget_after=math.inf,
    )
    ref = _Reference(recent, threshold, 30.0, min_peers)
    now = T0
    for op in ops:
        if op[0] == "update":
            _, i, wd, ann, origin, lag = op
            peer, t = _OWN_PEERS[i], now - lag
            path: tuple[Any, ...] = (64500, origin) if origin is not None else ()
            msg = Update(
                t,
                peer,
                64500,
                path if ann else (),
                origin if ann and path else None,
                tuple(parse_prefix(a) for a in ann),
                tuple(parse_prefix(w) for w in wd),
            )
            got = vis.apply(msg)
            touched: set[IPNetwork] = set()
            for w in msg.withdrawn:
                touched.update(ref.set(peer, w, t, False, None))
            for a in msg.announced:
                touched.update(ref.set(peer, a, t, True, msg.origin))
            for w in touched:
                ref.evaluate(w, t)
            assert got == touched
        elif op[0] == "down":
            got = vis.apply(PeerState(now, _OWN_PEERS[op[1]], "down"))
            touched = ref.down(_OWN_PEERS[op[1]])
            for w in touched:
                ref.evaluate(w, now)
            assert got == touched
        elif op[0] == "seed":
            routes = [SeedRoute(_OWN_PEERS[i], parse_prefix(p), (3, 131279)) for i, p in op[1]]
            got = vis.seed(routes, now)
            touched = set()
            for r in routes:
                touched.update(ref.set(r.peer, r.prefix, now, True, 131279, seed=True))
            for w in touched:
                ref.evaluate(w, now)
            assert got == touched
        elif op[0] == "wait":
            now += op[1]
        else:
            vis.refresh(now)
            for w in ref.watched:
                ref.evaluate(w, now)
            if recent is not None:  # what no longer counts is gone (white box: the Routes held)
                held = [r for per in vis._routes.values() for r in per.values()]
                assert all(r.announced or r.since >= now - recent for r in held), ops
        for w in ref.watched:
            assert vis.withdrawal(w) == ref.episodes.get(w), (w, ops)
            assert dict(vis.origins(w)) == dict(
                collections.Counter(
                    o
                    for (_, p), (a, _, o) in ref.routes.items()
                    if a and o is not None and w in ref.owners(p)
                )
            )
            for q in (now, now + 50.0, now + 150.0):
                seeing, recent_, last = ref.tally(ref.inside(w), q)
                assert vis.counts(w, q) == (len(seeing), len(recent_), len(last)), (w, q, ops)
                assert vis.ratio(w, q) == ref.ratio_of(ref.inside(w), q)
                detail = vis.detail(w, q)
                assert list(detail) == [str(p) for p in ref.inside(w)]
                for p in ref.inside(w):
                    s, r_, _ = ref.tally([p], q)
                    v = detail[str(p)]
                    assert (v.seeing, v.recent, v.ratio) == (len(s), len(r_), ref.ratio_of([p], q))
        for (peer, p), (ann, since, _) in ref.routes.items():
            route = vis.route(peer, p)
            assert route is not None and (route.announced, route.since) == (ann, since)


def test_flapping_routes_do_not_grow_memory_within_the_recent_window() -> None:
    """Routes withdrawn and announced again over and over (storms, flaps) leave no growing
    trail: what is held stays bounded while every withdrawal is still inside `recent`."""
    vis = Visibility([WATCHED])  # recent: one day, so nothing ages out below
    peers = [key(p) for p in PEERS]
    t = T0
    held = []
    for cycle in range(2_000):
        for p in peers:
            vis.withdraw(p, SLASH24[cycle % 4], t)
        t += 1
        for p in peers:
            vis.announce(p, SLASH24[cycle % 4], t)
        t += 1
        vis.prune(t)
        held.append(vis.stored())
    # 20,000 withdrawals, all announced again: only the live routes and a bounded queue stay.
    assert max(held[1000:]) <= max(held[:1000]), held[::200]
    assert vis.stored() < 5_000
    assert vis.ratio(WATCHED, t) == 1.0
