"""RIS Live client -> per-prefix BGP visibility.

Two layers:

- `Visibility` is pure state (no I/O): for every watched prefix (an entity's configured
  prefixes) it tracks, per route-collector peer `(collector, peer address)`, whether that peer
  currently announces the prefix or one of its more-specifics, when that last changed, and the
  origin AS. `ratio(prefix, now)` is the share of recently-seen peers that see it now.
- `RisLiveClient` feeds it from the RIS Live websocket (subscribe, parse, reconnect) and calls
  `on_change(prefix, ratio)` when a watched prefix's ratio changes.

Semantics (documented here because detection and the dashboards depend on them):

- A peer *sees* a watched prefix W while it announces W or any more-specific of W (DPRK
  announces 175.45.176.0/22 as four /24s, so "sees the /22" means "has a route into it").
  Per more-specific numbers are in `detail()`, for partial outages (one /24 gone).
- The denominator is the peers that saw W *recently*: those that see it now plus those whose
  last route into W went away less than `recent` seconds ago (`recent=None`: since start).
  A withdrawal counts even if we never saw the announcement: the peer had the route until then.
  If every known peer withdrew longer ago than `recent`, the ratio is 0.0, not unknown.
  `ratio()` is None only when no peer has ever been seen for W (or fewer than `min_peers`).
- RIS_PEER_STATE "down" means a collector's BGP session went down: that says nothing about
  DPRK, so the peer is forgotten (removed from numerator *and* denominator) instead of being
  counted as a withdrawal. It comes back with its next announcements (its table is re-sent).
- A withdrawal episode starts when the ratio first falls below `threshold`; `withdrawal()`
  gives that time (BGP message time), the earliest withdrawal of the storm (within
  `storm_window` before it) and the number of peers that withdrew. It ends when the ratio is
  back at or above the threshold.
- While the websocket is down nothing is learned; the state is kept as it was (RIS Live does
  not replay the gap). `RisLiveClient.connected` / `last_message_time` say how fresh it is.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import json
import math
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import structlog
from yarl import URL

log = structlog.get_logger("monitor.bgp")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PeerKey = tuple[str, str]  # (collector "rrc25", peer address "2001:db8::1")
Origin = int | frozenset[int]  # an AS-set origin is recorded as the set
PathElem = int | frozenset[int]

DEFAULT_URL: Final = "wss://ris-live.ripe.net/v1/ws/"
CLIENT_NAME: Final = "dprk-outage-monitor"
# bgp-state lists routes per peer (source_id "rrc-peer") for the prefix and its more-specifics;
# looking-glass needs an exact prefix, which a /22 announced only as /24s is not.
RIPESTAT_SNAPSHOT_URL: Final = (
    "https://stat.ripe.net/data/bgp-state/data.json?resource={prefix}&sourceapp=" + CLIENT_NAME
)


# --- parsing (pure) -------------------------------------------------------------------------


class MessageError(ValueError):
    """A frame that cannot be used; `category` is the junk counter it goes to."""

    def __init__(self, category: str, detail: str) -> None:
        super().__init__(f"{category}: {detail}")
        self.category = category


def normalise_host(host: str) -> str:
    """Collector name as a short, lower-case key: `rrc25.ripe.net`, `RRC25`, `25` -> `rrc25`."""
    short = host.strip().lower().split(".", 1)[0]
    if short.isascii() and short.isdigit():  # RIPEstat source_id "25-<peer>" gives only the number
        short = f"rrc{int(short):02d}"
    return short


def normalise_peer(peer: str) -> str:
    """Peer address in canonical form (RIS and RIPEstat spell IPv6 differently)."""
    return ipaddress.ip_address(peer.strip()).compressed


def parse_prefix(text: str) -> IPNetwork:
    """A prefix, host bits tolerated (RIS writes `2605:de00:bb:0:0:0:0:0/48`)."""
    return ipaddress.ip_network(text.strip(), strict=False)


def _timestamp(v: object) -> float | None:
    """Epoch seconds if `v` is a finite number of sane size (JSON ints can be huge)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    if isinstance(v, int) and abs(v) > 2**53:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _asn(v: object) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if 0 <= v < 2**32 else None
    if isinstance(v, str):
        s = v.strip().upper().removeprefix("AS")
        if s.isascii() and s.isdigit() and len(s) <= 10 and int(s) < 2**32:
            return int(s)
    return None


