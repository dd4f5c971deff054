"""Per-prefix BGP visibility state (pure: no I/O); see the package docstring for semantics."""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import structlog

from monitor.bgp.parse import (
    IPNetwork,
    Origin,
    PathElem,
    PeerKey,
    PeerState,
    SeedRoute,
    Update,
    origin_of,
    parse_prefix,
)

log = structlog.get_logger("monitor.bgp")


@dataclass(slots=True)
class Route:
    """What one peer says about one announced prefix."""

    announced: bool
    since: float  # time of the last change between announced and withdrawn
    updated: float  # time of the last message about it
    origin: Origin | None = None
    path: tuple[PathElem, ...] = ()
    peer_asn: int | None = None


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """An open withdrawal episode of a watched prefix (ratio below the threshold)."""

    time: float  # when the ratio first fell below the threshold
    first: float  # earliest withdrawal of the storm (within storm_window before `time`)
    peers: int  # peers of the recent set that do not see the prefix now
    ratio: float


@dataclass(frozen=True, slots=True)
class SpecificView:
    """One announced prefix inside a watched one (e.g. one of the four /24s)."""

    prefix: str
    seeing: int
    recent: int
    ratio: float | None
    origins: frozenset[Origin]


@dataclass(frozen=True, slots=True)
class PrefixStatus:
    """Everything known about a watched prefix, for the API and detection."""

    prefix: str
    ratio: float | None
    seeing: int
    recent: int
    known: int
    withdrawal: Withdrawal | None
    origins: Mapping[Origin, int]
    detail: Mapping[str, SpecificView]


@dataclass(slots=True)
class _Tally:
    seeing: set[PeerKey]
    recent: set[PeerKey]
    last: dict[PeerKey, float]  # when each peer last saw the prefix (now if it still does)

    def ratio(self, min_peers: int = 1) -> float | None:
        if len(self.last) < max(1, min_peers):
            return None
        return len(self.seeing) / len(self.recent) if self.recent else 0.0


def _net(prefix: str | IPNetwork) -> IPNetwork:
    return prefix if not isinstance(prefix, str) else parse_prefix(prefix)


def _within(inner: IPNetwork, outer: IPNetwork) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


