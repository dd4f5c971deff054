"""One module per protocol, all with the signature of `base.Prober`.

`build_probers()` makes one prober per kind. The protocol modules are imported inside it, so
that importing this package (as `check-config` does, for the target types) stays light: aiohttp,
dnspython and the ICMP engine load only when something is going to probe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, overload

from monitor.probes.base import Kind, Prober

if TYPE_CHECKING:
    from monitor.probes.icmp import IcmpProber
    from monitor.probes.tcp import SynBudget


class Probers(dict[Kind, Prober]):
    """One prober per kind: `Kind -> Prober` for the scheduler, and the ICMP engine under its
    own type (`probers.icmp`, or `probers[Kind.ICMP]`) for what needs more than the shared
    signature: its `ignored` counters (metrics) and its TTL-limited `submit` (traceroute)."""

    def __init__(self, icmp: IcmpProber, tcp: Prober, http: Prober, dns: Prober) -> None:
        super().__init__({Kind.ICMP: icmp, Kind.TCP: tcp, Kind.HTTP: http, Kind.DNS: dns})
        self.icmp = icmp

    @overload
    def __getitem__(self, kind: Literal[Kind.ICMP]) -> IcmpProber: ...

    @overload
    def __getitem__(self, kind: Kind) -> Prober: ...

    def __getitem__(self, kind: Kind) -> Prober:
        return self.icmp if kind is Kind.ICMP else super().__getitem__(kind)


def build_probers(syn_budget: SynBudget | None = None) -> Probers:
    """One prober per protocol; `syn_budget` (the scheduler's) lets TCP and HTTP connects wait
    up to the timeout, each SYN resend budgeted (monitor.probes.tcp.SynGuard)."""
    from monitor.probes.dns import DnsProber
    from monitor.probes.http import HttpProber
    from monitor.probes.icmp import IcmpProber
    from monitor.probes.tcp import TcpProber

    tcp, http = TcpProber(syn_budget), HttpProber(syn_budget)
    return Probers(icmp=IcmpProber(), tcp=tcp, http=http, dns=DnsProber())


__all__ = ["Probers", "build_probers"]