def parse_path(raw: object) -> tuple[PathElem, ...] | None:
    """AS path as ints, AS-sets (nested lists) as frozensets; None if malformed."""
    if isinstance(raw, str):  # RIPEstat looking-glass: "3333 1299 131279"
        raw = raw.split()
    if not isinstance(raw, list):
        return None
    out: list[PathElem] = []
    for el in raw:
        if isinstance(el, list):
            members = [_asn(m) for m in el]
            if not members or any(m is None for m in members):
                return None
            out.append(frozenset(m for m in members if m is not None))
        else:
            asn = _asn(el)
            if asn is None:
                return None
            out.append(asn)
    return tuple(out)


def origin_of(path: tuple[PathElem, ...]) -> Origin | None:
    """The origin is the last element of the path; an AS-set origin stays a set."""
    return path[-1] if path else None


@dataclass(frozen=True, slots=True)
class Update:
    """One RIS Live UPDATE: withdrawals and announcements of one peer at one time."""

    time: float
    peer: PeerKey
    peer_asn: int | None
    path: tuple[PathElem, ...]
    origin: Origin | None
    announced: tuple[IPNetwork, ...]
    withdrawn: tuple[IPNetwork, ...]
    bad_prefixes: int = 0


@dataclass(frozen=True, slots=True)
class PeerState:
    """RIS_PEER_STATE: the collector's BGP session with the peer changed state."""

    time: float
    peer: PeerKey
    state: str


_IGNORED_TYPES: Final = frozenset({"KEEPALIVE", "OPEN", "NOTIFICATION"})


def _prefixes(raw: object, field: str) -> tuple[list[IPNetwork], int]:
    if not isinstance(raw, list):
        raise MessageError("bad_field", f"{field} is not a list")
    good: list[IPNetwork] = []
    bad = 0
    for item in raw:
        if not isinstance(item, str):
            bad += 1
            continue
        try:
            good.append(parse_prefix(item))
        except ValueError:
            bad += 1
    return good, bad


def parse_ris_message(data: object) -> Update | PeerState | None:
    """The `data` of a `ris_message`. None for types that carry no routing state.

    Raises MessageError for anything unusable. Unparsable prefixes are dropped and counted in
    `bad_prefixes`; the rest of the UPDATE still applies. A malformed path only loses the origin.
    """
    if not isinstance(data, dict):
        raise MessageError("missing_field" if data is None else "bad_field", "data")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise MessageError("missing_field" if kind is None else "bad_field", "data.type")
    if kind in _IGNORED_TYPES:
        return None
    if kind not in ("UPDATE", "RIS_PEER_STATE"):
        raise MessageError("unknown_type", f"ris_message {kind[:40]!r}")
    for name in ("timestamp", "peer", "host"):
        if name not in data:
            raise MessageError("missing_field", name)
    ts, peer, host = data["timestamp"], data["peer"], data["host"]
    when = _timestamp(ts)
    if when is None:
        raise MessageError("bad_field", "timestamp")
    if not isinstance(host, str) or not normalise_host(host):
        raise MessageError("bad_field", "host")
    if not isinstance(peer, str):
        raise MessageError("bad_field", "peer")
    try:
        key = (normalise_host(host), normalise_peer(peer))
    except ValueError:
        raise MessageError("bad_field", "peer") from None

    if kind == "RIS_PEER_STATE":
        state = data.get("state")
        if not isinstance(state, str):
            raise MessageError("missing_field" if state is None else "bad_field", "state")
        return PeerState(when, key, state)

    announced: list[IPNetwork] = []
    bad = 0
    anns = data.get("announcements", [])
    if not isinstance(anns, list):
        raise MessageError("bad_field", "announcements")
    for ann in anns:
        if not isinstance(ann, dict) or "prefixes" not in ann:
            raise MessageError("bad_field", "announcements[]")
        got, nbad = _prefixes(ann["prefixes"], "announcements[].prefixes")
        announced += got
        bad += nbad
    withdrawn, nbad = _prefixes(data.get("withdrawals", []), "withdrawals")
    bad += nbad
    path = parse_path(data.get("path", [])) or ()
    return Update(
        time=when,
        peer=key,
        peer_asn=_asn(data.get("peer_asn")),
        path=path,
        origin=origin_of(path),
        announced=tuple(dict.fromkeys(announced)),  # one per next hop in the fixtures: dedupe
        withdrawn=tuple(dict.fromkeys(withdrawn)),
        bad_prefixes=bad,
    )


