"""Per-prefix BGP visibility state (pure: no I/O); the package docstring has the semantics.

Every count is kept up to date as messages arrive instead of being re-tallied from all routes
(a withdrawal storm of 1,200 peers x 4 /24s re-tallied 4,800 routes twice per message). Each
prefix of interest has a `_Scope`: each watched prefix W, and each announced prefix P inside
one (the /24s). A scope holds the peers that see it now and, for the others it knows of, when
their last route into it went away, in a list sorted by that time; so "peers that withdrew since
`now - recent`" is one binary search for any `now`, and the earliest withdrawal of a storm is
the first entry after `t - storm_window`. A message updates the scopes of the prefixes it names
and, per watched prefix it falls in, recomputes that one peer's standing from the more-specific
scopes: O(more-specifics), independent of the number of peers.

Memory over months (`prune`, run by `refresh`):

- A withdrawn route older than `recent` no longer counts in any denominator, so its `Route`
  (path, origin, peer AS) is dropped; the scopes keep only the peer and its withdrawal time, so
  `known` counts, a repeated withdrawal (not new: it keeps the old time) and a snapshot (does
  not resurrect it) behave exactly as if the route were still stored.
- Those entries go too once older than `forget_after` (default 2 x `recent`): such a peer is
  forgotten as if its session had gone down. Each scope keeps its `max(1, min_peers)` most
  recent ones whatever their age, so a total outage longer than that still reads 0.0, never
  unknown. With `recent=None` (denominator since start) nothing is evicted.

Peers that still announce are never evicted for being quiet: BGP sends nothing while a route is
stable, so months of silence is the normal state of a route that is up.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import math
from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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


# Expiry entries kept before the first compaction (see Visibility._compact_expiry).
_COMPACT_MIN = 4096

# Sorts before every real (time, peer) entry with the same time: probes the sorted lists.
_FIRST_PEER: PeerKey = ("", "")


@dataclass(slots=True)
class _Scope:
    """The peers known for one prefix (watched, or one announced inside a watched one)."""

    seeing: set[PeerKey] = field(default_factory=set)
    gone: dict[PeerKey, float] = field(default_factory=dict)  # not seeing: last route gone at
    order: list[tuple[float, PeerKey]] = field(default_factory=list)  # `gone`, sorted by time
    origins: collections.Counter[Origin] = field(default_factory=collections.Counter)

    def known(self) -> int:
        return len(self.seeing) + len(self.gone)

    def put(self, peer: PeerKey, gone_at: float | None) -> None:
        """The peer sees the prefix (`gone_at` None), or its last route into it went then."""
        old = self.gone.pop(peer, None)
        if old is not None:
            del self.order[bisect_left(self.order, (old, peer))]
        if gone_at is None:
            self.seeing.add(peer)
        else:
            self.seeing.discard(peer)
            self.gone[peer] = gone_at
            insort(self.order, (gone_at, peer))

    def drop(self, peer: PeerKey) -> bool:
        """Forget the peer; whether it was known."""
        old = self.gone.pop(peer, None)
        if old is not None:
            del self.order[bisect_left(self.order, (old, peer))]
            return True
        if peer in self.seeing:
            self.seeing.remove(peer)
            return True
        return False

    def gone_since(self, t: float) -> int:
        """Peers not seeing it whose last route went away at or after `t`."""
        return len(self.order) - bisect_left(self.order, (t, _FIRST_PEER))

    def first_gone_since(self, t: float) -> float | None:
        """The earliest such time at or after `t`."""
        i = bisect_left(self.order, (t, _FIRST_PEER))
        return self.order[i][0] if i < len(self.order) else None

    def forget_before(self, t: float, keep: int) -> None:
        """Forget peers gone before `t`, but keep the `keep` most recent gone ones."""
        n = min(bisect_left(self.order, (t, _FIRST_PEER)), len(self.order) - keep)
        if n > 0:
            for _, peer in self.order[:n]:
                del self.gone[peer]
            del self.order[:n]

    def count(self, origin: Origin | None, delta: int) -> None:
        if origin is None:
            return
        n = self.origins[origin] + delta
        if n > 0:
            self.origins[origin] = n
        else:
            del self.origins[origin]


def _net(prefix: str | IPNetwork) -> IPNetwork:
    return prefix if not isinstance(prefix, str) else parse_prefix(prefix)


def _within(inner: IPNetwork, outer: IPNetwork) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


class Visibility:
    """Per watched prefix and per collector peer: announced or withdrawn, since when.

    Times are epoch seconds: BGP message timestamps for state changes, the caller's wall clock
    for `now` (the `recent` window, and eviction in `refresh`/`prune`).
    """

    def __init__(
        self,
        watched: Iterable[str | IPNetwork],
        *,
        recent: float | None = 86400.0,
        threshold: float = 0.5,
        storm_window: float = 600.0,
        min_peers: int = 1,
        forget_after: float | None = None,
    ) -> None:
        self.watched: tuple[IPNetwork, ...] = tuple(dict.fromkeys(_net(w) for w in watched))
        self.recent = recent
        self.threshold = threshold
        self.storm_window = storm_window
        # Fewer known peers than this: ratio None. At start-up without a snapshot, the first
        # message may come from one peer; 0/1 must not read as "withdrawn everywhere".
        self.min_peers = min_peers
        # Age after which a withdrawn peer is forgotten (None: 2 x recent; inf: never).
        if recent is None:
            self.forget_after = math.inf
        else:
            self.forget_after = 2 * recent if forget_after is None else forget_after
            if not self.forget_after >= recent:
                raise ValueError("forget_after must be at least recent")
        self._routes: dict[IPNetwork, dict[PeerKey, Route]] = {}
        self._by_peer: dict[PeerKey, set[IPNetwork]] = {}
        self._watch: dict[IPNetwork, _Scope] = {w: _Scope() for w in self.watched}
        self._specific: dict[IPNetwork, _Scope] = {}  # every announced prefix with a known peer
        # Watched prefix -> the scopes of the announced prefixes inside it (iterated per message).
        self._inside: dict[IPNetwork, dict[IPNetwork, _Scope]] = {w: {} for w in self.watched}
        self._containers: dict[IPNetwork, tuple[IPNetwork, ...]] = {}
        self._episodes: dict[IPNetwork, Withdrawal] = {}
        # (withdrawn since, tie-break, peer, prefix): routes to drop once older than `recent`.
        self._expiry: list[tuple[float, int, PeerKey, IPNetwork]] = []
        self._seq = itertools.count()
        # A route announced again leaves its entry behind (skipped when popped): without
        # compaction, flapping routes would keep `recent` (a day) of stale entries.
        self._compact_at = _COMPACT_MIN

    def _live_expiry(self, entry: tuple[float, int, PeerKey, IPNetwork]) -> bool:
        since, _, peer, prefix = entry
        route = self._routes.get(prefix, {}).get(peer)
        return route is not None and not route.announced and route.since == since

    def _compact_expiry(self) -> None:
        """Drop the stale entries; the next compaction when the heap doubles what is live, so
        the heap stays within twice the withdrawn routes (plus a floor) at O(1) amortized."""
        self._expiry = [e for e in self._expiry if self._live_expiry(e)]
        heapq.heapify(self._expiry)
        self._compact_at = max(_COMPACT_MIN, 2 * len(self._expiry))

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
        """Update one route and its prefix's scope; the watched prefixes it falls in (whose
        standing of `peer` the caller then recomputes with `_restand`)."""
        owners = self.watched_for(prefix)
        if not owners:
            return ()
        per_peer = self._routes.get(prefix)
        route = per_peer.get(peer) if per_peer is not None else None
        scope = self._specific.get(prefix)
        if route is None:
            # Known withdrawn, its Route evicted: still withdrawn since then (exactly as if the
            # Route had been kept), which a snapshot must not override either.
            evicted = scope.gone.get(peer) if scope is not None else None
            if seed and evicted is not None:
                return ()
            route = Route(announced, t, t) if evicted is None else Route(False, evicted, evicted)
            self._routes.setdefault(prefix, {})[peer] = route
            self._by_peer.setdefault(peer, set()).add(prefix)
            if scope is None:
                scope = self._specific[prefix] = _Scope()
                for w in owners:
                    self._inside[w][prefix] = scope
            fresh = True
        elif seed:  # a snapshot never overrides what the live feed said
            return ()
        else:
            fresh = False
        assert scope is not None
        was = route.origin if route.announced else None
        flipped = route.announced != announced
        if flipped:
            route.announced, route.since = announced, t
        route.updated = t
        if announced:
            path = upd.path if upd else ()
            route.path, route.origin = path, origin_of(path)
            if upd is not None:
                route.peer_asn = upd.peer_asn
        elif fresh or flipped:
            heapq.heappush(self._expiry, (route.since, next(self._seq), peer, prefix))
            if len(self._expiry) > self._compact_at:
                self._compact_expiry()
        now_origin = route.origin if route.announced else None
        if was != now_origin:
            scope.count(was, -1)
            scope.count(now_origin, +1)
        scope.put(peer, None if route.announced else route.since)
        return owners

    def _restand(self, peer: PeerKey, w: IPNetwork) -> None:
        """Recompute `peer`'s standing in watched `w` from its more-specifics' scopes: it sees
        `w` if it sees any of them, else its last route into `w` went at the latest of their
        times (the same rule as for one prefix, over routes into `w`)."""
        gone_at: float | None = None
        for s in self._inside[w].values():
            if peer in s.seeing:
                self._watch[w].put(peer, None)
                return
            g = s.gone.get(peer)
            if g is not None and (gone_at is None or g > gone_at):
                gone_at = g
        if gone_at is None:
            self._watch[w].drop(peer)
        else:
            self._watch[w].put(peer, gone_at)

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
                self._restand(msg.peer, w)
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
        for prefix in self._by_peer.pop(peer, set()):
            per_peer = self._routes[prefix]
            route = per_peer.pop(peer)
            if not per_peer:
                del self._routes[prefix]
            if route.announced:
                self._specific[prefix].count(route.origin, -1)
        # Also where only its withdrawal time is left (Route evicted): a handful of scopes.
        for prefix, scope in list(self._specific.items()):
            if scope.drop(peer) and not scope.known():
                self._drop_specific(prefix)
        return {w for w, scope in self._watch.items() if scope.drop(peer)}

    def _drop_specific(self, prefix: IPNetwork) -> None:
        del self._specific[prefix]
        for w in self.watched_for(prefix):
            self._inside[w].pop(prefix, None)

    def seed(self, routes: Iterable[SeedRoute], t: float) -> set[IPNetwork]:
        """Routes from a snapshot, as announced at `t`, only where nothing is known yet."""
        touched: set[IPNetwork] = set()
        standing: set[tuple[PeerKey, IPNetwork]] = set()
        for r in routes:
            upd = Update(t, r.peer, None, r.path, origin_of(r.path), (r.prefix,), ())
            for w in self._set(r.peer, r.prefix, t, True, upd, seed=True):
                touched.add(w)
                standing.add((r.peer, w))
        for peer, w in standing:
            self._restand(peer, w)
        for w in touched:
            self._evaluate(w, t)
        return touched

    def prune(self, now: float) -> None:
        """Drop what no longer counts (see the module docstring): Routes withdrawn longer ago
        than `recent`, then peers gone longer ago than `forget_after`. Ratios do not change."""
        if self.recent is None:
            return
        cutoff = now - self.recent
        while self._expiry and self._expiry[0][0] < cutoff:
            since, _, peer, prefix = heapq.heappop(self._expiry)
            per_peer = self._routes.get(prefix, {})
            route = per_peer.get(peer)
            if route is None or route.announced or route.since != since:
                continue  # announced again, or gone with its peer: this entry is stale
            del per_peer[peer]
            if not per_peer:
                del self._routes[prefix]
            prefixes = self._by_peer[peer]
            prefixes.discard(prefix)
            if not prefixes:
                del self._by_peer[peer]
        if math.isinf(self.forget_after):
            return
        forget, keep = now - self.forget_after, max(1, self.min_peers)
        for scope in self._watch.values():
            scope.forget_before(forget, keep)
        for prefix, scope in list(self._specific.items()):
            scope.forget_before(forget, keep)
            if not scope.known():
                self._drop_specific(prefix)

    # queries

    def _horizon(self, now: float) -> float:
        return -math.inf if self.recent is None else now - self.recent

    def _counts(self, scope: _Scope, now: float) -> tuple[int, int, int]:
        seeing = len(scope.seeing)
        return seeing, seeing + scope.gone_since(self._horizon(now)), scope.known()

    def _ratio(self, scope: _Scope, now: float) -> float | None:
        if scope.known() < max(1, self.min_peers):
            return None
        seeing, recent, _ = self._counts(scope, now)
        return seeing / recent if recent else 0.0

    def _watched(self, prefix: str | IPNetwork) -> tuple[IPNetwork, _Scope]:
        w = _net(prefix)
        scope = self._watch.get(w)
        if scope is None:
            raise KeyError(f"{w} is not a watched prefix")
        return w, scope

    def ratio(self, prefix: str | IPNetwork, now: float) -> float | None:
        """Peers seeing the watched prefix now / peers that saw it recently; None: none known."""
        return self._ratio(self._watched(prefix)[1], now)

    def counts(self, prefix: str | IPNetwork, now: float) -> tuple[int, int, int]:
        """(seeing now, seen recently, ever known) peers of a watched prefix."""
        return self._counts(self._watched(prefix)[1], now)

    def detail(self, prefix: str | IPNetwork, now: float) -> dict[str, SpecificView]:
        """Per announced prefix inside the watched one (the /24s): who sees it."""
        out: dict[str, SpecificView] = {}
        w = self._watched(prefix)[0]
        inside = self._inside[w]
        for p in sorted(inside, key=lambda n: (n.network_address, n.prefixlen)):
            s = inside[p]
            seeing, recent, _ = self._counts(s, now)
            ratio = self._ratio(s, now)
            out[str(p)] = SpecificView(str(p), seeing, recent, ratio, frozenset(s.origins))
        return out

    def origins(self, prefix: str | IPNetwork) -> collections.Counter[Origin]:
        """Origin AS of current routes into the watched prefix, counted per (peer, route)."""
        c: collections.Counter[Origin] = collections.Counter()
        for s in self._inside[self._watched(prefix)[0]].values():
            c.update(s.origins)
        return c

    def withdrawal(self, prefix: str | IPNetwork) -> Withdrawal | None:
        """The open withdrawal episode (ratio below threshold), or None."""
        return self._episodes.get(_net(prefix))

    def withdrawal_time(self, prefix: str | IPNetwork) -> tuple[float, int] | None:
        """(time the ratio first fell below the threshold, peers that withdrew), or None."""
        ep = self._episodes.get(_net(prefix))
        return None if ep is None else (ep.time, ep.peers)

    def route(self, peer: PeerKey, prefix: str | IPNetwork) -> Route | None:
        """What `peer` last said about exactly `prefix`. After eviction only the withdrawal
        time is left: a withdrawn Route without path, `updated` set to that time."""
        net = _net(prefix)
        route = self._routes.get(net, {}).get(peer)
        if route is None:
            scope = self._specific.get(net)
            since = scope.gone.get(peer) if scope is not None else None
            if since is not None:
                return Route(False, since, since)
        return route

    def peers(self) -> int:
        """Peers with any stored state (a route, or a remembered withdrawal)."""
        known: set[PeerKey] = set(self._by_peer)
        for scope in itertools.chain(self._watch.values(), self._specific.values()):
            known.update(scope.seeing)
            known.update(scope.gone)
        return len(known)

    def stored(self) -> int:
        """Per-peer entries held (routes, scope entries, eviction queue): what bounds memory."""
        scopes = itertools.chain(self._watch.values(), self._specific.values())
        return (
            sum(len(r) for r in self._routes.values())
            + sum(s.known() for s in scopes)
            + len(self._expiry)
        )

    def status(self, prefix: str | IPNetwork, now: float) -> PrefixStatus:
        """A summary for the API: ratio, counts, episode, origins, per-/24 detail."""
        w, scope = self._watched(prefix)
        seeing, recent, known = self._counts(scope, now)
        return PrefixStatus(
            prefix=str(w),
            ratio=self._ratio(scope, now),
            seeing=seeing,
            recent=recent,
            known=known,
            withdrawal=self._episodes.get(w),
            origins=dict(self.origins(w)),
            detail=self.detail(w, now),
        )

    def refresh(self, now: float) -> None:
        """Re-evaluate episodes as the `recent` window moves (peers age out of it), and drop
        what no longer counts (`prune`)."""
        self.prune(now)
        for w in self.watched:
            self._evaluate(w, now)

    def _evaluate(self, w: IPNetwork, t: float) -> None:
        scope = self._watch[w]
        r = self._ratio(scope, t)
        if r is None:
            return  # nothing known (e.g. every peer's session went down): keep what we had
        if r >= self.threshold:
            if self._episodes.pop(w, None) is not None:
                log.info("bgp_visibility_recovered", prefix=str(w), ratio=r)
            return
        horizon = self._horizon(t)
        gone = scope.gone_since(horizon)  # recent peers that do not see it now
        ep = self._episodes.get(w)
        if ep is None:
            # The storm: withdrawals of those peers within storm_window before now.
            first = scope.first_gone_since(max(horizon, t - self.storm_window))
            ep = Withdrawal(time=t, first=t if first is None else first, peers=gone, ratio=r)
            log.info("bgp_withdrawal", prefix=str(w), ratio=r, peers=gone, first=ep.first)
        else:
            ep = Withdrawal(time=ep.time, first=ep.first, peers=gone, ratio=r)
        self._episodes[w] = ep
