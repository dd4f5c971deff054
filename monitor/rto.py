"""Probe timeouts learned from the round-trip time, per path (RFC 6298's estimator).

Why: one fixed `probing.timeout` (3 s) is what a satellite path needs, so a probe of a fast path
that went dark is known to have failed only 3 s later, and its re-probes 3 s after each other.
With a learned timeout a failure on a 300 ms path is known after 1 s: a blackout is flagged
sooner (DESIGN.md: one probe timeout plus a burst of probes to the block's other addresses).

What is learned, and from what:
- One estimate per path: for ICMP and TCP the target's /24 (/64 for IPv6) and kind, since every
  address of a block sits behind the same links, so a block with many targets follows a
  congestion episode within seconds (a single target, probed once per interval, would need
  minutes); for HTTP and DNS the target itself, as the server's own time is part of the answer.
- SRTT and RTTVAR as RFC 6298 (alpha 1/8, beta 1/4, first sample: SRTT = R, RTTVAR = R/2), from
  every successful probe's `rtt`. A TCP handshake answered to a resent SYN measures from the
  first SYN: an over-estimate, on the safe side (Karn's concern is an under-estimate).
- timeout = clamp(max(SRTT + 4 RTTVAR, STEP x max(SRTT, latest sample)), floor, cap): STEP covers
  a sudden RTT step of a congestion episode (x2-3, DESIGN.md "Realistic paths") before any
  sample shows it; `latest` lets one slow answer lengthen the next timeout at once. `cap` is
  `probing.timeout`, `floor` is `probing.min_timeout`; floor >= cap (or no sample yet) gives
  `probing.timeout` as before.
- `probing.timeout` bounds one exchange (an echo, a SYN, a DNS query). An HTTP(S) probe is
  several in a row (TCP, a TLS 1.2 handshake of two round trips, the request), so a site's
  learned timeout may grow past it, up to `transaction_cap` (EXCHANGES x `probing.timeout`, and
  never so long that a probe and its re-probes outlast the interval). Capped at the one-exchange
  figure, every fetch of a 300 ms path failed in a x2.5 congestion episode (4 x 750 ms > 3 s)
  while ICMP and TCP answered: false `web` events (docs/BENCHMARKS.md, realistic soak). A site
  never heard from starts at `probing.timeout`, as before.
- A probe that timed out doubles its target's next timeout (RFC 6298 5.5, per target, not per
  path, so the burst of probes to a block's other addresses keeps the short timeout) until the
  target answers: a re-probe waits longer than the probe that failed. This also holds before
  the first answer, so a site slower than `probing.timeout` gets its first sample.
- A reply that arrived after its probe timed out (`late`: an ICMP echo reply matched to the
  expired probe by its token) is a real RTT sample, unambiguous unlike a TCP retransmission's:
  learned like any other, and it ends the target's backoff (it answered). Without it a path
  slower than the timeout never got a sample: every probe timed out at the same timeout.

Memory is bounded: at most `max_paths` estimates and `max_backoffs` backed-off targets, the
least recently updated dropped first. Pure logic: no I/O, no clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from monitor.probes.base import IcmpTarget, Kind, ProbeResult, Reason, Target, TcpTarget

ALPHA = 1 / 8
BETA = 1 / 4
K = 4
# A congestion episode multiplies the RTT by 2-3 within seconds (20 s ramps); a path's
# targets are probed seldom enough that the first probes of an episode see the step unlearned.
STEP = 3.0
GRANULARITY = 0.001  # G of RFC 6298: the smallest variance term
MAX_BACKOFF = 6  # 2**6: far above any cap / floor ratio; keeps the number small
GIVEN_WEIGHT = 1 / 64  # the mean in `given()` is over about the last 64 probes of a kind
# Exchanges in one probe, per kind (1 when not listed): TCP, two TLS 1.2 round trips, the request.
EXCHANGES: dict[Kind, int] = {Kind.HTTP: 4}


def transaction_cap(timeout: float, interval: float, reprobes: int) -> float:
    """The longest timeout a probe of several exchanges gets: EXCHANGES x `timeout`, but a probe
    and its `reprobes` re-probes must fit in one `interval` (or its next slot is skipped), and
    never below `timeout`."""
    return max(timeout, min(max(EXCHANGES.values()) * timeout, interval / (1 + reprobes)))


@dataclass(slots=True)
class RttEstimate:
    """SRTT, RTTVAR and the latest sample of one path (seconds)."""

    srtt: float
    rttvar: float
    latest: float

    @classmethod
    def first(cls, rtt: float) -> RttEstimate:
        return cls(rtt, rtt / 2, rtt)

    def add(self, rtt: float) -> None:
        """RFC 6298 2.3: RTTVAR first, with the old SRTT."""
        self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - rtt)
        self.srtt = (1 - ALPHA) * self.srtt + ALPHA * rtt
        self.latest = rtt

    def rto(self) -> float:
        """The timeout this estimate asks for, before the floor and the cap."""
        return max(
            self.srtt + max(GRANULARITY, K * self.rttvar), STEP * max(self.srtt, self.latest)
        )


def path_key(target: Target) -> Hashable:
    """Which estimate a target's results feed and its timeout reads (see the module doc)."""
    if isinstance(target, IcmpTarget | TcpTarget):
        addr = target.address
        # The /24 or /64 as a number: no ip_network object per probe.
        return (target.kind, addr.version, int(addr) >> (8 if addr.version == 4 else 64))
    return (target.kind, target.key)


