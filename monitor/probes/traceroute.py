"""Path localisation: an ICMP echo traceroute over the ICMP engine's own sockets.

Echo requests with increasing TTL (IPv6: hop limit) go out through `IcmpProber.submit(...,
ttl=N)`, so no socket of its own is opened and the engine's demultiplexer matches the answers:
an echo reply (the target answered), ICMP time exceeded from a router on the way, or an ICMP
destination unreachable ("!H", "!N", ...: the router has no route, the path ends there). A few
TTLs are in flight at once; once an answer ends the path at TTL n, nothing above n is sent.

Every probe first waits for `acquire()` (the daemon passes the scheduler's entity budget), so a
traceroute is polite like any other probe toward a monitored network. `traceroute()` never
raises for network outcomes: silence is a hop without an address, a local send failure ends the
trace with `error` set.

Routers rate-limit their unreachable answers (Linux: about one per second per source address,
`net.ipv4.route.error_cost`), and during an outage the monitor's ordinary probes toward the
dead block compete for them: the traceroute then sees the hops before the broken router and
silence from it on. Those ordinary probes do get the router's answers, though, so
`UnreachableRouters` records, per entity and block, which routers answered "destination
unreachable" to them (a passive traceroute), and `path_evidence` merges both: when the trace
ends in silence and a router beyond its last answering hop answered unreachable for the
affected blocks, that router is where the path ends.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from monitor.detect.belief import block_of
from monitor.detect.model import iso
from monitor.probes.base import IcmpTarget, IPAddress, ProbeResult, Reason, target_address

__all__ = [
    "MAX_HOPS",
    "Hop",
    "Owner",
    "OwnerMap",
    "Sighting",
    "Trace",
    "TracerouteEngine",
    "UnreachableRouters",
    "path_evidence",
    "traceroute",
]

MAX_HOPS: Final = 16
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# What an answering hop said.
TIME_EXCEEDED: Final = "time_exceeded"
UNREACHABLE: Final = "unreachable"
REPLY: Final = "reply"

# traceroute(8)'s annotations of destination-unreachable codes.
_NOTES4: Final = {0: "!N", 1: "!H", 2: "!P", 4: "!F", 6: "!N", 7: "!H", 9: "!X", 10: "!X", 13: "!X"}
_NOTES6: Final = {0: "!N", 1: "!X", 3: "!H", 5: "!X", 6: "!X"}
_WHY: Final = {
    "!N": "network unreachable",
    "!H": "host unreachable",
    "!P": "protocol unreachable",
    "!F": "fragmentation needed",
    "!X": "administratively prohibited",
}


class TracerouteEngine(Protocol):
    """What the traceroute needs of the ICMP engine (`IcmpProber` is one)."""

    def submit(
        self,
        address: IPAddress | str,
        timeout: float,
        callback: Callable[[ProbeResult], None],
        target: IcmpTarget | None = None,
        ttl: int | None = None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Hop:
    """One TTL of the path: who answered (None: silence within the timeout) and how fast."""

    ttl: int
    address: str | None = None
    rtt: float | None = None  # seconds
    kind: str | None = None  # time_exceeded, unreachable, reply; None: silent
    note: str = ""  # "!H", "!N", "!X", ... for unreachable answers

    @property
    def ends_path(self) -> bool:
        return self.kind in (REPLY, UNREACHABLE)


@dataclass(frozen=True, slots=True)
class Owner:
    """Who a hop address belongs to (an `upstreams` entry, or a watched entity's prefix)."""

    name: str
    asn: int | None
    prefix: str

    @property
    def label(self) -> str:
        return self.name if self.asn is None else f"{self.name} AS{self.asn}"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "asn": self.asn, "prefix": self.prefix}


class OwnerMap:
    """Hop address -> owner, by longest prefix match (on equal length, the first entry wins)."""

    def __init__(self, entries: Iterable[tuple[IPNetwork, str, int | None]] = ()) -> None:
        ordered = sorted(enumerate(entries), key=lambda x: (-x[1][0].prefixlen, x[0]))
        self._entries: list[tuple[IPNetwork, Owner]] = [
            (net, Owner(name, asn, str(net))) for _, (net, name, asn) in ordered
        ]

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, address: str | IPAddress | None) -> Owner | None:
        if address is None:
            return None
        try:
            addr = ipaddress.ip_address(address) if isinstance(address, str) else address
        except ValueError:
            return None
        for net, owner in self._entries:
            if addr.version == net.version and addr in net:
                return owner
        return None


