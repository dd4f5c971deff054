"""What every prober shares: the target types, the result type and the prober signatures.

Probers never raise for network outcomes: a timeout, a refusal or a garbage answer is a
`ProbeResult` with `ok=False` and one of the fixed `Reason`s (the `reason` label of
`probe_failures_total`). They raise only for programming errors, and the scheduler contains
even those: a probe that raises is a failed probe with reason `other` (see scheduler.py).

Two signatures:
- `Prober`: `await probe(target, timeout)`, one coroutine per probe. Every prober has it.
- `CallbackProber`: additionally `start(target, timeout, callback)`, which sends at once and
  calls `callback(result)` later on the loop, exactly once, with no task per probe. The ICMP
  engine has it (tens of thousands of probes per second); the scheduler uses it when present.
"""

from __future__ import annotations

import enum
import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Kind(enum.StrEnum):
    ICMP = "icmp"
    TCP = "tcp"
    HTTP = "http"
    DNS = "dns"


class Reason(enum.StrEnum):
    """The fixed, small set of failure reasons (metric label values)."""

    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"
    DNS_ERROR = "dns_error"
    HTTP_STATUS = "http_status"
    TLS_ERROR = "tls_error"
    OTHER = "other"


def _fmt_host(addr: IPAddress) -> str:
    return f"[{addr}]" if addr.version == 6 else str(addr)


@dataclass(frozen=True, slots=True)
class IcmpTarget:
    address: IPAddress
    kind: Kind = field(default=Kind.ICMP, init=False, compare=False)

    @property
    def key(self) -> str:
        return str(self.address)


@dataclass(frozen=True, slots=True)
class TcpTarget:
    address: IPAddress
    port: int
    kind: Kind = field(default=Kind.TCP, init=False, compare=False)

    @property
    def key(self) -> str:
        return f"{_fmt_host(self.address)}:{self.port}"


# The values of HttpTarget.min_tls_version, oldest first.
TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")


@dataclass(frozen=True, slots=True)
class HttpTarget:
    url: str
    # Connect here instead of resolving the URL's host; Host header and SNI still come from the URL.
    address: IPAddress | None = None
    expect_status: frozenset[int] = frozenset({200, 301, 302})
    max_body: int = 256 * 1024
    tls_verify: bool = True
    ca_file: str | None = None
    # The lowest TLS version accepted (one of TLS_VERSIONS); the HTTP prober's docstring says
    # why the default takes every version down to 1.0.
    min_tls_version: str = "1.0"
    kind: Kind = field(default=Kind.HTTP, init=False, compare=False)

    @property
    def key(self) -> str:
        return self.url if self.address is None else f"{self.url}@{self.address}"


@dataclass(frozen=True, slots=True)
class DnsTarget:
    server: IPAddress
    name: str
    type: str = "SOA"
    port: int = 53
    expect_rcode: str = "NOERROR"
    # When true, a NOERROR answer with an empty answer section is a failure.
    expect_answer: bool = True
    kind: Kind = field(default=Kind.DNS, init=False, compare=False)

    @property
    def key(self) -> str:
        port = "" if self.port == 53 else f":{self.port}"
        return f"{_fmt_host(self.server)}{port}/{self.name}/{self.type}"


Target = IcmpTarget | TcpTarget | HttpTarget | DnsTarget


# The address a target's packets go to (for the politeness budget and the /24 block).
def target_address(t: Target) -> IPAddress | None:
    if isinstance(t, IcmpTarget | TcpTarget):
        return t.address
    if isinstance(t, DnsTarget):
        return t.server
    return t.address


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe. `started` is wall-clock epoch seconds when the probe was sent."""

    target: Target
    ok: bool
    started: float
    rtt: float | None = None
    reason: Reason | None = None
    detail: str = ""
    # Kind-specific facts: http status, tls_not_after (epoch), soa_serial, icmp ttl ...
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def kind(self) -> Kind:
        return self.target.kind

    @classmethod
    def success(
        cls, target: Target, started: float, rtt: float, extra: Mapping[str, object] | None = None
    ) -> ProbeResult:
        return cls(target, True, started, rtt=rtt, extra=extra or {})

    @classmethod
    def failure(
        cls,
        target: Target,
        started: float,
        reason: Reason,
        detail: str = "",
        extra: Mapping[str, object] | None = None,
    ) -> ProbeResult:
        return cls(target, False, started, reason=reason, detail=detail, extra=extra or {})


def now() -> float:
    return time.time()


def release_tracebacks(exc: BaseException) -> None:
    """Drop the tracebacks of a classified failure and of the exceptions chained to it.

    A failed connect's exception holds, through its traceback, the frames it came through, and
    some of those frames (aiohttp's, aiohappyeyeballs') hold the exception again: a reference
    cycle per failure that only the garbage collector frees. While a target is down each of
    its probes fails so, for hours. A probe reports a reason and a detail, never a traceback.
    """
    stack: list[BaseException] = [exc]
    seen: set[int] = set()
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        e.__traceback__ = None
        stack.extend(x for x in (e.__cause__, e.__context__) if x is not None)


def wrong_kind(target: Target, expected: Kind) -> ProbeResult:
    """The result of handing a prober a target of another kind (a wiring bug, contained)."""
    detail = f"{target.kind} target given to the {expected} prober"
    return ProbeResult.failure(target, now(), Reason.OTHER, detail)


ResultCallback = Callable[[ProbeResult], None]


class Prober(Protocol):
    """The one signature every protocol module implements.

    `probe` takes any `Target` so that one mapping `Kind -> Prober` can be typed without `Any`;
    a prober given a target of another kind returns `wrong_kind(...)` rather than raising.
    """

    async def probe(self, target: Target, timeout: float) -> ProbeResult: ...

    async def close(self) -> None: ...


@runtime_checkable
class CallbackProber(Prober, Protocol):
    """A prober with a callback path: no task, future or timer per probe (the ICMP engine)."""

    def start(self, target: Target, timeout: float, callback: ResultCallback) -> None:
        """Send one probe; `callback(result)` runs later on the running loop, exactly once
        (never from inside `start` itself). Raises only for programming errors."""
        ...