class Timeouts:
    """The timeout for each probe, learned from earlier results (see the module doc)."""

    def __init__(
        self,
        cap: float,
        floor: float | None = None,
        long_cap: float | None = None,
        max_paths: int = 1 << 16,
        max_backoffs: int = 1 << 16,
    ) -> None:
        self.cap = cap
        self.floor = cap if floor is None else floor
        self.long_cap = cap if long_cap is None else max(cap, long_cap)
        self._max_paths = max_paths
        self._max_backoffs = max_backoffs
        self._paths: OrderedDict[Hashable, RttEstimate] = OrderedDict()
        self._backoff: OrderedDict[tuple[Kind, str], int] = OrderedDict()
        self._given: dict[Kind, float] = {}  # see given()

    @property
    def adaptive(self) -> bool:
        return self.floor < self.cap

    def configure(
        self, cap: float, floor: float | None = None, long_cap: float | None = None
    ) -> None:
        """New bounds (a reload); what was learned is kept."""
        self.cap = cap
        self.floor = cap if floor is None else floor
        self.long_cap = cap if long_cap is None else max(cap, long_cap)

    def timeout(self, target: Target) -> float:
        """The timeout of the next probe of `target` (counted in `given`)."""
        t = self._timeout(target)
        kind = target.kind
        was = self._given.get(kind)
        self._given[kind] = t if was is None else was + (t - was) * GIVEN_WEIGHT
        return t

    def _timeout(self, target: Target) -> float:
        cap = self.cap
        if self.floor >= cap:
            return cap
        est = self._paths.get(path_key(target))
        t = cap if est is None else max(self.floor, est.rto())
        backoff = self._backoff.get((target.kind, target.key))
        if backoff:
            t *= 2**backoff
        return min(self.long_cap if target.kind in EXCHANGES else cap, t)

    def observe(self, result: ProbeResult) -> None:
        """Learn from one probe's result: an answer's rtt, or a timeout's backoff."""
        target = result.target
        if result.ok:
            self._answered(target, result.rtt)
        elif result.reason is Reason.TIMEOUT and self.floor < self.cap:
            bkey = (target.kind, target.key)
            backoffs = self._backoff
            n = backoffs.pop(bkey, 0)
            backoffs[bkey] = min(MAX_BACKOFF, n + 1)
            if len(backoffs) > self._max_backoffs:
                backoffs.popitem(last=False)

    def late(self, target: Target, rtt: float) -> None:
        """A reply to a probe of `target` that had timed out came `rtt` seconds after it was
        sent: a sample like an on-time answer's (see the module doc)."""
        self._answered(target, rtt)

    def _answered(self, target: Target, rtt: float | None) -> None:
        if self._backoff:
            self._backoff.pop((target.kind, target.key), None)
        if rtt is None or rtt < 0:
            return
        key = path_key(target)
        paths = self._paths
        est = paths.get(key)
        if est is None:
            paths[key] = RttEstimate.first(rtt)
            if len(paths) > self._max_paths:
                paths.popitem(last=False)
        else:
            est.add(rtt)
            paths.move_to_end(key)

    def forget(self, target: Target) -> None:
        """A target left the configuration: its backoff goes (its path's estimate may serve
        other targets and ages out by itself)."""
        self._backoff.pop((target.kind, target.key), None)

    def given(self) -> dict[Kind, float]:
        """Per kind, the mean timeout of recent probes (a copy: safe to read from the metrics'
        render thread while the loop updates it)."""
        return dict(self._given)