@dataclass(frozen=True, slots=True)
class Trace:
    """A finished traceroute. `hops` has one entry per TTL probed, in order, up to the TTL
    whose answer ended the path (or the last one sent)."""

    target: IPAddress
    started: float  # wall clock, epoch seconds
    duration: float  # seconds
    hops: tuple[Hop, ...]
    max_hops: int
    error: str | None = None  # a local failure (no socket, no route): the path ends at us

    @property
    def reached(self) -> bool:
        return any(h.kind == REPLY for h in self.hops)

    @property
    def last_answer(self) -> Hop | None:
        """The answering hop with the highest TTL (the target itself when it was reached)."""
        return next((h for h in reversed(self.hops) if h.address is not None), None)

    def to_json(self, owners: OwnerMap | None = None) -> dict[str, object]:
        """The trace alone: hops up to the last answer with their owners, the silent rest
        folded into a count (`path_evidence` adds what the ordinary probes saw)."""
        last = self.last_answer
        shown = self.hops[: last.ttl] if last is not None else ()
        return {
            "target": str(self.target),
            "started": iso(self.started),
            "duration_seconds": round(self.duration, 3),
            "reached": self.reached,
            "hops": [_hop_json(h, owners) for h in shown],
            "silent_after": len(self.hops) - len(shown),
            "max_hops": self.max_hops,
            "error": self.error,
        }


def _hop_json(h: Hop, owners: OwnerMap | None) -> dict[str, object]:
    d: dict[str, object] = {"ttl": h.ttl, "address": h.address}
    if h.address is not None:
        d["rtt_ms"] = None if h.rtt is None else round(h.rtt * 1000, 3)
        d["answer"] = h.kind
        if h.note:
            d["note"] = h.note
        owner = owners.lookup(h.address) if owners is not None else None
        d["owner"] = None if owner is None else owner.to_json()
    return d


def _who(address: str, owners: OwnerMap | None) -> str:
    owner = owners.lookup(address) if owners is not None else None
    return f"{owner.label} router {address}" if owner else f"{address} (owner unknown)"


def path_evidence(
    trace: Trace, owners: OwnerMap | None = None, seen: Sequence[Sighting] = ()
) -> dict[str, object]:
    """The `path` evidence of an event: the trace, the routers that answered unreachable to
    the ordinary probes (`seen`, most recent first), the last answering hop and its owner, and
    a sentence, e.g. `last answer: China Unicom AS4837 router 198.18.0.38 (hop 2, host
    unreachable)`."""
    doc = trace.to_json(owners)
    last = trace.last_answer
    traced = {h.address for h in trace.hops if h.address is not None}
    beyond = [x for x in seen if x.address not in traced]
    doc["unreachable_from"] = [x.to_json(owners) for x in seen]
    last_doc: dict[str, object] | None = None
    if last is not None and (last.ends_path or not beyond):
        last_doc = dict(_hop_json(last, owners), source="traceroute")
        if last.kind == REPLY:
            summary = f"reached {trace.target} at hop {last.ttl}"
        else:
            why = _WHY.get(last.note, last.note) if last.kind == UNREACHABLE else "time exceeded"
            silent = len(trace.hops) - last.ttl
            tail = f"; {silent} hop{'s' if silent != 1 else ''} after it silent" if silent else ""
            summary = (
                f"last answer: {_who(last.address or '', owners)} (hop {last.ttl}, {why}{tail})"
            )
    elif beyond:
        x = beyond[0]
        owner = owners.lookup(x.address) if owners is not None else None
        last_doc = {
            "ttl": None,
            "address": x.address,
            "answer": UNREACHABLE,
            "note": x.note,
            "owner": None if owner is None else owner.to_json(),
            "source": "probes",
        }
        why = _WHY.get(x.note, x.note)
        traced_part = (
            f"traceroute: hop {last.ttl} {last.address} answered, then silence"
            if last is not None
            else "traceroute: no hop answered"
        )
        summary = (
            f"last answer: {_who(x.address, owners)} ({why} to {x.answers} probe"
            f"{'s' if x.answers != 1 else ''} toward {x.block}; {traced_part})"
        )
    elif trace.error is not None:
        summary = f"no answer: {trace.error}"
    else:
        summary = f"no hop answered (TTL 1-{len(trace.hops)} silent)"
    doc["last_answer"] = last_doc
    doc["summary"] = summary
    return doc


@dataclass(slots=True)
class Sighting:
    """A router that answered ICMP destination unreachable to ordinary probes of a block."""

    address: str
    block: str
    answers: int
    first: float
    last: float
    note: str

    def to_json(self, owners: OwnerMap | None = None) -> dict[str, object]:
        owner = owners.lookup(self.address) if owners is not None else None
        return {
            "address": self.address,
            "block": self.block,
            "answers": self.answers,
            "first": iso(self.first),
            "last": iso(self.last),
            "note": self.note,
            "owner": None if owner is None else owner.to_json(),
        }


