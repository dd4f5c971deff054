"""The daemon's discovery: censuses on their timer, the sample of each block per round.

- At start (and on reload) the stored census of every entity with `discover: true` gives E(b)
  per /24: monitorable blocks are handed to the detector (`Detector.set_samples`) and get a
  sample job in the scheduler (`Scheduler.set_samplers`), whose `pick` draws a few addresses of
  E(b) each round (more while the block's belief is uncertain: plan.probes_per_round).
- A census runs at start when none is stored or the stored one is older than
  `discovery.interval`, then every interval; entities one after the other (plan.census_priority:
  the blind ones first, smallest first; then the stalest), each address paced by
  `Scheduler.acquire_background` (a bounded share of `max_rate`).
- Trust is judged over the whole census, not at its end (an 8 s blackout is long over by then,
  and its silent hosts were taken for gone): while a census runs, `_Watch` reads the detector
  twice a second and on every census result, and marks a block doubtful if it was believed
  down or uncertain, or failing on several addresses, or the entity down, at any moment; the
  vantage blind at any moment marks them all. With the census's own evidence
  (census.outage_blocks), a doubtful block only gains addresses (plan.apply_census), and the
  entity's next census comes early (plan.recensus_delay): an outage never empties E(b).
- Addresses configured as ICMP targets are probed every round anyway: they are left out of
  the samples (not of E(b)).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from monitor.detect.belief import BlockBelief, BlockState
from monitor.detect.model import Change, State, iso_or_none
from monitor.discovery.census import CensusOutcome, fold, run_census
from monitor.discovery.plan import (
    AddressStats,
    BlockCensus,
    IPv4,
    IPv4Net,
    SampleState,
    availability,
    census_addresses,
    census_blocks,
    census_priority,
    census_size,
    choose_sample,
    monitorable,
    probes_per_round,
    recensus_delay,
)
from monitor.discovery.store import CensusRun, CensusStore, EntityCensus
from monitor.probes.base import CallbackProber, IcmpTarget, Prober, ProbeResult, Target

if TYPE_CHECKING:
    from monitor.config import Config, EntityConfig
    from monitor.detect.detector import Detector
    from monitor.metrics import Metrics
    from monitor.scheduler import Sampler, Scheduler

log = structlog.get_logger("monitor.discovery")

# How often a running census reads the detector's view of its blocks (seconds): the detector
# ticks once a second, a blackout lasts seconds at least.
WATCH_EVERY = 0.5

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class _Block:
    """A block's sampling state: its E(b) with weights, and when each was drawn."""

    entity: str
    net: IPv4Net
    candidates: list[tuple[IPv4, float]]  # E(b) minus configured ICMP addresses, with A
    avail: float
    rng: random.Random
    last_drawn: dict[IPv4, int] = field(default_factory=dict)
    round_no: int = 0


@dataclass(slots=True)
class _Entity:
    name: str
    prefixes: tuple[IPNetwork, ...]
    census: EntityCensus
    summaries: dict[IPv4Net, BlockCensus] = field(default_factory=dict)
    running: bool = False


def _stored_summary(
    block: IPv4Net, stats: dict[IPv4, AddressStats], streak: int, min_responsive: int
) -> BlockCensus:
    responsive = tuple(sorted(a for a, s in stats.items() if s.responsive))
    a = availability(stats.values())
    return BlockCensus(
        block,
        responsive,
        a,
        0,
        (),
        (),
        True,
        streak,
        monitorable(len(responsive), a, min_responsive),
    )


def _doubts(belief: BlockBelief) -> bool:
    """The detector's belief says the block may not be answering now. A failure run counts
    once it holds negatives of min(3, |E(b)|) addresses (at least 2), as the belief itself
    reads "no dead host alone": one lost probe starts a run too, and on a lossy path (1-3 %
    per packet) a few are lost during every census, each followed by re-probes of other
    addresses; counting those would leave most censuses untrusted and slow E(b) in shedding
    hosts that left (3 addresses lost in a row: about 1 % of censuses at 3 % loss)."""
    if belief.state in (BlockState.DOWN, BlockState.UNCERTAIN):
        return True
    need = max(2, min(3, len(belief.responsive())))
    return belief.in_failure_run and belief.run_distinct >= need


class _Watch:
    """What the detector said of an entity's blocks at any moment while its census ran."""

    def __init__(self, detector: Detector, entity: str, blocks: Sequence[IPv4Net]) -> None:
        self.detector = detector
        self.entity = entity
        self.blocks = tuple(blocks)
        self.doubtful: set[IPv4Net] = set()
        self.blind = False
        self.look()

    def look(self) -> None:
        det = self.detector
        if not det.vantage_healthy:
            self.blind = True
        if self.blind or self._entity_down():
            self.doubtful.update(self.blocks)
            return
        for b in self.blocks:
            if b not in self.doubtful:
                belief = det.block_state(self.entity, b)
                if belief is not None and _doubts(belief):
                    self.doubtful.add(b)

    def _entity_down(self) -> bool:
        # Down as a whole (e.g. on BGP withdrawals) says every block is, whatever each belief.
        try:
            return self.detector.entity_state(self.entity) is State.DOWN
        except KeyError:
            return False

    async def poll(self) -> None:
        while True:
            await asyncio.sleep(WATCH_EVERY)
            self.look()


