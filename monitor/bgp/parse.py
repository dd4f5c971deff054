"""RIS Live messages and RIPEstat snapshots -> typed records (pure: no I/O, no state).

`parse_ris_message` turns the `data` of a RIS Live `ris_message` into an `Update` or a
`PeerState` (or None for types that carry no routing state) and raises `MessageError`, whose
`category` names the junk counter, for anything unusable. `parse_snapshot` reads RIPEstat
`bgp-state` / `looking-glass` JSON into `SeedRoute`s, skipping malformed entries.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from dataclasses import dataclass
from typing import Final

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PeerKey = tuple[str, str]  # (collector "rrc25", peer address "2001:db8::1")
Origin = int | frozenset[int]  # an AS-set origin is recorded as the set
PathElem = int | frozenset[int]


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


# RIS Live repeats the same few prefixes and peers in every message; parsing them is most of the
# per-message cost (ipaddress is slow). Results are immutable, the caches bounded LRUs (junk can
# only push entries out), and failures (ValueError) are not cached.
@functools.lru_cache(maxsize=4096)
def normalise_peer(peer: str) -> str:
    """Peer address in canonical form (RIS and RIPEstat spell IPv6 differently)."""
    return ipaddress.ip_address(peer.strip()).compressed


@functools.lru_cache(maxsize=4096)
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
