"""What every prober shares: the target types, the result type and the prober signature.

Probers never raise for network outcomes: a timeout, a refusal or a garbage answer is a
`ProbeResult` with `ok=False` and one of the fixed `Reason`s (the `reason` label of
`probe_failures_total`). They raise only for programming errors.
"""

from __future__ import annotations

import enum
import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

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


@dataclass(frozen=True, slots=True)
class HttpTarget:
    url: str
    # Connect here instead of resolving the URL's host; Host header and SNI still come from the URL.
    address: IPAddress | None = None
    expect_status: frozenset[int] = frozenset({200, 301, 302})
    max_body: int = 256 * 1024
    tls_verify: bool = True
    ca_file: str | None = None
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


T_contra = TypeVar("T_contra", contravariant=True)


class Prober(Protocol[T_contra]):
    """The one signature every protocol module implements."""

    async def probe(self, target: T_contra, timeout: float) -> ProbeResult: ...

    async def close(self) -> None: ...