class Visibility:
    """Per watched prefix and per collector peer: announced or withdrawn, since when.

    Times are epoch seconds: BGP message timestamps for state changes, the caller's wall clock
    for `now` (only used for the `recent` window).
    """

    def __init__(
        self,
        watched: Iterable[str | IPNetwork],
        *,
        recent: float | None = 86400.0,
        threshold: float = 0.5,
        storm_window: float = 600.0,
        min_peers: int = 1,
    ) -> None:
        self.watched: tuple[IPNetwork, ...] = tuple(dict.fromkeys(_net(w) for w in watched))
        self.recent = recent
        self.threshold = threshold
        self.storm_window = storm_window
        # Fewer known peers than this: ratio None. At start-up without a snapshot, the first
        # message may come from one peer; 0/1 must not read as "withdrawn everywhere".
        self.min_peers = min_peers
        self._routes: dict[IPNetwork, dict[PeerKey, Route]] = {}
        self._inside: dict[IPNetwork, set[IPNetwork]] = {w: set() for w in self.watched}
        self._by_peer: dict[PeerKey, set[IPNetwork]] = {}
        self._containers: dict[IPNetwork, tuple[IPNetwork, ...]] = {}
        self._episodes: dict[IPNetwork, Withdrawal] = {}

    # mapping

    def watched_for(self, prefix: str | IPNetwork) -> tuple[IPNetwork, ...]:
        """The watched prefixes that `prefix` equals or falls in (several if they overlap)."""
        net = _net(prefix)
        got = self._containers.get(net)
        if got is None:
            got = tuple(w for w in self.watched if _within(net, w))
            if len(self._containers) < 100_000:  # bounded: junk prefixes must not grow it
                self._containers[net] = got
        return got

    def subscriptions(self) -> tuple[IPNetwork, ...]:
        """The fewest prefixes whose more-specific subscriptions cover every watched one."""
        cover: list[IPNetwork] = []
        for w in sorted(self.watched, key=lambda n: (n.version, n.prefixlen)):
            if not any(_within(w, c) for c in cover):
                cover.append(w)
        return tuple(cover)

    # updates

    def _set(
        self,
        peer: PeerKey,
        prefix: IPNetwork,
        t: float,
        announced: bool,
        upd: Update | None = None,
        *,
        seed: bool = False,
    ) -> tuple[IPNetwork, ...]:
        owners = self.watched_for(prefix)
        if not owners:
            return ()
        per_peer = self._routes.setdefault(prefix, {})
        route = per_peer.get(peer)
        if route is None:
            route = per_peer[peer] = Route(announced, t, t)
            self._by_peer.setdefault(peer, set()).add(prefix)
            for w in owners:
                self._inside[w].add(prefix)
        elif seed:  # a snapshot never overrides what the live feed said
            return ()
        elif route.announced != announced:
            route.announced, route.since = announced, t
        route.updated = t
        if announced:
            path = upd.path if upd else ()
            route.path, route.origin = path, origin_of(path)
            if upd is not None:
                route.peer_asn = upd.peer_asn
        return owners

    def apply(self, msg: Update | PeerState) -> set[IPNetwork]:
        """Apply a parsed message; return the watched prefixes it touched."""
        touched: set[IPNetwork] = set()
        if isinstance(msg, PeerState):
            if msg.state.lower() == "down":
                touched = self.peer_down(msg.peer)
        else:
            # BGP order: withdrawn routes first, then NLRI, so a prefix in both ends announced.
            for p in msg.withdrawn:
                touched.update(self._set(msg.peer, p, msg.time, False, msg))
            for p in msg.announced:
                touched.update(self._set(msg.peer, p, msg.time, True, msg))
        for w in touched:
            self._evaluate(w, msg.time)
        return touched

    def announce(
        self, peer: PeerKey, prefix: str | IPNetwork, t: float, path: Iterable[PathElem] = ()
    ) -> set[IPNetwork]:
        """Convenience for tests and seeding by hand: one announcement."""
        p = tuple(path)
        upd = Update(t, peer, None, p, origin_of(p), (_net(prefix),), ())
        return self.apply(upd)

    def withdraw(self, peer: PeerKey, prefix: str | IPNetwork, t: float) -> set[IPNetwork]:
        """Convenience: one withdrawal."""
        return self.apply(Update(t, peer, None, (), None, (), (_net(prefix),)))

    def peer_down(self, peer: PeerKey) -> set[IPNetwork]:
        """Forget a peer whose collector session went down (not a DPRK withdrawal)."""
        touched: set[IPNetwork] = set()
        for prefix in self._by_peer.pop(peer, set()):
            per_peer = self._routes.get(prefix, {})
            per_peer.pop(peer, None)
            owners = self.watched_for(prefix)
            touched.update(owners)
            if not per_peer:
                self._routes.pop(prefix, None)
                for w in owners:
                    self._inside[w].discard(prefix)
        return touched

    def seed(self, routes: Iterable[SeedRoute], t: float) -> set[IPNetwork]:
        """Routes from a snapshot, as announced at `t`, only where nothing is known yet."""
        touched: set[IPNetwork] = set()
        for r in routes:
            upd = Update(t, r.peer, None, r.path, origin_of(r.path), (r.prefix,), ())
            touched.update(self._set(r.peer, r.prefix, t, True, upd, seed=True))
        for w in touched:
            self._evaluate(w, t)
        return touched

    # queries

    def _tally(self, prefixes: Iterable[IPNetwork], now: float) -> _Tally:
        seeing: set[PeerKey] = set()
        last: dict[PeerKey, float] = {}
        for p in prefixes:
            for peer, r in self._routes.get(p, {}).items():
                if r.announced:
                    seeing.add(peer)
                    last[peer] = now
                elif peer not in seeing:
                    last[peer] = max(last.get(peer, -math.inf), r.since)
        horizon = -math.inf if self.recent is None else now - self.recent
        recent = {peer for peer, t in last.items() if peer in seeing or t >= horizon}
        return _Tally(seeing, recent, last)

    def _watched_tally(self, prefix: str | IPNetwork, now: float) -> _Tally:
        w = _net(prefix)
        if w not in self._inside:
            raise KeyError(f"{w} is not a watched prefix")
        return self._tally(self._inside[w], now)

    def ratio(self, prefix: str | IPNetwork, now: float) -> float | None:
        """Peers seeing the watched prefix now / peers that saw it recently; None: none known."""
        return self._watched_tally(prefix, now).ratio(self.min_peers)

    def counts(self, prefix: str | IPNetwork, now: float) -> tuple[int, int, int]:
        """(seeing now, seen recently, ever known) peers of a watched prefix."""
        t = self._watched_tally(prefix, now)
        return len(t.seeing), len(t.recent), len(t.last)

    def detail(self, prefix: str | IPNetwork, now: float) -> dict[str, SpecificView]:
        """Per announced prefix inside the watched one (the /24s): who sees it."""
        out: dict[str, SpecificView] = {}
        for p in sorted(self._inside[_net(prefix)], key=lambda n: (n.network_address, n.prefixlen)):
            t = self._tally((p,), now)
            routes = self._routes.get(p, {})
            origins = frozenset(
                r.origin for r in routes.values() if r.announced and r.origin is not None
            )
            ratio = t.ratio(self.min_peers)
            out[str(p)] = SpecificView(str(p), len(t.seeing), len(t.recent), ratio, origins)
        return out

    def origins(self, prefix: str | IPNetwork) -> collections.Counter[Origin]:
        """Origin AS of current routes into the watched prefix, counted per (peer, route)."""
        c: collections.Counter[Origin] = collections.Counter()
        for p in self._inside[_net(prefix)]:
            for r in self._routes.get(p, {}).values():
                if r.announced and r.origin is not None:
                    c[r.origin] += 1
        return c

    def withdrawal(self, prefix: str | IPNetwork) -> Withdrawal | None:
        """The open withdrawal episode (ratio below threshold), or None."""
        return self._episodes.get(_net(prefix))

    def withdrawal_time(self, prefix: str | IPNetwork) -> tuple[float, int] | None:
        """(time the ratio first fell below the threshold, peers that withdrew), or None."""
        ep = self._episodes.get(_net(prefix))
        return None if ep is None else (ep.time, ep.peers)

    def route(self, peer: PeerKey, prefix: str | IPNetwork) -> Route | None:
        """What `peer` last said about exactly `prefix`."""
        return self._routes.get(_net(prefix), {}).get(peer)

    def peers(self) -> int:
        """Peers with any route state."""
        return len(self._by_peer)

    def status(self, prefix: str | IPNetwork, now: float) -> PrefixStatus:
        """A summary for the API: ratio, counts, episode, origins, per-/24 detail."""
        w = _net(prefix)
        t = self._watched_tally(w, now)
        return PrefixStatus(
            prefix=str(w),
            ratio=t.ratio(self.min_peers),
            seeing=len(t.seeing),
            recent=len(t.recent),
            known=len(t.last),
            withdrawal=self._episodes.get(w),
            origins=dict(self.origins(w)),
            detail=self.detail(w, now),
        )

    def refresh(self, now: float) -> None:
        """Re-evaluate episodes as the `recent` window moves (peers age out of it)."""
        for w in self.watched:
            self._evaluate(w, now)

    def _evaluate(self, w: IPNetwork, t: float) -> None:
        tally = self._tally(self._inside[w], t)
        r = tally.ratio(self.min_peers)
        if r is None:
            return  # nothing known (e.g. every peer's session went down): keep what we had
        if r >= self.threshold:
            if self._episodes.pop(w, None) is not None:
                log.info("bgp_visibility_recovered", prefix=str(w), ratio=r)
            return
        gone = tally.recent - tally.seeing
        ep = self._episodes.get(w)
        if ep is None:
            storm = [tally.last[p] for p in gone if tally.last[p] >= t - self.storm_window]
            ep = Withdrawal(time=t, first=min(storm, default=t), peers=len(gone), ratio=r)
            log.info("bgp_withdrawal", prefix=str(w), ratio=r, peers=len(gone), first=ep.first)
        else:
            ep = Withdrawal(time=ep.time, first=ep.first, peers=len(gone), ratio=r)
        self._episodes[w] = ep