class Discovery:
    def __init__(
        self,
        cfg: Config,
        store: CensusStore,
        detector: Detector,
        scheduler: Scheduler,
        icmp: CallbackProber,
        tcp: Prober | None,
        metrics: Metrics,
        publish: Callable[[list[Change]], None],
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.detector = detector
        self.scheduler = scheduler
        self.icmp = icmp
        self.tcp = tcp
        self.metrics = metrics
        self.publish = publish
        self._entities: dict[str, _Entity] = {}
        self._configured: dict[str, EntityConfig] = {}
        self._wake = asyncio.Event()

    # --- configuration -------------------------------------------------------------------

    def configure(self, cfg: Config) -> None:
        """Apply `cfg` (start, reload): which entities are censused, their stored E(b)."""
        self.cfg = cfg
        self.scheduler.set_background_share(cfg.discovery.share)
        old = self._entities
        self._entities = {}
        self._configured = {}
        for e in cfg.entities:
            if not e.discover:
                if e.name in old:
                    self.publish(self.detector.set_samples(e.name, {}, time.time()))
                continue
            self._configured[e.name] = e
            prev = old.get(e.name)
            ent = _Entity(e.name, e.prefixes, self.store.load(e.name))
            if prev is not None:
                ent.running = prev.running
            d = cfg.discovery
            for b in census_blocks(e.prefixes):
                stats = ent.census.addresses.get(b, {})
                ent.summaries[b] = _stored_summary(
                    b, stats, ent.census.streaks.get(b, 0), d.min_responsive
                )
            self._entities[e.name] = ent
        for gone in old.keys() - self._entities.keys():
            self.metrics.set_discovery(gone, [], None)
        self._apply_all()
        self._wake.set()

    def _apply_all(self) -> None:
        samplers: list[Sampler] = []
        now = time.time()
        for ent in self._entities.values():
            samplers += self._apply(ent, now)
        self.scheduler.set_samplers(samplers)

    def _apply(self, ent: _Entity, now: float) -> list[Sampler]:
        """Hand the entity's monitorable blocks to the detector; return their sample jobs."""
        e = self._configured[ent.name]
        listed = {t.address for t in e.targets.icmp}
        samples: dict[IPNetwork, list[IPv4]] = {}
        # Each member's latest census answer: the belief keeps an address in E(b) only while
        # it answered within responsive_ttl of its block's latest answer (a member the census
        # kept through an outage, with no recent answer, thus ages out like a learned one).
        answered: dict[IPv4, float] = {}
        samplers: list[Sampler] = []
        for b, s in ent.summaries.items():
            if not s.monitorable:
                continue
            samples[b] = list(s.responsive)
            stats = ent.census.addresses.get(b, {})
            for a in s.responsive:
                last = stats[a].last_answer if a in stats else None
                if last is not None:
                    answered[a] = last
            cands = [(a, stats[a].availability) for a in s.responsive if a not in listed]
            if not cands:
                continue
            blk = _Block(ent.name, b, cands, s.availability, random.Random(f"{ent.name}/{b}"))
            samplers.append((ent.name, IcmpTarget(b.network_address), self._picker(blk)))
        self.publish(self.detector.set_samples(ent.name, samples, now, answered))
        self.metrics.set_discovery(
            ent.name,
            [
                (str(b), s.size, s.availability, s.monitorable)
                for b, s in sorted(ent.summaries.items())
            ],
            ent.census.last.finished if ent.census.last else None,
        )
        return samplers

    def _picker(self, blk: _Block) -> Callable[[], Sequence[Target]]:
        d = self.cfg.discovery

        def pick() -> Sequence[Target]:
            belief = self.detector.block_state(blk.entity, blk.net)
            certain = (
                belief is not None
                and belief.state in (BlockState.UP, BlockState.DOWN)
                and not belief.in_failure_run
            )
            state = SampleState.CERTAIN if certain else SampleState.UNCERTAIN
            k = probes_per_round(blk.avail, state, len(blk.candidates), d.sample, d.sample_max)
            chosen = choose_sample(blk.candidates, k, blk.last_drawn, blk.round_no, blk.rng)
            for a in chosen:
                blk.last_drawn[a] = blk.round_no
            blk.round_no += 1
            return [IcmpTarget(a) for a in chosen]

        return pick

    # --- censuses ---------------------------------------------------------------------------

    def _due(self, ent: _Entity) -> float:
        last = ent.census.last
        if last is None:
            return 0.0
        return last.finished + recensus_delay(self.cfg.discovery.interval, last.doubtful)

    def next_due(self, now: float) -> str | None:
        """The entity whose census is due at `now` and goes first (plan.census_priority), or
        None."""
        ready: list[tuple[tuple[int, float], str]] = []
        for ent in self._entities.values():
            due = self._due(ent)
            if due > now:
                continue
            e = self._configured[ent.name]
            key = census_priority(
                ent.census.last is not None,
                any(True for _ in e.targets.all()),
                census_size(e.prefixes),
                due,
            )
            ready.append((key, ent.name))
        return min(ready)[1] if ready else None

    async def run(self) -> None:
        """Census every entity when due, one at a time, forever (until cancelled)."""
        while True:
            self._wake.clear()
            now = time.time()
            name = self.next_due(now)
            if name is not None:
                await self.census(name)
                continue
            due = [self._due(e) for e in self._entities.values()]
            wait = min([60.0, *(d - now for d in due)])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def census_addresses(self) -> list[IPv4]:
        """Every address the configured censuses probe (to prepare the ICMP engine's tables)."""
        return [a for e in self._configured.values() for a in census_addresses(e.prefixes)]

    async def census(self, name: str) -> list[BlockCensus]:
        """One census of entity `name` now; stored, applied; returns the blocks' summaries."""
        ent = self._entities[name]
        e = self._configured[name]
        d = self.cfg.discovery
        watch = _Watch(self.detector, name, census_blocks(e.prefixes))
        metrics = self.metrics

        def on_probe(result: ProbeResult) -> None:
            metrics.record_census(name, result)
            watch.look()

        ent.running = True
        log.info("census started", entity=name, prefixes=[str(p) for p in e.prefixes])
        poller = asyncio.create_task(watch.poll())
        try:
            outcome = await run_census(
                name,
                e.prefixes,
                ent.census,
                icmp=self.icmp,
                acquire=self.scheduler.acquire_background,
                timeout=self.cfg.probing.timeout,
                tcp=self.tcp,
                tcp_ports=d.tcp_ports,
                on_probe=on_probe,
            )
        finally:
            ent.running = False
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        watch.look()  # the census's last results may have just been judged
        summaries = self._fold(ent, outcome, watch.doubtful)
        current = self._entities.get(name)
        if current is not None:  # still censused (a reload may have replaced its record)
            current.census, current.summaries = ent.census, ent.summaries
            self._apply_all()
        return summaries

    def _fold(
        self, ent: _Entity, outcome: CensusOutcome, doubtful: set[IPv4Net]
    ) -> list[BlockCensus]:
        summaries, stats, run = fold(
            ent.prefixes, ent.census, outcome, doubtful, self.cfg.discovery.min_responsive
        )
        self.store.save(run, summaries, stats)
        ent.census = EntityCensus(
            {b: dict(s) for b, s in stats.items()},
            {s.block: s.empty_streak for s in summaries},
            run,
        )
        ent.summaries = {s.block: s for s in summaries}
        log.info(
            "census done",
            entity=ent.name,
            probes=run.probes,
            answered=run.answered,
            seconds=round(run.finished - run.started, 1),
            untrusted=[str(s.block) for s in summaries if not s.trusted],
            next_census_in=round(recensus_delay(self.cfg.discovery.interval, run.doubtful)),
            blocks={
                str(s.block): {
                    "responsive": s.size,
                    "joined": len(s.joined),
                    "left": len(s.left),
                    "monitorable": s.monitorable,
                }
                for s in summaries
            },
        )
        return summaries

    # --- reading ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The `discovery` part of /api/v1/status."""
        out: dict[str, Any] = {}
        for ent in self._entities.values():
            last: CensusRun | None = ent.census.last
            out[ent.name] = {
                "last_census": iso_or_none(last.finished if last else None),
                "next_census": iso_or_none(self._due(ent) or time.time()),
                "running": ent.running,
                # doubtful censuses in a row (or the first one): why next_census comes early
                "doubtful_censuses": last.doubtful if last else 0,
                "blocks": [_block_doc(s) for _, s in sorted(ent.summaries.items())],
                "unmonitorable": [
                    str(b) for b, s in sorted(ent.summaries.items()) if not s.monitorable
                ],
            }
        return {"entities": out}

    def close(self) -> None:
        self.store.close()


def _block_doc(s: BlockCensus) -> dict[str, Any]:
    return {
        "block": str(s.block),
        "responsive": s.size,
        "availability": round(s.availability, 4),
        "monitorable": s.monitorable,
        # False: the block looked down at some moment of the census, which only added to E(b)
        "trusted": s.trusted,
        "joined": [str(a) for a in s.joined],
        "left": [str(a) for a in s.left],
    }
