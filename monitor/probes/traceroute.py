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

What a trace means for an outage (hop owners, the routers that answered unreachable to the
ordinary probes, the `path` evidence) is pure logic in `monitor.detect.path`.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol

from monitor.probes.base import IcmpTarget, IPAddress, ProbeResult, Reason

__all__ = [
    "MAX_HOPS",
    "REPLY",
    "TIME_EXCEEDED",
    "UNREACHABLE",
    "Hop",
    "Trace",
    "TracerouteEngine",
    "traceroute",
    "unreachable_note",
    "unreachable_reason",
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


def unreachable_note(code: int, v6: bool) -> str:
    """traceroute(8)'s annotation of an ICMP destination-unreachable code ("!H", "!N", ...)."""
    return (_NOTES6 if v6 else _NOTES4).get(code, f"!<{code}>")


def unreachable_reason(note: str) -> str:
    """The words for an annotation: "!H" -> "host unreachable"."""
    return _WHY.get(note, note)


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
        return Hop(ttl, offender, elapsed, UNREACHABLE, unreachable_note(code, v6))
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
