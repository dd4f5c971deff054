"""`dprk-monitor discover`: one census now, printed per /24 and stored like the daemon's.

It paces itself at the census share of `max_rate` (`discovery.share`), the same pace as the
daemon's censuses, so that running it next to a daemon keeps the two inside `max_rate`
together. Without a detector to ask whether a block is down, a block's result is trusted unless
the census itself saw members of its E(b) go silent in a row and come back
(census.outage_blocks); a block silent while its siblings answer is called emptied, so run it
when the network is up. Its doubtful streak is stored like the daemon's: a daemon started next
censuses early if needed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from monitor.config import Config, EntityConfig
from monitor.discovery.census import CensusOutcome, fold, run_census
from monitor.discovery.params import MAX_CENSUS
from monitor.discovery.plan import BlockCensus, census_size
from monitor.discovery.store import CensusStore
from monitor.probes import build_probers
from monitor.probes.base import Kind
from monitor.scheduler import RateLimiter


@dataclass(frozen=True, slots=True)
class EntityResult:
    entity: str
    outcome: CensusOutcome
    blocks: list[BlockCensus]


def pick_entities(cfg: Config, name: str | None) -> list[EntityConfig]:
    """The entities to census: `name`, or every one with `discover: true`. ValueError says why
    none can be."""
    if name is not None:
        e = cfg.entity(name)
        if e is None:
            raise ValueError(f"no entity named {name!r} in {cfg.source}")
        chosen = [e]
    else:
        chosen = [e for e in cfg.entities if e.discover]
        if not chosen:
            raise ValueError(f"no entity has 'discover: true' in {cfg.source} (name one: --entity)")
    for e in chosen:
        n = census_size(e.prefixes)
        if n == 0:
            raise ValueError(f"entity {e.name!r} has no IPv4 prefix to census")
        if n > MAX_CENSUS:
            raise ValueError(f"entity {e.name!r}: {n} addresses, more than {MAX_CENSUS}")
    return chosen


async def discover_once(cfg: Config, entities: list[EntityConfig]) -> list[EntityResult]:
    probers = build_probers()
    limiter = RateLimiter(cfg.probing.max_rate * cfg.discovery.share)

    async def acquire() -> None:
        while True:
            wait = limiter.try_acquire()
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    store = CensusStore(cfg.state_dir)
    out: list[EntityResult] = []
    try:
        for e in entities:
            previous = store.load(e.name)
            outcome = await run_census(
                e.name,
                e.prefixes,
                previous,
                icmp=probers.icmp,
                acquire=acquire,
                timeout=cfg.probing.timeout,
                tcp=probers[Kind.TCP],
                tcp_ports=cfg.discovery.tcp_ports,
            )
            blocks, stats, run = fold(
                e.prefixes, previous, outcome, (), cfg.discovery.min_responsive
            )
            store.save(run, blocks, stats)
            out.append(EntityResult(e.name, outcome, blocks))
    finally:
        store.close()
        for p in probers.values():
            await p.close()
    return out


def render(results: list[EntityResult], where: str) -> str:
    header = ("ENTITY", "BLOCK", "ANSWERING", "E(b)", "AVAILABILITY", "JOINED", "LEFT", "STATE")
    rows = [header]
    for r in results:
        for b in r.blocks:
            rows.append(
                (
                    r.entity,
                    str(b.block),
                    str(b.answered),
                    str(b.size),
                    f"{b.availability:.2f}",
                    f"+{len(b.joined)}",
                    f"-{len(b.left)}",
                    "monitorable" if b.monitorable else "unmonitorable",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    for r in results:
        o = r.outcome
        lines.append(
            f"{r.entity}: {o.sent} probes, {len(o.answered)} addresses answered in "
            f"{o.finished - o.started:.0f} s"
        )
        for b in r.blocks:
            if not b.trusted:
                lines.append(
                    f"  {b.block}: members of E(b) went silent in a row and came back during "
                    "the census (an outage): addresses only added, none removed"
                )
            if b.joined or b.left:
                joined = " ".join(f"+{a}" for a in b.joined)
                left = " ".join(f"-{a}" for a in b.left)
                lines.append(f"  {b.block}: {' '.join(x for x in (joined, left) if x)}")
    lines.append(f"stored in {where}")
    return "\n".join(lines) + "\n"
