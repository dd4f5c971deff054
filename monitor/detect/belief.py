"""Trinocular-style Bayesian belief that a /24 block is reachable.

After Quan, Heidemann and Pradkin, "Trinocular: Understanding Internet Reliability Through
Adaptive Probing" (SIGCOMM 2013), as IODA runs it:

- E(b), the block's *ever-responsive* addresses, is learned: an address joins on its first
  answer (or from a census: `seed`) and leaves when it has not answered for `responsive_ttl`
  while others of the block did (so a long blackout never empties E(b)). Probes to other
  addresses are ignored.
- A(E(b)), the chance that a probe to an ever-responsive address is answered while the block
  is up, is learned as an exponentially weighted mean of outcomes, clamped to
  [`availability_min`, `availability_max`]. A negative is held back until its failure run is
  resolved: learned as loss when the block answers again, dropped when the block goes down
  (an outage is not loss). The ceiling keeps one negative from ever being decisive; the
  floor keeps a very lossy block detectable.
- B(U), the belief that the block is up, is updated by Bayes for every probe:
  an answer:   P(answer | up) = A,      P(answer | down) = `noise` (spoofing, stray replies);
  no answer:   P(none | up)   = 1 - A,  P(none | down)   = 1 - `noise`;
  clamped to [`belief_min`, `belief_max`] so it can always recover. Up above `up_threshold`,
  down below `down_threshold`, uncertain between.

Refinements for a prober that re-probes at once:

- Re-probes of an address that just failed are correlated (one dead host, or one path), so a
  negative counts in Bayes only if the address's last *counted* negative is `negative_spacing`
  seconds older; a blackout therefore needs failures from several addresses (or over time).
  Once the run holds failures of at least `min(3, |E(b)|)` distinct addresses (no dead host
  alone can do that), an address counts again `repeat_spacing` seconds after its last counted
  negative: a block of three addresses is judged in seconds, not in four `negative_spacing`s.
- Results arrive out of order (a timeout lands seconds after a later probe's answer): a negative
  sent before the block's latest answer, or before a `reset`, is stale and ignored.
- A reply that arrives after its probe timed out (`answered_late`) is an answer: a path slower
  than the timeout is not a dead one. It is dated like an on-time answer (its probe's started
  time: it ends the failure run that began with its own timeout), except when the block went
  down after that probe was sent: then it is evidence of now (its arrival), as an answer after
  a recovery is, and does not undo the down state in the past.
- The run (the counted negatives since the block's latest answer) is kept as a log-likelihood
  ratio, so that a detector can weigh the runs of several blocks failing together (a blackout
  of a whole network) and `force_down` them on their joint evidence.

With the defaults (A clamped to [0.3, 0.7], B to [0.01, 0.99999], thresholds 0.9/0.1) a block
goes down after 12 counted negatives in a row at A = 0.7 (the ceiling: 30 % loss could not
take it down but once in ~10^6 failure runs, A still at the ceiling when the loss began
included), at A = 0.49 (30 % loss per packet each way) after 21. One answer brings it back up.
"""

from __future__ import annotations

import enum
import ipaddress
import math
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass

from monitor.probes.base import IPAddress

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NEVER = -math.inf
# Do not ask for an extra probe of an address probed less than this long ago (seconds).
_MIN_GAP = 1.0
# Outcomes held back while the belief is uncertain (bounded).
_MAX_HELD = 256
# Failed probes' times kept per failure run (the first ones: they date an outage).
_MAX_RUN_FAILS = 16


class BlockState(enum.StrEnum):
    UNKNOWN = "unknown"  # no ever-responsive address yet: says nothing
    UP = "up"
    UNCERTAIN = "uncertain"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class BeliefParams:
    up_threshold: float = 0.9
    down_threshold: float = 0.1
    belief_min: float = 0.01
    belief_max: float = 0.99999
    noise: float = 1e-4
    availability_initial: float = 0.7
    availability_min: float = 0.3
    availability_max: float = 0.7
    availability_alpha: float = 0.02
    negative_spacing: float = 5.0
    repeat_spacing: float = 1.0
    responsive_ttl: float = 86400.0

    def __post_init__(self) -> None:
        if not 0 < self.belief_min < self.down_threshold < self.up_threshold < self.belief_max < 1:
            raise ValueError("need 0 < belief_min < down_threshold < up_threshold < belief_max < 1")
        if not 0 < self.noise < 0.5:
            raise ValueError("noise must be in (0, 0.5)")
        if not 0 < self.availability_min <= self.availability_max < 1:
            raise ValueError("need 0 < availability_min <= availability_max < 1")
        if not 0 < self.availability_alpha <= 1:
            raise ValueError("availability_alpha must be in (0, 1]")
        if self.negative_spacing < 0 or self.responsive_ttl <= 0:
            raise ValueError("negative_spacing must be >= 0 and responsive_ttl > 0")
        if self.repeat_spacing < 0:
            raise ValueError("repeat_spacing must be >= 0")