@dataclass(frozen=True, slots=True)
class SeedRoute:
    """One route from a RIPEstat snapshot."""

    peer: PeerKey
    prefix: IPNetwork
    path: tuple[PathElem, ...]


def parse_snapshot(doc: object) -> list[SeedRoute]:
    """Routes from RIPEstat `bgp-state` or `looking-glass` JSON; malformed entries skipped."""
    out: list[SeedRoute] = []
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict):
        return out

    def add(collector: object, peer: object, prefix: object, path: object) -> None:
        if not (isinstance(collector, str) and isinstance(peer, str) and isinstance(prefix, str)):
            return
        try:
            key = (normalise_host(collector), normalise_peer(peer))
            net = parse_prefix(prefix)
        except ValueError:
            return
        out.append(SeedRoute(key, net, parse_path(path) or ()))

    routes, rrcs = data.get("bgp_state"), data.get("rrcs")
    for route in routes if isinstance(routes, list) else ():
        if isinstance(route, dict) and isinstance(route.get("source_id"), str):
            collector, _, peer = route["source_id"].partition("-")
            add(collector, peer, route.get("target_prefix"), route.get("path"))
    for rrc in rrcs if isinstance(rrcs, list) else ():
        if isinstance(rrc, dict) and isinstance(rrc.get("peers"), list):
            for p in rrc["peers"]:
                if isinstance(p, dict):
                    add(rrc.get("rrc"), p.get("peer"), p.get("prefix"), p.get("as_path"))
    return out


# --- visibility state (pure) ----------------------------------------------------------------


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


# --- the websocket client -------------------------------------------------------------------


