"""One census of an entity's prefixes with the daemon's own probers, inside a rate budget.

The probes go out one at a time as `acquire()` grants them (the daemon passes the scheduler's
background share of `max_rate`, see `Scheduler.acquire_background`), ICMP through the shared
engine's callback API (no task per probe); `run_census` waits for the last answer or timeout.
Every address is in the entity's prefixes by construction (`plan.census_order`); nothing else
is ever sent. `fold` then folds the answers into E(b) per block (pure), trusting no block that
was doubtful during the census or in which the census itself saw members of E(b) go silent.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from monitor.discovery.plan import (
    AddressStats,
    BlockCensus,
    IPv4,
    IPv4Net,
    apply_census,
    availability,
    block_of,
    census_blocks,
    census_order,
    outage_runs,
    retry_order,
    silent_run_limit,
)
from monitor.discovery.store import CensusRun, EntityCensus
from monitor.probes.base import CallbackProber, IcmpTarget, Prober, ProbeResult, Reason, TcpTarget

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# TCP connects in flight at once during a census (each still waits for a grant to start).
_TCP_CONCURRENCY = 32


@dataclass(slots=True)
class CensusOutcome:
    """The raw result of one census: probes sent and answers per address."""

    entity: str
    started: float
    finished: float = 0.0
    probes: dict[IPv4, int] = field(default_factory=dict)
    answered: dict[IPv4, float] = field(default_factory=dict)  # started time of the answer
    # Every ICMP probe in the order sent, with whether it was answered (None until its result
    # comes): the census's own evidence of an outage (plan.outage_runs).
    trail: list[tuple[IPv4, bool | None]] = field(default_factory=list)
    # Addresses that answered a TCP probe only (silent to ICMP): their ICMP silence says nothing.
    by_tcp: set[IPv4] = field(default_factory=set)

    @property
    def sent(self) -> int:
        return sum(self.probes.values())

    def run(self, doubtful: int = 0) -> CensusRun:
        return CensusRun(
            self.entity, self.started, self.finished, self.sent, len(self.answered), doubtful
        )


async def run_census(
    entity: str,
    prefixes: Sequence[IPNetwork],
    previous: EntityCensus,
    *,
    icmp: CallbackProber,
    acquire: Callable[[], Awaitable[None]],
    timeout: float,
    tcp: Prober | None = None,
    tcp_ports: Sequence[int] = (),
    on_probe: Callable[[ProbeResult], None] | None = None,
) -> CensusOutcome:
    """Probe every address of `prefixes` once by ICMP echo (one retry for members of E(b) that
    stayed silent), then, with `tcp_ports`, each still-silent address on those ports (a host
    filtering ICMP still answers a SYN with a SYN-ACK or a RST)."""
    out = CensusOutcome(entity, time.time())
    order = census_order(prefixes)
    flat: dict[IPv4, AddressStats] = {
        a: s for by_addr in previous.addresses.values() for a, s in by_addr.items()
    }
    await _icmp_pass(order, out, icmp, acquire, timeout, on_probe)
    retry = retry_order(order, out.answered, flat)
    if retry:
        await _icmp_pass(retry, out, icmp, acquire, timeout, on_probe)
    if tcp is not None and tcp_ports:
        silent = [a for a in order if a not in out.answered]
        await _tcp_pass(silent, tcp_ports, out, tcp, acquire, timeout, on_probe)
    out.finished = time.time()
    return out


async def _icmp_pass(
    order: Iterable[IPv4],
    out: CensusOutcome,
    icmp: CallbackProber,
    acquire: Callable[[], Awaitable[None]],
    timeout: float,
    on_probe: Callable[[ProbeResult], None] | None,
) -> None:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    pending = 0
    sending = True

    def finished(index: int, result: ProbeResult) -> None:
        nonlocal pending
        pending -= 1
        addr = result.target.address if isinstance(result.target, IcmpTarget) else None
        if isinstance(addr, IPv4):
            out.trail[index] = (addr, result.ok)
            if result.ok:
                out.answered.setdefault(addr, result.started)
        if on_probe is not None:
            on_probe(result)
        if pending == 0 and not sending and not done.done():
            done.set_result(None)

    for addr in order:
        await acquire()
        out.probes[addr] = out.probes.get(addr, 0) + 1
        pending += 1
        out.trail.append((addr, None))
        icmp.start(IcmpTarget(addr), timeout, functools.partial(finished, len(out.trail) - 1))
    sending = False
    if pending > 0:
        await done


async def _tcp_pass(
    addresses: Sequence[IPv4],
    ports: Sequence[int],
    out: CensusOutcome,
    tcp: Prober,
    acquire: Callable[[], Awaitable[None]],
    timeout: float,
    on_probe: Callable[[ProbeResult], None] | None,
) -> None:
    sem = asyncio.Semaphore(_TCP_CONCURRENCY)

    async def one(target: TcpTarget) -> None:
        try:
            r = await tcp.probe(target, timeout)
        finally:
            sem.release()
        # A refusal (RST) is an answer too: something lives at that address.
        if (r.ok or r.reason is Reason.REFUSED) and isinstance(target.address, IPv4):
            out.answered.setdefault(target.address, r.started)
            out.by_tcp.add(target.address)
        if on_probe is not None:
            on_probe(r)

    tasks: list[asyncio.Task[None]] = []
    try:
        for addr in addresses:
            for port in ports:
                if addr in out.answered:
                    break
                await sem.acquire()
                await acquire()
                out.probes[addr] = out.probes.get(addr, 0) + 1
                tasks.append(asyncio.create_task(one(TcpTarget(addr, port))))
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()


def summarize(
    prefixes: Sequence[IPNetwork],
    previous: EntityCensus,
    outcome: CensusOutcome,
    trusted: Callable[[IPv4Net], bool],
    min_responsive: int,
) -> tuple[list[BlockCensus], dict[IPv4Net, dict[IPv4, AddressStats]]]:
    """E(b) per block after `outcome` (see plan.apply_census); `trusted(block)`: the block was
    not down and our vantage not blind during the census."""
    blocks = census_blocks(prefixes)
    by_block_probes: dict[IPv4Net, dict[IPv4, int]] = {}
    for a, n in outcome.probes.items():
        by_block_probes.setdefault(block_of(a), {})[a] = n
    by_block_answers: dict[IPv4Net, dict[IPv4, float]] = {}
    for a, t in outcome.answered.items():
        by_block_answers.setdefault(block_of(a), {})[a] = t
    summaries: list[BlockCensus] = []
    stats: dict[IPv4Net, dict[IPv4, AddressStats]] = {}
    for b in blocks:
        siblings = any(blk != b and ans for blk, ans in by_block_answers.items())
        summary, st = apply_census(
            b,
            previous.addresses.get(b, {}),
            by_block_probes.get(b, {}),
            by_block_answers.get(b, {}),
            trusted=trusted(b),
            siblings_answered=siblings,
            empty_streak=previous.streaks.get(b, 0),
            min_responsive=min_responsive,
        )
        summaries.append(summary)
        stats[b] = st
    return summaries, stats


def outage_blocks(previous: EntityCensus, outcome: CensusOutcome) -> set[IPv4Net]:
    """The blocks in which the census itself saw an outage come and go: at least
    plan.silent_run_limit(A) members of E(b) (as stored before it) silent in a row, one of them
    answering its retry (plan.outage_runs). The detector cannot vouch for a block it has no
    belief of (right after a restart; the CLI has no detector); this can."""
    members = {
        a
        for by_addr in previous.addresses.values()
        for a, s in by_addr.items()
        if s.responsive and a not in outcome.by_tcp
    }
    trail = [(a, ok) for a, ok in outcome.trail if ok is not None]
    runs = outage_runs(trail, members, outcome.answered)
    return {
        b
        for b, n in runs.items()
        if n >= silent_run_limit(availability(previous.addresses.get(b, {}).values()))
    }


def fold(
    prefixes: Sequence[IPNetwork],
    previous: EntityCensus,
    outcome: CensusOutcome,
    doubtful: Collection[IPv4Net],
    min_responsive: int,
) -> tuple[list[BlockCensus], dict[IPv4Net, dict[IPv4, AddressStats]], CensusRun]:
    """E(b) per block after `outcome` (summarize), the blocks of `doubtful` and those in which
    the census saw an outage (outage_blocks) untrusted: they only gain addresses. The run's doubtful
    streak grows after an untrusted census, and after an entity's first one (no E(b) nor
    belief could vouch for it: a blackout then would hide hosts for a whole interval)."""
    doubt = set(doubtful) | outage_blocks(previous, outcome)
    summaries, stats = summarize(
        prefixes, previous, outcome, lambda b: b not in doubt, min_responsive
    )
    first = previous.last is None
    if first or any(not s.trusted for s in summaries):
        streak = (previous.last.doubtful if previous.last is not None else 0) + 1
    else:
        streak = 0
    return summaries, stats, outcome.run(streak)


def availability_of(stats: Mapping[IPv4, AddressStats]) -> dict[IPv4, float]:
    """Per responsive address, its answer share (the sampler's weights)."""
    return {a: s.availability for a, s in stats.items() if s.responsive}