class UnreachableRouters:
    """Per entity, (router, block) -> the destination-unreachable answers ordinary ICMP probes
    got: the passive half of path localisation. Bounded: `per_entity` entries each, the
    least recently seen dropped first."""

    def __init__(self, per_entity: int = 64) -> None:
        self.per_entity = per_entity
        self._seen: dict[str, dict[tuple[str, str], Sighting]] = {}

    def observe(self, entity: str, result: ProbeResult) -> None:
        """A probe result (cheap for everything but ICMP errors)."""
        extra = result.extra
        if result.ok or "from" not in extra:
            return
        offender, icmp_type = extra.get("from"), extra.get("icmp_type")
        addr = target_address(result.target)
        if not isinstance(offender, str) or not isinstance(icmp_type, int) or addr is None:
            return
        v6 = addr.version == 6
        if icmp_type != (1 if v6 else 3):
            return  # only "destination unreachable" says where the path ends
        code = extra.get("icmp_code")
        code = code if isinstance(code, int) else -1
        block = str(block_of(addr))
        per = self._seen.setdefault(entity, {})
        t = result.started
        x = per.get((offender, block))
        if x is None:
            if len(per) >= self.per_entity:
                del per[min(per, key=lambda k: per[k].last)]
            note = (_NOTES6 if v6 else _NOTES4).get(code, f"!<{code}>")
            per[(offender, block)] = Sighting(offender, block, 1, t, t, note)
        else:
            x.answers += 1
            x.first, x.last = min(x.first, t), max(x.last, t)

    def sightings(
        self, entity: str, nets: Iterable[IPNetwork], since: float = -math.inf
    ) -> list[Sighting]:
        """Routers that answered unreachable for blocks inside `nets` since `since`, most
        recently seen first."""
        wanted = list(nets)
        out = [
            x
            for x in self._seen.get(entity, {}).values()
            if x.last >= since and _inside(x.block, wanted)
        ]
        return sorted(out, key=lambda x: -x.last)

    def retain(self, entities: Iterable[str]) -> None:
        """Forget entities no longer configured."""
        keep = set(entities)
        for name in [n for n in self._seen if n not in keep]:
            del self._seen[name]


def _inside(block: str, nets: Sequence[IPNetwork]) -> bool:
    net = ipaddress.ip_network(block)
    return any(net.version == n.version and net.network_address in n for n in nets)


def _hop(ttl: int, result: ProbeResult, elapsed: float) -> Hop:
    if result.ok:
        return Hop(ttl, str(result.target.key), result.rtt, REPLY)
    extra = result.extra
    icmp_type = extra.get("icmp_type")
    offender = extra.get("from")
    if isinstance(icmp_type, int) and isinstance(offender, str):
        v6 = ":" in offender
        if icmp_type == (3 if v6 else 11):
            return Hop(ttl, offender, elapsed, TIME_EXCEEDED)
        code = extra.get("icmp_code")
        code = code if isinstance(code, int) else -1
        note = (_NOTES6 if v6 else _NOTES4).get(code, f"!<{code}>")
        return Hop(ttl, offender, elapsed, UNREACHABLE, note)
    return Hop(ttl)


def _local_error(result: ProbeResult) -> str | None:
    """A failure that is ours (send error, closed engine), not the network's silence."""
    if result.ok or result.reason is Reason.TIMEOUT or "icmp_type" in result.extra:
        return None
    return result.detail or (result.reason.value if result.reason else "error")


async def traceroute(
    engine: TracerouteEngine,
    address: IPAddress | str,
    *,
    max_hops: int = MAX_HOPS,
    timeout: float = 1.0,
    parallel: int = 4,
    acquire: Callable[[], Awaitable[None]] | None = None,
) -> Trace:
    """Trace the path toward `address`: TTL 1.. `max_hops`, `parallel` TTLs in flight, each
    waiting `timeout` for its answer. Raises only for programming errors."""
    if not 1 <= max_hops <= 64:
        raise ValueError(f"max_hops must be between 1 and 64, not {max_hops}")
    if parallel < 1 or timeout <= 0:
        raise ValueError("parallel must be at least 1 and timeout positive")
    addr = ipaddress.ip_address(address) if isinstance(address, str) else address
    target = IcmpTarget(addr)
    hops: dict[int, Hop] = {}
    inflight: set[int] = set()
    errors: dict[int, str] = {}
    wake = asyncio.Event()
    started, t0 = time.time(), time.monotonic()

    def answered(ttl: int, sent: float, result: ProbeResult) -> None:
        inflight.discard(ttl)
        hops[ttl] = _hop(ttl, result, time.monotonic() - sent)
        err = _local_error(result)
        if err is not None:
            errors[ttl] = err
        wake.set()

    def limit() -> int:
        """The highest TTL still worth an answer: the first one that ended the path."""
        ends = [t for t, h in hops.items() if h.ends_path or t in errors]
        return min(ends, default=max_hops)

    next_ttl = 1
    while True:
        while next_ttl <= limit() and len(inflight) < parallel:
            if acquire is not None:
                await acquire()  # answers may arrive meanwhile and end the path
                if next_ttl > limit():
                    break
            ttl, next_ttl = next_ttl, next_ttl + 1
            inflight.add(ttl)
            callback = functools.partial(answered, ttl, time.monotonic())
            engine.submit(addr, timeout, callback, target, ttl=ttl)
        # Sending is over (or the window is full): wait for the TTLs up to the end of the path;
        # probes beyond it are abandoned (the engine still times them out).
        if next_ttl > limit() and not any(t <= limit() for t in inflight):
            break
        wake.clear()
        await wake.wait()
    last = min(limit(), next_ttl - 1)
    return Trace(
        addr,
        started,
        time.monotonic() - t0,
        tuple(hops.get(t, Hop(t)) for t in range(1, last + 1)),
        max_hops,
        next((errors[t] for t in sorted(errors) if t <= last), None),
    )