def client_url(url: str, name: str = CLIENT_NAME) -> str:
    """RIS Live asks every client to identify itself with `?client=NAME`."""
    u = URL(url)
    return str(u if "client" in u.query else u.update_query(client=name))


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: uniform in [half, all] of min(cap, base * 2**attempt)."""
    ceiling = min(cap, base * 2.0 ** min(attempt, 62))
    return ceiling * rng.uniform(0.5, 1.0)


OnChange = Callable[[str, float | None], None]


class RisLiveClient:
    """Subscribes to the watched prefixes on RIS Live and keeps `visibility` current.

    Stop it with `await client.close()`, then await the `run()` task (cancelling the task also
    stops it, but only close() releases a session the client created).

    `run()` loops until cancelled or `close()`d: connect, subscribe, read, and on any failure
    reconnect with exponential backoff and jitter (reset once a connection stayed up
    `healthy_after` seconds). Junk frames are counted in `junk` by category and skipped.
    """

    def __init__(
        self,
        visibility: Visibility,
        url: str = DEFAULT_URL,
        *,
        on_change: OnChange | None = None,
        peer_state: bool = True,
        heartbeat: float = 30.0,
        ping_interval: float = 30.0,
        receive_timeout: float | None = 120.0,  # None: rely on heartbeat alone
        connect_timeout: float = 30.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        healthy_after: float = 60.0,
        snapshot_url: str | None = None,
        snapshot_timeout: float = 30.0,
        snapshot_interval: float = 3600.0,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.visibility = visibility
        self.url = client_url(url)
        self.on_change = on_change
        self.peer_state = peer_state
        self.heartbeat = heartbeat
        self.ping_interval = ping_interval
        self.receive_timeout = receive_timeout
        self.connect_timeout = connect_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.healthy_after = healthy_after
        self.snapshot_url = snapshot_url
        self.snapshot_timeout = snapshot_timeout
        self.snapshot_interval = snapshot_interval
        self._last_snapshot: float | None = None  # monotonic start of the last fetch
        self._clock = clock
        self._rng = rng or random.Random()
        self._session = session
        self._own_session = session is None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._closing = asyncio.Event()
        self._reported: dict[IPNetwork, float | None] = {}
        self._tasks: set[asyncio.Task[object]] = set()

        self.connected = False
        self.connects = 0  # websocket sessions established
        self.connect_failures = 0  # attempts that failed or sessions that ended in an error
        self.messages = 0  # well-formed server messages handled
        self.updates = 0  # ris_message UPDATE / RIS_PEER_STATE applied
        self.last_message_time: float | None = None  # wall clock of the last frame received
        self.last_bgp_time: float | None = None  # BGP timestamp of the last message applied
        self.junk: collections.Counter[str] = collections.Counter()
        self.errors = 0  # ris_error messages
        self.last_error: str | None = None
        self.subscribed: set[str] = set()  # acknowledged subscriptions ("prefix" or type)
        self.rrcs: tuple[str, ...] = ()
        self.last_pong: float | None = None
        self.snapshot_routes = 0
        self.snapshot_failures = 0

    # frames (sync, never raise)

    def subscribe_messages(self) -> list[dict[str, Any]]:
        """The ris_subscribe messages sent on every (re)connection."""
        opts = {"acknowledge": True, "includeRaw": False}
        subs: list[dict[str, Any]] = [
            {
                "type": "ris_subscribe",
                "data": {
                    "prefix": str(p),
                    "moreSpecific": True,
                    "type": "UPDATE",
                    "socketOptions": opts,
                },
            }
            for p in self.visibility.subscriptions()
        ]
        if self.peer_state:
            # Peer-state messages carry no prefix, so a prefix filter would drop them: ask for
            # them separately (all peers; they are rare).
            subs.append(
                {"type": "ris_subscribe", "data": {"type": "RIS_PEER_STATE", "socketOptions": opts}}
            )
        return subs

    def handle_frame(self, frame: str | bytes) -> None:
        """One websocket frame's payload: text is parsed, binary is junk."""
        self.last_message_time = self._clock()
        if isinstance(frame, str):
            self.handle_text(frame)
        else:
            self.junk["binary"] += 1

    def handle_text(self, text: str) -> None:
        """Handle one text frame. Junk is counted in `junk` and skipped; this never raises."""
        try:
            self._handle(text)
        except MessageError as e:
            self.junk[e.category] += 1
            log.debug("ris_junk", category=e.category, error=str(e), frame=text[:200])
        except Exception:  # a bug must not kill the feed; it is visible in the log and count
            self.junk["internal_error"] += 1
            log.exception("ris_frame_failed", frame=text[:200])

    def _handle(self, text: str) -> None:
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError):
            raise MessageError("not_json", "frame is not JSON") from None
        if not isinstance(doc, dict):
            raise MessageError("not_object", "frame is not a JSON object")
        kind = doc.get("type")
        if not isinstance(kind, str):
            raise MessageError("missing_field" if kind is None else "bad_field", "type")
        data = doc.get("data")
        if kind == "ris_message":
            msg = parse_ris_message(data)
            self.messages += 1
            if msg is None:
                return
            if isinstance(msg, Update) and msg.bad_prefixes:
                self.junk["bad_prefix"] += msg.bad_prefixes
            self.updates += 1
            self.last_bgp_time = msg.time
            if isinstance(msg, PeerState):
                log.info("ris_peer_state", collector=msg.peer[0], peer=msg.peer[1], state=msg.state)
            self._notify(self.visibility.apply(msg))
        elif kind == "ris_error":
            text_ = data.get("message") if isinstance(data, dict) else data
            self.messages += 1
            self.errors += 1
            self.last_error = str(text_)[:500]
            # Usually a rejected subscription or "too slow"; the server closes if it is fatal.
            log.warning("ris_error", message=self.last_error)
        elif kind == "ris_subscribe_ok":
            self.messages += 1
            sub = data.get("subscription", data) if isinstance(data, dict) else None
            if isinstance(sub, dict):
                self.subscribed.add(str(sub.get("prefix") or sub.get("type") or "all"))
        elif kind == "pong":
            self.messages += 1
            self.last_pong = self._clock()
        elif kind == "ris_rrc_list":
            self.messages += 1
            if isinstance(data, list):
                self.rrcs = tuple(str(x) for x in data)
        else:
            raise MessageError("unknown_type", kind[:40])

    def _notify(self, touched: Iterable[IPNetwork]) -> None:
        if not touched:
            return
        now = self._clock()
        for w in touched:
            r = self.visibility.ratio(w, now)
            if w in self._reported and self._reported[w] == r:
                continue
            self._reported[w] = r
            if self.on_change is not None:
                try:
                    self.on_change(str(w), r)
                except Exception:
                    log.exception("bgp_on_change_failed", prefix=str(w))

    def refresh(self) -> None:
        """Re-check every watched prefix (the `recent` window moves with time)."""
        now = self._clock()
        self.visibility.refresh(now)
        self._notify(self.visibility.watched)

    # connection

    async def run(self) -> None:
        """Connect, read and reconnect forever, until cancelled or `close()`d."""
        if self._closing.is_set():
            return
        if self._session is None:
            self._session = aiohttp.ClientSession()
        attempt = 0
        while not self._closing.is_set():
            started = time.monotonic()
            try:
                await self._connect_once(self._session)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                self.connect_failures += 1
                log.warning("ris_live_connection_failed", error=repr(e), attempt=attempt)
            except Exception:
                self.connect_failures += 1
                log.exception("ris_live_client_error", attempt=attempt)
            finally:
                self.connected = False
                self._ws = None
            if self._closing.is_set():
                break
            if time.monotonic() - started >= self.healthy_after:
                attempt = 0
            delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap, self._rng)
            attempt += 1
            log.info("ris_live_reconnect_in", seconds=round(delay, 3), attempt=attempt)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)

    async def _connect_once(self, session: aiohttp.ClientSession) -> None:
        async with asyncio.timeout(self.connect_timeout):
            ws = await session.ws_connect(
                self.url,
                heartbeat=self.heartbeat,
                timeout=aiohttp.ClientWSTimeout(ws_receive=self.receive_timeout, ws_close=5.0),
                max_msg_size=16 * 2**20,
            )
        self._ws = ws
        pinger: asyncio.Task[None] | None = None
        try:
            for sub in self.subscribe_messages():
                await ws.send_json(sub)
            self.connected = True
            self.connects += 1
            log.info("ris_live_connected", url=self.url, subscriptions=len(self.subscriptions))
            pinger = asyncio.create_task(self._ping_loop(ws))
            if self._snapshot_due():
                self._spawn(self.fetch_snapshot())
            while not self._closing.is_set():
                msg = await ws.receive()  # raises TimeoutError after receive_timeout of silence
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    self.handle_frame(msg.data)
                else:  # CLOSE, CLOSING, CLOSED, ERROR
                    if not self._closing.is_set():
                        log.warning("ris_live_closed", type=msg.type.name, extra=str(msg.extra))
                    return
        finally:
            if pinger is not None:
                pinger.cancel()
                await asyncio.wait({pinger})  # unlike `await pinger`, keeps our own cancellation
            await ws.close()

    @property
    def subscriptions(self) -> tuple[str, ...]:
        return tuple(str(p) for p in self.visibility.subscriptions())

    async def _ping_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        # An application ping gets a `pong`, so a quiet prefix (DPRK's rarely changes) still
        # produces traffic and receive_timeout only fires when the stream is really stalled.
        while True:
            await asyncio.sleep(self.ping_interval)
            self.refresh()
            try:
                await ws.send_json({"type": "ping"})
            except (aiohttp.ClientError, ConnectionError, RuntimeError):
                return

    def _snapshot_due(self) -> bool:
        # On every reconnect would be impolite to RIPEstat when the websocket flaps: at most
        # once per snapshot_interval (the live feed is authoritative anyway).
        if not self.snapshot_url:
            return False
        last = self._last_snapshot
        return last is None or time.monotonic() - last >= self.snapshot_interval

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def fetch_snapshot(self) -> int:
        """Seed visibility from RIPEstat; returns routes seeded. Failures only log."""
        if not self.snapshot_url or self._session is None:
            return 0
        self._last_snapshot = time.monotonic()
        seeded = 0
        for prefix in self.subscriptions:
            try:
                url = self.snapshot_url.format(prefix=quote(prefix, safe="/:"))
                async with asyncio.timeout(self.snapshot_timeout):
                    async with self._session.get(url) as resp:
                        resp.raise_for_status()
                        routes = parse_snapshot(await resp.json(content_type=None))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any failure: the live feed still works without it
                self.snapshot_failures += 1
                log.warning("bgp_snapshot_failed", prefix=prefix, error=repr(e))
                continue
            touched = self.visibility.seed(routes, self._clock())
            seeded += len(routes)
            self._notify(touched)
            log.info("bgp_snapshot", prefix=prefix, routes=len(routes))
        self.snapshot_routes += seeded
        return seeded

    async def close(self) -> None:
        """Stop `run()` and release the connection (and the session if we created it)."""
        self._closing.set()
        if self._ws is not None:
            await self._ws.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