def block_of(addr: IPAddress) -> IPNetwork:
    """The block an address belongs to: its /24 (IPv4) or /48 (IPv6)."""
    if addr.version == 4:
        return ipaddress.IPv4Network((int(addr) >> 8 << 8, 24))
    return ipaddress.IPv6Network((int(addr) >> 80 << 80, 48))


@dataclass(slots=True)
class _Addr:
    last_ok: float = _NEVER  # started time of its latest answer
    last_probe: float = _NEVER
    last_counted_negative: float = _NEVER
    requested: float = _NEVER  # when an extra probe of it was last asked for
    run: bool = False  # a counted negative in the block's current failure run


class BlockBelief:
    """The belief for one block. Feed every probe result of its addresses to `observe`."""

    __slots__ = (
        "_addrs",
        "_availability",
        "_belief",
        "_held_fail",
        "_stale_before",
        "block",
        "fail_start",
        "last_positive",
        "name",
        "params",
        "run_count",
        "run_distinct",
        "run_fails",
        "run_last",
        "run_llr",
        "state",
        "state_since",
    )

    def __init__(self, block: IPNetwork, params: BeliefParams | None = None) -> None:
        self.block = block
        self.name = str(block)  # its label, read every tick
        self.params = params or BeliefParams()
        self._addrs: dict[IPAddress, _Addr] = {}
        self._belief = self.params.belief_max
        self._availability = self.params.availability_initial
        self._held_fail = 0
        self._stale_before = _NEVER
        self.state = BlockState.UNKNOWN
        # Started time of the probe that brought the current state (up: the answer; down: the
        # deciding negative).
        self.state_since = _NEVER
        # Started time of the first failed probe since the block's latest answer (None: none).
        self.fail_start: float | None = None
        # Started times of the first failed probes since then (at most _MAX_RUN_FAILS), so that
        # a run begun by a lost packet just before an outage can be dated by the outage's own
        # first failure (see fusion: the start of a blackout).
        self.run_fails: list[float] = []
        self.last_positive = _NEVER
        # The current failure run: counted negatives, distinct addresses among them, started
        # time of the latest, and their summed log-likelihood ratio ln(P(none|up)/P(none|down)).
        self.run_count = 0
        self.run_distinct = 0
        self.run_last = _NEVER
        self.run_llr = 0.0

    # --- reading -----------------------------------------------------------------------------

    @property
    def belief(self) -> float:
        """B(U); meaningless (belief_max) while the state is UNKNOWN."""
        return self._belief

    @property
    def availability(self) -> float:
        return self._availability

    @property
    def size(self) -> int:
        """How many addresses of the block ever answered (expired ones included)."""
        return len(self._addrs)

    @property
    def known(self) -> bool:
        return self.state is not BlockState.UNKNOWN

    def is_responsive(self, addr: IPAddress) -> bool:
        a = self._addrs.get(addr)
        return a is not None and self._responsive(a)

    def responsive(self) -> list[IPAddress]:
        """E(b): the ever-responsive addresses (those not expired)."""
        return [addr for addr, a in self._addrs.items() if self._responsive(a)]

    @property
    def in_failure_run(self) -> bool:
        """A negative since the latest answer and not yet down: worth probing other addresses."""
        return self.fail_start is not None and self.state in (BlockState.UP, BlockState.UNCERTAIN)

    def _responsive(self, a: _Addr) -> bool:
        return a.last_ok > _NEVER and a.last_ok >= self.last_positive - self.params.responsive_ttl

    # --- updating ----------------------------------------------------------------------------

    def observe(self, addr: IPAddress, answered: bool, started: float, learn: bool = True) -> bool:
        """One probe of `addr` sent at `started`; `answered` if anything came back from the host
        (a refusal or an HTTP error is an answer). `learn=False` keeps it out of A (e.g. while
        our own vantage is unhealthy). Returns True when the state changed."""
        p = self.params
        a = self._addrs.get(addr)
        if answered:
            if a is None:
                a = self._addrs[addr] = _Addr()
            a.last_ok = max(a.last_ok, started)
            a.last_probe = max(a.last_probe, started)
            a.last_counted_negative = _NEVER
            if self.state is BlockState.UNKNOWN:
                self.last_positive = started
                return self._set(BlockState.UP, p.belief_max, started)
            if learn:
                self._learn(True)
            if self.fail_start is not None and started < self.fail_start:
                return False  # an older answer than the failures we already hold
            self.last_positive = max(self.last_positive, started)
            self.fail_start = None
            self.run_fails.clear()
            self._end_run()
            return self._bayes(self._availability, p.noise, started)

        if a is None or not self._responsive(a):
            return False  # not in E(b): its silence says nothing
        a.last_probe = max(a.last_probe, started)
        if self.state is BlockState.UNKNOWN:
            return False  # E(b) from a census, no answer yet: silence alone judges nothing
        if started < self._stale_before:
            return False
        if started < self.last_positive:
            if learn:
                self._ewma(False)  # loss: older than the block's latest answer
            return False
        if learn:
            self._learn(False)
        if self.fail_start is None:
            self.fail_start = started
        if len(self.run_fails) < _MAX_RUN_FAILS:
            self.run_fails.append(started)
        spacing = p.negative_spacing
        if self.run_distinct >= min(3, len(self._addrs)):
            # Several addresses fail together: no dead host alone.
            spacing = min(spacing, p.repeat_spacing)
        if started - a.last_counted_negative < spacing:
            return False
        a.last_counted_negative = started
        if not a.run:
            a.run = True
            self.run_distinct += 1
        self.run_count += 1
        self.run_last = max(self.run_last, started)
        p_up, p_down = 1.0 - self._availability, 1.0 - p.noise
        self.run_llr += math.log(p_up / p_down)
        return self._bayes(p_up, p_down, started)

    def answered_late(self, addr: IPAddress, started: float, arrived: float) -> bool:
        """A probe of `addr` sent at `started`, whose timeout was observed already, was
        answered at `arrived` after all (see the module doc). Returns True when the state
        changed. A is not taught by it; the negative of its timeout, held back until its run
        is resolved (see _learn), is withdrawn: it was no loss."""
        if self._held_fail:
            self._held_fail -= 1
        t = started
        if self.state is BlockState.DOWN and started < self.state_since:
            t = max(arrived, self.state_since)
        return self.observe(addr, True, t, learn=False)

    def _end_run(self) -> None:
        if self.run_count:
            for a in self._addrs.values():
                a.run = False
        self.run_count = self.run_distinct = 0
        self.run_last = _NEVER
        self.run_llr = 0.0

    def retain(self, keep: Container[IPAddress]) -> None:
        """Forget the addresses not in `keep` (they left E(b) at a census: renumbered or gone),
        so that neither their silence nor their old answers count for the block any more."""
        gone = [addr for addr in self._addrs if addr not in keep]
        if not gone:
            return
        for addr in gone:
            del self._addrs[addr]
        self.run_distinct = sum(1 for a in self._addrs.values() if a.run)

    def seed(self, answered: Mapping[IPAddress, float]) -> None:
        """Add E(b) known from elsewhere (a census): each address with the started time of
        its latest answer there. Their failures then count as soon as the block is known (up
        after any answer), instead of each address having to answer once first (with one
        sample per round, ~n rounds of a block's outage went unseen). A block seeded while
        unknown stays unknown until an answer: a census alone does not judge it."""
        for addr, t in answered.items():
            a = self._addrs.get(addr)
            if a is None:
                a = self._addrs[addr] = _Addr()
            a.last_ok = max(a.last_ok, t)

    def force_down(self, at: float) -> bool:
        """Down on evidence from outside the block (its run is part of a joint failure of the
        network it belongs to, see the detector). Returns True when the state changed."""
        if self.state in (BlockState.UNKNOWN, BlockState.DOWN):
            return False
        if self.fail_start is None:
            self.fail_start = at
        return self._set(BlockState.DOWN, self.params.belief_min, at)

    def _learn(self, ok: bool) -> None:
        # A negative is held until the run it belongs to is resolved: an answer shows it was
        # loss (learn it), a down state shows it was an outage (drop it).
        if ok:
            if self._held_fail:
                self._ewma(False, self._held_fail)
                self._held_fail = 0
            self._ewma(True)
        elif self.state is not BlockState.DOWN and self._held_fail < _MAX_HELD:
            self._held_fail += 1

    def _ewma(self, ok: bool, times: int = 1) -> None:
        p = self.params
        x = 1.0 if ok else 0.0
        keep = (1.0 - p.availability_alpha) ** times
        a = x + (self._availability - x) * keep
        self._availability = min(p.availability_max, max(p.availability_min, a))

    def _bayes(self, p_up: float, p_down: float, started: float) -> bool:
        p = self.params
        b = self._belief
        num = b * p_up
        b = num / (num + (1.0 - b) * p_down)
        b = min(p.belief_max, max(p.belief_min, b))
        if b > p.up_threshold:
            state = BlockState.UP
        elif b < p.down_threshold:
            state = BlockState.DOWN
        else:
            state = BlockState.UNCERTAIN
        return self._set(state, b, started)

    def _set(self, state: BlockState, belief: float, started: float) -> bool:
        self._belief = belief
        if state is self.state:
            return False
        if state is BlockState.DOWN:
            self._held_fail = 0  # an outage, not loss
        self.state = state
        self.state_since = started
        return True

    def reset(self, now: float) -> bool:
        """Forget the negatives sent before `now` (our vantage was blind) and believe the block
        up again if it was known. Returns True when the state changed."""
        self._stale_before = now
        self.fail_start = None
        self.run_fails.clear()
        self._held_fail = 0
        for a in self._addrs.values():
            a.last_counted_negative = _NEVER
        self._end_run()
        if self.state in (BlockState.UNKNOWN, BlockState.UP):
            self._belief = self.params.belief_max
            return False
        return self._set(BlockState.UP, self.params.belief_max, now)

    def seed_down(self, addresses: Iterable[IPAddress], since: float) -> None:
        """Start believed down (a resumed outage): `addresses` are assumed ever-responsive."""
        for addr in addresses:
            self._addrs.setdefault(addr, _Addr()).last_ok = since
        if not self._addrs:
            return
        self._belief = self.params.belief_min
        self.state = BlockState.DOWN
        self.state_since = since
        self.fail_start = since

    # --- adaptive probing --------------------------------------------------------------------

    @property
    def last_probe(self) -> float:
        """Started time of the latest probe of any ever-responsive address."""
        return max(
            (a.last_probe for a in self._addrs.values() if self._responsive(a)), default=_NEVER
        )

    def wanted(
        self,
        now: float,
        probeable: Container[IPAddress],
        limit: int,
        check: bool = False,
        burst: int = 0,
        confirm: int = 0,
    ) -> list[IPAddress]:
        """Addresses worth an extra probe now, least recently probed first; marks them requested.

        - In a failure run and not yet down: ever-responsive addresses whose next negative
          would count, at most `limit` outstanding (once the run spans several addresses, each
          address again after `repeat_spacing`: see the module doc).
        - `burst` > 0 (the network around this block is suspected to be failing): up to `burst`
          addresses at once, whatever is outstanding, so that one timeout later the block's
          run (or its answers) is known from many addresses together.
        - With `check` (a sibling block is failing), an up block not probed for
          `negative_spacing` gets one probe.
        - `confirm` > 0, in a failure run: up to `confirm` addresses each `repeat_spacing`,
          whatever is outstanding (the failing address included). The probes go out before
          the earlier ones timed out; by the time their results arrive the run spans several
          addresses, so each counts (see the module doc): the negatives a block needs come
          from a few seconds of probing rather than one timeout per address and per round.
          A run ends at the first answer, so a lost packet or a dead host costs a few probes."""
        if self.state in (BlockState.UNKNOWN, BlockState.DOWN):
            return []
        p = self.params
        spacing = p.negative_spacing
        repeat = self.in_failure_run and self.run_distinct >= min(3, len(self._addrs))
        gap = min(spacing, p.repeat_spacing) if repeat else spacing
        confirming = confirm > 0 and burst <= 0 and self.in_failure_run
        if burst > 0:
            budget = burst
        else:
            if limit <= 0 and not confirming:
                return []
            if not self.in_failure_run:
                if not check or now - self.last_probe < spacing:
                    return []
                limit = 1
            if repeat:
                limit = max(limit, self.run_distinct)  # every failing address, each second
            outstanding = sum(
                1
                for a in self._addrs.values()
                if a.requested > a.last_probe and now - a.requested < spacing
            )
            budget = limit - outstanding
            if confirming:
                budget = max(budget, confirm)
                gap = min(spacing, p.repeat_spacing)
            if budget <= 0:
                return []
        # Least recently probed or asked for first: confirmations spread over the block.
        cands = [
            (max(a.last_probe, a.requested), addr)
            for addr, a in self._addrs.items()
            if addr in probeable
            and self._responsive(a)
            and now - a.last_counted_negative >= gap
            and now - a.requested >= gap
            and now - a.last_probe >= min(_MIN_GAP, gap)
        ]
        cands.sort(key=lambda c: (c[0], int(c[1])))
        out = [addr for _, addr in cands[:budget]]
        for addr in out:
            self._addrs[addr].requested = now
        return out
